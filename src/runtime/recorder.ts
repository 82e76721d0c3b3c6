/**
 * @module Kubernetes Events on the objects they concern. A repeated event (same object, type, reason and message)
 * bumps `count` and `lastTimestamp` on the existing Event instead of creating another, as client-go's recorder does.
 * Messages are redacted. Recording never fails the caller: a lost event is logged.
 */
import { COMPONENT, EVENT } from '../api/group.ts';
import type { KubeEvent, KubeObject } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import type { Logger } from '../util/log.ts';
import { redact } from '../util/redact.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorder {
  event(obj: KubeObject, type: EventType, reason: string, message: string): Promise<void>;
}

interface Seen {
  name: string;
  namespace: string;
  count: number;
}

const MAX_MESSAGE = 1024;
const MAX_REMEMBERED = 4096;

export class ApiEventRecorder implements EventRecorder {
  private readonly seen = new Map<string, Seen>();

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
    private readonly instance: string,
  ) {}

  async event(obj: KubeObject, type: EventType, reason: string, rawMessage: string): Promise<void> {
    const message = redact(rawMessage).slice(0, MAX_MESSAGE);
    const namespace = obj.metadata.namespace ?? 'default';
    const key = [obj.metadata.uid, obj.metadata.name, type, reason, message].join('\u0000');
    const now = new Date().toISOString();
    try {
      const prev = this.seen.get(key);
      if (prev && (await this.bump(prev, now))) return;
      const name = `${obj.metadata.name}.${Date.now().toString(16)}${Math.floor(Math.random() * 0x1000).toString(16)}`;
      await this.client.create<KubeEvent>(EVENT, namespace, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion, kind: obj.kind, name: obj.metadata.name, namespace,
          uid: obj.metadata.uid, resourceVersion: obj.metadata.resourceVersion,
        },
        type, reason, message,
        count: 1, firstTimestamp: now, lastTimestamp: now,
        source: { component: COMPONENT },
        reportingComponent: COMPONENT, reportingInstance: this.instance,
      });
      this.remember(key, { name, namespace, count: 1 });
    } catch (err) {
      this.log.warn('could not record event', { err, reason, object: obj.metadata.name });
    }
  }

  /** Counts one more occurrence on the existing Event; false when that Event has expired. */
  private async bump(prev: Seen, now: string): Promise<boolean> {
    try {
      await this.client.patch(EVENT, prev.namespace, prev.name, { count: prev.count + 1, lastTimestamp: now });
      prev.count += 1;
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  private remember(key: string, seen: Seen): void {
    if (this.seen.size >= MAX_REMEMBERED) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    this.seen.set(key, seen);
  }
}
