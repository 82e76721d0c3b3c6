import { describe, expect, test } from 'bun:test';
import { BackupFollower, StatusLine, progressLine, successLine, unrunnable } from '../../src/cli/backup-progress.ts';
import { type BackupDeps, backupPolicy } from '../../src/cli/backup.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { BACKUP_NOW_ANNOTATION } from '../../src/api/group.ts';
import type { MetadataBackupPolicy, MetadataBackupPolicyStatus } from '../../src/api/types.ts';
import { ApiError, ConnectionError } from '../../src/kube/errors.ts';

const T0 = '2026-05-01T10:00:00.000Z';
const T1 = '2026-05-01T10:05:00.000Z';
const T2 = '2026-05-01T10:06:00.000Z';

function policy(status: MetadataBackupPolicyStatus, rv = '1', extra: Partial<MetadataBackupPolicy['metadata']> = {}): MetadataBackupPolicy {
  return { metadata: { name: 'daily', namespace: 'kubedr-system', resourceVersion: rv, generation: 1, ...extra },
    spec: { destination: 'loc', schedule: '0 3 * * *' }, status };
}

/** The policy after the last backup before the request: completed at T0 with snapshot aaaa1111. */
const before: MetadataBackupPolicyStatus = { backupStatus: 'Completed', backupTime: T0, snapshotId: 'aaaa1111', mbrName: 'mbr-aaaa1111', backupErrorMessage: '', backupNowServed: 'old' };

describe('BackupFollower recognises the outcome of its own request', () => {
  const follow = (...seq: (MetadataBackupPolicyStatus | undefined)[]) => {
    const f = new BackupFollower({ value: 'mine', backupTimeBefore: T0 });
    return seq.map((s) => f.next(s ? policy(s) : undefined).state);
  };

  test('pending until the controller serves the value, running, then succeeded with the new snapshot', () => {
    const running = { ...before, backupNowServed: 'mine', backupStatus: 'Running' as const, progress: { phase: 'Upload' as const, percent: 40 } };
    const done = { ...before, backupNowServed: 'mine', backupStatus: 'Completed' as const, backupTime: T1, snapshotId: 'bbbb2222', mbrName: 'mbr-bbbb2222' };
    expect(follow(before, running, done)).toEqual(['pending', 'running', 'succeeded']);
    const f = new BackupFollower({ value: 'mine', backupTimeBefore: T0 });
    expect(f.next(policy(done))).toMatchObject({ state: 'succeeded', snapshotId: 'bbbb2222', mbrName: 'mbr-bbbb2222' });
  });

  test('an earlier Completed status is not taken for this backup\'s', () => {
    // Served and Running, but the result fields are still the previous backup's (T0, aaaa1111).
    expect(follow({ ...before, backupNowServed: 'mine', backupStatus: 'Running' })).toEqual(['running']);
  });

  test('a failure ends as failed with the controller\'s message', () => {
    const f = new BackupFollower({ value: 'mine', backupTimeBefore: T0 });
    f.next(policy({ ...before, backupNowServed: 'mine', backupStatus: 'Running' }));
    expect(f.next(policy({ ...before, backupNowServed: 'mine', backupStatus: 'Failed', backupTime: T1, snapshotId: undefined,
      backupErrorMessage: 'cannot reach etcd at https://10.0.0.1:2379' }))).toEqual({ state: 'failed', message: 'cannot reach etcd at https://10.0.0.1:2379' });
  });

  test('a next backup started before the poll saw this one end: the result fields still tell this one\'s outcome', () => {
    const f = new BackupFollower({ value: 'mine', backupTimeBefore: T0 });
    f.next(policy({ ...before, backupNowServed: 'mine', backupStatus: 'Running' }));
    // Another user's request was served later, and its backup is running; ours ended at T1.
    expect(f.next(policy({ ...before, backupNowServed: 'theirs', backupStatus: 'Running', backupTime: T1, snapshotId: 'bbbb2222', mbrName: 'mbr-bbbb2222' })))
      .toMatchObject({ state: 'succeeded', snapshotId: 'bbbb2222' });
  });

  test('served, not running and no backup ended: skipped', () => {
    expect(follow({ ...before, backupNowServed: 'mine' })).toEqual(['skipped']);
  });

  test('a deleted policy is gone', () => {
    expect(follow(before, undefined)).toEqual(['pending', 'gone']);
  });
});

test('unrunnable: an invalid schedule of the current generation, or a policy being deleted', () => {
  const invalid = policy({ conditions: [{ type: 'Ready', status: 'False', reason: 'InvalidSchedule', message: 'Invalid value for minute: 61', lastTransitionTime: T0, observedGeneration: 1 }] });
  expect(unrunnable(invalid)).toContain('Invalid value for minute: 61');
  expect(unrunnable({ ...invalid, metadata: { ...invalid.metadata, generation: 2 } })).toBeUndefined();
  expect(unrunnable(policy({}, '1', { deletionTimestamp: T0 }))).toBe('it is being deleted');
  expect(unrunnable(policy(before))).toBeUndefined();
});

