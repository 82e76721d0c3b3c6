/**
 * The rotation drill (docs/key-rotation.md): while a policy backs up every minute, the repository password and the S3
 * keys are rotated through the location's Secret, each step started while a backup is running. No backup may fail;
 * afterwards the old password and the old S3 keys open nothing; and no secret value appears in the controller's log,
 * in events, in any status, or in the argv (or, for the passwords, the environment) of the restic processes it ran.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KEY_ADDED, KEY_REMOVED, KEY_SWITCHED } from '../../src/api/events.ts';
import type { BackupLocation, MetadataBackupPolicy } from '../../src/api/types.ts';
import {
  ControllerProcess, apply, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, events, eventually, getJson,
  kubectl, locationInit, locationYaml, metricValue, policyYaml, resticAt, uniqueBucket,
} from '../support/e2e.ts';
import { type S3Keys, createS3User, newS3Keys, s3Request, setS3UserKeys } from '../support/s3.ts';

let ns: string;
let controller: ControllerProcess;
let sampler: ReturnType<typeof Bun.spawn>;
let work: string;
const bucket = uniqueBucket('rotate');
const oldPassword = `old-pw-${crypto.randomUUID()}`;
const newPassword = `new-pw-${crypto.randomUUID()}`;
const oldKeys = newS3Keys('rotold');
const newKeys = newS3Keys('rotnew');
const secrets = [oldPassword, newPassword, oldKeys.secretKey, newKeys.secretKey];

/** The location's Secret, replaced whole (kubectl replace from stdin: no value on a command line). */
function putSecret(data: { password: string; newPassword?: string; keys: S3Keys }): void {
  const values: Record<string, string> = {
    access_key: data.keys.accessKey, secret_key: data.keys.secretKey, restic_repo_password: data.password,
    'ca.crt': readFileSync(join(cluster().pki, 'ca.crt'), 'utf8'),
    ...(data.newPassword ? { restic_repo_new_password: data.newPassword } : {}),
  };
  const lines = Object.entries(values).map(([k, v]) => `  ${k}: ${Buffer.from(v).toString('base64')}`);
  const yaml = `apiVersion: v1\nkind: Secret\nmetadata: { name: s3-creds, namespace: ${ns} }\ntype: Opaque\ndata:\n${lines.join('\n')}\n`;
  const r = kubectl(['replace', '-f', '-'], yaml);
  if (r.code !== 0) throw new Error(r.stderr);
}

const policy = () => getJson<MetadataBackupPolicy>(['mbp', 'drill', '-n', ns]);
const location = () => getJson<BackupLocation>(['bl', 'loc', '-n', ns]);
const counts = async () => {
  const m = await controller.metrics();
  return {
    ok: metricValue(m, 'kubedr_num_successful_backups', { policyName: 'drill' }) ?? 0,
    failed: metricValue(m, 'kubedr_num_failed_backups', { policyName: 'drill' }) ?? 0,
  };
};

/** Waits for the next scheduled backup to be running, so the step that follows happens during a backup. */
async function duringBackup(): Promise<void> {
  await eventually(() => expect(policy().status?.backupStatus).toBe('Running'), 75_000, 100);
}

/** Waits until `n` more backups than `since` succeeded. */
async function backupsSucceeded(since: number, n = 1): Promise<void> {
  await eventually(async () => expect((await counts()).ok).toBeGreaterThanOrEqual(since + n), 150_000, 500);
}

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('rotate');
  work = mkdtempSync(join(tmpdir(), 'rotate-e2e-'));
  createS3User(oldKeys);
}, 30_000);
afterAll(async () => {
  sampler?.kill();
  await controller?.stop();
  deleteNamespace(ns);
  rmSync(work, { recursive: true, force: true });
});

