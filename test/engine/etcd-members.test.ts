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

  test('one member from a backup of a three-member cluster, unless --single-member; the message gives the whole member list', () => {
    const one = [{ name: 'cp-2', peerUrls: 'https://10.0.0.2:2380' }];
    expect(() => checkMemberPlan({ ...base, members: one, backupMembers: members }))
      .toThrow(`this backup was taken from a cluster of 3 members (cp-1, cp-2, cp-3)`);
    expect(() => checkMemberPlan({ ...base, members: one, backupMembers: members })).toThrow(`--initial-cluster ${three}`);
    expect(() => checkMemberPlan({ ...base, members: one, backupMembers: members, singleMember: true })).not.toThrow();
    expect(() => checkMemberPlan({ ...base, members: one, backupMembers: [members[1]!] })).not.toThrow();
  });

  test('a one-member refusal ends with the command for every member, when the caller can write them', () => {
    const one = [{ name: 'cp-2', peerUrls: 'https://10.0.0.2:2380' }];
    const commandsFor = (all: { name: string }[]) => all.map((m) => `kubedr etcd-restore --name ${m.name}`);
    for (const plan of [{ backupMembers: members }, { manifestMembers: members }]) {
      expect(() => checkMemberPlan({ ...base, members: one, ...plan, commandsFor })).toThrow(
        '. On each member\'s node:\n  # cp-1\n  kubedr etcd-restore --name cp-1\n  # cp-2\n  kubedr etcd-restore --name cp-2\n  # cp-3\n  kubedr etcd-restore --name cp-3');
    }
  });

  test('a kubedr-restore token names its snapshot: another snapshot with that token is refused', () => {
    const sha = 'ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12';
    expect(() => checkMemberPlan({ ...base, token: clusterTokenFor(sha), snapshotSha256: sha })).not.toThrow();
    expect(() => checkMemberPlan({ ...base, token: 'kubedr-restore-0000000000000000', snapshotSha256: sha }))
      .toThrow(/belongs to the snapshot whose SHA-256 begins 0000000000000000, not to this one \(ab12cd34ef56ab12…\)/);
    // A token of the person's own choosing is theirs to keep consistent.
    expect(() => checkMemberPlan({ ...base, token: 'my-token', snapshotSha256: sha })).not.toThrow();
  });

  test('the revision bump is all or none: a member that cannot bump refuses unless every member is told not to', () => {
    expect(() => checkMemberPlan({ ...base, bump: { possible: false, refused: false } })).toThrow(/decided once for all members/);
    expect(() => checkMemberPlan({ ...base, bump: { possible: false, refused: true } })).not.toThrow();
    expect(() => checkMemberPlan({ ...base, members: [members[1]!], bump: { possible: false, refused: false } })).not.toThrow();
  });

  test('the token of the cluster being replaced', () => {
    expect(() => checkMemberPlan({ ...base, manifestToken: 'kubedr-restore-1' })).toThrow(/is the one of the cluster being replaced/);
  });
});
