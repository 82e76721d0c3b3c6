/**
 * @module Leader election with a coordination.k8s.io/v1 Lease, following client-go's leaderelection: a candidate takes
 * the lease when it is free or when its holder has not renewed it for a whole lease duration *as observed locally*
 * (so clocks of different hosts never need to agree); writes carry the resourceVersion, so two candidates cannot both
 * win. The leader renews every retry period and gives up after the renew deadline, which bounds each renewal request
 * too: a hung API server must not keep a leader that cannot renew believing it leads. A leader that lost the lease
 * stops acting at once: its writes are fenced, its work is aborted with no grace, and `run` rejects (the process exits
 * to be restarted). On shutdown it releases the lease, so a standby takes over at its next retry instead of waiting out
 * the lease. Times are measured on the monotonic clock.
 */
import { LEASE } from '../api/group.ts';
import type { KubeObject } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { isAlreadyExists, isConflict, isNotFound } from '../kube/errors.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  log: Logger;
}

/** The reason of the leading signal when the lease was lost (not on a normal shutdown). */
export class LeadershipLost extends Error {
  constructor() {
    super('leadership lost: the lease could not be renewed within the renew deadline');
    this.name = 'LeadershipLost';
  }
}

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits. */
const microTime = (d: Date): string => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class LeaderElector {
  private observed?: { holder: string; renewTime: string; at: number };
  private readonly log: Logger;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.log = opts.log.child({ lease: `${opts.namespace}/${opts.leaseName}`, identity: opts.identity });
  }

  /**
   * Waits to become leader, then runs `lead` with a signal that aborts when leadership is lost or `signal` aborts.
   * Resolves after `lead` has returned and the lease is released; rejects if leadership was lost.
   */
  async run(signal: AbortSignal, lead: (leading: AbortSignal) => Promise<void>): Promise<void> {
    this.log.info('waiting for leadership');
    const attempt = () => AbortSignal.any([signal, AbortSignal.timeout(this.opts.renewDeadlineMs)]);
    while (!signal.aborted && !(await this.tryAcquireOrRenew(attempt()))) await sleep(this.opts.retryPeriodMs, signal);
    if (signal.aborted) return;
    this.log.info('became leader');

    const leading = new AbortController();
    const stop = () => leading.abort();
    signal.addEventListener('abort', stop, { once: true });
    const lostLease = new AbortController();
    this.opts.client.fenceWrites(lostLease.signal, 'this replica lost the leader lease');
    const renewing = this.renewLoop(leading.signal).then((ok) => {
      if (!ok && !signal.aborted) {
        // Fence first: from here on nothing this replica still has in flight may write.
        lostLease.abort();
        this.log.error('leadership lost: the lease could not be renewed within the renew deadline; stopping all work');
        leading.abort(new LeadershipLost());
      }
    });
    try {
      await lead(leading.signal);
    } finally {
      leading.abort();
      signal.removeEventListener('abort', stop);
      await renewing;
      if (!lostLease.signal.aborted) await this.release();
    }
    if (lostLease.signal.aborted) throw new LeadershipLost();
  }

  /**
   * Renews until `signal` aborts (true) or renewal keeps failing past the renew deadline (false). Each attempt may take
   * only the time left before the deadline, so a hung request ends the lease in time.
   */
  private async renewLoop(signal: AbortSignal): Promise<boolean> {
    let lastRenew = performance.now();
    while (!signal.aborted) {
      await sleep(this.opts.retryPeriodMs, signal);
      if (signal.aborted) return true;
      const left = this.opts.renewDeadlineMs - (performance.now() - lastRenew);
      const attempt = AbortSignal.any([signal, AbortSignal.timeout(Math.max(left, 1))]);
      if (await this.tryAcquireOrRenew(attempt)) lastRenew = performance.now();
      else if (signal.aborted) return true;
      else if (performance.now() - lastRenew >= this.opts.renewDeadlineMs) return false;
    }
    return true;
  }

  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { client, namespace, leaseName, identity } = this.opts;
    const now = new Date();
    const durationSeconds = Math.ceil(this.opts.leaseDurationMs / 1000);
    let lease: Lease;
    try {
      lease = await client.get<Lease>(LEASE, namespace, leaseName, signal);
    } catch (err) {
      if (!isNotFound(err)) return this.failed('read', err);
      try {
        await client.create<Lease>(LEASE, namespace, {
          apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: leaseName, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(now),
            renewTime: microTime(now), leaseTransitions: 0 },
        } as Lease, signal);
        return true;
      } catch (e) {
        return isAlreadyExists(e) ? false : this.failed('create', e);
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renewTime = spec.renewTime ?? '';
    if (!this.observed || this.observed.holder !== holder || this.observed.renewTime !== renewTime) {
      this.observed = { holder, renewTime, at: performance.now() };
    }
    const heldByOther = holder !== '' && holder !== identity;
    const holderDurationMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (heldByOther && this.observed.at + holderDurationMs > performance.now()) return false;

    const next: Lease = {
      ...lease,
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: holder === identity && spec.acquireTime ? spec.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1),
      },
    };
    try {
      await client.replace<Lease>(LEASE, namespace, next, signal);
      if (heldByOther) this.log.info('took over the lease', { previousHolder: holder });
      return true;
    } catch (err) {
      return isConflict(err) ? false : this.failed('update', err);
    }
  }

  private failed(what: string, err: unknown): false {
    this.log.warn(`lease ${what} failed`, { err });
    return false;
  }

  /** Hands the lease back so another replica need not wait for it to expire. */
  private async release(): Promise<void> {
    const { client, namespace, leaseName, identity } = this.opts;
    try {
      const lease = await client.get<Lease>(LEASE, namespace, leaseName);
      if (lease.spec?.holderIdentity !== identity) return;
      const now = microTime(new Date());
      await client.replace<Lease>(LEASE, namespace, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: now, acquireTime: now },
      });
      this.log.info('released the lease');
    } catch (err) {
      this.log.warn('could not release the lease; it will expire', { err });
    }
  }
}
