import { describe, expect, test } from 'bun:test';
import { EngineError } from '../../src/engine/errors.ts';
import { bucketNameProblem, withBucketCheck, repositoryAddress, withLockWait } from '../../src/engine/repository.ts';
import type { Restic } from '../../src/engine/restic.ts';

describe('repositoryAddress', () => {
  test('builds restic\'s s3:<url>/<bucket>', () => {
    expect(repositoryAddress('http://10.96.57.3:9000', 'testbucket')).toBe('s3:http://10.96.57.3:9000/testbucket');
    expect(repositoryAddress('https://s3.example.com/', 'kubedr.backups')).toBe('s3:https://s3.example.com/kubedr.backups');
  });

  test.each([
    ['not a url', 'invalid S3 URL'],
    ['ftp://host:21', 'scheme must be http or https'],
    ['https://user:secret@host', 'credentials belong in the credentials Secret'],
    ['https://host/bucket', 'give the endpoint only'],
    ['https://host?x=1', 'give the endpoint only'],
  ])('rejects URL %s', (url, msg) => {
    let err: unknown;
    try {
      repositoryAddress(url, 'bucket');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).kind).toBe('InvalidInput');
    expect((err as EngineError).message).toContain(msg);
    expect((err as EngineError).message).not.toContain('secret@');
  });
});

describe('bucketNameProblem', () => {
  test.each(['abc', 'my-bucket', 'my.bucket.1', 'a'.repeat(63)])('accepts %s', (name) => {
    expect(bucketNameProblem(name)).toBeUndefined();
  });
  test.each([
    ['ab', '3 to 63'],
    ['a'.repeat(64), '3 to 63'],
    ['Bad_Bucket', 'lowercase'],
    ['-abc', 'begin and end'],
    ['abc-', 'begin and end'],
    ['a..b', 'adjacent dots'],
    ['192.168.1.1', 'IP address'],
  ])('rejects %s', (name, why) => {
    expect(bucketNameProblem(name)).toContain(why);
  });
});

describe('withLockWait: another writer\'s lock is waited for, never removed', () => {
  /** A restic whose writes meet a lock `lockedTimes` times; records every command it is asked to run. */
  function lockedRestic(lockedTimes: number, lockWaitMs = 60_000) {
    const calls: string[][] = [];
    let locked = lockedTimes;
    const restic = {
      lockWaitMs,
      run: async (_repo: unknown, args: string[]) => {
        calls.push(args);
        return { stdout: '', stderr: '' };
      },
    } as unknown as Restic;
    const write = async () => {
      calls.push(['forget']);
      if (locked-- > 0) throw new EngineError('Locked', 'repository is locked by PID 7 on other-cluster-cp since 2026-12-04 18:00:00 (exclusive)');
      return 'done';
    };
    return { restic, calls, write };
  }
  const repo = { address: 's3:https://s3/b', password: 'p', accessKey: 'a', secretKey: 's' };

  test('a lock that goes away: only restic\'s own stale-lock removal runs between attempts, then the write succeeds', async () => {
    const { restic, calls, write } = lockedRestic(1);
    const waits: string[] = [];
    expect(await withLockWait(restic, repo, write, { onWait: (h) => waits.push(h) })).toBe('done');
    expect(calls).toEqual([['forget'], ['unlock'], ['forget']]);
    expect(calls.flat()).not.toContain('--remove-all');
    expect(waits).toEqual(['repository is locked by PID 7 on other-cluster-cp since 2026-12-04 18:00:00 (exclusive)']);
  });

  test('a lock held past the wait fails, naming the holder and how long it waited', async () => {
    const { restic, calls, write } = lockedRestic(100, 2_500);
    let err: unknown;
    await withLockWait(restic, repo, write).catch((e) => { err = e; });
    expect((err as EngineError).kind).toBe('Locked');
    expect((err as EngineError).message).toMatch(/^repository is locked by PID 7 on other-cluster-cp since 2026-12-04 18:00:00 \(exclusive\); waited \d+ s/);
    expect(calls.flat()).not.toContain('--remove-all');
    expect(calls.filter((c) => c[0] === 'forget').length).toBeGreaterThanOrEqual(2);
  });

  test('other errors are not waited on', async () => {
    const restic = { lockWaitMs: 60_000, run: async () => ({ stdout: '', stderr: '' }) } as unknown as Restic;
    let err: unknown;
    await withLockWait(restic, repo, async () => { throw new EngineError('WrongPassword', 'wrong password'); }).catch((e) => { err = e; });
    expect((err as EngineError).kind).toBe('WrongPassword');
  });
});

describe('withBucketCheck: a missing bucket is said at once, not after restic\'s minutes of retries', () => {
  /** An S3-like endpoint that answers every request with `status` and `body`. */
  function endpoint(status: number, body: string) {
    return Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response(body, { status }) });
  }
  const repoAt = (port: number, bucket = 'backups') => ({ address: `s3:http://127.0.0.1:${port}/${bucket}`, password: 'p', accessKey: 'a', secretKey: 's' });
  /** What restic does against a missing bucket: retries until stopped. */
  const retryingForever = (signal: AbortSignal) => new Promise<string>((_ok, fail) => signal.addEventListener('abort', () => fail(new Error('stopped'))));

  test('404 NoSuchBucket is NotFound at once, naming the bucket and the endpoint; the restic run is stopped', async () => {
    const s = endpoint(404, '<?xml version="1.0"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>');
    const port = s.port ?? 0;
    let err: unknown;
    let workSignal: AbortSignal | undefined;
    await withBucketCheck(repoAt(port), (signal) => { workSignal = signal; return retryingForever(signal); }).catch((e) => { err = e; });
    s.stop();
    expect((err as EngineError).kind).toBe('NotFound');
    expect((err as EngineError).message).toBe(`no bucket "backups" at the S3 endpoint http://127.0.0.1:${port}: check --bucket (the BackupLocation's spec.bucketName) and --url`);
    expect(workSignal?.aborted).toBe(true);
  });

  test('an existing bucket (403 to an anonymous request, or 200) and any other answer leave the result to restic', async () => {
    for (const [status, body] of [[403, '<Error><Code>AccessDenied</Code></Error>'], [200, '<ListBucketResult/>'], [404, 'not S3'], [500, '']] as const) {
      const s = endpoint(status, body);
      expect(await withBucketCheck(repoAt(s.port ?? 0), async () => { await Bun.sleep(50); return 'listed'; })).toBe('listed');
      s.stop();
    }
    // Nothing listening: the work decides, at its own pace.
    expect(await withBucketCheck(repoAt(1), async () => 'listed')).toBe('listed');
  });
});
