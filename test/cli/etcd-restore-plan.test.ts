/** The plan of `kubedr etcd-restore`: the members, and this run's, from flags, manifests (as read) and this host's facts. */
import { describe, expect, test } from 'bun:test';
import { type PlanInput, planMembers } from '../../src/cli/etcd-restore-plan.ts';

const three = 'cp-1=https://10.0.0.1:2380,cp-2=https://10.0.0.2:2380,cp-3=https://10.0.0.3:2380';
const host = { hostname: 'node-a', ipv4: '192.0.2.7' };
const plan = (p: Partial<PlanInput>) => planMembers({ flags: {}, manifest: {}, host, ...p });

describe('planMembers', () => {
  test('--initial-cluster names them all; --name picks this one', () => {
    const p = plan({ flags: { name: 'cp-2', 'initial-cluster': three } });
    expect(p.name).toBe('cp-2');
    expect(p.members.map((m) => m.name)).toEqual(['cp-1', 'cp-2', 'cp-3']);
  });

  test('without flags: this one member, named and addressed as the node\'s manifest says', () => {
    expect(plan({ manifest: { name: 'cp-1', peerUrls: 'https://10.0.0.1:2380' } })).toEqual({
      name: 'cp-1', members: [{ name: 'cp-1', peerUrls: 'https://10.0.0.1:2380' }],
    });
  });

  test('without flags or a manifest: named after this host, at its first IPv4 address, as kubeadm would', () => {
    expect(plan({})).toEqual({ name: 'node-a', members: [{ name: 'node-a', peerUrls: 'https://192.0.2.7:2380' }] });
    expect(plan({ flags: { 'initial-advertise-peer-urls': 'https://10.0.0.9:2380' } }).members)
      .toEqual([{ name: 'node-a', peerUrls: 'https://10.0.0.9:2380' }]);
  });

  test('--member-manifests: one member from each node\'s manifest; --initial-cluster goes first', () => {
    const memberManifests = [
      { file: 'cp-1.yaml', manifest: { name: 'cp-1', peerUrls: 'https://10.0.0.1:2380' } },
      { file: 'cp-2.yaml', manifest: { name: 'cp-2', peerUrls: 'https://10.0.0.2:2380' } },
    ];
    expect(plan({ flags: { name: 'cp-1' }, memberManifests }).members)
      .toEqual([{ name: 'cp-1', peerUrls: 'https://10.0.0.1:2380' }, { name: 'cp-2', peerUrls: 'https://10.0.0.2:2380' }]);
    expect(plan({ flags: { name: 'cp-1', 'initial-cluster': three }, memberManifests }).members).toHaveLength(3);
  });

  test('a member manifest without a name or peer URL is refused by its file name', () => {
    const memberManifests = [{ file: 'cp-1.yaml', manifest: { name: 'cp-1', peerUrls: 'https://10.0.0.1:2380' } }, { file: 'notes.txt', manifest: {} }];
    expect(() => plan({ flags: { name: 'cp-1' }, memberManifests }))
      .toThrow('notes.txt has no --name and --initial-advertise-peer-urls: is it an etcd manifest?');
  });

  test('a peer URL that contradicts the list is refused', () => {
    expect(() => plan({ flags: { name: 'cp-1', 'initial-cluster': three, 'initial-advertise-peer-urls': 'https://10.9.9.9:2380' } }))
      .toThrow('--initial-advertise-peer-urls https://10.9.9.9:2380 is not member cp-1\'s URL in the cluster (https://10.0.0.1:2380)');
  });
});
