/** What `kubedr etcd-restore` reads on the node: the member manifests, the backup's members and parts, the etcd data path. */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CERTS_DIR, EXTRA_DIR } from '../../src/engine/backup-layout.ts';
import { manifestDataHostPath, readBackupMembers, readManifestText, readMemberManifests, restoredParts } from '../../src/cli/etcd-restore-files.ts';
import { kubeadmEtcd } from '../fixtures/kubeadm.ts';

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'etcd-restore-files-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

test('--member-manifests: each file as given and as read; one that cannot be read reads as empty', () => {
  const file = join(work, 'cp-2.yaml');
  writeFileSync(file, kubeadmEtcd.replace('--name=cp-1', '--name=cp-2')
    .replace('    - --name=', '    - --initial-advertise-peer-urls=https://10.0.0.2:2380\n    - --name='));
  const missing = join(work, 'missing.yaml');
  expect(readMemberManifests(`${file}, ${missing}`)).toEqual([
    { file, manifest: expect.objectContaining({ name: 'cp-2', peerUrls: 'https://10.0.0.2:2380' }) },
    { file: ` ${missing}`, manifest: {} },
  ]);
});

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

test('--kubeadm needs kubeadm\'s etcd manifest, and says which flag names it', () => {
  expect(() => readManifestText(join(work, 'none.yaml'))).toThrow(`${join(work, 'none.yaml')} not found: --kubeadm needs kubeadm's etcd manifest (see --etcd-manifest)`);
});

test('the parts a restored backup holds beside its snapshot: certificates and extra paths, each only when there', () => {
  const data = mkdtempSync(join(work, 'data-'));
  expect(restoredParts(data)).toEqual({ certificates: undefined, extra: undefined });
  mkdirSync(join(data, CERTS_DIR));
  mkdirSync(join(data, EXTRA_DIR));
  expect(restoredParts(data)).toEqual({ certificates: join(data, CERTS_DIR), extra: join(data, EXTRA_DIR) });
});