test('progressLine: phase, percent and bytes as far as known', () => {
  expect(progressLine('daily', { state: 'pending' })).toBe('daily: requested; waiting for the controller to start the backup');
  expect(progressLine('daily', { state: 'running', progress: { phase: 'Queued' } })).toBe('daily: Queued (waiting for the BackupLocation or a free backup slot)');
  expect(progressLine('daily', { state: 'running', progress: { phase: 'Snapshot', bytesDone: 5 * 1024 * 1024 } })).toBe('daily: Snapshot (etcd)  5.0 MiB');
  expect(progressLine('daily', { state: 'running', progress: { phase: 'Upload', percent: 45, bytesDone: 1536, totalBytes: 4096 } }))
    .toBe('daily: Upload  45%  1.5 KiB of 4.0 KiB');
  expect(progressLine('daily', { state: 'running', progress: undefined })).toBe('daily: running');
  expect(progressLine('daily', { state: 'running', progress: { phase: 'Upload', bytesDone: 0, waitingFor: 'repository is locked by PID 7 on cp-2 since 2026-12-04 18:40:11 (exclusive)' } }))
    .toBe('daily: Upload: waiting for the repository lock of PID 7 on cp-2 since 2026-12-04 18:40:11 (exclusive)');
  expect(progressLine('daily', { state: 'running', progress: { phase: 'Queued', waitingFor: 'a backup slot (--max-concurrent-backups=1), held by ns/big (running 40 s)' } }))
    .toBe('daily: Queued: waiting for a backup slot (--max-concurrent-backups=1), held by ns/big (running 40 s)');
});

test('successLine names the snapshot and the record', () => {
  expect(successLine('ns', 'daily', { state: 'succeeded', snapshotId: 'bbbb2222', mbrName: 'mbr-bbbb2222',
    status: { totalBytesProcessed: 2048, dataAdded: 1024, totalDurationSecs: '1.634000000' } }))
    .toBe('Backup completed: snapshot bbbb2222, record mbr-bbbb2222 (policy ns/daily; 2.0 KiB read, 1.0 KiB added, 1.6 s)\n');
});

describe('StatusLine', () => {
  const term = (isTTY: boolean, columns = 80) => {
    const out: string[] = [];
    return { out, t: { isTTY, columns, write: (s: string) => out.push(s) } };
  };
  test('not a terminal: one plain line per change, no escapes', () => {
    const { out, t } = term(false);
    const l = new StatusLine(t);
    for (const s of ['a', 'a', 'b\u001b[31m', 'b']) l.update(s);
    l.note('hint');
    l.clear();
    expect(out.join('')).toBe('a\nb\nhint\n');
  });
  test('a terminal: redrawn in place, cut to the width, a note above the line, cleared at the end', () => {
    const { out, t } = term(true, 12);
    const l = new StatusLine(t);
    l.update('short');
    l.update('a much longer line');
    l.note('hint');
    l.clear();
    expect(out).toEqual(['\r\u001b[2Kshort', '\r\u001b[2Ka much lon…', '\r\u001b[2Khint\n', '\r\u001b[2Ka much lon…', '\r\u001b[2K']);
  });
});

/** A fake API: `get` answers from a script of policies (the last repeats), `patch` records the request. */
function fakeApi(script: (MetadataBackupPolicy | Error | undefined)[], opts: { conflicts?: number } = {}) {
  let i = 0;
  let conflicts = opts.conflicts ?? 0;
  const patches: unknown[] = [];
  const out = { stdout: '', stderr: '' };
  let clock = 0;
  const deps: BackupDeps = {
    client: {
      server: 'https://api.example:6443',
      get: (async () => {
        const x = script[Math.min(i++, script.length - 1)];
        if (x instanceof Error) throw x;
        if (!x) throw new ApiError(404, 'NotFound', 'not found', 'GET', '/x');
        return x;
      }) as BackupDeps['client']['get'],
      patch: (async (_ref: unknown, _ns: string, _name: string, p: unknown) => {
        if (conflicts-- > 0) throw new ApiError(409, 'Conflict', 'the object has been modified', 'PATCH', '/x');
        patches.push(p);
        return {};
      }) as BackupDeps['client']['patch'],
    },
    stdout: { write: (s: string) => (out.stdout += s) },
    stderr: { write: (s: string) => (out.stderr += s) },
    now: () => clock,
    sleep: async (ms) => { clock += ms; },
  };
  return { deps, patches, out, value: () => new Date(0).toISOString() };
}

const run = (deps: BackupDeps, wait = true, timeoutMs = 60_000) =>
  backupPolicy(deps, { namespace: 'kubedr-system', name: 'daily', wait, timeoutMs }).then((code) => ({ code }), (err: unknown) => ({ err }));

