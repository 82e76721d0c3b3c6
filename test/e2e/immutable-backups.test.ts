/**
 * The attack drill of docs/immutable-backups.md on the real RGW: a bucket with versioning and object lock (GOVERNANCE,
 * one day) made by its owner; the controller writes with keys of its own whose bucket policy allows Get/Put/List and
 * DeleteObject only. An "attacker" holding the controller's keys forgets and prunes every snapshot, then deletes every
 * object it can list. `kubedr repository recover --as-of` (owner's keys, a time before the attack), then `kubedr
 * restore` bring back exactly the recorded etcd snapshot, and `kubedr etcd-restore` builds an etcd with the backed-up keys.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MetadataBackupRecord } from '../../src/api/types.ts';
import { verifySnapshotFile } from '../../src/engine/etcd-snapshot.ts';
import { extraEtcdDataDir, startExtraEtcd, stopExtra } from '../../scripts/cluster/node.ts';
import {
  ControllerProcess, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, etcdctl, freePort, getJson,
  locationInit, locationSecretYaml, locationYaml, policyYaml, repoRoot, resticAt, uniqueBucket,
} from '../support/e2e.ts';
import { createS3User, newS3Keys, s3Request } from '../support/s3.ts';

const owner = newS3Keys('immown');
const writer = newS3Keys('immctl');
const bucket = uniqueBucket('immutable');
const password = `imm-pw-${crypto.randomUUID()}`;
const marker = `/immutable-drill-${Date.now()}/`;
let ns: string;
let work: string;
let controller: ControllerProcess | undefined;
let record: MetadataBackupRecord;
let beforeAttack: Date;
let backedUp: string;

function kubedr(args: string[]) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: work } });
  const out = { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  for (const secret of [owner.secretKey, writer.secretKey, password]) expect(out.stdout + out.stderr).not.toContain(secret);
  return out;
}
async function ok(res: Response, what: string) {
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
}

beforeAll(async () => {
  ensureCrds();
  work = mkdtempSync(join(tmpdir(), 'immutable-'));
  createS3User(owner);
  createS3User(writer);
  // The owner's side of the recipe: object lock (which switches versioning on), default GOVERNANCE retention, and a
  // bucket policy that lets the controller's user write and delete current objects, never versions.
  await ok(await s3Request('PUT', `/${bucket}`, { keys: owner, headers: { 'x-amz-bucket-object-lock-enabled': 'true' } }), 'create bucket');
  const lock = new TextEncoder().encode('<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>' +
    '<Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>');
  await ok(await s3Request('PUT', `/${bucket}`, { keys: owner, query: { 'object-lock': '' }, body: lock }), 'object lock');
  const policy = {
    Version: '2012-10-17',
    Statement: [{
      Effect: 'Allow', Principal: { AWS: [`arn:aws:iam:::user/${writer.accessKey.toLowerCase()}`] },
      Action: ['s3:GetObject', 's3:PutObject', 's3:ListBucket', 's3:DeleteObject', 's3:GetBucketLocation'],
      Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`],
    }, {
      // Objects belong to the user who wrote them (the controller's): without this, the owner may list their
      // versions but not read them, and recovery is refused (measured on RGW 16.2).
      Effect: 'Allow', Principal: { AWS: [`arn:aws:iam:::user/${owner.accessKey.toLowerCase()}`] },
      Action: ['s3:GetObject', 's3:GetObjectVersion', 's3:PutObject', 's3:ListBucket', 's3:ListBucketVersions', 's3:GetBucketVersioning'],
      Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`],
    }],
  };
  await ok(await s3Request('PUT', `/${bucket}`, { keys: owner, query: { policy: '' }, body: new TextEncoder().encode(JSON.stringify(policy)) }), 'bucket policy');

  etcdctl(['put', `${marker}kept`, 'backed-up']);
  backedUp = etcdctl(['get', '--prefix', marker, '-w', 'json']).stdout;
  ns = createNamespace('immutable');
  apply(locationSecretYaml(ns, { name: 's3-creds', password, ...writer }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  apply(policyYaml(ns, 'p'));
  controller = await ControllerProcess.start(ns);
  await locationInit(ns, 'loc', 'Completed');
  const policyAfter = await backupNow(ns, 'p');
  expect(policyAfter.status?.backupStatus).toBe('Completed');
  record = getJson<MetadataBackupRecord>(['mbr', policyAfter.status!.mbrName!, '-n', ns]);
  await controller.stop();
  controller = undefined;
  etcdctl(['put', `${marker}too-late`, 'after the backup']);
  await Bun.sleep(1500);
  beforeAttack = new Date();
  await Bun.sleep(1500);
}, 240_000);

afterAll(async () => {
  await controller?.stop();
  await stopExtra(cluster(), 'imm-restored');
  etcdctl(['del', '--prefix', marker]);
  if (ns) deleteNamespace(ns);
  rmSync(work, { recursive: true, force: true });
});

test('with the controller\'s keys, an attacker forgets, prunes and deletes everything it can list', async () => {
  const ids = (JSON.parse(resticAt(bucket, password, ['snapshots', '--json'], writer).stdout) as { id: string }[]).map((s) => s.id);
  expect(ids.length).toBeGreaterThan(0);
  const forget = resticAt(bucket, password, ['forget', '--prune', ...ids], writer);
  expect(forget.stderr).toBe('');
  expect(forget.code).toBe(0);
  const list = await (await s3Request('GET', `/${bucket}`, { keys: writer, query: { 'list-type': '2' } })).text();
  const keys = [...list.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]!);
  expect(keys.length).toBeGreaterThan(0);
  for (const key of keys) await ok(await s3Request('DELETE', `/${bucket}/${key}`, { keys: writer }), `delete ${key}`);
  // The versions themselves are beyond its reach.
  expect((await s3Request('GET', `/${bucket}`, { keys: writer, query: { versions: '' } })).status).toBe(403);
  expect(resticAt(bucket, password, ['snapshots', '--json'], writer).code).not.toBe(0);
}, 180_000);

test('kubedr repository recover --as-of, then kubedr restore, bring back exactly the recorded etcd snapshot', async () => {
  const creds = join(work, 'owner-creds');
  writeFileSync(creds, `access_key=${owner.accessKey}\nsecret_key=${owner.secretKey}\nrestic_repo_password=${password}\n`, { mode: 0o600 });
  const at = ['--url', cluster().s3Url, '--bucket', bucket, '--credentials', creds, '--ca-cert', join(cluster().pki, 'ca.crt')];
  const dry = kubedr(['repository', 'recover', '--as-of', beforeAttack.toISOString(), '--dry-run', ...at]);
  expect(dry.stdout).toContain('Would copy');
  expect(dry.code).toBe(0);
  const rec = kubedr(['repository', 'recover', '--as-of', beforeAttack.toISOString(), ...at]);
  expect(rec.stderr).toBe('');
  expect(rec.stdout).toContain('The recovered repository opens and holds 1 snapshots');
  expect(rec.code).toBe(0);
  // The controller's own keys read it again too.
  expect(resticAt(bucket, password, ['snapshots', '--json'], writer).code).toBe(0);

  const snaps = kubedr(['snapshots', ...at]);
  expect(snaps.stdout).toContain(record.spec.snapshotId.slice(0, 8));
  const target = join(work, 'restored');
  const restore = kubedr(['restore', record.spec.snapshotId, '--target', target, ...at]);
  expect(restore.code).toBe(0);
  const sha = await verifySnapshotFile(join(target, 'data/etcd-snapshot.db'));
  const spec = record.spec as { etcdSnapshotSha256?: string };
  expect(sha).toBe(spec.etcdSnapshotSha256 ?? (record.status as { etcdSnapshotSha256?: string } | undefined)?.etcdSnapshotSha256 ?? 'missing in record');
}, 180_000);

test('kubedr etcd-restore of the recovered snapshot gives an etcd holding the backed-up keys, and nothing written later', async () => {
  const peer = await freePort();
  const dataDir = extraEtcdDataDir(cluster(), 'imm-restored');
  const r = kubedr(['etcd-restore', '--snapshot', join(work, 'restored/data/etcd-snapshot.db'), '--data-dir', dataDir, '--name', 'imm-restored',
    '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`, '--etcd-manifest', join(work, 'no-manifest')]);
  expect(r.code).toBe(0);
  const etcd = await startExtraEtcd(cluster(), 'imm-restored', { client: await freePort(), peer });
  const kvs = (text: string) => (JSON.parse(text) as { kvs?: { key: string; value: string }[] }).kvs?.map((kv) => [kv.key, kv.value]);
  expect(kvs(etcdctl(['get', '--prefix', marker, '-w', 'json'], etcd).stdout)).toEqual(kvs(backedUp));
  expect(readFileSync(join(work, 'restored/data/etcd-snapshot.db')).length).toBeGreaterThan(0);
}, 120_000);
