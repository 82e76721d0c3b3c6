/**
 * @module `kubedr restore`: brings a backup back from S3 and verifies the etcd snapshot. Used by hand when the cluster
 * is gone, and by the MetadataRestore pod, which reads its outcome from the termination log.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DATA_DIR, EXTRA_DIR, SNAPSHOT_FILE } from '../engine/backup-layout.ts';
import { readCertificateExpiries } from '../engine/certificates.ts';
import { EngineError } from '../engine/errors.ts';
import { clusterLabel } from '../engine/origin.ts';
import { PREVIOUS_DATA_DIR, restoreBackup, type RestoreOutcome, type RestoreResult } from '../engine/restore.ts';
import { Restic } from '../engine/restic.ts';
import { type FlagSpec, helpText, parseFlags, UsageError } from '../util/flags.ts';
import { type WriteDenial, writeDenial } from '../util/fs.ts';
import { redact } from '../util/redact.ts';
import { exitCodeFor, exitCodesHelp } from './exit-codes.ts';
import { clusterFlag, repositoryFlags, repositoryFromFlags } from './repository-flags.ts';
import { certificateWarning } from './restored-warnings.ts';
import { forProgram } from './program.ts';
import { latestChangeChain, pointInTimeFrom, pointInTimeSummary, restoreToPoint } from './restore-point-in-time.ts';

const flags = {
  ...repositoryFlags,
  target: { type: 'string', help: 'directory to restore into; the backup arrives as DIR/data/etcd-snapshot.db, DIR/data/certificates/ and DIR/data/extra/ (a policy\'s extraPaths)' },
  policy: { type: 'string', help: 'restore the backups of this MetadataBackupPolicy (needed for "latest" when several policies share the location)' },
  ...clusterFlag,
  force: {
    type: 'boolean', default: false,
    help: `replace an existing DIR/data, only after the new backup restored and verified: the old data waits in DIR/${PREVIOUS_DATA_DIR} ` +
      'until the new is in place (a run killed in between leaves it there, and the next run puts it back)',
  },
  timeout: {
    type: 'duration', default: '1h',
    help: 'time limit of the whole restore; past it restic is stopped, the staged files removed and DIR/data left as it was',
  },
  'expect-sha256': { type: 'string', help: 'fail unless the etcd snapshot has this SHA-256 (a record\'s status.etcdSnapshotSha256)' },
  at: { type: 'string', help: 'restore a continuous policy (needs --policy) to this time, RFC 3339 (2026-12-04T14:03:27Z), or "latest": its last stored change (as "kubedr restore latest --policy NAME" is for such a policy); no snapshot argument' },
  revision: { type: 'int', help: 'restore a continuous policy (needs --policy) to this etcd revision; no snapshot argument' },
  json: { type: 'boolean', help: 'print the result as JSON', default: false },
  'termination-log': { type: 'string', help: 'also write the outcome as JSON to this file (a pod\'s /dev/termination-log)' },
} satisfies Record<string, FlagSpec>;

export const restoreHelp = helpText('kubedr restore <snapshot-id|latest> --target DIR --url URL --bucket BUCKET [--credentials FILE] [flags]\n' +
  '       kubedr restore --at TIME|latest --policy NAME --target DIR --url URL --bucket BUCKET [flags]   (a continuous policy)',
  'Restores a backup (the etcd snapshot and the certificates) from a BackupLocation\'s repository and verifies the etcd\n' +
  'snapshot\'s SHA-256 trailer. Warns about restored certificates that have expired or expire within 7 days, and restores\n' +
  'them all the same. Then build an etcd data directory from it with \'kubedr etcd-restore\'.\n' +
  'With --at or --revision, a continuous policy is restored to that point: its newest full backup before it with every\n' +
  'stored change up to it replayed in a throwaway etcd (etcd and etcdutl or etcdctl on PATH), saved as an ordinary etcd\n' +
  'snapshot. A time no chain reaches (a gap, or past the last stored change) is refused with the times that can be restored.', flags) + `\n${exitCodesHelp}`;

function summary(r: RestoreResult, extra: string | undefined): string {
  const lines = [
    `Restored snapshot ${r.snapshot.shortId} (${r.snapshot.time}, policy ${r.snapshot.tags[0] ?? '-'}, cluster ${clusterLabel(r.snapshot.tags)}, ` +
      `host ${r.snapshot.hostname}): ${r.files} files, ${r.bytes} bytes`,
    // Which checks were made, no more: the bolt database itself is proven by `kubedr verify` (or etcd-restore).
    `  etcd snapshot: ${r.etcdSnapshot} (${r.etcdSnapshotSize} bytes, SHA-256 ${r.sha256}: matches the snapshot's own ` +
      'trailer; restic checked every piece it read)',
    r.certificates ? `  certificates:  ${r.certificates}/` : '  certificates:  none in this backup',
    ...(extra ? [`  extra paths:   ${extra}/ (each below it at its path on the host)`] : []),
    '',
    `Next: kubedr etcd-restore --snapshot ${r.etcdSnapshot} --help`,
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * What to tell the user about a target this process cannot write. The usual case is a restore pod (non-root, uid
 * 65532) whose claim is a hostPath or local volume: the kubelet does not apply fsGroup to those, so a root-owned 0755
 * directory stays closed to the pod.
 */