describe('backupPolicy', () => {
  /** The policy once the controller served the request made at `at` ms (the fake clock). */
  const served = (s: MetadataBackupPolicyStatus, at = 0) => policy({ ...before, backupNowServed: new Date(at).toISOString(), ...s });

  test('requests with the read resourceVersion, follows, prints the new snapshot and exits 0', async () => {
    const api = fakeApi([policy(before, '7'), policy(before, '8'), served({ backupStatus: 'Running', progress: { phase: 'Upload', percent: 50 } }),
      served({ backupStatus: 'Completed', backupTime: T1, snapshotId: 'bbbb2222', mbrName: 'mbr-bbbb2222' })]);
    expect(await run(api.deps)).toEqual({ code: EXIT.ok });
    expect(api.patches).toEqual([{ metadata: { resourceVersion: '7', annotations: { [BACKUP_NOW_ANNOTATION]: api.value() } } }]);
    expect(api.out.stdout).toStartWith('Backup completed: snapshot bbbb2222, record mbr-bbbb2222');
    expect(api.out.stderr).toBe('daily: requested; waiting for the controller to start the backup\ndaily: Upload  50%\n');
  });

  test('a backup already running is waited for before the request; a conflict reads again', async () => {
    const running = policy({ ...before, backupStatus: 'Running', backupTrigger: 'Scheduled' }, '5');
    const api = fakeApi([running, running, policy({ ...before, backupTime: T1 }, '6'), policy({ ...before, backupTime: T1 }, '7'),
      served({ backupStatus: 'Completed', backupTime: T2, snapshotId: 'cccc3333', mbrName: 'mbr-cccc3333' }, 2000)], { conflicts: 1 });
    expect(await run(api.deps)).toEqual({ code: EXIT.ok });
    expect(api.patches).toEqual([{ metadata: { resourceVersion: '7', annotations: { [BACKUP_NOW_ANNOTATION]: new Date(2000).toISOString() } } }]);
    expect(api.out.stderr).toContain('a backup of kubedr-system/daily (Scheduled) is running; waiting for it to end before requesting one');
    expect(api.out.stdout).toContain('snapshot cccc3333');
  });

  test('without --wait a running backup is an error, since the controller would skip the request', async () => {
    const api = fakeApi([policy({ ...before, backupStatus: 'Running' })]);
    const r = await run(api.deps, false);
    expect(r).toMatchObject({ err: { code: EXIT.failed } });
    expect(api.patches).toEqual([]);
  });

  test('without --wait: requested, and how to follow it', async () => {
    const api = fakeApi([policy(before)]);
    expect(await run(api.deps, false)).toEqual({ code: EXIT.ok });
    expect(api.out.stdout).toContain('kubectl -n kubedr-system get mbp daily -w');
  });

  test('a failed backup exits 8 with the controller\'s message', async () => {
    const api = fakeApi([policy(before), served({ backupStatus: 'Failed', backupTime: T1, snapshotId: undefined, backupErrorMessage: 'etcd unreachable' })]);
    const r = await run(api.deps);
    expect(r).toMatchObject({ err: { code: EXIT.backupFailed, message: 'the backup of kubedr-system/daily failed: etcd unreachable' } });
  });

  test('a missing policy exits 4 naming policy and namespace', async () => {
    const r = await run(fakeApi([undefined]).deps);
    expect(r).toMatchObject({ err: { code: EXIT.notFound, message: expect.stringContaining('"daily" not found in namespace "kubedr-system"') } });
  });

  test('an invalid schedule exits 8 before any request', async () => {
    const api = fakeApi([policy({ conditions: [{ type: 'Ready', status: 'False', reason: 'InvalidSchedule', message: 'bad', lastTransitionTime: T0, observedGeneration: 1 }] })]);
    expect(await run(api.deps)).toMatchObject({ err: { code: EXIT.backupFailed } });
    expect(api.patches).toEqual([]);
  });

  test('no controller: a hint after 20 s, then exit 9 at the timeout saying the request stays', async () => {
    const api = fakeApi([policy(before)]);
    const r = await run(api.deps, true, 30_000);
    expect(r).toMatchObject({ err: { code: EXIT.timedOut, message: expect.stringContaining('did not start the requested backup') } });
    expect(api.out.stderr).toContain('is the kubedr controller running and serving namespace kubedr-system?');
  });

  test('an API server that stops answering for a while does not end the wait', async () => {
    const api = fakeApi([policy(before), new ConnectionError('cannot reach the Kubernetes API at https://api.example:6443: refused'),
      served({ backupStatus: 'Completed', backupTime: T1, snapshotId: 'bbbb2222', mbrName: 'mbr-bbbb2222' })]);
    expect(await run(api.deps)).toEqual({ code: EXIT.ok });
    expect(api.out.stderr).toContain('the API server does not answer');
  });

  test('an API server that cannot be reached before the request ends the command at once', async () => {
    const api = fakeApi([new ConnectionError('cannot reach the Kubernetes API at https://api.example:6443: refused')]);
    expect(await run(api.deps)).toMatchObject({ err: { name: 'ConnectionError' } });
    expect(api.patches).toEqual([]);
  });
});
