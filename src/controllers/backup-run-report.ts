/**
 * @module What a backup run reports while and after it runs: its progress to the policy's status (throttled, in order)
 * and where its time went (one log line that `npm run bench` reads).
 */
import type { BackupProgress, BackupResult } from '../engine/backup.ts';
import type { Logger } from '../util/log.ts';

/**
 * Progress to status through `patch` (a merge patch: null clears a field), at most every `intervalMs` (and on each
 * change of phase or wait). Writes are chained, and `flush` waits for the last, so a late progress write never lands
 * after the final status.
 */
export function progressWriter(patch: (status: Record<string, unknown>) => Promise<unknown>, log: Logger, intervalMs = 3000):
{ write: (p: BackupProgress) => void; flush: () => Promise<void> } {
  let last = 0;
  let lastState = '';
  let chain = Promise.resolve();
  return {
    write: (p) => {
      const t = Date.now();
      const state = `${p.phase}/${p.waitingFor ?? ''}`;
      if (state === lastState && t - last < intervalMs) return;
      last = t;
      lastState = state;
      const progress = { phase: p.phase, bytesDone: p.bytesDone, totalBytes: p.totalBytes ?? null,
        percent: p.percent === undefined ? null : Math.round(p.percent), waitingFor: p.waitingFor ?? null, updateTime: new Date(t).toISOString() };
      chain = chain.then(() => patch({ progress })).then(() => undefined)
        .catch((err) => log.debug('progress write failed', { err }));
    },
    flush: () => chain,
  };
}

/** Moments of one backup run: wall-clock epoch ms where another process compares them, else the monotonic clock. */
export interface RunMarks {
  /** The reconcile that started the run (wall clock). */
  reconciledAt: number;
  /** The run began, its `Running` status written (wall clock). */
  startedAt: number;
  started: number;
  /** The engine was called (location ready, slot taken). */
  engine?: number;
  engineDone?: number;
  /** The last progress write landed. */
  flushed?: number;
  recorded?: number;
}

/** Where the time of a successful run went, in whole milliseconds, as fields of one log line. */
export function runTimings(m: RunMarks, r: BackupResult, done: number): Record<string, unknown> {
  const ms = (x: number) => Math.round(x);
  const t = r.timings;
  return {
    reconciledAt: new Date(m.reconciledAt).toISOString(),
    timingsMs: {
      start: m.startedAt - m.reconciledAt, wait: ms((m.engine ?? m.started) - m.started), stage: ms(t.stageMs),
      etcdConnect: ms(t.etcd.connectMs), etcdStream: ms(t.etcd.streamMs), hash: ms(t.etcd.hashMs), write: ms(t.etcd.writeMs),
      repoWait: ms(t.repoWaitMs), upload: ms(t.uploadMs), uploadOwnCpu: ms(t.uploadOwnCpuMs), resticOwn: ms(r.summary.totalDuration * 1000), cleanup: ms(t.cleanupMs),
      progressFlush: ms((m.flushed ?? done) - (m.engineDone ?? done)), record: ms((m.recorded ?? done) - (m.flushed ?? done)),
      status: ms(done - (m.recorded ?? done)), total: ms(done - m.started),
    },
    layout: t.layout,
    ...(t.pipeBytes ? { pipeBytes: t.pipeBytes } : {}),
  };
}
