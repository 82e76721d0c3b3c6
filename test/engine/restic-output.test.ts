import { describe, expect, test } from 'bun:test';
import { classifyResticError, errorDetail, isAlreadyInitialized, parseBackupLine, parseSnapshots } from '../../src/engine/restic-output.ts';

// stderr captured from restic 0.14.0 against s3rver over HTTPS.
const samples = {
  refused: 'Fatal: unable to open config file: Stat: Get "https://127.0.0.1:1/xyzbucket/?location=": dial tcp 127.0.0.1:1: connect: connection refused\nIs there a repository at the following location?\ns3:https://127.0.0.1:1/xyzbucket\n',
  wrongPassword: 'Fatal: wrong password or no key found\n',
  noBucket: 'Fatal: unable to open config file: Stat: The specified bucket does not exist\nIs there a repository at the following location?\ns3:https://127.0.0.1:44595/nobucket\n',
  x509: 'Fatal: unable to open config file: Stat: Get "https://127.0.0.1:44595/newbucket/?location=": x509: certificate signed by unknown authority\nIs there a repository at the following location?\ns3:https://127.0.0.1:44595/newbucket\n',
  accessKey: 'Fatal: unable to open config file: Stat: The AWS Access Key Id you provided does not exist in our records.\nIs there a repository at the following location?\ns3:https://127.0.0.1:44595/newbucket\n',
  alreadyInit: 'Fatal: create key in repository at s3:https://127.0.0.1:44595/newbucket failed: repository master key and config already initialized\n',
  badBucket: 'Fatal: create repository at s3:https://127.0.0.1:44595/Bad_Bucket failed: client.MakeBucket: Bucket name contains invalid characters\n',
  locked: 'unable to create lock in backend: repository is already locked by PID 1234 on host by root (UID 0, GID 0)\nlock was created at 2026-11-25 04:00:00 (1m ago)\nstorage ID 0a1b2c3d\nthe `unlock` command can be used to remove stale locks\n',
};

describe('classifyResticError', () => {
  test.each([
    ['refused', 'Unreachable', 'S3 endpoint unreachable'],
    ['wrongPassword', 'WrongPassword', 'wrong repository password'],
    ['noBucket', 'NoRepository', 'no restic repository'],
    ['x509', 'TlsError', 'TLS certificate'],
    ['accessKey', 'AccessDenied', 'refused the credentials'],
    ['badBucket', 'InvalidInput', 'invalid bucket name'],
    ['locked', 'Locked', 'locked'],
  ] as const)('%s → %s', (name, kind, text) => {
    const c = classifyResticError(samples[name]);
    expect(c.kind).toBe(kind);
    expect(c.message).toContain(text);
  });

  test('a lock names its holder, exclusive or not, as restic 0.14 and 0.18 print it', () => {
    expect(classifyResticError(samples.locked)).toEqual({ kind: 'Locked', message: 'repository is locked by PID 1234 on host since 2026-11-25 04:00:00' });
    const exclusive = 'repo already locked, waiting up to 0s for the lock\nFatal: unable to create lock in backend: repository is already ' +
      'locked exclusively by PID 42079 on cp-2 by root (UID 0, GID 0)\nlock was created at 2026-12-04 18:40:11 (3m2.1s ago)\nstorage ID 61c9df09\n';
    expect(classifyResticError(exclusive)).toEqual({ kind: 'Locked', message: 'repository is locked by PID 42079 on cp-2 since 2026-12-04 18:40:11 (exclusive)' });
  });

  test('an unknown error keeps restic\'s own words', () => {
    expect(classifyResticError('Fatal: something new happened\n')).toEqual({ kind: 'Failed', message: 'something new happened' });
  });

  test('no terminal escapes reach the message, and the rules still match through them', () => {
    const c = classifyResticError('\u001b[2K\u001b[1mFatal: wrong password or no key found\u001b[0m\r\n');
    expect(c).toEqual({ kind: 'WrongPassword', message: 'wrong repository password (restic_repo_password): wrong password or no key found' });
    const other = classifyResticError('\u001b[2Ksignal interrupt received, cleaning up\n\u001b[2Kunable to save snapshot\n');
    expect(other.message).toBe('signal interrupt received, cleaning up; unable to save snapshot');
    expect(other.message).not.toMatch(/[\u0000-\u001f]/);
  });

  test('an empty stderr still gives a message', () => {
    expect(classifyResticError('').message).toBe('restic failed without a message');
  });
});

