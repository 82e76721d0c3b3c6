/**
 * @module Kubernetes access that works under Bun: requests through Bun's own `fetch` with the TLS options, headers and
 * proxy of kubeconfig.ts (token, client certificate, exec plugins, impersonation, in-cluster ServiceAccount). Getting a
 * credential counts against a request's time limit like the request itself; a 401 to an exec plugin's credential asks
 * the plugin again and sends the request once more. Ours because client-node's own client does not work under Bun,
 * which drops its TLS options (README, "Architecture in one paragraph"; test/e2e/client-node-under-bun.test.ts).
 */
import type { ResourceRef } from '../api/group.ts';
import type { KubeObject } from '../api/types.ts';
import { redactDeep } from '../util/redact.ts';
import { AnswerProbe } from './answer-probe.ts';
import { ApiError, ConnectionError, CredentialError } from './errors.ts';
import { type ClusterAccess, loadClusterAccess } from './kubeconfig.ts';

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

/** A watch event; ERROR events are raised as ApiError instead. */
export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';
  object: T;
}

export interface ClientOptions {
  kubeconfig?: string;
  context?: string;
  /** Field manager name for writes. */
  fieldManager: string;
  /** Longest wait for one answer (watches excepted); a hung API server must not hang a lease renewal or a reconcile. */
  requestTimeoutMs?: number;
}

/** Default time limit of one API request, as client-go's typical 30 s. */
export const REQUEST_TIMEOUT_MS = 30_000;

type PatchType = 'merge' | 'json';
const patchContentType: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
};

/** A write refused because this replica is no longer the leader: after the loss, nothing may be written. */
export class FencedError extends Error {
  constructor(why: string) {
    super(`write refused: ${why}`);
    this.name = 'FencedError';
  }
}

/**
 * What fences writes: `refusal()` returns why a write must not go out now (undefined while writing is allowed), and
 * `msLeft()` how long writing stays allowed, so a write already on its way is cut off when that time is up.
 */
export interface WriteFence {
  refusal(): string | undefined;
  msLeft(): number;
}

/** Longest wait for the answer to one probe of an unreachable server (GET /readyz). */
const PROBE_TIMEOUT_MS = 5_000;

export class KubeClient {
  private fence: WriteFence | undefined;
  private readonly probe: AnswerProbe;

  private constructor(
    private readonly access: ClusterAccess,
    private readonly fieldManager: string,
    private readonly timeoutMs = REQUEST_TIMEOUT_MS,
  ) {
    this.probe = new AnswerProbe({
      check: async (signal) => {
        const res = await this.fetch('GET', '/readyz', { signal });
        await res.body?.cancel();
        // Not ready (500) or overloaded (429) is no better than silence; anything else, a 401 or 403 of a cluster that
        // keeps /readyz from us included, is a server that answers.
        return res.status < 500 && res.status !== 429;
      },
      checkTimeoutMs: Math.min(timeoutMs, PROBE_TIMEOUT_MS),
    });
  }

  get server(): string {
    return this.access.server;
  }

  /**
   * Every write (anything but GET) first asks `fence`: a leader whose lease may have passed to another replica stops
   * writing at once, even from work that has not noticed yet, and a write in flight is cut off when its time is up.
   */
  fenceWrites(fence: WriteFence): void {
    this.fence = fence;
  }

  /**
   * The same access without the leader's write fence, for the one write that is safe from any replica whoever leads:
   * releasing the records of a namespace being deleted, snapshots kept (see controllers/namespace-deletion.ts).
   */
  unfenced(): KubeClient {
    return new KubeClient(this.access, this.fieldManager, this.timeoutMs);
  }

  /** Loads credentials: the given kubeconfig file, else $KUBECONFIG / ~/.kube/config, else the in-cluster ServiceAccount. */
  static load(opts: ClientOptions): KubeClient {
    const timeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    return new KubeClient(loadClusterAccess({ kubeconfig: opts.kubeconfig, context: opts.context, execTimeoutMs: timeoutMs }),
      opts.fieldManager, timeoutMs);
  }

  /**
   * Resolves once the API server answers, ready, after it was seen unreachable or not ready (`down`: the caller just
   * found it unreachable), or when `signal` aborts: one cheap probe a second for all callers, so waiting informers
   * resume promptly without each relisting a server that is down.
   */
  answered(signal: AbortSignal, down: boolean): Promise<void> {
    return this.probe.answered(signal, down);
  }

