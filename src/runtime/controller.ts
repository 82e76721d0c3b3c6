/**
 * @module One controller: keys from informer handlers go into a work queue; workers hand each key to the reconciler
 * and apply its outcome. Success forgets the key's backoff (and honours `requeueAfter`); a TerminalError is logged and
 * not retried (the reconciler has already reported it in status); any other error retries with per-key backoff.
 */
import type { Logger } from '../util/log.ts';
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

/** A failure that retrying cannot fix; the reconciler has already written it to status and events. */
export class TerminalError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export interface ControllerOptions {
  name: string;
  reconciler: Reconciler;
  log: Logger;
  workers?: number;
  queue?: WorkQueue;
  /** Time given to the reconciler's background work at shutdown. */
  drainTimeoutMs?: number;
  /** Called after each reconcile with its outcome, for metrics. */
  onResult?: (outcome: 'success' | 'error' | 'requeue', ms: number) => void;
}

export class Controller implements Runnable {
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly log: Logger;

  constructor(private readonly opts: ControllerOptions) {
    this.name = `controller/${opts.name}`;
    this.queue = opts.queue ?? new WorkQueue();
    this.log = opts.log.child({ controller: opts.name });
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  async start(signal: AbortSignal): Promise<void> {
    signal.addEventListener('abort', () => this.queue.shutDown(), { once: true });
    const workers = Array.from({ length: this.opts.workers ?? 1 }, () => this.worker(signal));
    await Promise.all(workers);
    await this.opts.reconciler.drain?.(this.opts.drainTimeoutMs ?? 0);
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
      const result = await this.opts.reconciler.reconcile(key, signal);
      this.queue.forget(key);
      if (result?.requeueAfter) this.queue.addAfter(key, result.requeueAfter);
      this.opts.onResult?.(result?.requeueAfter ? 'requeue' : 'success', performance.now() - started);
    } catch (err) {
      this.opts.onResult?.('error', performance.now() - started);
      if (signal.aborted) {
        log.info('reconcile abandoned at shutdown', { err });
        return;
      }
      if (err instanceof TerminalError) {
        // We choose not to retry: nothing changes until the user fixes the input, which re-enqueues the key.
        this.queue.forget(key);
        log.warn('reconcile failed; waiting for a change', { err });
        return;
      }
      const delay = this.queue.addRateLimited(key);
      log.warn('reconcile failed; retrying', { err, retryInMs: Math.round(delay) });
    }
  }
}
