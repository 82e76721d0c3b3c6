/**
 * @module Noticing promptly, and cheaply, that an API server that was down answers again. Informers back off up to
 * 30 s between lists of a server that failed them, so as not to load a struggling server with lists; alone, that
 * backoff left them idle for up to 30 s after the server was back. Instead, while anyone waits here, one loop per
 * client asks a cheap question (GET /readyz) every `intervalMs`, and wakes a waiter at the first answer after the
 * server was seen down: unreachable (the waiter's own failure, or a check) or not ready (a check). A server that
 * answers every check while failing a request (a broken webhook: 500 with /readyz 200) never wakes anyone early, so
 * its lists keep their backoff.
 */
import { sleep } from '../util/sleep.ts';

export interface AnswerProbeOptions {
  /** One cheap request: true when the server answered and is ready. Must end by `signal`. */
  check(signal: AbortSignal): Promise<boolean>;
  intervalMs?: number;
  /** Longest wait for one check's answer. */
  checkTimeoutMs?: number;
}

interface Waiter {
  wake(): void;
  /** The server was seen down since this waiter began waiting. */
  sawDown: boolean;
}

export class AnswerProbe {
  private readonly waiters = new Set<Waiter>();
  private looping = false;

  constructor(private readonly opts: AnswerProbeOptions) {}

  /**
   * Resolves at the first check that finds the server answering after it was seen down since this call (`down`: the
   * caller has just seen it down itself), or when `signal` aborts; never rejects. The first check comes an interval
   * after the call: the failure that made the caller wait is that recent.
   */
  answered(signal: AbortSignal, down: boolean): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const waiter: Waiter = {
        sawDown: down,
        wake: () => {
          this.waiters.delete(waiter);
          signal.removeEventListener('abort', waiter.wake);
          resolve();
        },
      };
      this.waiters.add(waiter);
      signal.addEventListener('abort', waiter.wake, { once: true });
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
        for (const w of asking) {
          if (!ok) w.sawDown = true;
          else if (w.sawDown) w.wake();
        }
      }
    } finally {
      this.looping = false;
    }
  }
}
