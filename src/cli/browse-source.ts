/**
 * @module What a browse serves and where it lives, shared by `kubedr browse`, `kubedr diff` and `kubedr
 * restore-objects`: an etcd snapshot on disk (`--snapshot`, e.g. from `kubedr restore`), a backup in S3 (`--from
 * ID|latest`, restored into the browse's own directory first), or a continuous policy's point in time (`--at`); and
 * the session directory (`--name`, `--dir`) that the other commands find a running browse by.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DATA_DIR, SNAPSHOT_FILE } from '../engine/backup-layout.ts';
import { prepareBrowse, preparedApiserverArgs, servePrepared } from '../engine/browse/prepared.ts';
import { type BrowseSession, sessionKubeconfig, startSession } from '../engine/browse/session.ts';
import { apiserverVersion, matchVersions } from '../engine/browse/version.ts';
import { EngineError } from '../engine/errors.ts';
import { kubernetesVersionOf } from '../engine/origin.ts';
import { restoreBackup } from '../engine/restore.ts';
import type { SnapshotInfo } from '../engine/restic-output.ts';
import { Restic } from '../engine/restic.ts';
import { type FlagSpec, type Parsed, UsageError } from '../util/flags.ts';
import { clusterFlag, repositoryFlags, repositoryFromFlags } from './repository-flags.ts';
import { pointInTimeFrom, restoreToPoint } from './restore-point-in-time.ts';

export const sessionFlags = {
  name: { type: 'string', default: 'default', help: 'name of the browse (several may run side by side)' },
  dir: { type: 'string', help: 'directory of the browse: its kubeconfig, and the backup and etcd data it serves (default: $TMPDIR/kubedr-browse-UID/NAME)' },
} satisfies Record<string, FlagSpec>;

export const sourceFlags = {
  ...repositoryFlags,
  ...clusterFlag,
  from: { type: 'string', help: 'the backup to serve: a snapshot ID (see kubedr snapshots) or "latest" (with --policy when several share the bucket); needs --url and --bucket' },
  at: { type: 'string', help: 'serve a continuous policy (--policy) as it was at this time, RFC 3339, or "latest": its last stored change' },
  policy: { type: 'string', help: 'the MetadataBackupPolicy whose backups --from latest and --at choose from' },
  snapshot: { type: 'string', help: 'serve this etcd snapshot file (e.g. DIR/data/etcd-snapshot.db from kubedr restore) instead of one from S3' },
  'encryption-config': { type: 'string', help: 'the API server\'s EncryptionConfiguration for Secrets encrypted at rest (default: the one the backup holds in its extraPaths, if any)' },
  'kube-apiserver': { type: 'string', default: 'kube-apiserver', help: 'kube-apiserver binary of the backed-up cluster\'s version (on a kubeadm node: the one in its image)' },
  'apiserver-version': { type: 'string', help: 'with --prepare: the version of the kube-apiserver that will serve it elsewhere (e.g. v1.20.2), checked against the backup\'s' },
  'allow-version-skew': { type: 'boolean', default: false, help: 'serve a backup with a kube-apiserver of another minor version than the backed-up cluster\'s (objects it does not serve will be missing)' },
  etcd: { type: 'string', default: 'etcd', help: 'etcd binary for the throwaway etcd (etcdutl or etcdctl must also be on PATH)' },
  'etcd-prefix': { type: 'string', help: 'the cluster\'s kube-apiserver --etcd-prefix, if not /registry' },
  'token-file': { type: 'string', help: 'with --prepare: the browse user\'s token, from this file (default: a new random one)' },
  'expect-sha256': { type: 'string', help: 'with --from ID: refuse the backup unless its etcd snapshot has this SHA-256 (its record\'s)' },
  ...sessionFlags,
} satisfies Record<string, FlagSpec>;

export function sessionDir(f: { name: string; dir?: string }): string {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(f.name)) throw new UsageError(`--name "${f.name}": use lower-case letters, digits and dashes`);
  return f.dir ? resolve(f.dir) : join(tmpdir(), `kubedr-browse-${process.getuid?.() ?? 0}`, f.name);
}

/** Whether the flags name something to serve (else a command uses a running browse). */
export const namesSource = (f: { from?: string; at?: string; snapshot?: string }): boolean => Boolean(f.from || f.at || f.snapshot);

/** The backup the flags name, on disk: its etcd snapshot, the directory restored with it, and `cleanup` for both. */
interface Fetched {
  snapshotFile: string;
  restoredDir?: string;
  sha256?: string;
  cleanup: () => void;
}