test('rotation drill: password and S3 keys rotated under a backup every minute; no failed backup, old credentials refused, nothing secret shown', async () => {
  // An empty Secret first: putSecret replaces, and a value never goes through a command line.
  apply(`apiVersion: v1\nkind: Secret\nmetadata: { name: s3-creds, namespace: ${ns} }\ntype: Opaque\ndata: {}\n`);
  putSecret({ password: oldPassword, keys: oldKeys });
  apply(etcdSecretYaml(ns, 'etcd-creds', null));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  controller = await ControllerProcess.start(ns);
  // Every restic process the controller starts, sampled every 50 ms: its parent, argv and environment.
  const samples = join(work, 'restic-procs');
  sampler = Bun.spawn(['bash', '-c', `while :; do for p in $(pgrep -x restic); do
    { echo "PROC $p PARENT $(awk '{print $4}' /proc/$p/stat 2>/dev/null)"; echo -n "ARGV "; tr '\\0' ' ' < /proc/$p/cmdline; echo;
      echo -n "ENV "; tr '\\0' ' ' < /proc/$p/environ; echo; } >> ${samples} 2>/dev/null; done; sleep 0.05; done`], { stdout: 'ignore', stderr: 'ignore' });
  await locationInit(ns, 'loc', 'Completed');
  apply(policyYaml(ns, 'drill', { schedule: '* * * * *', retainNumBackups: 20 }));
  const started = Date.now();
  await backupsSucceeded(0);

  // 1. The new repository password, added during a backup: the controller adds the key, proves it, switches to it.
  await duringBackup();
  putSecret({ password: oldPassword, newPassword, keys: oldKeys });
  const switched = await eventually(() => {
    const r = location().status?.keyRotation;
    expect(r?.phase).toBe('Switched');
    return r!;
  }, 60_000);
  const rotationStarted = Date.now();
  expect(switched.oldKeyId).not.toBe(switched.newKeyId);
  expect(resticAt(bucket, newPassword, ['cat', 'config'], oldKeys).code).toBe(0);
  expect(resticAt(bucket, oldPassword, ['cat', 'config'], oldKeys).code).toBe(0);
  let c = await counts();
  await backupsSucceeded(c.ok);

  // 2. New S3 keys: the user gets a second key, the Secret the new one, during a backup; the next backups use it.
  setS3UserKeys(oldKeys, [oldKeys, newKeys]);
  await duringBackup();
  putSecret({ password: oldPassword, newPassword, keys: newKeys });
  c = await counts();
  await backupsSucceeded(c.ok);

  // 3. The user finishes the password rotation during a backup: restic_repo_password gets the new value, the new-password
  // key goes. The controller removes the old key, waiting for the running backup's lock rather than failing it.
  await duringBackup();
  putSecret({ password: newPassword, keys: newKeys });
  const completed = await eventually(() => {
    const r = location().status?.keyRotation;
    expect(r?.phase).toBe('Completed');
    return r!;
  }, 150_000);
  const rotationSeconds = (Date.now() - rotationStarted) / 1000;
  expect(completed.oldKeyId).toBe(switched.oldKeyId);

  // 4. The old S3 key is revoked; backups go on with the new one, picked up from the Secret without a restart.
  setS3UserKeys(oldKeys, [newKeys]);
  c = await counts();
  await backupsSucceeded(c.ok);

  // No failed backup, over at least three minutes of scheduled backups.
  c = await counts();
  expect(c.failed).toBe(0);
  expect(events(ns).filter((e) => e.type === 'Warning').map((e) => `${e.reason}: ${e.message}`)).toEqual([]);
  expect((Date.now() - started) / 60_000).toBeGreaterThan(3);

  // The old password opens nothing; the new one does, with the new S3 keys; the old S3 keys are refused.
  const refused = resticAt(bucket, oldPassword, ['cat', 'config'], newKeys);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain('wrong password');
  expect(resticAt(bucket, newPassword, ['snapshots', '--json'], newKeys).code).toBe(0);
  // (Asked by a plain S3 request: restic would retry a refused key for 15 minutes.)
  expect((await s3Request('GET', `/${bucket}/config`, { keys: oldKeys })).status).toBe(403);
  expect((await s3Request('GET', `/${bucket}/config`, { keys: newKeys })).status).toBe(200);
  const keyList = JSON.parse(resticAt(bucket, newPassword, ['key', 'list', '--json'], newKeys).stdout) as { id: string }[];
  expect(keyList.map((k) => k.id)).toEqual([switched.newKeyId ?? 'no new key id']);

  // Each step reported as an event.
  const reasons = events(ns, 'loc').map((e) => e.reason);
  for (const r of [KEY_ADDED, KEY_SWITCHED, KEY_REMOVED]) expect(reasons).toContain(r);

  // Nothing secret anywhere a user or another process can read.
  sampler.kill();
  const procs = readFileSync(samples, 'utf8').split('PROC ').filter((s) => s.includes(` PARENT ${controller.pid}\n`));
  expect(procs.length).toBeGreaterThan(5); // the sampler saw the controller's restic runs (else the check below proves nothing)
  const shown = {
    log: controller.logs,
    events: kubectl(['get', 'events', '-n', ns, '-o', 'json']).stdout,
    statuses: kubectl(['get', 'bl,mbp,mbr', '-n', ns, '-o', 'json']).stdout,
    resticArgv: procs.map((p) => /ARGV (.*)/.exec(p)?.[1] ?? '').join('\n'),
    resticPasswordEnv: procs.map((p) => /ENV (.*)/.exec(p)?.[1] ?? '').join('\n'),
  };
  expect(shown.resticPasswordEnv).toContain('RESTIC_PASSWORD_FILE=');
  for (const [where, text] of Object.entries(shown)) {
    const leaked = (where === 'resticPasswordEnv' ? [oldPassword, newPassword] : secrets).filter((s) => text.includes(s));
    expect({ where, leaked }).toEqual({ where, leaked: [] });
  }
  console.log(`rotation drill: ${(await counts()).ok} backups, 0 failed, over ${((Date.now() - started) / 60_000).toFixed(1)} min; ` +
    `password rotation from Switched to Completed ${rotationSeconds.toFixed(1)} s; ${procs.length} restic process samples checked`);
}, 600_000);
