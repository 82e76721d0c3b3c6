/**
 * @module Change sets in the restic repository: each is one restic snapshot (`backup --stdin`) of one file, tagged so
 * that the repository alone tells whose it is and what it covers: `kubedr-changes=<policy>` first (never a policy
 * name, so nothing that handles full backups takes it for one), the origin tags of its cluster and install, its
 * revision range and the times its first and last revision were received. Listing needs no data read; `restic dump`
 * reads one back.
 */
import { EngineError } from '../errors.ts';
import { type BackupOrigin, CHANGES_TAG, isChangeSet, originOf, originTags, ownership, REVISION_TAG } from '../origin.ts';
import { readRepository } from '../repository.ts';
import { parseSnapshots, type SnapshotInfo } from '../restic-output.ts';
import type { Repository, Restic, RunOptions } from '../restic.ts';
import { type RevisionChanges, readRevisions } from './change-set.ts';

const REVISIONS_TAG = 'kubedr-revisions=';
const FROM_TIME_TAG = 'kubedr-changes-from=';
const TO_TIME_TAG = 'kubedr-changes-to=';

/** A stored change set, as its tags describe it. */
export interface ChangeSet {
  /** restic snapshot id. */
  id: string;
  policy: string;
  origin?: BackupOrigin;
  fromRevision: number;
  toRevision: number;
  /** When its first and last revision were received (ms since the epoch). */
  fromTime: number;
  toTime: number;
}

/** A full backup as a point-in-time restore sees it: where a chain of change sets starts. */
export interface FullBackup {
  id: string;
  /** The etcd revision it was taken at (at least; see REVISION_TAG). */
  revision: number;
  /** When it was taken (ms since the epoch). */
  time: number;
}

export interface StoreChangeSetRequest {
  repo: Repository;
  file: string;
  policy: string;
  origin: BackupOrigin;
  host: string;
  fromRevision: number;
  toRevision: number;
  fromTime: number;
  toTime: number;
  run?: RunOptions;
}

/** Stores one change set file; returns its snapshot id. */
export async function storeChangeSet(restic: Restic, req: StoreChangeSetRequest): Promise<string> {
  const tags = [`${CHANGES_TAG}${req.policy}`, ...originTags(req.origin), `${REVISIONS_TAG}${req.fromRevision}-${req.toRevision}`,
    `${FROM_TIME_TAG}${req.fromTime}`, `${TO_TIME_TAG}${req.toTime}`];
  const { stdout } = await restic.run(req.repo, ['backup', '--json', '--stdin', '--stdin-filename', changeSetFileName(req.fromRevision, req.toRevision),
    '--host', req.host, ...tags.flatMap((t) => ['--tag', t])], { ...req.run, stdinFile: req.file });
  const summary = stdout.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => JSON.parse(l) as { message_type?: string; snapshot_id?: string })
    .find((m) => m.message_type === 'summary');
  if (!summary?.snapshot_id) throw new EngineError('Failed', 'restic stored the change set but reported no snapshot id');
  return summary.snapshot_id;
}

/** The file name a change set has inside its snapshot (`restic dump <id> /<name>`). */
export const changeSetFileName = (from: number, to: number): string => `changes-${from}-${to}.jsonl`;

const tagValue = (tags: readonly string[], prefix: string): string | undefined => tags.find((t) => t.startsWith(prefix))?.slice(prefix.length);

/** A change set's description from its snapshot's tags, or undefined when they are not a change set's. */
export function changeSetOf(s: SnapshotInfo): ChangeSet | undefined {
  const policy = tagValue(s.tags, CHANGES_TAG);
  const range = tagValue(s.tags, REVISIONS_TAG)?.match(/^(\d+)-(\d+)$/);
  const fromTime = Number(tagValue(s.tags, FROM_TIME_TAG));
  const toTime = Number(tagValue(s.tags, TO_TIME_TAG));
  if (!policy || !range || !Number.isFinite(fromTime) || !Number.isFinite(toTime)) return undefined;
  const origin = originOf(s.tags);
  return { id: s.id, policy, ...(origin ? { origin } : {}), fromRevision: Number(range[1]), toRevision: Number(range[2]), fromTime, toTime };
}

/** A full backup's place in a chain, or undefined for one taken before backups recorded their revision. */
export function fullBackupOf(s: SnapshotInfo): FullBackup | undefined {
  const revision = Number(tagValue(s.tags, REVISION_TAG));
  if (!Number.isSafeInteger(revision) || revision <= 0) return undefined;
  return { id: s.id, revision, time: Date.parse(s.time) };
}

/** Whether a snapshot is a full backup or change set of `policy` (full backups: first tag; change sets: CHANGES_TAG). */
export const ofPolicy = (s: SnapshotInfo, policy: string): boolean => s.tags[0] === policy || s.tags[0] === `${CHANGES_TAG}${policy}`;

/**
 * The full backups (with a revision) and change sets of one policy, oldest first: only those of `origin` (this cluster
 * and install) when given, else all of the policy's (the caller made sure they are one cluster's: see chainOrigins).
 */
export async function listChain(restic: Restic, repo: Repository, policy: string, origin: BackupOrigin | undefined,
  run: RunOptions = {}): Promise<{ fulls: FullBackup[]; sets: ChangeSet[] }> {
  // One listing for both (no lock: see listSnapshots).
  const { stdout } = await restic.run(repo, ['snapshots', '--json', '--no-lock'], run);
  return chainOf(parseSnapshots(stdout).filter((s) => ofPolicy(s, policy) && (!origin || ownership(s.tags, origin) === 'own')));
}

/** The full backups (with a revision) and change sets among `all`, oldest first. */
export function chainOf(all: readonly SnapshotInfo[]): { fulls: FullBackup[]; sets: ChangeSet[] } {
  const fulls = all.filter((s) => !isChangeSet(s.tags)).map(fullBackupOf).filter((f): f is FullBackup => !!f)
    .sort((a, b) => a.revision - b.revision);
  const sets = all.filter((s) => isChangeSet(s.tags)).map(changeSetOf).filter((c): c is ChangeSet => !!c)
    .sort((a, b) => a.fromRevision - b.fromRevision || a.toRevision - b.toRevision);
  return { fulls, sets };
}

/**
 * A stored change set's text, as `restic dump` reads it (one change set: seconds of changes, megabytes at most). With
 * `sharedLock`, under restic's shared lock (readRepository), as a verification reads.
 */
export async function loadChangeSet(restic: Restic, repo: Repository, set: ChangeSet,
  opts: { signal?: AbortSignal; sharedLock?: boolean } = {}): Promise<string> {
  const file = `/${changeSetFileName(set.fromRevision, set.toRevision)}`;
  const { stdout } = await readRepository(restic, repo, opts.sharedLock,
    (lock) => restic.run(repo, ['dump', ...lock, set.id, file], { signal: opts.signal }), { signal: opts.signal });
  return stdout;
}

/** The revisions of a change set's text (loadChangeSet). */
export function changeSetRevisions(text: string): AsyncGenerator<RevisionChanges> {
  return readRevisions(oneChunk(text));
}

async function* oneChunk(text: string): AsyncGenerator<Uint8Array> {
  yield Buffer.from(text);
}