describe('errorDetail', () => {
  test('restic\'s vague "There were N errors" comes with the errors it counted, and damaged data is an integrity error', () => {
    const stderr = 'restoring snapshot 1a2b3c4d of [/tmp/x/data] at 2026-12-04 to /tmp/r\n' +
      'ignoring error for /data/etcd-snapshot.db: decrypting blob 87d5985a from f681fe07 failed: ciphertext verification failed\n' +
      'Fatal: There were 1 errors\n';
    expect(errorDetail(stderr)).toBe('ignoring error for /data/etcd-snapshot.db: ' +
      'decrypting blob 87d5985a from f681fe07 failed: ciphertext verification failed; There were 1 errors');
    expect(classifyResticError(stderr).kind).toBe('IntegrityError');
    expect(classifyResticError(stderr).message).toStartWith('the repository\'s data is damaged: ');
  });

  test('restic --json error lines become their words, without the scratch directory\'s path', () => {
    const stderr = [
      '{"message_type":"error","error":{"message":"/tmp/kubedr-stage-unverified-kubedr-cluster-id-32f0ba17-f414d418/data/certificates: tree 8e44ad07 is not known; ' +
        'the repository could be damaged, run `repair index` to try to repair it"},"during":"archival","item":"/tmp/kubedr-stage-unverified-32f0ba17-f414d418/data/certificates"}',
      '{"message_type":"exit_error","code":3,"message":"Warning: at least one source file could not be read"}',
    ].join('\n');
    expect(errorDetail(stderr)).toBe('data/certificates: tree 8e44ad07 is not known; the repository could be damaged, run `repair index` to try to repair it; ' +
      'Warning: at least one source file could not be read');
  });

  test('keeps the endpoint of a failed request, not its method, path and query', () => {
    expect(errorDetail(samples.x509)).toBe('unable to open config file: Stat: https://127.0.0.1:44595: x509: certificate signed by unknown authority');
    expect(errorDetail('Fatal: unable to open repository at s3:http://10.200.0.2:9000/b1: client.BucketExists: http://10.200.0.2:9000: ' +
      'Connection closed by foreign host http://10.200.0.2:9000/b1/?location=. Retry again.\n')).not.toContain('?location=');
    expect(errorDetail(samples.refused)).toBe('unable to open config file: Stat: https://127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused');
  });
  test('drops restic\'s "Is there a repository" boilerplate and the Fatal: prefix', () => {
    expect(errorDetail(samples.noBucket)).toBe('unable to open config file: Stat: The specified bucket does not exist');
  });
  test('without Fatal: lines, keeps the last three lines', () => {
    expect(errorDetail('a\nb\nc\nd\n')).toBe('b; c; d');
  });
  test('a restic that crashed is told by its panic, without the stack under it', () => {
    const stderr = 'repository 2f5a4c1e opened (version 2, compression level auto)\n' +
      'panic: runtime error: index out of range [3] with length 3\n\n' +
      'goroutine 1 gp=0xc000002380 m=0 mp=0x18134c0 [running]:\n' +
      'github.com/restic/restic/internal/restic.(*Snapshot).HasTags(...)\n\tgithub.com/restic/restic/internal/restic/snapshot.go:230\n' +
      'main.runSnapshots({0x1275e88, 0xc00012c0a0}, 0xc00013e1a0, {0xc000180000, 0x0, 0x0})\n' +
      '\tgithub.com/restic/restic/cmd/restic/cmd_snapshots.go:92 +0x6a5\nmain.main()\n\tgithub.com/restic/restic/cmd/restic/main.go:179 +0x45\n';
    expect(classifyResticError(stderr)).toEqual({ kind: 'Failed',
      message: 'repository 2f5a4c1e opened (version 2, compression level auto); panic: runtime error: index out of range [3] with length 3' });
  });
});

