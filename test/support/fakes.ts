/** @module Fake inputs for reconciler unit tests: an informer that is only a list of objects. */
import type { KubeObject } from '../../src/api/types.ts';
import type { Informer } from '../../src/runtime/informer.ts';

/** An informer's cache, as reconcilers read it (get by namespace/name, list), holding `objs`. */
export function fakeInformer<T extends KubeObject>(objs: T[]): Informer<T> {
  const key = (o: T) => `${o.metadata.namespace}/${o.metadata.name}`;
  return { get: (k: string) => objs.find((o) => key(o) === k), list: () => objs } as unknown as Informer<T>;
}
