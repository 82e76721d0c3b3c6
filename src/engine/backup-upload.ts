/**
 * @module `restic backup` for one backup, either layout: progress, a watchdog for an upload that stalls, the parent
 * snapshot and its fallbacks, another writer's lock waited for. engine/backup.ts says what is stored.
 */
import { plainText } from '../util/text.ts';
import { EngineError } from './errors.ts';
import { type BackupSummary, classifyResticError, parseBackupLine } from './restic-output.ts';
import { endpointOf, type Repository, type Restic } from './restic.ts';
import { withLockWait } from './repository.ts';

/** restic's error for a parent snapshot whose trees a repair removed. */
const PARENT_DAMAGED = /tree [0-9a-f]+ is not known; the repository could be damaged/;

/** restic ≥ 0.17's error for a file it stores again because the index lost parts of it (after a repair). */
const RESTORED_AGAIN = /not found in the repository index; storing the file again/;

/** restic's own lines that follow our SIGINT: what we did to it, not what went wrong. */
const OUR_INTERRUPT = /signal interrupt received|context canceled|cleaning up/i;

/** Why a stalled upload stalled: the endpoint it was sending to, and restic's last complaint before we stopped it. */
export function stallMessage(stallMs: number, address: string, lastError: string): string {
  const detail = lastError ? classifyResticError(lastError) : undefined;
  return `upload made no progress for ${Math.round(stallMs / 1000)} s, stalled at the S3 endpoint ${endpointOf(address)}` +
    (detail ? ` (restic's last error: ${detail.message})` : '');
}

export interface UploadRequest {
  repo: Repository;
  host: string;
  tags: string[];
  /** The policy's previous snapshot; 'none' for no parent at all (`--force`). Ignored when restic reads a command. */
  parent?: string;
  /** What restic stores: paths (relative to cwd), or `--stdin-from-command … -- <command>`. */
  source: string[];
  cwd?: string;
  signal?: AbortSignal;
  stallTimeoutMs?: number;
  /** restic's progress: bytes read so far, its total (0 when it cannot know) and percent. */
  onProgress?: (bytesDone: number, totalBytes: number, percent: number) => void;
  /** A stderr line restic relays from the command it runs; true when it was taken, so it is no error of restic's. */
  onCommandLine?: (line: string) => boolean;
  /** Told what the backup waits for (another writer's lock). */
  onWait?: (holder: string) => void;
}

async function resticBackup(restic: Restic, req: UploadRequest, parent: string | undefined): Promise<BackupSummary> {
  // 'none': no parent, not even the one restic would pick (it reads every file again).
  const parentArgs = parent === 'none' ? ['--force'] : parent ? ['--parent', parent] : [];
  let summary: BackupSummary | undefined;
  let lastError = '';
  let bytesDone = -1;
  const stallMs = req.stallTimeoutMs ?? 5 * 60_000;
  const stalled = new AbortController();
  let watchdog = setTimeout(() => stalled.abort(), stallMs);
  const progressed = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => stalled.abort(), stallMs);
  };
  const signal = req.signal ? AbortSignal.any([req.signal, stalled.signal]) : stalled.signal;
  // The staged files are new copies each time: their inode and ctime always differ from the parent's, so only size and
  // mtime (kept by the copy) tell a changed file.
  const args = ['backup', '--json', '--ignore-inode', '--ignore-ctime', '--host', req.host, ...req.tags.flatMap((t) => ['--tag', t]),
    ...parentArgs, ...req.source];
  try {
    const { code, stderr } = await restic.run(req.repo, args, {
      cwd: req.cwd,
      signal,
      timeoutMs: 6 * 60 * 60_000,
      answerCodes: [3],
      onStderrLine: (line) => {
        if (req.onCommandLine?.(line)) return;
        // Once we have stopped restic, what it says is about being stopped.
        const text = plainText(line).trim();
        if (text && !signal.aborted && !OUR_INTERRUPT.test(text)) lastError = text;
      },
      onLine: (line) => {
        const m = parseBackupLine(line);
        if (m?.type === 'summary') summary = m.summary;
        if (m?.type !== 'status') return;
        if (m.bytesDone > bytesDone) {
          bytesDone = m.bytesDone;
          progressed();
        }
        req.onProgress?.(m.bytesDone, m.totalBytes, Math.round(m.percentDone * 1000) / 10);
      },
    });
    // Exit 3 is "a source file could not be read". After a repair removed damaged packs, restic 0.18 also says so for a
    // file it stored again because parts of it were no longer in the index: that backup is whole. Anything else is not.
    if (code === 3) {
      const errors = stderr.split('\n').filter((l) => l.includes('"message_type":"error"'));
      const problems = errors.filter((l) => !RESTORED_AGAIN.test(l));
      if (errors.length === 0 || problems.length > 0 || !summary) {
        const c = classifyResticError(problems.join('\n') || stderr);
        throw new EngineError(c.kind, c.message);
      }
    }
  } catch (err) {
    if (stalled.signal.aborted && !req.signal?.aborted) {
      const kind = lastError ? classifyResticError(lastError).kind : 'Failed';
      throw new EngineError(kind === 'Failed' ? 'Unreachable' : kind, stallMessage(stallMs, req.repo.address, lastError));
    }
    throw err;
  } finally {
    clearTimeout(watchdog);
  }
  if (!summary) throw new EngineError('Failed', 'restic backup finished without a summary');
  return summary;
}

/**
 * restic backup with the request's parent, or without one when the repository no longer holds that snapshot; and with no
 * parent at all (`--force`: restic would pick the latest snapshot itself) when a parent's trees were lost to a repair.
 */
export async function upload(restic: Restic, req: UploadRequest): Promise<BackupSummary> {
  const attempt = (parent?: string | 'none') => withLockWait(restic, req.repo, () => resticBackup(restic, req, parent), {
    signal: req.signal, onWait: req.onWait,
  });
  const parentDamaged = (err: unknown) => err instanceof EngineError && PARENT_DAMAGED.test(err.message);
  try {
    if (!req.parent) return await attempt();
    try {
      return await attempt(req.parent);
    } catch (err) {
      // Forgotten meanwhile (by hand, or its record outlived it): restic then searches for a parent itself.
      if (err instanceof EngineError && err.kind === 'NotFound') return await attempt();
      throw err;
    }
  } catch (err) {
    // Damaged: a repair removed data of its trees ("tree … is not known"); this backup must store fresh copies.
    if (parentDamaged(err)) return attempt('none');
    throw err;
  }
}
