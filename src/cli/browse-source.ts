/**
 * @module What a browse serves and where it lives, shared by `kubedr browse`, `kubedr diff` and `kubedr
 * restore-objects`: an etcd snapshot on disk (`--snapshot`, e.g. from `kubedr restore`), a backup in S3 (`--from
 * ID|latest`, restored into the browse's own directory first), or a continuous policy's point in time (`--at`); and
 * the session directory (`--name`, `--dir`) that the other commands find a running browse by.
 */
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DATA_DIR, SNAPSHOT_FILE } from '../engine/backup.ts';
import { type BrowseSession, sessionKubeconfig, startSession } from '../engine/browse/session.ts';
import { apiserverVersion, matchVersions } from '../engine/browse/version.ts';
import { EngineError } from '../engine/errors.ts';
import { kubernetesVersionOf } from '../engine/origin.ts';
import { restoreBackup } from '../engine/restore.ts';
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
  'allow-version-skew': { type: 'boolean', default: false, help: 'serve a backup with a kube-apiserver of another minor version than the backed-up cluster\'s (objects it does not serve will be missing)' },
  etcd: { type: 'string', default: 'etcd', help: 'etcd binary for the throwaway etcd (etcdutl or etcdctl must also be on PATH)' },
  'etcd-prefix': { type: 'string', help: 'the cluster\'s kube-apiserver --etcd-prefix, if not /registry' },
  ...sessionFlags,
} satisfies Record<string, FlagSpec>;

export function sessionDir(f: { name: string; dir?: string }): string {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(f.name)) throw new UsageError(`--name "${f.name}": use lower-case letters, digits and dashes`);
  return f.dir ? resolve(f.dir) : join(tmpdir(), `kubedr-browse-${process.getuid?.() ?? 0}`, f.name);
}

/** Whether the flags name something to serve (else a command uses a running browse). */
export const namesSource = (f: { from?: string; at?: string; snapshot?: string }): boolean => Boolean(f.from || f.at || f.snapshot);

/** Brings the backup the flags name onto disk (if it is in S3) and serves it. */
export async function startFromFlags(f: Parsed<typeof sourceFlags>, signal: AbortSignal, onStep: (s: string) => void): Promise<BrowseSession> {
  const given = [f.from && '--from', f.at && '--at', f.snapshot && '--snapshot'].filter(Boolean);
  if (given.length !== 1) throw new UsageError(given.length ? `${given.join(' and ')}: give one` : 'name what to serve: --from ID|latest, --at TIME, or --snapshot FILE');
  const dir = sessionDir(f);
  const staging = `${dir}.backup`;
  let snapshotFile: string;
  let restoredDir: string | undefined;
  let sha256: string | undefined;
  /** The backup's restic tags (its cluster's Kubernetes version among them); none for a snapshot file. */
  let tags: readonly string[] | undefined;
  if (f.snapshot) {
    snapshotFile = resolve(f.snapshot);
    if (!existsSync(snapshotFile)) throw new EngineError('InvalidInput', `${snapshotFile} does not exist`);
    // A file from `kubedr restore` sits in DIR/data beside the certificates and extraPaths (an EncryptionConfiguration).
    restoredDir = resolve(snapshotFile, '..');
  } else try {
    const repo = repositoryFromFlags(f);
    if (f.at) {
      const point = pointInTimeFrom(f.at, undefined)!;
      const r = await restoreToPoint(new Restic(), point, { repo, policy: f.policy, cluster: f.cluster, target: staging, overwrite: true, signal, onStep });
      sha256 = r.sha256;
      tags = r.baseTags;
    } else {
      const r = await restoreBackup(new Restic(), { repo, snapshot: f.from!, filter: { policy: f.policy, cluster: f.cluster }, target: staging,
        overwrite: true, signal, onStep });
      sha256 = r.sha256;
      tags = r.snapshot.tags;
    }
    snapshotFile = join(staging, DATA_DIR, SNAPSHOT_FILE);
    restoredDir = join(staging, DATA_DIR);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  // The restored backup holds every Secret of the cluster: it lives only as long as the browse.
  const removeStaging = () => f.snapshot || rmSync(staging, { recursive: true, force: true });
  try {
    await checkApiserverVersion(f, tags, signal, onStep);
    const session = await startSession({ snapshotFile, sha256, restoredDir, encryptionConfig: f['encryption-config'], kubeApiserver: f['kube-apiserver'],
      etcd: f.etcd, etcdPrefix: f['etcd-prefix'], dir, name: f.name, onStep, signal });
    return { ...session, stop: async () => {
      await session.stop();
      removeStaging();
    } };
  } catch (err) {
    removeStaging();
    throw err;
  }
}

/** Refuses a kube-apiserver of another minor version than the backup's cluster, unless the skew is accepted. */
async function checkApiserverVersion(f: Parsed<typeof sourceFlags>, tags: readonly string[] | undefined, signal: AbortSignal,
  onStep: (s: string) => void): Promise<void> {
  const server = await apiserverVersion(f['kube-apiserver'], signal);
  if (!tags) {
    onStep(`an etcd snapshot file does not say its cluster's Kubernetes version: serving it with kube-apiserver ${server}`);
    return;
  }
  const match = matchVersions(kubernetesVersionOf(tags), server, f['allow-version-skew']);
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
export async function withBackupApi<T>(f: Parsed<typeof sourceFlags>, signal: AbortSignal, onStep: (s: string) => void,
  fn: (kubeconfig: string) => Promise<T>): Promise<T> {
  if (!namesSource(f)) return fn(runningKubeconfig(f));
  const session = await startFromFlags(f, signal, onStep);
  try {
    return await fn(session.kubeconfig);
  } finally {
    await session.stop();
  }
}
