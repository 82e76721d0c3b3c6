/**
 * @module Which of a backup's chosen objects to re-create, and in what order: the decisions of `kubedr
 * restore-objects` that need no API server, kept pure so each is tested alone.
 */
import type { KubeObject } from '../api/types.ts';
import { creationRank, objectKey } from './all-objects.ts';

export interface PlannedObject {
  object: KubeObject;
  key: string;
  /** Why it is not created, when it is not. */
  skip?: string;
}

const controllerOf = (o: KubeObject) => o.metadata.ownerReferences?.find((r) => r.controller);

/**
 * The objects in creation order (namespaces, CRDs, what others refer to, the rest), each either to create or skipped
 * with the reason:
 * - an object whose controller is being restored too (a Deployment's ReplicaSets and their Pods): the controller makes
 *   it again, with its own names and owner uids, and a copy would be a second one it does not own;
 * - a ServiceAccount token Secret: the token controller issues new ones, and an old token may have been revoked.
 */
export function planRestore(objects: KubeObject[]): PlannedObject[] {
  const uids = new Set(objects.map((o) => o.metadata.uid).filter(Boolean));
  return [...objects]
    .sort((a, b) => creationRank(a) - creationRank(b) || objectKey(a).localeCompare(objectKey(b)))
    .map((object) => {
      const key = objectKey(object);
      const owner = controllerOf(object);
      if (owner && uids.has(owner.uid)) return { object, key, skip: `made again by its ${owner.kind} ${owner.name}, restored too` };
      if (object.kind === 'Secret' && (object as KubeObject & { type?: string }).type === 'kubernetes.io/service-account-token') {
        return { object, key, skip: 'a ServiceAccount token: the token controller issues a new one' };
      }
      return { object, key };
    });
}

/**
 * Owner references of a copy: an owner restored in this run or present in the cluster keeps the reference, with the
 * owner's uid now (a new object's uid is new); a reference to an owner that exists nowhere is dropped, or the garbage
 * collector would delete the copy at once. Returns the references and those dropped.
 */
export function remapOwners(o: KubeObject, uidOf: (kind: string, name: string) => string | undefined):
  { ownerReferences?: KubeObject['metadata']['ownerReferences']; dropped: string[] } {
  const refs = o.metadata.ownerReferences;
  if (!refs?.length) return { ownerReferences: refs, dropped: [] };
  const kept = [];
  const dropped: string[] = [];
  for (const r of refs) {
    const uid = uidOf(r.kind, r.name);
    if (uid) kept.push({ ...r, uid });
    else dropped.push(`${r.kind}/${r.name}`);
  }
  return { ownerReferences: kept.length ? kept : undefined, dropped };
}
