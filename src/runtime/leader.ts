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
import type { Lease } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { isAlreadyExists, isConflict, isNotFound } from '../kube/errors.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /**
   * How long work may take to stop after the lease is lost before `run` rejects without it (default 10 s). Its writes
   * are fenced from the first moment; this bounds how long a deposed process stays alive (a step that ignores the abort,
   * an etcd connection retrying), so the process exits and its restarted self is a plain standby.
   */
  lostGraceMs?: number;
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

  /** Monotonic time (performance.now) at which the last successful acquire or renewal was sent. */
  private lastRenewAt = 0;

  /** How long this replica may still act as leader: until the renew deadline after its last successful renewal. */
  private validForMs(): number {
    return this.lastRenewAt + this.opts.renewDeadlineMs - performance.now();
  }

  /**
   * Waits to become leader, then runs `lead` with a signal that aborts when leadership is lost or `signal` aborts.
   * Resolves after `lead` has returned and the lease is released; rejects if leadership was lost.
   *
   * Fencing is by time, not only by the renew loop noticing: a write is refused once the last successful renewal is
   * older than the renew deadline, whatever the loop has seen, and a write in flight is cut off then. A process that
   * was frozen (SIGSTOP, a VM pause, a long GC) therefore writes nothing on waking: its first timers find the time
   * up. A watchdog timer set to that same moment aborts the work (restic children first) without waiting for a
   * renewal request to fail. The renew deadline is shorter than the lease duration, and a standby counts the lease
   * duration from when it saw the last renewal, so this replica stops before another can start.
   */
  async run(signal: AbortSignal, lead: (leading: AbortSignal) => Promise<void>): Promise<void> {
    this.log.info('waiting for leadership');
    const attempt = () => AbortSignal.any([signal, AbortSignal.timeout(this.opts.renewDeadlineMs)]);
    for (;;) {
      const sent = performance.now();
      if (signal.aborted || await this.tryAcquireOrRenew(attempt())) {
        this.lastRenewAt = sent;
        break;
      }
      await sleep(this.opts.retryPeriodMs, signal);
    }
    if (signal.aborted) return;
    this.log.info('became leader');

    const leading = new AbortController();
    const stop = () => leading.abort();
    signal.addEventListener('abort', stop, { once: true });
    let lost = false;
    let graceOver: () => void = () => {};
    const abandoned = new Promise<'abandoned'>((ok) => (graceOver = () => ok('abandoned')));
    const graceMs = this.opts.lostGraceMs ?? 10_000;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const lose = () => {
      if (lost) return;
      lost = true;
      // Work first (its restic children are stopped by this abort), the log line after.
      leading.abort(new LeadershipLost());
      this.log.error('leadership lost: the lease was not renewed within the renew deadline; all work stopped, no more writes');
      graceTimer = setTimeout(graceOver, graceMs);
    };
    this.opts.client.fenceWrites({
      refusal: () => lost ? 'this replica lost the leader lease'
        : this.validForMs() <= 0 ? `this replica has not renewed the leader lease within the renew deadline (${this.opts.renewDeadlineMs / 1000} s): another may lead now`
          : undefined,
      msLeft: () => (lost ? 0 : this.validForMs()),
    });
    let watchdog = setTimeout(lose, this.validForMs());
    // Renewal goes on while the work drains after a shutdown signal, so a long drain keeps the lease (and may write).
    const renewStop = new AbortController();
    const renewing = this.renewLoop(renewStop.signal, () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(lose, this.validForMs());
    }).then((ok) => {
      if (!ok) lose();
    });
    try {
      const work = lead(leading.signal);
      // A deposed leader does not wait on work that ignores the abort: it rejects (and the process exits) within the grace.
      if (await Promise.race([work, abandoned]) === 'abandoned') {
        work.catch(() => undefined);
        this.log.error('work still running after leadership was lost; leaving it (its writes are fenced)', { graceMs });
      }
    } finally {
      leading.abort();
      renewStop.abort();
      await renewing;
      clearTimeout(watchdog);
      clearTimeout(graceTimer);
      signal.removeEventListener('abort', stop);
      if (!lost) await this.release();
    }
    if (lost) throw new LeadershipLost();
  }

  /**
   * Renews until `signal` aborts (true) or renewal keeps failing past the renew deadline (false). Each attempt may take
   * only the time left before the deadline, so a hung request ends the lease in time.
   */
  private async renewLoop(signal: AbortSignal, renewed: () => void): Promise<boolean> {
    while (!signal.aborted) {
      await sleep(this.opts.retryPeriodMs, signal);
      if (signal.aborted) return true;
      const left = this.validForMs();
      if (left <= 0) return false;
      const attempt = AbortSignal.any([signal, AbortSignal.timeout(left)]);
      const sent = performance.now();
      if (await this.tryAcquireOrRenew(attempt)) {
        this.lastRenewAt = sent;
        renewed();
      } else if (signal.aborted) return true;
      else if (this.validForMs() <= 0) return false;
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
        }, signal);
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
