/** @module Which informer updates deserve a reconcile. */
import type { KubeObject } from '../api/types.ts';

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * True for a resync (`old === obj`) and for changes a reconcile must see: spec (generation), labels, annotations,
 * finalizers, deletion. Our own status writes change none of these, so they do not loop back into the queue.
 */
export function specOrMetadataChanged(old: KubeObject, obj: KubeObject): boolean {
  if (old === obj) return true;
  const a = old.metadata;
  const b = obj.metadata;
  return a.generation !== b.generation || a.deletionTimestamp !== b.deletionTimestamp || !same(a.labels, b.labels) ||
    !same(a.annotations, b.annotations) || !same(a.finalizers, b.finalizers);
}
