/**
 * @module Turning an etcd snapshot file into a data directory for a new single member, with etcd's own tool
 * (`etcdutl snapshot restore`, or `etcdctl snapshot restore` before etcd 3.5): writing etcd's WAL and member metadata
 * ourselves would be a second, untested implementation of etcd. The directory is built beside the destination and
 * moved into place only when complete; an existing directory is kept under a new name, never deleted.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { EngineError } from './errors.ts';
import { verifySnapshotFile } from './etcd-snapshot.ts';
import { holdsData } from '../util/fs.ts';
import { plainText } from '../util/text.ts';

export interface MemberLayout {
  /** Member name (kubeadm: the node name). */
  name: string;
  /** This member's peer URL(s), comma-separated (kubeadm: https://<node IP>:2380). */
  peerUrls: string;
  /** `name=url,...` of the new cluster (one member: `<name>=<peerUrls>`). */
  initialCluster: string;
  initialClusterToken: string;
}

/** Values a kubeadm etcd static pod manifest sets, read from its command line (only what restore needs). */
export function parseEtcdManifest(yaml: string): Partial<MemberLayout> & { dataDir?: string } {
  const flag = (name: string) => new RegExp(`--${name}=(\\S+)`).exec(yaml)?.[1]?.replace(/["']$/, '');
  return {
    name: flag('name'), peerUrls: flag('initial-advertise-peer-urls'), initialCluster: flag('initial-cluster'),
    initialClusterToken: flag('initial-cluster-token'), dataDir: flag('data-dir'),
  };
}

/** Reads a manifest if it is there; a missing or unreadable one gives no defaults. */
export function readEtcdManifest(path: string): ReturnType<typeof parseEtcdManifest> {
  try {
    return parseEtcdManifest(readFileSync(path, 'utf8'));
  } catch {
    return {};
  }
}

/** The first tool found on PATH (or the one given): etcdutl (etcd >= 3.5) before etcdctl. */
export function findRestoreTool(given?: string): string {
  if (given) return given;
  for (const tool of ['etcdutl', 'etcdctl']) {
    if (Bun.which(tool)) return tool;
  }
  throw new EngineError('NotFound', 'neither etcdutl nor etcdctl is on PATH: install etcd\'s tools (the version your cluster runs) or pass --etcdutl PATH');
}

/**
 * Only etcdutl (etcd >= 3.5) can bump revisions; 3.4's `etcdctl snapshot restore` cannot, and 3.5's etcdctl delegates
 * to the same code without the flags.
 */
export function canBumpRevision(tool: string): boolean {
  return basename(tool).startsWith('etcdutl');
}

/**
 * What etcd's and Kubernetes' docs advise for a restored Kubernetes etcd: move the revision a billion ahead and mark the
 * old ones compacted, so API servers, informers and controllers that hold resource versions from after the snapshot
 * do not see time go backwards and miss changes (kubernetes/kubernetes#118501).
 */
export const BUMP_REVISION = 1_000_000_000;

export interface SnapshotStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
}

/** `snapshot status` of etcd's own tool: what a person checks before restoring (revision, keys, size). */
export async function snapshotStatus(tool: string, file: string): Promise<SnapshotStatus> {
  const proc = Bun.spawn([tool, 'snapshot', 'status', file, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' }, stdout: 'pipe', stderr: 'pipe' });
  const [out, err, code] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text(), await proc.exited];
  if (code !== 0) {
    throw new EngineError('IntegrityError', `${basename(tool)} snapshot status ${file} failed: ${plainText(err).trim().split('\n').pop() || `exit code ${code}`}`);
  }
  return JSON.parse(out) as SnapshotStatus;
}

export interface EtcdRestoreRequest {
  snapshotFile: string;
  dataDir: string;
  member: MemberLayout;
  /** Move an existing non-empty data directory aside instead of refusing. */
  force?: boolean;
  /** Path of etcdutl or etcdctl. */
  tool: string;
  /** `--bump-revision` with `--mark-compacted` (etcdutl only). */
  bumpRevision?: number;
  /** The snapshot's SHA-256 when the caller has verified it already (a second pass over a large file is seconds). */
  sha256?: string;
  /** Refuse any existing path, even an empty directory: a new data directory, never one that was there. */
  requireNew?: boolean;
}

export interface EtcdRestoreResult {
  dataDir: string;
  /** Where an existing data directory was moved, when there was one. */
  previousDataDir?: string;
  sha256: string;
}

export async function restoreEtcdDataDir(req: EtcdRestoreRequest): Promise<EtcdRestoreResult> {
  if (!existsSync(req.snapshotFile)) throw new EngineError('NotFound', `etcd snapshot ${req.snapshotFile} not found`);
  if (req.bumpRevision !== undefined && !canBumpRevision(req.tool)) {
    throw new EngineError('InvalidInput', `${basename(req.tool)} cannot bump revisions; etcdutl (etcd >= 3.5) can`);
  }
  if (req.requireNew && existsSync(req.dataDir)) {
    throw new EngineError('Exists', `${req.dataDir} exists; a restore goes into a new directory: choose another --data-dir`);
  }
  if (await holdsData(req.dataDir) && !req.force) {
    throw new EngineError('Exists', `${req.dataDir} is not empty; it may hold a member's data. Stop etcd first, then pass --force ` +
      'to move it aside (it is kept, renamed), or choose another --data-dir');
  }
  // etcd's tool checks the hash too, but ours names the problem before anything is written.
  const sha256 = req.sha256 ?? await verifySnapshotFile(req.snapshotFile);

  const parent = dirname(req.dataDir);
  const work = await mkdtemp(join(parent, `.${basename(req.dataDir)}.kubedr-`));
  try {
    const built = join(work, 'data');
    const m = req.member;
    const proc = Bun.spawn([req.tool, 'snapshot', 'restore', req.snapshotFile, '--data-dir', built, '--name', m.name,
      '--initial-cluster', m.initialCluster, '--initial-advertise-peer-urls', m.peerUrls, '--initial-cluster-token', m.initialClusterToken,
      ...(req.bumpRevision !== undefined ? ['--bump-revision', String(req.bumpRevision), '--mark-compacted'] : [])],
    { env: { ...process.env, ETCDCTL_API: '3' }, stdout: 'pipe', stderr: 'pipe' });
    const [stderr, code] = [await new Response(proc.stderr).text(), await proc.exited];
    if (code !== 0) {
      const last = plainText(stderr).trim().split('\n').slice(-2).join('; ');
      throw new EngineError('Failed', `${basename(req.tool)} snapshot restore failed: ${last || `exit code ${code}`}`);
    }
    let previousDataDir: string | undefined;
    if (await holdsData(req.dataDir)) {
      previousDataDir = `${req.dataDir}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await rename(req.dataDir, previousDataDir);
    } else if (existsSync(req.dataDir)) {
      await rm(req.dataDir, { recursive: true });
    }
    await rename(built, req.dataDir);
    return { dataDir: req.dataDir, previousDataDir, sha256 };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