/** Brings the backup the flags name onto disk into `staging` (if it is in S3). */
async function fetchFromFlags(f: Parsed<typeof sourceFlags>, staging: string, signal: AbortSignal, onStep: (s: string) => void): Promise<Fetched> {
  const given = [f.from && '--from', f.at && '--at', f.snapshot && '--snapshot'].filter(Boolean);
  if (given.length !== 1) throw new UsageError(given.length ? `${given.join(' and ')}: give one` : 'name what to serve: --from ID|latest, --at TIME, or --snapshot FILE');
  // Checked before anything is downloaded: a backup the kube-apiserver given cannot serve is refused at once. A
  // prepared browse is served by a kube-apiserver elsewhere: `--apiserver-version` says which.
  const server = f['apiserver-version'] ?? await apiserverVersion(f['kube-apiserver'], signal);
  const onChosen = (chosen: SnapshotInfo) => checkVersions(chosen.tags, server, f['allow-version-skew'], onStep);
  if (f.snapshot) {
    const snapshotFile = resolve(f.snapshot);
    if (!existsSync(snapshotFile)) throw new EngineError('InvalidInput', `${snapshotFile} does not exist`);
    onStep(`an etcd snapshot file does not say its cluster's Kubernetes version: serving it with kube-apiserver ${server}`);
    // A file from `kubedr restore` sits in DIR/data beside the certificates and extraPaths (an EncryptionConfiguration).
    return { snapshotFile, restoredDir: resolve(snapshotFile, '..'), cleanup: () => undefined };
  }
  // The restored backup holds every Secret of the cluster: it lives only as long as the browse.
  const cleanup = () => rmSync(staging, { recursive: true, force: true });
  try {
    const repo = repositoryFromFlags(f);
    let sha256: string | undefined;
    if (f.at) {
      const point = pointInTimeFrom(f.at, undefined)!;
      sha256 = (await restoreToPoint(new Restic(), point, { repo, policy: f.policy, cluster: f.cluster, target: staging, overwrite: true, signal, onStep,
        onChosen })).sha256;
    } else {
      sha256 = (await restoreBackup(new Restic(), { repo, snapshot: f.from!, filter: { policy: f.policy, cluster: f.cluster }, target: staging,
        overwrite: true, signal, onStep, onChosen, ...(f['expect-sha256'] ? { expectSha256: f['expect-sha256'] } : {}) })).sha256;
    }
    return { snapshotFile: join(staging, DATA_DIR, SNAPSHOT_FILE), restoredDir: join(staging, DATA_DIR), sha256, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}

/** Brings the backup the flags name onto disk (if it is in S3) and serves it. */
export async function startFromFlags(f: Parsed<typeof sourceFlags>, signal: AbortSignal, onStep: (s: string) => void): Promise<BrowseSession> {
  const dir = sessionDir(f);
  const fetched = await fetchFromFlags(f, `${dir}.backup`, signal, onStep);
  try {
    const session = await startSession({ snapshotFile: fetched.snapshotFile, sha256: fetched.sha256, restoredDir: fetched.restoredDir,
      encryptionConfig: f['encryption-config'], kubeApiserver: f['kube-apiserver'], etcd: f.etcd, etcdPrefix: f['etcd-prefix'], dir, name: f.name,
      onStep, signal });
    return { ...session, stop: async () => {
      await session.stop();
      fetched.cleanup();
    } };
  } catch (err) {
    fetched.cleanup();
    throw err;
  }
}

/**
 * Prepares the backup the flags name in `--dir` for a kube-apiserver that runs elsewhere (engine/browse/prepared.ts);
 * returns that API server's flags. The downloaded backup is removed once its etcd data directory is built.
 */
export async function prepareFromFlags(f: Parsed<typeof sourceFlags>, signal: AbortSignal, onStep: (s: string) => void): Promise<string[]> {
  if (!f.dir) throw new UsageError('--prepare needs --dir: the directory the kube-apiserver and kubedr restore-objects --prepared share');
  const dir = resolve(f.dir);
  const fetched = await fetchFromFlags(f, join(dir, 'backup'), signal, onStep);
  try {
    await prepareBrowse({ snapshotFile: fetched.snapshotFile, sha256: fetched.sha256, restoredDir: fetched.restoredDir,
      encryptionConfig: f['encryption-config'], etcd: f.etcd, etcdPrefix: f['etcd-prefix'], dir, onStep, signal,
      ...(f['token-file'] ? { token: readFileSync(f['token-file'], 'utf8').trim() } : {}) });
  } finally {
    fetched.cleanup();
  }
  return preparedApiserverArgs(dir, f['etcd-prefix']);
}

/** Refuses a kube-apiserver of another minor version than the backup's cluster, unless the skew is accepted. */
function checkVersions(tags: readonly string[], server: string, allowSkew: boolean, onStep: (s: string) => void): void {
  const match = matchVersions(kubernetesVersionOf(tags), server, allowSkew);
  if (!match.ok) throw new EngineError('InvalidInput', match.message);
  if (match.note) onStep(`warning: ${match.note}`);
}

/** A running browse's kubeconfig, by --name/--dir. */
export function runningKubeconfig(f: { name: string; dir?: string }): string {
  return sessionKubeconfig(sessionDir(f), f.name);
}

/**
 * Runs `fn` with the kubeconfig of the backup's API: a browse started for it from the flags (stopped after), or the
 * running browse they name.
 */
export async function withBackupApi<T>(f: Parsed<typeof sourceFlags> & { prepared?: string }, signal: AbortSignal, onStep: (s: string) => void,
  fn: (kubeconfig: string) => Promise<T>): Promise<T> {
  if (f.prepared) {
    onStep(`starting etcd on the browse prepared in ${f.prepared}; waiting for its kube-apiserver`);
    const served = await servePrepared(resolve(f.prepared), { etcd: f.etcd, signal });
    try {
      return await fn(served.kubeconfig);
    } finally {
      await served.stop();
    }
  }
  if (!namesSource(f)) return fn(runningKubeconfig(f));
  const session = await startFromFlags(f, signal, onStep);
  try {
    return await fn(session.kubeconfig);
  } finally {
    await session.stop();
  }
}
