/**
 * BackupLocation end to end: the controller as a real process, a real API server, restic against S3 over HTTPS.
 * Each test asserts what a user would check: `kubectl get` status, events, /metrics, and the repository itself.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { INIT_FAILED, INIT_SUCCEEDED, messages } from '../../src/api/events.ts';
import type { BackupLocation } from '../../src/api/types.ts';
import {
  ControllerProcess, apply, cluster, createNamespace, deleteNamespace, ensureCrds, events, eventually, freePort, getJson, kubectl,
  locationSecretYaml, locationYaml, metricValue, resticAt, uniqueBucket,
} from '../support/e2e.ts';
import { createS3User, newS3Keys } from '../support/s3.ts';

let ns: string;
let controller: ControllerProcess;
/** What the controller said before a test restarted it. */
let earlierLogs = '';
// Credentials unique to this run (S3 keys of a user of its own, which the S3 server checks), so finding them anywhere
// in output is proof of a leak.
const password = `pw-${crypto.randomUUID()}`;
const s3Keys = newS3Keys('loc');
const wrongSecretKey = `wrong-${s3Keys.secretKey}`;
const goodSecret = { name: 's3-creds', password, ...s3Keys };

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('loc');
  createS3User(s3Keys);
  apply(locationSecretYaml(ns, goodSecret));
  controller = await ControllerProcess.start(ns);
});
afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
});

function location(name: string): BackupLocation {
  return getJson<BackupLocation>(['bl', name, '-n', ns]);
}

async function waitFor(name: string, initStatus: 'Completed' | 'Failed', timeoutMs = 60_000): Promise<BackupLocation> {
  return eventually(() => {
    const l = location(name);
    if (l.status?.initStatus !== initStatus || l.status.observedGeneration !== l.metadata.generation) {
      throw new Error(`${name}: ${JSON.stringify(l.status)}`);
    }
    return l;
  }, timeoutMs);
}

const restic = (bucket: string, args: string[]) => resticAt(bucket, password, args, s3Keys);

const firstBucket = uniqueBucket('first');