test('isAlreadyInitialized recognises restic init on an existing repository', () => {
  expect(isAlreadyInitialized(samples.alreadyInit)).toBe(true);
  expect(isAlreadyInitialized(samples.wrongPassword)).toBe(false);
});

describe('restic backup --json', () => {
  test('status lines give progress', () => {
    expect(parseBackupLine('{"message_type":"status","seconds_elapsed":1,"percent_done":0.42,"total_files":2,"files_done":1,"total_bytes":1000,"bytes_done":420}'))
      .toEqual({ type: 'status', percentDone: 0.42, bytesDone: 420, totalBytes: 1000 });
  });

  test('the summary, as restic 0.14 prints it, gives the figures status shows', () => {
    const line = '{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,"dirs_new":2,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":3,"data_added":1433,"total_files_processed":2,"total_bytes_processed":11,"total_duration":0.208079749,"snapshot_id":"eab2a28e"}';
    expect(parseBackupLine(line)).toEqual({
      type: 'summary',
      summary: { filesNew: 2, filesChanged: 0, filesUnmodified: 0, dataAdded: 1433, totalFilesProcessed: 2, totalBytesProcessed: 11,
        totalDuration: 0.208079749, snapshotId: 'eab2a28e' },
    });
  });

  test('restic 0.18 prints the full snapshot ID in the summary: the short one (its first 8 hex digits) is kept', () => {
    const full = 'eab2a28e09634413d26fad1d188e212e15fa35fbe72a1ddbf7f9ec6c379232c8';
    const line = `{"message_type":"summary","files_new":2,"data_added":1433,"total_files_processed":2,"total_bytes_processed":11,"total_duration":0.2,"snapshot_id":"${full}"}`;
    const parsed = parseBackupLine(line);
    expect(parsed?.type === 'summary' && parsed.summary.snapshotId).toBe('eab2a28e');
  });

  test('other lines are ignored', () => {
    expect(parseBackupLine('open repository')).toBeUndefined();
    expect(parseBackupLine('{"message_type":"verbose_status"}')).toBeUndefined();
    expect(parseBackupLine('{broken')).toBeUndefined();
  });

  test('restic 0.18 snapshots carry their size in their summary; older ones have none', () => {
    const json = '[{"time":"2026-11-30T21:52:13Z","paths":["/x"],"hostname":"h","summary":{"total_files_processed":1,"total_bytes_processed":6},"id":"b130c2af6cfba7c1f5d3d88fa869c91273488fcceaba36e1a929bf0c38ebd9c2","short_id":"b130c2af"},' +
      '{"time":"2026-11-29T21:52:13Z","paths":["/x"],"hostname":"h","id":"eab2a28e09634413d26fad1d188e212e15fa35fbe72a1ddbf7f9ec6c379232c8","short_id":"eab2a28e"}]';
    expect(parseSnapshots(json).map((s) => s.size)).toEqual([6, undefined]);
  });

  test('restic snapshots --json', () => {
    const json = '[{"time":"2026-11-25T04:58:19.594248874Z","tree":"5b73","paths":["/tmp/rtest/stage/data"],"hostname":"kubedr","username":"root","tags":["p1"],"id":"eab2a28e09634413d26fad1d188e212e15fa35fbe72a1ddbf7f9ec6c379232c8","short_id":"eab2a28e"}]';
    expect(parseSnapshots(json)).toEqual([{ id: 'eab2a28e09634413d26fad1d188e212e15fa35fbe72a1ddbf7f9ec6c379232c8', shortId: 'eab2a28e',
      time: '2026-11-25T04:58:19.594248874Z', hostname: 'kubedr', tags: ['p1'], paths: ['/tmp/rtest/stage/data'] }]);
    expect(parseSnapshots('null')).toEqual([]);
  });
});
