/**
 * @module Starts runnables and stops them in order. Informers and the HTTP server run on every replica (so a standby
 * has warm caches and answers probes); controllers run only while this replica leads. Shutdown: abort, give running
 * work `shutdownTimeoutMs` to finish, then report what was abandoned.
 */
import type { Logger } from '../util/log.ts';
import type { LeaderElector } from './leader.ts';
import type { Runnable } from './runnable.ts';

export interface ManagerOptions {
  always: Runnable[];
  leaderOnly: Runnable[];
  /** Resolves when caches are synced; leader-only runnables start after it. */
  cachesSynced: () => Promise<void>;
  elector?: LeaderElector;
  shutdownTimeoutMs: number;
  log: Logger;
}

export class Manager {
  constructor(private readonly opts: ManagerOptions) {}

  /** Runs until `signal` aborts (then resolves after shutdown) or something fails (then rejects). */
  async run(signal: AbortSignal): Promise<void> {
    const { always, leaderOnly, elector, log } = this.opts;
    const inner = new AbortController();
    const stop = () => inner.abort();
    signal.addEventListener('abort', stop, { once: true });
    const runAll = (rs: Runnable[], s: AbortSignal) => Promise.all(rs.map((r) => r.start(s).catch((err) => {
      if (!s.aborted) log.error('runnable failed', { runnable: r.name, err });
      throw err;
    })));

    const background = runAll(always, inner.signal);
    const leading = (async () => {
      await Promise.race([this.opts.cachesSynced(), aborted(inner.signal)]);
      if (inner.signal.aborted) return;
      log.info('caches synced');
      if (!elector) return void (await runAll(leaderOnly, inner.signal));
      await elector.run(inner.signal, (s) => runAll(leaderOnly, s).then(() => undefined));
    })();

    try {
      await Promise.race([Promise.all([background, leading]), aborted(inner.signal)]);
    } catch (err) {
      inner.abort();
      throw err;
    } finally {
      signal.removeEventListener('abort', stop);
    }
    // Shutdown: running work sees the abort; wait for it within the time limit.
    const finished = await Promise.race([
      Promise.allSettled([background, leading]).then(() => true),
      Bun.sleep(this.opts.shutdownTimeoutMs).then(() => false),
    ]);
    if (!finished) log.warn('shutdown time limit reached; abandoning running work', { timeoutMs: this.opts.shutdownTimeoutMs });
  }
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((ok) => (signal.aborted ? ok() : signal.addEventListener('abort', () => ok(), { once: true })));
}
