/**
 * @module `kubedr verify`: proves a backup restores, from the command line (the disaster-recovery path, or before
 * trusting an old backup): read back from S3, SHA-256 checked, restored into a throwaway etcd on loopback, and checked
 * for what a Kubernetes etcd holds. Nothing is left behind.
 */
import { Restic } from '../engine/restic.ts';
import { writeFileSync } from 'node:fs';
import { type ChainVerifyResult, verifyChain } from '../engine/continuous/verify-chain.ts';
import { EngineError } from '../engine/errors.ts';
import { type VerifyResult, verifyBackup } from '../engine/verify.ts';
import { redact } from '../util/redact.ts';
import { type FlagSpec, type Parsed, UsageError, helpText, parseFlags } from '../util/flags.ts';
import { exitCodesHelp } from './exit-codes.ts';
import { cancelOnSignals } from './restore.ts';
import { clusterFlag, repositoryFlags, repositoryFromFlags } from './repository-flags.ts';
import { forProgram } from './program.ts';

const flags = {
  ...repositoryFlags,
  policy: { type: 'string', help: 'verify the backups of this MetadataBackupPolicy (needed for "latest" when several policies share the location)' },
  ...clusterFlag,
  'expect-sha256': { type: 'string', help: 'fail unless the etcd snapshot has this SHA-256 (a record\'s status.etcdSnapshotSha256)' },
  'not-kubernetes': { type: 'boolean', help: 'the etcd is not a Kubernetes cluster\'s: do not require /registry/namespaces/kube-system', default: false },
  timeout: { type: 'duration', help: 'time limit of the whole verification', default: '1h' },
  json: { type: 'boolean', help: 'print the result as JSON', default: false },
  lock: { type: 'boolean', help: 'read under restic\'s shared lock, so that a prune cannot repack the data meanwhile (the controller\'s verification pods)', default: false },
  'termination-log': { type: 'string', help: 'also write the outcome as JSON to this file (a verification pod\'s /dev/termination-log)' },
  continuous: { type: 'boolean', help: 'verify the policy\'s continuous backup instead: rebuild a revision from the full backup before it and the stored changes, digest every key\'s history and take etcd\'s content hash (needs --policy)', default: false },
  revision: { type: 'int', help: 'with --continuous: the revision to rebuild (default: the newest stored)' },
  'compact-revision': { type: 'int', help: 'with --continuous: compact the rebuilt etcd to this revision before its content hash (the live etcd\'s compacted revision, so that `etcdctl endpoint hashkv --rev R` there compares; default: as rebuilt)' },
} satisfies Record<string, FlagSpec>;

export const verifyHelp = helpText('kubedr verify <snapshot-id|latest> --url URL --bucket BUCKET [--credentials FILE] [flags]\n' +
  '       kubedr verify --continuous --policy NAME [--revision N] --url URL --bucket BUCKET [flags]',
  'Proves that a backup restores: reads it back from the repository, checks the etcd snapshot\'s SHA-256, restores it into a\n' +
  'throwaway etcd on a free loopback port (etcd and etcdutl or etcdctl must be on PATH; the image has them), and checks\n' +
  'its revision, key count and that it holds a Kubernetes cluster. Everything it starts or writes is removed.', flags) + `\n${exitCodesHelp}`;

export async function runVerify(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(verifyHelp));
    return 0;
  }
  const f = parsed.flags;
  if (f.continuous) return verifyContinuous(f, parsed.args);
  const [snapshot, extra] = parsed.args;
  if (!snapshot) throw new UsageError('name the snapshot to verify: a snapshot id (see \'kubedr snapshots\') or "latest"');
  if (extra) throw new UsageError(`unexpected argument "${extra}"`);
  const r = await withOutcome<VerifyResult>(f['termination-log'], (signal) => verifyBackup(new Restic(), {
    repo: repositoryFromFlags(f), snapshot, filter: { policy: f.policy, cluster: f.cluster }, expectSha256: f['expect-sha256'], kubernetes: !f['not-kubernetes'], timeoutMs: f.timeout, sharedLock: f.lock,
    signal, onStep: (s) => process.stderr.write(`kubedr verify: ${s}\n`),
  }));
  process.stdout.write(f.json ? `${JSON.stringify(r, null, 2)}\n`
    : `Verified snapshot ${r.snapshotId.slice(0, 8)}: restores to an etcd at revision ${r.revision} with ${r.keyCount} keys ` +
      `(SHA-256 ${r.sha256}), in ${r.durationSecs.toFixed(1)} s\n`);
  return 0;
}

/** `--continuous`: the policy's chain proven (engine/continuous/verify-chain.ts); digest and hash are compared by whoever asked. */
async function verifyContinuous(f: Parsed<typeof flags>, args: string[]): Promise<number> {
  const policy = f.policy;
  if (!policy) throw new UsageError('--continuous needs --policy: a chain of changes belongs to one policy');
  if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}": with --continuous, choose the point with --revision`);
  const r = await withOutcome<ChainVerifyResult>(f['termination-log'], (signal) => verifyChain(new Restic(), {
    repo: repositoryFromFlags(f), policy, revision: f.revision, compactRevision: f['compact-revision'], kubernetes: !f['not-kubernetes'], signal, sharedLock: f.lock,
    onStep: (s) => process.stderr.write(`kubedr verify: ${s}\n`),
  }));
  process.stdout.write(f.json ? `${JSON.stringify(r, null, 2)}\n`
    : `Verified the continuous backup of policy ${policy}: full backup ${r.baseSnapshot.slice(0, 8)} and ${r.changesApplied} changes rebuild ` +
      `revision ${r.revision} with ${r.keyCount} keys (history digest ${r.digest}; etcd content hash ${r.contentHash}` +
      `${r.compactRevision > 0 ? ` since compacted revision ${r.compactRevision}` : ''}), in ${r.durationSecs.toFixed(1)} s\n`);
  return 0;
}

/**
 * Runs a verification that SIGTERM/SIGINT cancel, and writes its outcome (VerifyOutcome, ChainVerifyOutcome) to the
 * termination log when given: a verification pod's answer to the controller.
 */
async function withOutcome<R extends object>(terminationLog: string | undefined, run: (signal: AbortSignal) => Promise<R>): Promise<R> {
  const writeOutcome = (o: object) => {
    if (terminationLog) writeFileSync(terminationLog, JSON.stringify(o).slice(0, 4000));
  };
  const stop = cancelOnSignals('verify');
  try {
    const r = await run(stop.signal);
    writeOutcome({ ok: true, ...r });
    return r;
  } catch (caught) {
    const err = stop.received() ? new EngineError('Cancelled', `verification stopped by ${stop.received()}; everything it started was stopped and removed`) : caught;
    writeOutcome({ ok: false, error: redact(err instanceof Error ? err.message : String(err)), kind: err instanceof EngineError ? err.kind : 'Failed' });
    throw err;
  } finally {
    stop.dispose();
  }
}
