/**
 * @module Continuous backup's moving part: watch every key of etcd from a revision on, write the changes to a change
 * set file as they arrive, and store the file in the repository every flush interval. The watch never waits for S3:
 * the file being stored was closed and a new one opened, so a slow or failing store only delays what is stored (the
 * files wait on disk, oldest first), never what is received. Knows nothing of Kubernetes objects: the caller says where
 * to start, and hears what was stored, what was lost and what failed.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '../../util/scratch.ts';
import { sleep } from '../../util/sleep.ts';
import type { EtcdConnection } from '../etcd-connection.ts';
import { EtcdClient } from '../etcd-client.ts';
import { EngineError } from '../errors.ts';
import type { BackupOrigin } from '../origin.ts';
import type { Repository, Restic } from '../restic.ts';
import { byRevision, ChangeSetFile } from './change-set.ts';
import { storeChangeSet } from './change-store.ts';

export interface StoredChangeSet {
  id: string;
  fromRevision: number;
  toRevision: number;
  fromTime: number;
  toTime: number;
  changes: number;
  bytes: number;
  storeMs: number;
}

export interface RecorderOptions {
  etcd: EtcdConnection;
  repo: Repository;
  policy: string;
  origin: BackupOrigin;
  host: string;
  /** First revision to record (the revision after the last one stored, or after a full backup's). */
  fromRevision: number;
  flushIntervalMs: number;
  signal: AbortSignal;
  onStored?: (set: StoredChangeSet) => void;
  /** A revision (and its changes) arrived from the watch; `revision` is the store's revision at the time. */
  onReceived?: (revision: number, changes: number) => void;
  /**
   * etcd no longer holds the revisions from `missedFrom` to `compactRevision - 1`: they are lost to continuous backup
   * (a gap). Recording goes on from `compactRevision`; the caller takes a full backup so a chain starts again.
   */
  onGap?: (missedFrom: number, compactRevision: number) => void;
  /** The watch or a store failed; it is retried (watch: from the revision after the last received). */
  onError?: (err: EngineError, what: 'watch' | 'store') => void;
  /** Called once the watch runs (again). */
  onWatching?: (fromRevision: number) => void;
}

/**
 * Records until `signal` aborts; then stores what was received (a last flush, bounded in time) and returns. Never
 * throws for etcd or S3 trouble: both are retried with back-off and reported through `onError`.
 */
export async function recordChanges(restic: Restic, opts: RecorderOptions): Promise<void> {
  const dir = await scratchDir('changes');
  let seq = 0;
  const newFile = () => new ChangeSetFile(join(dir, `changes-${++seq}.jsonl`));
  let current = newFile();
  const waiting: ChangeSetFile[] = [];
  let storing: Promise<void> | undefined;
  let storeFailures = 0;

  const storeWaiting = async (): Promise<void> => {
    while (waiting.length > 0) {
      const file = waiting[0]!;
      const t0 = performance.now();
      try {
        const id = await storeChangeSet(restic, {
          repo: opts.repo, file: file.path, policy: opts.policy, origin: opts.origin, host: opts.host,
          fromRevision: file.first!, toRevision: file.last!, fromTime: file.firstAt!, toTime: file.lastAt!,
          // Not cancelled by `signal`: what was received is stored before the recorder returns, within a shorter time
          // limit once stopping (a controller being replaced must not hang on a stalled S3).
          run: { timeoutMs: opts.signal.aborted ? 15_000 : Math.max(60_000, 4 * opts.flushIntervalMs) },
        });
        storeFailures = 0;
        waiting.shift();
        await rm(file.path, { force: true });
        opts.onStored?.({ id, fromRevision: file.first!, toRevision: file.last!, fromTime: file.firstAt!, toTime: file.lastAt!,
          changes: file.changes, bytes: file.bytes, storeMs: performance.now() - t0 });
      } catch (err) {
        storeFailures++;
        opts.onError?.(asEngineError(err), 'store');
        // Stopping: a few tries, then what could not be stored is lost with this process (the next leader resumes the
        // watch from the last stored revision, so etcd's history still covers it unless compacted: then a gap is reported).
        if (opts.signal.aborted && storeFailures >= 2) {
          waiting.length = 0;
          return;
        }
        await sleep(opts.signal.aborted ? 1000 : Math.min(1000 * 2 ** storeFailures, 30_000));
      }
    }
  };
  /** Closes the file being written (when it holds anything) and stores every waiting file, one store at a time. */
  const flush = async (): Promise<void> => {
    if (!current.empty) {
      current.close();
      waiting.push(current);
      current = newFile();
    }
    while (storing) await storing;
    if (waiting.length === 0) return;
    storing = storeWaiting().finally(() => {
      storing = undefined;
    });
    await storing;
  };
  const timer = setInterval(() => void flush(), opts.flushIntervalMs);

  let next = opts.fromRevision;
  let failures = 0;
  try {
    while (!opts.signal.aborted) {
      let etcd: EtcdClient | undefined;
      try {
        etcd = await EtcdClient.connect(opts.etcd);
        opts.onWatching?.(next);
        for await (const msg of etcd.watch(next, opts.signal)) {
          failures = 0;
          if (msg.kind === 'compacted') {
            opts.onGap?.(next, msg.compactRevision);
            next = msg.compactRevision;
            break;
          }
          if (msg.kind === 'progress') continue;
          const now = Date.now();
          for (const rev of byRevision(msg.changes, now)) {
            if (rev.revision < next) continue;
            current.append(rev);
            next = rev.revision + 1;
            opts.onReceived?.(rev.revision, rev.changes.length);
          }
        }
      } catch (err) {
        if (opts.signal.aborted) break;
        failures++;
        opts.onError?.(asEngineError(err), 'watch');
        await sleep(Math.min(500 * 2 ** failures, 15_000), opts.signal);
      } finally {
        etcd?.close();
      }
    }
  } finally {
    clearInterval(timer);
    await flush();
    current.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function asEngineError(err: unknown): EngineError {
  return err instanceof EngineError ? err : new EngineError('Failed', (err as Error).message ?? String(err), { cause: err });
}
