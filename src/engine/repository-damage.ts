/**
 * @module Damaged data in a restic repository: found and repaired with restic's own commands, as restic's
 * troubleshooting guide prescribes (https://restic.readthedocs.io/en/stable/077_troubleshooting.html):
 *
 * 1. `restic check --read-data --json` reads every pack and names the damaged ones (`broken_packs`);
 * 2. `restic repair packs ID…` salvages the intact blobs of those packs into new ones and removes the damaged packs,
 *    so the index no longer claims blobs that cannot be read: the next backup stores fresh copies of whatever it still
 *    has (content addressing then heals every older snapshot that shares those blobs);
 * 3. `restic repair snapshots --dry-run` names the snapshots that still reference lost data: those are not
 *    restorable. They are not rewritten (`--forget` would make them restore without their etcd snapshot): the caller
 *    says so where a person looks.
 *
 * Nothing here is parsed from restic's human text except step 3, which has no JSON output in restic 0.18.
 */
import { rm } from 'node:fs/promises';
import { scratchDir } from '../util/scratch.ts';
import { EngineError } from './errors.ts';
import { withLockWait } from './repository.ts';
import type { Repository, Restic, RunOptions } from './restic.ts';

export interface CheckResult {
  /** Errors restic counted (0: the repository is sound, as far as it read). */
  errors: number;
  /** Pack files whose content failed to decrypt or verify (full ids). */
  brokenPacks: string[];
  /** restic suggests `repair index`. */
  repairIndex: boolean;
  /** restic's own first error lines, for a message. */
  messages: string[];
}

export interface DamageReport {
  check: CheckResult;
  /** Damaged packs removed by `repair packs` (their intact blobs salvaged). */
  removedPacks: string[];
  /** Whether the index was rebuilt (`repair index`). */
  indexRebuilt: boolean;
  /** Snapshots (short ids) that still reference lost data: not restorable. */
  damagedSnapshots: string[];
}

interface CheckLine {
  message_type?: string;
  message?: string;
  num_errors?: number;
  broken_packs?: string[] | null;
  suggest_repair_index?: boolean;
}

/** Parses `restic check --json` (summary on stdout, errors on stderr). */
export function parseCheck(stdout: string, stderr: string): CheckResult {
  const lines = (text: string) => text.split('\n').flatMap((l) => {
    try {
      return [JSON.parse(l) as CheckLine];
    } catch {
      return [];
    }
  });
  const summary = lines(stdout).find((l) => l.message_type === 'summary');
  if (!summary) throw new EngineError('Failed', 'restic check printed no summary');
  const messages = lines(stderr).filter((l) => l.message_type === 'error' && l.message?.trim())
    // One line each ("error for tree 6a5b674d:" alone says nothing: its cause is on the next line), kept short.
    .map((l) => (l.message ?? '').trim().split('\n').map((x) => x.trim()).filter(Boolean).join(' ').slice(0, 300)).slice(0, 3);
  return { errors: summary.num_errors ?? 0, brokenPacks: summary.broken_packs ?? [], repairIndex: summary.suggest_repair_index === true, messages };
}

/** Parses `restic repair snapshots --dry-run`: the snapshots it would rewrite, i.e. those that reference lost data. */
export function parseRepairSnapshotsDryRun(text: string): string[] {
  const damaged: string[] = [];
  let current: string | undefined;
  let lines = 0;
  const close = () => {
    if (current && lines > 0) damaged.push(current);
  };
  for (const line of text.split('\n')) {
    const header = /^snapshot ([0-9a-f]{8}) of /.exec(line);
    if (header) {
      close();
      current = header[1];
      lines = 0;
    } else if (current && line.trim() && !/^would modify \d+ snapshots?$|^no snapshots would be modified$/.test(line.trim())) {
      lines++;
    }
  }
  close();
  return damaged;
}

/**
 * Reads all of the repository's data (`restic check --read-data`), or the part `subset` names (restic's
 * `--read-data-subset`, e.g. "10%"), and says what is damaged. Takes restic's shared lock: backups go on meanwhile.
 */
export async function checkRepository(restic: Restic, repo: Repository, opts: { subset?: string; run?: RunOptions } = {}): Promise<CheckResult> {
  const read = opts.subset ? [`--read-data-subset=${opts.subset}`] : ['--read-data'];
  const { stdout, stderr } = await withLockWait(restic, repo, () => restic.run(repo, ['check', ...read, '--json'],
    { timeoutMs: 60 * 60_000, ...opts.run, answerCodes: [1] }), { signal: opts.run?.signal });
  return parseCheck(stdout, stderr);
}

/**
 * Checks the repository (unless `known` is a check just made) and, when it finds damage, repairs what restic can (salvage intact blobs, remove damaged packs,
 * rebuild the index) and names the snapshots that remain unrestorable. Serialised with this process's other writers
 * of the repository (a prune must not repack meanwhile).
 */
export async function findAndRepairDamage(restic: Restic, repo: Repository, run: RunOptions = {}, known?: CheckResult): Promise<DamageReport> {
  return restic.exclusive(repo, async () => {
    // A check just made (a scheduled one that found no damaged pack in what it read) need not be made again.
    const check = known ?? await checkRepository(restic, repo, { run });
    const report: DamageReport = { check, removedPacks: [], indexRebuilt: false, damagedSnapshots: [] };
    if (check.errors === 0) return report;
    const locked = <T>(fn: () => Promise<T>) => withLockWait(restic, repo, fn, { signal: run.signal });
    if (check.brokenPacks.length > 0) {
      // restic keeps a copy of each damaged pack in its working directory: a scratch directory, removed after.
      const cwd = await scratchDir('repair');
      try {
        await locked(() => restic.run(repo, ['repair', 'packs', ...check.brokenPacks], { timeoutMs: 60 * 60_000, ...run, cwd }));
      } finally {
        await rm(cwd, { recursive: true, force: true });
      }
      report.removedPacks = check.brokenPacks;
      report.indexRebuilt = true; // `repair packs` rebuilds the index itself
    } else if (check.repairIndex) {
      await locked(() => restic.run(repo, ['repair', 'index'], { timeoutMs: 60 * 60_000, ...run }));
      report.indexRebuilt = true;
    }
    report.damagedSnapshots = await damagedSnapshots(restic, repo, run);
    return report;
  }, `a check and repair of ${repo.address}`);
}

/** The snapshots (short ids) that reference data the repository does not hold. */
export async function damagedSnapshots(restic: Restic, repo: Repository, run: RunOptions = {}): Promise<string[]> {
  const { stdout } = await withLockWait(restic, repo, () => restic.run(repo, ['repair', 'snapshots', '--dry-run'],
    { timeoutMs: 60 * 60_000, ...run }), { signal: run.signal });
  return parseRepairSnapshotsDryRun(stdout);
}
