/**
 * @module One controller: keys from informer handlers go into a work queue; workers hand each key to the reconciler
 * and apply its outcome. Success forgets the key's backoff (and honours `requeueAfter`); an error retries with per-key
 * backoff. Reconcilers report failures that retrying cannot fix in status themselves and return normally.
 */
import type { Logger } from '../util/log.ts';
import { LeadershipLost } from './leader.ts';
import { WorkQueue } from './queue.ts';
import type { Runnable } from './runnable.ts';

export interface Result {
  /** Visit the key again after this many milliseconds. */
  requeueAfter?: number;
}

export interface Reconciler {
  /** Brings the world in line with the object `namespace/name`. Must be idempotent: it may run any number of times. */
  reconcile(key: string, signal: AbortSignal): Promise<Result | void>;
  /** At shutdown, after the workers stopped: finish or cancel background work within `timeoutMs`. */
  drain?(timeoutMs: number): Promise<void>;
}

export interface ControllerOptions {
  name: string;
  reconciler: Reconciler;
  log: Logger;
  workers?: number;
  /** Time given to the reconciler's background work at shutdown. */
  drainTimeoutMs?: number;
  /** Called after each reconcile with its outcome, for metrics. */
  onResult?: (outcome: 'success' | 'error' | 'requeue', ms: number) => void;
}

export class Controller implements Runnable {
  readonly name: string;
  private readonly queue = new WorkQueue();
  private readonly log: Logger;

  constructor(private readonly opts: ControllerOptions) {
    this.name = `controller/${opts.name}`;
    this.log = opts.log.child({ controller: opts.name });
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  async start(signal: AbortSignal): Promise<void> {
    signal.addEventListener('abort', () => this.queue.shutDown(), { once: true });
    const workers = Array.from({ length: this.opts.workers ?? 1 }, () => this.worker(signal));
    await Promise.all(workers);
    // A lost lease gives background work no time: another replica is taking over and must be the only one acting.
    await this.opts.reconciler.drain?.(signal.reason instanceof LeadershipLost ? 0 : this.opts.drainTimeoutMs ?? 0);
  }

  private async worker(signal: AbortSignal): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        await this.process(key, signal);
      } finally {
        this.queue.done(key);
      }
    }
  }

  private async process(key: string, signal: AbortSignal): Promise<void> {
    const started = performance.now();
    const log = this.log.child({ key });
    try {
      // A reconcile stuck on a hung request must not hold up a shutdown or a lost lease: the worker stops waiting for
      // it (it sees the same signal, and after a lost lease its writes are refused).
      const result = await Promise.race([this.opts.reconciler.reconcile(key, signal), abandoned(signal)]);
      if (signal.aborted) {
        log.info('reconcile abandoned: stopping');
        return;
      }
      this.queue.forget(key);
      if (result?.requeueAfter) this.queue.addAfter(key, result.requeueAfter);
      this.opts.onResult?.(result?.requeueAfter ? 'requeue' : 'success', performance.now() - started);
    } catch (err) {
      this.opts.onResult?.('error', performance.now() - started);
      if (signal.aborted) {
        log.info('reconcile abandoned at shutdown', { err });
        return;
      }
      const delay = this.queue.addRateLimited(key);
      log.warn('reconcile failed; retrying', { err, retryInMs: Math.round(delay) });
    }
  }
}

/** Resolves (with nothing) once `signal` aborts. */
function abandoned(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