  private async fetch(method: string, path: string, init: { body?: string; contentType?: string; signal?: AbortSignal } = {}): Promise<Response> {
    // A credential plugin may take no longer than a request may; a watch's own signal allows minutes.
    const authLimit = AbortSignal.any([AbortSignal.timeout(this.timeoutMs), ...(init.signal ? [init.signal] : [])]);
    for (let attempt = 1; ; attempt++) {
      const auth = await this.access.auth(authLimit);
      const headers = { ...auth.headers, Accept: 'application/json', ...(init.contentType ? { 'Content-Type': init.contentType } : {}) };
      let res: Response;
      try {
        res = await fetch(this.server + path, { method, headers, body: init.body, signal: init.signal, tls: auth.tls, proxy: this.access.proxy });
      } catch (err) {
        if (err instanceof Error && err.name === 'AbortError') throw err;
        const msg = err instanceof Error ? err.message : String(err);
        const via = this.access.proxy ? ` through its proxy-url ${new URL(this.access.proxy).host}` : '';
        throw new ConnectionError(`cannot reach the Kubernetes API at ${this.server}${via}: ${msg}`, { cause: err });
      }
      // A plugin's credential refused: revoked, or expired before its time. As client-go, drop it and ask the plugin
      // again; a 401 is sent before anything is done, so the request may go once more, writes included.
      if (res.status !== 401 || !auth.discard || attempt > 1) return res;
      await res.body?.cancel();
      auth.discard();
    }
  }

