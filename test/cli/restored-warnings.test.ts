/**
 * What `kubedr restore` and `kubedr etcd-restore` warn about in a restored backup, and that they restore all the same:
 * certificates that have expired or expire within 7 days, and an encryption-at-rest config named by the node's
 * kube-apiserver manifest that the backup does not hold. The commands run as processes, with stand-ins for restic and
 * etcdutl that lay out what the real ones would.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { restoredWarnings } from '../../src/cli/etcd-restore-files.ts';
import { certificateWarning, encryptionConfigWarning } from '../../src/cli/restored-warnings.ts';
import { encryptionConfigOf } from '../../src/engine/encryption-config.ts';
import { issueCertificate } from '../fixtures/certificates.ts';
import { silentEndpoint } from '../support/listener.ts';

const repoRoot = resolve(import.meta.dir, '../..');

describe('certificateWarning', () => {
  const now = new Date('2030-01-10T12:00:00Z');
  const certs = [
    { file: 'ca.crt', notAfter: '2039-01-01T00:00:00.000Z' },
    { file: 'etcd/server.crt', notAfter: '2030-01-13T12:00:00.000Z' },
    { file: 'apiserver.crt', notAfter: '2030-01-01T12:00:00.000Z' },
    { file: 'front-proxy-client.crt', notAfter: '2030-01-10T17:30:00.000Z' },
  ];

  test('names the expired and the expiring within 7 days, soonest first, with what to do', () => {
    expect(certificateWarning(certs, '/restore/data/certificates', now)).toBe(
      'warning: 3 restored certificates have expired or expire within 7 days (in /restore/data/certificates). A control ' +
      'plane started with expired certificates cannot talk to itself: renew them before starting it (kubeadm: kubeadm ' +
      'certs renew all; an expired CA must be replaced).\n' +
      '  apiserver.crt: expired 2030-01-01T12:00:00Z (9 days ago)\n' +
      '  front-proxy-client.crt: expires 2030-01-10T17:30:00Z (in 5 hours)\n' +
      '  etcd/server.crt: expires 2030-01-13T12:00:00Z (in 3 days)');
  });

  test('one certificate is named in the singular; none gives no warning', () => {
    expect(certificateWarning(certs.slice(0, 2), '/r', now)).toStartWith(
      'warning: 1 restored certificate has expired or expires within 7 days (in /r).');
    expect(certificateWarning(certs.slice(0, 1), '/r', now)).toBeUndefined();
    expect(certificateWarning([], '/r', now)).toBeUndefined();
  });
});

describe('encryption config', () => {
  const manifest = (command: string) => `apiVersion: v1
kind: Pod
metadata: { name: kube-apiserver, namespace: kube-system }
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.5
${command}    - --etcd-servers=https://127.0.0.1:2379
`;

  test('the path comes from --encryption-provider-config in kubeadm\'s manifest, in either form, quoted or not', () => {
    expect(encryptionConfigOf(manifest('    - --encryption-provider-config=/etc/kubernetes/enc/enc.yaml\n'))).toBe('/etc/kubernetes/enc/enc.yaml');
    expect(encryptionConfigOf(manifest('    - "--encryption-provider-config=/etc/kubernetes/enc/enc.yaml"\n'))).toBe('/etc/kubernetes/enc/enc.yaml');
    expect(encryptionConfigOf(manifest('    - --encryption-provider-config\n    - /etc/kubernetes/enc/enc.yaml\n'))).toBe('/etc/kubernetes/enc/enc.yaml');
  });

  test('no flag, or only the reload flag, names no config', () => {
    expect(encryptionConfigOf(manifest(''))).toBeUndefined();
    expect(encryptionConfigOf(manifest('    - --encryption-provider-config-automatic-reload=true\n'))).toBeUndefined();
  });

  test('the warning names the manifest, the path, where the backup would hold it, and whether the node has it', () => {
    const o = { manifest: '/etc/kubernetes/manifests/kube-apiserver.yaml', configPath: '/etc/kubernetes/enc/enc.yaml',
      expectedAt: '/restore/data/extra/etc/kubernetes/enc/enc.yaml' };
    expect(encryptionConfigWarning({ ...o, held: false, onNode: false })).toBe(
      'warning: /etc/kubernetes/manifests/kube-apiserver.yaml sets --encryption-provider-config=/etc/kubernetes/enc/enc.yaml, ' +
      'but the restored backup does not hold it (no /restore/data/extra/etc/kubernetes/enc/enc.yaml), and this node has no such ' +
      'file either. Secrets encrypted at rest in the restored etcd can be read only with the keys that file held at backup ' +
      'time: keep the node\'s copy, or bring it back from elsewhere, before starting the API server. To store it with future ' +
      'backups, add its directory to the policy\'s extraPaths.');
    expect(encryptionConfigWarning({ ...o, held: false, onNode: true })).toContain('(no /restore/data/extra/etc/kubernetes/enc/enc.yaml). Secrets');
    expect(encryptionConfigWarning({ ...o, held: true, onNode: true })).toBeUndefined();
    expect(encryptionConfigWarning({ ...o, configPath: undefined, held: false, onNode: false })).toBeUndefined();
  });
});

describe('restored backups on disk', () => {
  let work: string;
  /** A restored backup's data/: a valid etcd snapshot, certificates (3 and 400 days), and extraPaths if given. */
  const backup = (name: string, extra: Record<string, string> = {}) => {
    const data = join(work, name, 'data');
    mkdirSync(join(data, 'certificates/etcd'), { recursive: true });
    const content = Buffer.alloc(4096, 7);
    writeFileSync(join(data, 'etcd-snapshot.db'), Buffer.concat([content, createHash('sha256').update(content).digest()]));
    issueCertificate(join(data, 'certificates/etcd'), 'server', 3);
    issueCertificate(join(data, 'certificates'), 'ca', 400);
    for (const [path, text] of Object.entries(extra)) {
      mkdirSync(join(data, 'extra', path, '..'), { recursive: true });
      writeFileSync(join(data, 'extra', path), text);
    }
    return data;
  };
  let manifest: string;
  const config = '/etc/kubernetes/kubedr-test-enc/enc.yaml';
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'restored-warnings-'));
    manifest = join(work, 'kube-apiserver.yaml');
    writeFileSync(manifest, `spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --encryption-provider-config=${config}\n`);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test('restoredWarnings: the expiring certificate, and the missing encryption config; at a later time, the expired too', async () => {
    const data = backup('plain');
    const [certs, enc] = await restoredWarnings(data, manifest);
    expect(certs).toStartWith(`warning: 1 restored certificate has expired or expires within 7 days (in ${data}/certificates).`);
    expect(certs).toMatch(/\n {2}etcd\/server\.crt: expires \S+Z \(in 2 days 23 hours\)$/);
    expect(enc).toStartWith(`warning: ${manifest} sets --encryption-provider-config=${config}, but the restored backup does not hold it ` +
      `(no ${data}/extra${config}), and this node has no such file either.`);
    const later = await restoredWarnings(data, manifest, new Date(Date.now() + 395 * 86_400_000));
    expect(later[0]).toContain('2 restored certificates have expired or expire within 7 days');
    expect(later[0]).toMatch(/\n {2}etcd\/server\.crt: expired \S+Z \(392 days ago\)\n {2}ca\.crt: expires \S+Z \(in 4 days 23 hours\)$/);
  });

  test('restoredWarnings: nothing about a config the backup holds, nor without a manifest', async () => {
    const data = backup('with-enc', { [config]: 'kind: EncryptionConfiguration\n' });
    expect((await restoredWarnings(data, manifest)).filter((w) => w.includes('encryption'))).toEqual([]);
    expect((await restoredWarnings(data, join(work, 'no-such-manifest.yaml'))).filter((w) => w.includes('encryption'))).toEqual([]);
  });

  const kubedr = (args: string[], path: string) => spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), ...args], {
    cwd: repoRoot, encoding: 'utf8', timeout: 60_000,
    env: { PATH: `${path}:${process.env.PATH}`, HOME: work, TMPDIR: work, AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's', RESTIC_PASSWORD: 'p' },
  });

  test('kubedr restore names the certificate expiring within 7 days on stderr, and restores', async () => {
    const source = backup('source', { [config]: 'kind: EncryptionConfiguration\n' });
    const bin = join(work, 'bin-restic');
    mkdirSync(bin);
    // restic that lists one snapshot and restores the prepared backup.
    writeFileSync(join(bin, 'restic'), `#!/bin/sh
case "$*" in
  *snapshots*) echo '[{"id":"${'ab'.repeat(32)}","short_id":"abababab","time":"2030-01-01T10:00:00Z","hostname":"cp-1","tags":["daily"]}]'; exit 0;;
esac
prev=""; for a in "$@"; do [ "$prev" = "--target" ] && target="$a"; prev="$a"; done
cp -a "${source}" "$target/data"
`);
    chmodSync(join(bin, 'restic'), 0o755);
    const target = join(work, 'target');
    const s3 = await silentEndpoint();
    const r = kubedr(['restore', 'latest', '--target', target, '--url', `https://127.0.0.1:${s3.port}`, '--bucket', 'kubedr-test'], bin);
    s3.close();
    if (r.status !== 0) console.error(r.stderr);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`kubedr restore: warning: 1 restored certificate has expired or expires within 7 days (in ${target}/data/certificates).`);
    expect(r.stderr).toMatch(/\n {2}etcd\/server\.crt: expires \S+Z \(in 2 days 23 hours\)\n/);
    expect(r.stderr).not.toContain('ca.crt');
    expect(r.stdout).toContain(`  certificates:  ${target}/data/certificates/\n  extra paths:   ${target}/data/extra/ (each below it at its path on the host)\n`);
    expect(existsSync(join(target, 'data/extra', config))).toBe(true);
  });

  test('kubedr etcd-restore warns about the certificate and the encryption config the backup lacks, and builds the data directory', () => {
    const data = backup('etcd-restore');
    const bin = join(work, 'bin-etcdutl');
    mkdirSync(bin);
    // etcdutl that answers `snapshot status` and lays out a member directory where --data-dir says.
    writeFileSync(join(bin, 'etcdutl'), `#!/bin/sh
[ "$2" = status ] && { echo '{"hash":1,"revision":5,"totalKey":3,"totalSize":1000}'; exit 0; }
prev=""; for a in "$@"; do [ "$prev" = "--data-dir" ] && dir="$a"; prev="$a"; done
mkdir -p "$dir/member/snap" && echo db > "$dir/member/snap/db"
`);
    chmodSync(join(bin, 'etcdutl'), 0o755);
    const dataDir = join(work, 'etcd-data');
    const r = kubedr(['etcd-restore', '--snapshot', join(data, 'etcd-snapshot.db'), '--data-dir', dataDir, '--name', 'cp-1',
      '--initial-advertise-peer-urls', 'https://10.0.0.5:2380', '--etcd-manifest', join(work, 'none'), '--apiserver-manifest', manifest,
      '--etcdutl', join(bin, 'etcdutl')], bin);
    expect(r.status).toBe(0);
    expect(existsSync(join(dataDir, 'member/snap/db'))).toBe(true);
    expect(r.stderr).toContain('kubedr etcd-restore: warning: 1 restored certificate has expired or expires within 7 days');
    expect(r.stderr).toContain(`kubedr etcd-restore: warning: ${manifest} sets --encryption-provider-config=${config}, ` +
      `but the restored backup does not hold it (no ${data}/extra${config})`);
    expect(r.stderr).not.toContain('failed');
    expect(r.stdout).toContain(`etcd data directory ready: ${dataDir} (member cp-1, peer URL https://10.0.0.5:2380)`);
    expect(r.stdout).not.toContain('extraPaths');
  });

  test('kubedr etcd-restore says where the backup\'s extra paths are, and nothing about a config it holds', () => {
    const data = backup('etcd-restore-enc', { [config]: 'kind: EncryptionConfiguration\n' });
    const dataDir = join(work, 'etcd-data-enc');
    const r = kubedr(['etcd-restore', '--snapshot', join(data, 'etcd-snapshot.db'), '--data-dir', dataDir, '--name', 'cp-1',
      '--initial-advertise-peer-urls', 'https://10.0.0.5:2380', '--etcd-manifest', join(work, 'none'), '--apiserver-manifest', manifest,
      '--etcdutl', join(work, 'bin-etcdutl/etcdutl')], join(work, 'bin-etcdutl'));
    expect(r.status).toBe(0);
    expect(r.stderr).not.toContain('encryption-provider-config');
    expect(r.stdout).toContain(`     Host paths stored with the backup (extraPaths) are under ${data}/extra/, each at its path on the host: put back those\n` +
      `     that were lost (cp -a ${data}/extra/PATH /PATH), the API server's --encryption-provider-config first.\n`);
  });
});
