/**
 * @module Noticing promptly, and cheaply, that an unreachable API server answers again. Informers back off up to 30 s
 * between lists of a server they cannot reach, so as not to load a struggling server with lists; alone, that backoff
 * left them idle for up to 30 s after the server was back. Instead, while anyone waits here, one loop per client asks
 * a cheap question (GET /readyz) every `intervalMs`, and wakes every waiter at the first answer.
 */
import { sleep } from '../util/sleep.ts';

export interface AnswerProbeOptions {
  /** One cheap request: true when the server answered (not necessarily yes). Must end by `signal`. */
  check(signal: AbortSignal): Promise<boolean>;
  intervalMs?: number;
  /** Longest wait for one check's answer. */
  checkTimeoutMs?: number;
}

export class AnswerProbe {
  private readonly waiters = new Set<() => void>();
  private looping = false;

  constructor(private readonly opts: AnswerProbeOptions) {}

  /**
   * Resolves at the first check after this call that finds the server answering, or when `signal` aborts; never
   * rejects. The first check comes an interval after the call: the failure that made the caller wait is that recent.
   */
  answered(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        this.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
      if (!this.looping) void this.loop();
    });
  }

  /** Checks while anyone waits. The flag falls in the same turn as the last look at `waiters`, so no waiter is missed. */
  private async loop(): Promise<void> {
    this.looping = true;
    const interval = this.opts.intervalMs ?? 1_000;
    try {
      while (this.waiters.size > 0) {
        await sleep(interval);
        // Only those waiting before the check began: a failure seen during the check may be newer than its answer.
        const asking = [...this.waiters];
        if (asking.length === 0) break;
        const ok = await this.opts.check(AbortSignal.timeout(this.opts.checkTimeoutMs ?? 5_000)).catch(() => false);
        if (ok) for (const wake of asking) wake();
      }
    } finally {
      this.looping = false;
    }
  }
}
