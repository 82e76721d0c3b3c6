/** @module Everything long-running (informers, controllers, the HTTP server) is a Runnable, started and stopped by the manager. */

export interface Runnable {
  readonly name: string;
  /** Runs until `signal` aborts, then returns after cleaning up. Throwing stops the whole process. */
  start(signal: AbortSignal): Promise<void>;
}