export function targetDeniedMessage(target: string, d: WriteDenial, user: { uid: number; gid: number }): string {
  const subject = d.dir === target ? `restore target ${target}` : `restore target ${target} cannot be created: ${d.dir}`;
  if (d.code === 'ENOTDIR') return `${subject} is not a directory`;
  if (d.code === 'EROFS') return `${subject} is on a read-only filesystem; mount the volume read-write`;
  if (d.code !== 'EACCES' && d.code !== 'EPERM') return `${subject}: cannot create files there (${d.code})`;
  const { uid, gid } = user;
  const mode = d.mode.toString(8).padStart(4, '0');
  // Owner write and search permission: with them, running as the owner is the other way out.
  const ownerCanWrite = (d.mode & 0o300) === 0o300;
  const fix = `chown ${uid}:${gid} DIR${ownerCanWrite ? '' : '; chmod u+wx DIR'}`;
  const asOwner = !ownerCanWrite || d.ownerUid === uid ? ''
    : `, or run restore pods as ${d.ownerUid === 0 ? 'root' : `its owner, uid ${d.ownerUid}`} ` +
      `(Helm value restore.runAsUser=${d.ownerUid}, flag --restore-run-as-user=${d.ownerUid})`;
  return `${subject} is not writable by uid ${uid} gid ${gid} (it is owned by ${d.ownerUid}:${d.ownerGid}, mode ${mode}). ` +
    `Volumes of type hostPath and local ignore the pod's fsGroup: make the directory writable for uid or gid ${uid} on the node ` +
    `(${fix})${asOwner}`;
}

/** Refuses a target this process cannot write before any S3 traffic: the restore would fail only after downloading. */
async function checkTarget(target: string): Promise<void> {
  const denial = await writeDenial(target);
  if (!denial) return;
  const user = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  // The target is input like any other: retrying cannot help until the directory or the pod's user changes.
  throw new EngineError('InvalidInput', targetDeniedMessage(target, denial, user));
}

/**
 * SIGTERM (the kubelet stopping a restore or verification pod: as its PID 1, a process without a handler would ignore
 * it) and SIGINT (Ctrl-C) cancel the command: restic is stopped, what it staged is removed and the outcome is written
 * before the process exits. A second signal exits at once.
 */
export function cancelOnSignals(command = 'restore'): { signal: AbortSignal; received: () => string | undefined; dispose: () => void } {
  const abort = new AbortController();
  let received: string | undefined;
  const handlers = (['SIGTERM', 'SIGINT'] as const).map((sig) => [sig, () => {
    if (received) process.exit(130);
    received = sig;
    process.stderr.write(`kubedr ${command}: ${sig}: stopping and removing the staged files (again to exit at once)\n`);
    abort.abort();
  }] as const);
  for (const [sig, handler] of handlers) process.on(sig, handler);
  return {
    signal: abort.signal,
    received: () => received,
    dispose: () => {
      for (const [sig, handler] of handlers) process.off(sig, handler);
    },
  };
}

/** The error to report: a stop by signal or by --timeout said in the command's terms. */
function reported(err: unknown, stoppedBy: string | undefined, target: string | undefined): unknown {
  const dest = target ? `${target}/data` : 'the target';
  if (stoppedBy) return new EngineError('Cancelled', `restore stopped by ${stoppedBy}; the staged files were removed and ${dest} was left as it was`);
  if (err instanceof EngineError && err.kind === 'Timeout') {
    return new EngineError('Timeout', `${err.message}; allow more time with --timeout (for a MetadataRestore: the controller's --restore-timeout)`);
  }
  return err;
}

