/** The plan of `kubedr etcd-restore`: members from flags, manifests or the backup's record, and where the data goes. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { manifestDataHostPath, planMembers, readBackupMembers } from '../../src/cli/etcd-restore-plan.ts';
import { kubeadmEtcd } from '../fixtures/kubeadm.ts';

const three = 'cp-1=https://10.0.0.1:2380,cp-2=https://10.0.0.2:2380,cp-3=https://10.0.0.3:2380';
let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'etcd-plan-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('planMembers', () => {
  test('--initial-cluster names them all; --name picks this one', () => {
    const plan = planMembers({ name: 'cp-2', 'initial-cluster': three }, {});
    expect(plan.name).toBe('cp-2');
    expect(plan.members.map((m) => m.name)).toEqual(['cp-1', 'cp-2', 'cp-3']);
  });

  test('without flags: this one member, named and addressed as the node\'s manifest says', () => {
    expect(planMembers({}, { name: 'cp-1', peerUrls: 'https://10.0.0.1:2380' })).toEqual({
      name: 'cp-1', members: [{ name: 'cp-1', peerUrls: 'https://10.0.0.1:2380' }],
    });
  });

  test('--member-manifests: one member from each node\'s manifest', () => {
    const files = ['cp-1', 'cp-2'].map((n, i) => {
      const f = join(work, `${n}.yaml`);
      writeFileSync(f, kubeadmEtcd.replace('--name=cp-1', `--name=${n}`)
        .replace('    - --name=', `    - --initial-advertise-peer-urls=https://10.0.0.${i + 1}:2380\n    - --name=`));
      return f;
    });
    const plan = planMembers({ name: 'cp-1', 'member-manifests': files.join(',') }, {});
    expect(plan.members).toEqual([{ name: 'cp-1', peerUrls: 'https://10.0.0.1:2380' }, { name: 'cp-2', peerUrls: 'https://10.0.0.2:2380' }]);
  });

  test('a peer URL that contradicts the list is refused', () => {
    expect(() => planMembers({ name: 'cp-1', 'initial-cluster': three, 'initial-advertise-peer-urls': 'https://10.9.9.9:2380' }, {}))
      .toThrow('--initial-advertise-peer-urls https://10.9.9.9:2380 is not member cp-1\'s URL in the cluster (https://10.0.0.1:2380)');
  });
});

describe('what the backup and the node say', () => {
  test('the backup\'s members: the voting ones, from etcd-members.json beside the snapshot; none for older backups', () => {
    const dir = mkdtempSync(join(work, 'backup-'));
    expect(readBackupMembers(join(dir, 'etcd-snapshot.db'))).toBeUndefined();
    writeFileSync(join(dir, 'etcd-members.json'), JSON.stringify([
      { id: '1', name: 'cp-1', peerUrls: ['https://10.0.0.1:2380'], clientUrls: [], isLearner: false },
      { id: '2', name: 'cp-4', peerUrls: ['https://10.0.0.4:2380'], clientUrls: [], isLearner: true },
    ]));
    expect(readBackupMembers(join(dir, 'etcd-snapshot.db'))).toEqual([{ name: 'cp-1', peerUrls: 'https://10.0.0.1:2380' }]);
    writeFileSync(join(dir, 'etcd-members.json'), '{not json');
    expect(() => readBackupMembers(join(dir, 'etcd-snapshot.db'))).toThrow('cannot be read');
  });

  test('the data goes where the node\'s etcd reads it: the etcd-data hostPath; nothing without a manifest', () => {
    const manifest = join(work, 'etcd.yaml');
    writeFileSync(manifest, kubeadmEtcd.replace('path: /var/lib/etcd\n', 'path: /var/lib/etcd-restored-20261204\n'));
    expect(manifestDataHostPath(manifest)).toBe('/var/lib/etcd-restored-20261204');
    expect(manifestDataHostPath(join(work, 'none.yaml'))).toBeUndefined();
  });
});
