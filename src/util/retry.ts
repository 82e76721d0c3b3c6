/** @module Retrying a write until it lands: what must not be lost (a record, a final status) outlives an API outage. */
import { sleep } from './sleep.ts';

export interface RetryOptions {
  signal?: AbortSignal;
  /** First delay; doubles up to `maxMs`. */
  baseMs?: number;
  maxMs?: number;
  /** Told about each failed attempt (for a log line), with the delay before the next. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Errors that no retry can fix (e.g. the object is invalid): thrown at once. */
  permanent?: (err: unknown) => boolean;
}

/**
 * Runs `fn` until it succeeds, backing off between attempts; throws only a permanent error, or the last error once
 * `signal` aborts (the controller is stopping: the next one picks up from the repository).
 */
export async function retryUntilDone<T>(fn: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const base = opts.baseMs ?? 500;
  const max = opts.maxMs ?? 30_000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (opts.permanent?.(err) || opts.signal?.aborted) throw err;
      const delay = Math.min(base * 2 ** (attempt - 1), max);
      opts.onRetry?.(err, attempt, delay);
      await sleep(delay, opts.signal);
      if (opts.signal?.aborted) throw err;
    }
  }
}