  /**
   * One request under the client's time limit (and `signal`, if given). A time limit reached is a ConnectionError, like
   * an unreachable server, so callers retry it; `signal` aborting raises its AbortError.
   */
  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json', signal?: AbortSignal): Promise<T> {
    const fence = method === 'GET' ? undefined : this.fence;
    const refusal = fence?.refusal();
    if (refusal) throw new FencedError(refusal);
    const timeout = AbortSignal.timeout(this.timeoutMs);
    // A fenced write may take only the time its fence has left: it must not land after another replica took over.
    const fenceLeft = fence ? AbortSignal.timeout(Math.max(fence.msLeft(), 1)) : undefined;
    const limit = AbortSignal.any([timeout, ...(signal ? [signal] : []), ...(fenceLeft ? [fenceLeft] : [])]);
    let res: Response;
    let raw: string;
    try {
      res = await this.fetch(method, path, {
        body: body === undefined ? undefined : JSON.stringify(body),
        contentType: body === undefined ? undefined : contentType,
        signal: limit,
      });
      raw = await res.text();
    } catch (err) {
      if (fenceLeft?.aborted && !signal?.aborted) throw new FencedError(fence?.refusal() ?? 'the leader lease ran out while the write was on its way');
      // A plugin too slow for the time limit says so itself; the API server was never asked.
      if (timeout.aborted && !signal?.aborted && !(err instanceof CredentialError)) {
        throw new ConnectionError(`no answer from the Kubernetes API at ${this.server} within ${this.timeoutMs / 1000} s (${method} ${path})`, { cause: err });
      }
      throw err;
    }
    if (!res.ok) throw apiError(res.status, raw, method, path);
    return (raw ? JSON.parse(raw) : {}) as T;
  }

  /** A GET whose answer is text, not JSON: a container's log (`pods/NAME/log?container=C`). */
  async getText(path: string): Promise<string> {
    const res = await this.fetch('GET', path, { signal: AbortSignal.timeout(this.timeoutMs) });
    const raw = await res.text();
    if (!res.ok) throw apiError(res.status, raw, 'GET', path);
    return raw;
  }

  path(ref: ResourceRef, namespace?: string, name?: string, subresource?: string): string {
    const base = ref.group ? `/apis/${ref.group}/${ref.version}` : `/api/${ref.version}`;
    let p = namespace ? `${base}/namespaces/${encodeURIComponent(namespace)}/${ref.plural}` : `${base}/${ref.plural}`;
    if (name) p += `/${encodeURIComponent(name)}`;
    if (subresource) p += `/${subresource}`;
    return p;
  }

  get<T extends KubeObject>(ref: ResourceRef, namespace: string, name: string, signal?: AbortSignal): Promise<T> {
    return this.request<T>('GET', this.path(ref, namespace, name), undefined, undefined, signal);
  }

  async list<T extends KubeObject>(ref: ResourceRef, namespace?: string, query: Record<string, string> = {}): Promise<ListResult<T>> {
    const qs = new URLSearchParams(query).toString();
    const res = await this.request<{ items: T[]; metadata: { resourceVersion: string } }>(
      'GET', this.path(ref, namespace) + (qs ? `?${qs}` : ''));
    // Lists omit apiVersion/kind on items; put them back so cached objects are self-describing.
    const apiVersion = ref.group ? `${ref.group}/${ref.version}` : ref.version;
    const items = res.items.map((i) => ({ ...i, apiVersion, kind: ref.kind }));
    return { items, resourceVersion: res.metadata.resourceVersion };
  }

  create<T extends KubeObject>(ref: ResourceRef, namespace: string, obj: T, signal?: AbortSignal): Promise<T> {
    return this.request<T>('POST', `${this.path(ref, namespace)}?fieldManager=${this.fieldManager}`, obj, undefined, signal);
  }

  replace<T extends KubeObject>(ref: ResourceRef, namespace: string, obj: T, signal?: AbortSignal): Promise<T> {
    return this.request<T>('PUT', `${this.path(ref, namespace, obj.metadata.name)}?fieldManager=${this.fieldManager}`, obj, undefined, signal);
  }

  patch<T extends KubeObject>(ref: ResourceRef, namespace: string, name: string, patch: unknown, type: PatchType = 'merge'): Promise<T> {
    return this.request<T>('PATCH', `${this.path(ref, namespace, name)}?fieldManager=${this.fieldManager}`, patch, patchContentType[type]);
  }

  /**
   * Writes status through the /status subresource only; spec cannot be touched this way. What a user reads passes the
   * same redactor as logs and events: no status message can carry a credential.
   */
  patchStatus<T extends KubeObject>(ref: ResourceRef, namespace: string, name: string, status: object): Promise<T> {
    return this.request<T>('PATCH', `${this.path(ref, namespace, name, 'status')}?fieldManager=${this.fieldManager}`,
      { status: redactDeep(status) }, patchContentType.merge);
  }

  /** Deletes; `gracePeriodSeconds` 0 removes a pod that runs nothing worth a graceful stop at once. */
  async delete(ref: ResourceRef, namespace: string, name: string, opts: { gracePeriodSeconds?: number } = {}): Promise<void> {
    const qs = opts.gracePeriodSeconds === undefined ? '' : `?gracePeriodSeconds=${opts.gracePeriodSeconds}`;
    await this.request('DELETE', this.path(ref, namespace, name) + qs);
  }

  /**
   * Opens a watch from `resourceVersion` and yields its events until the server ends the stream or `signal` aborts.
   * An expired resourceVersion arrives as an ERROR event (or a 410 response) and is raised as ApiError 410.
   */
  async *watch<T>(ref: ResourceRef, namespace: string | undefined, resourceVersion: string, signal: AbortSignal,
    timeoutSeconds = 300, query: Record<string, string> = {}): AsyncGenerator<WatchEvent<T>> {
    const qs = new URLSearchParams({
      ...query, watch: '1', resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds),
    });
    const path = `${this.path(ref, namespace)}?${qs}`;
    // The server ends a watch after timeoutSeconds; one still open well after that hangs (a frozen API server), and the
    // informer must notice to list again.
    const res = await this.fetch('GET', path, { signal: AbortSignal.any([signal, AbortSignal.timeout((timeoutSeconds + 30) * 1000)]) });
    if (!res.ok || !res.body) throw apiError(res.status, await res.text(), 'WATCH', path);
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const ev = JSON.parse(line) as WatchEvent<T> | { type: 'ERROR'; object: unknown };
        if (ev.type === 'ERROR') {
          const st = ev.object as { code?: number; reason?: string; message?: string };
          throw new ApiError(st.code ?? 500, st.reason ?? 'Error', st.message ?? 'watch error', 'WATCH', path);
        }
        yield ev;
      }
    }
  }
}

function apiError(status: number, raw: string, method: string, path: string): ApiError {
  let reason = 'Error';
  let message = raw.slice(0, 500);
  let objectNamed = false;
  try {
    const st = JSON.parse(raw) as { reason?: string; message?: string; details?: { name?: string } };
    reason = st.reason ?? reason;
    message = st.message ?? message;
    objectNamed = Boolean(st.details?.name);
  } catch {
    // Not a Status object; keep the raw text.
  }
  // An object not found is named in the Status's details; a resource not served is not (details: {}).
  return new ApiError(status, reason, message, method, path, status === 404 && !objectNamed);
}
