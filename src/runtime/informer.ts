/**
 * @module An informer: list, then watch from the list's resourceVersion, keeping a cache and telling handlers about
 * changes. An expired resourceVersion (410 Gone) relists and delivers the difference; any other failure, the API
 * server being down included, retries with backoff (up to 30 s; at most 3 s after a 5xx or 429 answer). After a
 * failure that says the server is down or struggling (unreachable, 5xx, 429) the informer also listens to the client's
 * cheap probe, which wakes it once the server, seen down, answers ready again: after an outage it resumes within about
 * a second, not at its next backoff.
 * A periodic resync re-delivers every cached object.
 */
import type { ResourceRef } from '../api/group.ts';
import type { KubeObject } from '../api/types.ts';
import type { KubeClient, ListResult, WatchEvent } from '../kube/client.ts';
import { ConnectionError, isGone, isTransient } from '../kube/errors.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';
import type { Runnable } from './runnable.ts';


/** Longest wait after a 5xx or 429 answer (see Informer.backoff). */
const SERVER_ERROR_BACKOFF_MS = 3_000;
export interface Handlers<T> {
  onAdd?(obj: T): void;
  /** `old === obj` on a resync. */
  onUpdate?(old: T, obj: T): void;
  onDelete?(obj: T): void;
}

/** Where an informer gets its objects: the API (`listWatch`), or a scripted source in tests. */
export interface ListWatch<T> {
  list(): Promise<ListResult<T>>;
  watch(resourceVersion: string, signal: AbortSignal): AsyncIterable<WatchEvent<T>>;
  /** Resolves once a server seen down (`down`: by the caller, just now) answers again, ready; or when `signal` aborts. */
  answered?(signal: AbortSignal, down: boolean): Promise<void>;
}

export function listWatch<T extends KubeObject>(client: KubeClient, ref: ResourceRef, namespace?: string, labelSelector?: string,
  fieldSelector?: string): ListWatch<T> {
  const query: Record<string, string> = { ...(labelSelector ? { labelSelector } : {}), ...(fieldSelector ? { fieldSelector } : {}) };
  return {
    list: () => client.list<T>(ref, namespace, query),
    watch: (rv, signal) => client.watch<T>(ref, namespace, rv, signal, undefined, query),
    answered: (signal, down) => client.answered(signal, down),
  };
}

export interface InformerOptions<T> {
  /** Names the informer in logs, e.g. the resource's plural. */
  name: string;
  source: ListWatch<T>;
  log: Logger;
  resyncMs?: number;
  /** Longest wait between retries after errors. */
  maxBackoffMs?: number;
}

export const objectKey = (obj: KubeObject): string =>
  obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;

export class Informer<T extends KubeObject> implements Runnable {
  readonly name: string;
  private readonly store = new Map<string, T>();
  private readonly handlers: Handlers<T>[] = [];
  private synced = false;
  private readonly syncWaiters: (() => void)[] = [];
  private readonly log: Logger;

  constructor(private readonly opts: InformerOptions<T>) {
    this.name = `informer/${opts.name}`;
    this.log = opts.log.child({ informer: opts.name });
  }

  addHandlers(h: Handlers<T>): void {
    this.handlers.push(h);
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  list(): T[] {
    return [...this.store.values()];
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list has been delivered. */
  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((ok) => this.syncWaiters.push(ok));
  }

  async start(signal: AbortSignal): Promise<void> {
    const resync = this.opts.resyncMs ? setInterval(() => this.resync(), this.opts.resyncMs) : undefined;
    let resourceVersion = '';
    let failures = 0;
    try {
      while (!signal.aborted) {
        try {
          if (!resourceVersion) {
            if (failures > 0) this.log.info('listing again after failures', { failures });
            resourceVersion = await this.relist();
          }
          if (signal.aborted) break;
          for await (const ev of this.opts.source.watch(resourceVersion, signal)) {
            failures = 0;
            resourceVersion = ev.object.metadata.resourceVersion ?? resourceVersion;
            if (ev.type !== 'BOOKMARK') this.apply(ev.type, ev.object);
          }
          // The server closed the watch (its timeout): a watch that lasted is no failure. Watch again from where we are.
          failures = 0;
        } catch (err) {
          if (signal.aborted) break;
          if (isGone(err)) {
            this.log.info('watch expired, relisting');
            resourceVersion = '';
            continue;
          }
          const delay = Math.min(200 * 2 ** failures++, this.opts.maxBackoffMs ?? 30_000);
          // A watch that keeps failing from the same resourceVersion may never succeed from it: after etcd was restored
          // from a snapshot the API answers "too large resource version" (not 410). List again, as client-go does.
          if (failures >= 2) resourceVersion = '';
          this.log.warn('watch failed, retrying', { err, retryInMs: delay });
          await this.backoff(delay, err, signal);
        }
      }
    } finally {
      if (resync) clearInterval(resync);
    }
  }

  /**
   * Waits `delayMs` before the next try. After a failure that says the server is down or struggling, also wakes as
   * soon as the source's probe finds it back: a list is an expensive question for a struggling server, a probe a
   * cheap one. An unreachable server was seen down by this very failure; one that answered 5xx or 429 (a restarting
   * API server says 503 "server is starting") must also be seen unready by the probe before it wakes anyone.
   */
  private async backoff(delayMs: number, err: unknown, signal: AbortSignal): Promise<void> {
    const answered = this.opts.source.answered;
    if (!isTransient(err) || !answered) return sleep(delayMs, signal);
    const unreachable = err instanceof ConnectionError;
    // An answer of 5xx or 429 from a server whose probe already says ready (a server still warming up, its readiness
    // ahead of its lists) would never be seen down, so it waits at most SERVER_ERROR_BACKOFF_MS: one list of a few
    // kinds every few seconds costs a struggling server little, and recovery no longer waits the full backoff.
    const waitMs = unreachable ? delayMs : Math.min(delayMs, SERVER_ERROR_BACKOFF_MS);
    const done = new AbortController();
    const either = AbortSignal.any([signal, done.signal]);
    await Promise.race([sleep(waitMs, either), answered.call(this.opts.source, either, unreachable)]);
    done.abort();
  }

  /** Lists everything and delivers the difference to the cache as add/update/delete. */
  private async relist(): Promise<string> {
    const { items, resourceVersion } = await this.opts.source.list();
    const seen = new Set<string>();
    for (const obj of items) {
      seen.add(objectKey(obj));
      this.apply('ADDED', obj);
    }
    for (const [key, old] of this.store) {
      if (!seen.has(key)) this.apply('DELETED', old);
    }
    if (!this.synced) {
      this.synced = true;
      this.log.debug('cache synced', { objects: this.store.size });
      for (const w of this.syncWaiters.splice(0)) w();
    }
    return resourceVersion;
  }

  private apply(type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: T): void {
    const key = objectKey(obj);
    const old = this.store.get(key);
    if (type === 'DELETED') {
      if (!old) return;
      this.store.delete(key);
      this.notify((h) => h.onDelete?.(obj));
      return;
    }
    if (old && old.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    this.store.set(key, obj);
    this.notify((h) => (old ? h.onUpdate?.(old, obj) : h.onAdd?.(obj)));
  }

  private resync(): void {
    for (const obj of this.store.values()) this.notify((h) => h.onUpdate?.(obj, obj));
  }

  private notify(fn: (h: Handlers<T>) => void): void {
    for (const h of this.handlers) {
      try {
        fn(h);
      } catch (err) {
        this.log.error('event handler failed', { err });
      }
    }
  }
}