describe('a valid location', () => {
  test('creates the bucket and repository, and reports Completed, Ready, InitSucceeded and ready=1', async () => {
    apply(locationYaml(ns, 'primary', { bucketName: firstBucket, credentials: 's3-creds' }));
    const l = await waitFor('primary', 'Completed');
    expect(l.status?.initErrorMessage).toBe('');
    expect(Date.parse(l.status?.initTime ?? '')).toBeGreaterThan(Date.now() - 120_000);
    expect(l.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', reason: 'RepositoryReady' });

    expect(restic(firstBucket, ['cat', 'config']).code).toBe(0);

    const repo = `s3:${cluster().s3Url}/${firstBucket}`;
    const ev = await eventually(() => {
      const e = events(ns, 'primary').find((x) => x.reason === INIT_SUCCEEDED);
      if (!e) throw new Error('no InitSucceeded event');
      return e;
    });
    expect(ev).toMatchObject({ type: 'Normal', message: messages.initSucceeded(repo), involvedObject: { kind: 'BackupLocation' } });
    expect(metricValue(await controller.metrics(), 'kubedr_backup_location_ready', { location: 'primary' })).toBe(1);
  });

  test('a bucket that already holds the repository opens as success, not failure', async () => {
    apply(locationYaml(ns, 'again', { bucketName: firstBucket, credentials: 's3-creds' }));
    const l = await waitFor('again', 'Completed');
    expect(l.status?.conditions?.find((c) => c.type === 'Ready')?.message).toContain('existing');
  });

  test('kubectl get shows URL, bucket and status', () => {
    const r = kubectl(['get', 'bl', 'primary', '-n', ns]);
    expect(r.stdout).toMatch(/URL\s+BUCKET\s+STATUS\s+AGE/);
    expect(r.stdout).toContain(firstBucket);
    expect(r.stdout).toContain('Completed');
  });
});

describe('bad input gives Failed, a Warning event and a failure count, and nothing else stops', () => {
  const cases: [string, () => Promise<{ secret?: Parameters<typeof locationSecretYaml>[1]; url?: string; bucket: string }>, string, string][] = [
    ['missing Secret', async () => ({ bucket: uniqueBucket() }), 'CredentialsNotFound', 'credentials Secret "creds-missing-secret" not found'],
    ['missing key', async () => ({ secret: { ...goodSecret, name: 'creds-missing-key', omit: ['restic_repo_password'] }, bucket: uniqueBucket() }),
      'CredentialsInvalid', 'lacks key "restic_repo_password"'],
    ['wrong repository password', async () => ({ secret: { ...goodSecret, name: 'creds-wrong-password', password: `other-${password}` }, bucket: firstBucket }),
      'WrongPassword', 'wrong repository password'],
    ['unreachable endpoint', async () => ({ url: `https://127.0.0.1:${await freePort()}`, bucket: uniqueBucket() }), 'Unreachable', 'S3 endpoint unreachable'],
    ['TLS failure (no CA for a private endpoint)', async () => ({ secret: { ...goodSecret, name: 'creds-tls-failure', withCa: false }, bucket: uniqueBucket() }),
      'TlsError', 'TLS certificate'],
    ['refused access key', async () => ({ secret: { ...goodSecret, name: 'creds-refused-access-key', accessKey: 'NOBODY' }, bucket: uniqueBucket() }),
      'AccessDenied', 'refused the credentials'],
    ['wrong secret key', async () => ({ secret: { ...goodSecret, name: 'creds-wrong-secret-key', secretKey: wrongSecretKey }, bucket: uniqueBucket() }),
      'AccessDenied', 'refused the credentials'],
    ['invalid bucket name', async () => ({ bucket: 'Bad_Bucket' }), 'InvalidInput', 'invalid bucket name "Bad_Bucket"'],
    ['malformed URL', async () => ({ url: 'not a url', bucket: uniqueBucket() }), 'InvalidInput', 'invalid S3 URL'],
  ];

  test.each(cases)('%s', async (title, setup, reason, text) => {
    const name = title.replace(/[^a-z]+/gi, '-').replace(/-$/, '').toLowerCase().slice(0, 40);
    const { secret, url, bucket } = await setup();
    if (secret) apply(locationSecretYaml(ns, secret));
    const credentials = secret?.name ?? (title === 'missing Secret' ? 'creds-missing-secret' : 's3-creds');
    apply(locationYaml(ns, name, { url, bucketName: bucket, credentials }));

    const l = await waitFor(name, 'Failed');
    expect(l.status?.initErrorMessage).toContain(text);
    expect(l.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason });
    const ev = await eventually(() => {
      const e = events(ns, name).find((x) => x.reason === INIT_FAILED);
      if (!e) throw new Error('no InitFailed event');
      return e;
    });
    expect(ev.type).toBe('Warning');
    expect(ev.message).toContain(text);
    // restic's raw request (`Get "https://…/?location="`) is not for the reader.
    for (const said of [l.status?.initErrorMessage ?? '', ev.message ?? '']) expect(said).not.toContain('?location=');
    const m = await controller.metrics();
    expect(metricValue(m, 'kubedr_backup_location_init_failures_total', { location: name, reason })).toBeGreaterThanOrEqual(1);
    expect(metricValue(m, 'kubedr_backup_location_ready', { location: name })).toBe(0);
  });

  test('an http:// URL for an HTTPS endpoint fails with a message that carries no raw request', async () => {
    apply(locationYaml(ns, 'plain-http', { url: cluster().s3Url.replace(/^https:/, 'http:'), bucketName: uniqueBucket(), credentials: 's3-creds' }));
    const l = await waitFor('plain-http', 'Failed');
    expect(l.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('False');
    expect(l.status?.initErrorMessage).not.toContain('?location=');
    expect(l.status?.initErrorMessage).not.toContain('Get "');
  });

  test('a wrong secret key with the right access key: the S3 server\'s words, and no key in status or events', async () => {
    const l = location('wrong-secret-key');
    const words = /^S3 endpoint refused the credentials: .*The request signature we calculated does not match the signature you provided/;
    expect(l.status?.initErrorMessage).toMatch(words);
    const failed = events(ns, 'wrong-secret-key').filter((e) => e.reason === INIT_FAILED);
    expect(failed.map((e) => e.message)).toEqual([expect.stringMatching(words)]);
    const text = JSON.stringify([l, failed]);
    for (const key of [s3Keys.secretKey, wrongSecretKey]) expect(text).not.toContain(key);
  });

  test('an unreachable endpoint is retried with backoff, and the repeated failure is one event with a growing count', async () => {
    const ev = await eventually(() => {
      const failed = events(ns, 'unreachable-endpoint').filter((e) => e.reason === INIT_FAILED);
      expect(failed).toHaveLength(1);
      expect(failed[0]!.count).toBeGreaterThanOrEqual(2);
      return failed[0]!;
    }, 30_000);
    expect(ev.type).toBe('Warning');
  });

  test('after a restart every failed location still has its failure series: an alert on them does not resolve', async () => {
    const failing = cases.map(([title, , reason]) => [title.replace(/[^a-z]+/gi, '-').replace(/-$/, '').toLowerCase().slice(0, 40), reason] as const);
    earlierLogs += controller.logs;
    await controller.stop();
    controller = await ControllerProcess.start(ns);
    await eventually(async () => {
      const m = await controller.metrics();
      for (const [name, reason] of failing) {
        expect([name, metricValue(m, 'kubedr_backup_location_init_failures_total', { location: name, reason })]).toEqual([name, expect.any(Number)]);
        expect([name, metricValue(m, 'kubedr_backup_location_ready', { location: name })]).toEqual([name, 0]);
      }
    }, 30_000);
  });

  test('the controller still serves a new valid location after all of them', async () => {
    apply(locationYaml(ns, 'after-failures', { bucketName: uniqueBucket('after'), credentials: 's3-creds' }));
    await waitFor('after-failures', 'Completed');
  });

  test('creating the missing Secret re-runs initialisation and it succeeds', async () => {
    apply(locationSecretYaml(ns, { ...goodSecret, name: 'creds-missing-secret' }));
    await waitFor('missing-secret', 'Completed');
  });

  test('fixing the password in the Secret re-runs initialisation and it succeeds', async () => {
    apply(locationSecretYaml(ns, { ...goodSecret, name: 'creds-wrong-password' }));
    await waitFor('wrong-repository-password', 'Completed');
  });

  test('fixing the bucket name in the spec re-runs initialisation and it succeeds', async () => {
    const bucket = uniqueBucket('fixed');
    kubectl(['patch', 'bl', 'invalid-bucket-name', '-n', ns, '--type', 'merge', '-p', JSON.stringify({ spec: { bucketName: bucket } })]);
    const l = await waitFor('invalid-bucket-name', 'Completed');
    expect(l.status?.observedGeneration).toBe(2);
    expect(restic(bucket, ['cat', 'config']).code).toBe(0);
  });
});

test('no credential appears in logs, events or status', async () => {
  const leaks = (text: string) => [password, s3Keys.secretKey, wrongSecretKey, `other-${password}`].filter((s) => text.includes(s));
  expect(leaks(earlierLogs + controller.logs)).toEqual([]);
  expect(leaks(kubectl(['get', 'events', '-n', ns, '-o', 'json']).stdout)).toEqual([]);
  expect(leaks(kubectl(['get', 'bl', '-n', ns, '-o', 'json']).stdout)).toEqual([]);
  // The failures above did produce output, so the check looked at something.
  expect(earlierLogs + controller.logs).toContain('initialisation failed');
});