export async function runRestore(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(restoreHelp));
    return 0;
  }
  const f = parsed.flags;
  const writeOutcome = (o: RestoreOutcome) => {
    if (f['termination-log']) writeFileSync(f['termination-log'], JSON.stringify(o).slice(0, 4000));
  };
  const stop = cancelOnSignals();
  let target: string | undefined;
  try {
    const [snapshot, extra] = parsed.args;
    // "latest" of a policy that records changes is its last stored change; its newest full backup is named by id (or
    // checked with --expect-sha256, which only a full backup has).
    const lastChange = snapshot === 'latest' && !extra && f.policy && !f.at && f.revision === undefined && !f['expect-sha256']
      ? await latestChangeChain(new Restic(), repositoryFromFlags(f), f.policy, f.cluster, stop.signal) : undefined;
    if (lastChange) process.stderr.write(`kubedr restore: policy "${f.policy}" records changes: "latest" is its last stored change ` +
      '(its newest full backup alone: name it by id, see kubedr snapshots)\n');
    const point = lastChange ? 'latest' : pointInTimeFrom(f.at, f.revision);
    if (point) {
      if (snapshot && !lastChange) throw new UsageError(`unexpected argument "${snapshot}": --at and --revision choose the point; the chain picks its full backup`);
      // Silently ignoring it would let a user believe a checksum was verified: a point in time is a new snapshot, whose
      // SHA-256 no record holds (the restore prints it, and checks it against etcd's own trailer).
      if (f['expect-sha256']) throw new UsageError('--expect-sha256 checks a stored full backup; --at and --revision build a new snapshot, whose SHA-256 is printed at the end');
      if (!f.target) throw new UsageError('--target is required');
      target = resolve(f.target);
      await checkTarget(target);
      const r = await restoreToPoint(new Restic(), point, { repo: repositoryFromFlags(f), policy: f.policy, cluster: f.cluster, target,
        overwrite: f.force, snapshots: lastChange, signal: AbortSignal.any([stop.signal, AbortSignal.timeout(f.timeout)]), onStep: (s) => process.stderr.write(`kubedr restore: ${s}\n`) });
      writeOutcome({ ok: true, snapshotId: r.baseSnapshot, sha256: r.sha256, etcdSnapshotSize: r.size, files: r.files, bytes: r.bytes });
      const file = join(target, DATA_DIR, SNAPSHOT_FILE);
      process.stdout.write(f.json ? `${JSON.stringify({ ...r, time: new Date(r.time).toISOString(), etcdSnapshot: file }, null, 2)}\n` : pointInTimeSummary(r, file));
      return 0;
    }
    if (!snapshot) throw new UsageError('name the snapshot to restore: a snapshot id (see \'kubedr snapshots\') or "latest"');
    if (extra) throw new UsageError(`unexpected argument "${extra}"`);
    if (!f.target) throw new UsageError('--target is required');
    const repo = repositoryFromFlags(f);
    target = resolve(f.target);
    await checkTarget(target);
    const result = await restoreBackup(new Restic(), {
      repo, snapshot, filter: { policy: f.policy, cluster: f.cluster }, target, overwrite: f.force, expectSha256: f['expect-sha256'],
      signal: stop.signal, timeoutMs: f.timeout,
      onStep: (s) => process.stderr.write(`kubedr restore: ${s}\n`),
    });
    writeOutcome({ ok: true, snapshotId: result.snapshot.id, sha256: result.sha256, etcdSnapshotSize: result.etcdSnapshotSize,
      files: result.files, bytes: result.bytes });
    // Restored all the same: the certificates may be renewed before the control plane starts, and the user decides.
    // A certificate that cannot be read is only not warned about: it never fails a restore that succeeded.
    const certificates = result.certificates ? await readCertificateExpiries(result.certificates).catch(() => []) : [];
    const warning = result.certificates && certificateWarning(certificates, result.certificates, new Date());
    if (warning) process.stderr.write(`kubedr restore: ${warning}\n`);
    const extraDir = join(target, DATA_DIR, EXTRA_DIR);
    process.stdout.write(f.json ? `${JSON.stringify({ ...result, certificateExpiries: certificates }, null, 2)}\n`
      : summary(result, existsSync(extraDir) ? extraDir : undefined));
    return 0;
  } catch (caught) {
    const err = reported(caught, stop.received(), target);
    const exitCode = exitCodeFor(err);
    writeOutcome({ ok: false, error: redact(err instanceof Error ? err.message : String(err)), exitCode });
    throw err;
  } finally {
    stop.dispose();
  }
}
