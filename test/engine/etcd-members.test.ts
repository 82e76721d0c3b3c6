import { describe, expect, test } from 'bun:test';
import { checkMemberPlan, clusterTokenFor, formatInitialCluster, parseInitialCluster } from '../../src/engine/etcd-members.ts';

const three = 'cp-1=https://10.0.0.1:2380,cp-2=https://10.0.0.2:2380,cp-3=https://10.0.0.3:2380';

describe('--initial-cluster', () => {
  test('parses members in order and formats back to the same string', () => {
    const members = parseInitialCluster(three);
    expect(members.map((m) => m.name)).toEqual(['cp-1', 'cp-2', 'cp-3']);
    expect(members[1]!.peerUrls).toBe('https://10.0.0.2:2380');
    expect(formatInitialCluster(members)).toBe(three);
  });

  test('a name given twice is one member with two peer URLs, as etcd reads it', () => {
    const members = parseInitialCluster('a=https://10.0.0.1:2380,a=https://[fd00::1]:2380');
    expect(members).toEqual([{ name: 'a', peerUrls: 'https://10.0.0.1:2380,https://[fd00::1]:2380' }]);
  });

  test.each(['cp-1', '=https://x:2380', 'cp-1=10.0.0.1:2380', 'cp-1=https://x:2380/path', ''])('"%s" is refused with the expected form', (bad) => {
    expect(() => parseInitialCluster(bad)).toThrow(/NAME=PEER-URL|empty/);
  });
});

test('the token is derived from the snapshot: the same for one snapshot, different for another', () => {
  const a = 'ab'.repeat(32);
  expect(clusterTokenFor(a)).toBe(clusterTokenFor(a));
  expect(clusterTokenFor(a)).not.toBe(clusterTokenFor('cd'.repeat(32)));
  expect(clusterTokenFor(a)).toMatch(/^kubedr-restore-[0-9a-f]{16}$/);
});

describe('checkMemberPlan refuses what would split the cluster', () => {
  const members = parseInitialCluster(three);
  const base = { members, name: 'cp-2', token: 'kubedr-restore-1', singleMember: false };

  test('every member of one list, this one among them: accepted', () => {
    expect(() => checkMemberPlan({ ...base, manifestMembers: members })).not.toThrow();
  });

  test('a member that is not in the list', () => {
    expect(() => checkMemberPlan({ ...base, name: 'cp-9' })).toThrow('member "cp-9" is not in --initial-cluster (cp-1, cp-2, cp-3)');
  });

  test('one member where the node\'s manifest lists three, unless --single-member', () => {
    const one = [{ name: 'cp-2', peerUrls: 'https://10.0.0.2:2380' }];
    expect(() => checkMemberPlan({ ...base, members: one, manifestMembers: members })).toThrow(/lists 3 members \(cp-1, cp-2, cp-3\).*--single-member/s);
    expect(() => checkMemberPlan({ ...base, members: one, manifestMembers: members, singleMember: true })).not.toThrow();
  });

  test('the token of the cluster being replaced', () => {
    expect(() => checkMemberPlan({ ...base, manifestToken: 'kubedr-restore-1' })).toThrow(/is the one of the cluster being replaced/);
  });
});
