import { describe, expect, test } from 'bun:test';
import type { KubeObject } from '../../src/api/types.ts';
import { fieldChanges, objectKey, resolveKind, userFields } from '../../src/kube/all-objects.ts';
import { planRestore, remapOwners } from '../../src/kube/restore-plan.ts';

const obj = (kind: string, name: string, extra: Partial<KubeObject['metadata']> = {}, apiVersion = 'v1', more: Record<string, unknown> = {}): KubeObject =>
  ({ apiVersion, kind, metadata: { name, namespace: kind === 'Namespace' ? undefined : 'shop', uid: `uid-${kind}-${name}`, ...extra }, ...more });

describe('planRestore', () => {
  const dep = obj('Deployment', 'web', {}, 'apps/v1');
  const rs = obj('ReplicaSet', 'web-1', { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: 'uid-Deployment-web', controller: true }] }, 'apps/v1');
  const pod = obj('Pod', 'web-1-a', { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-1', uid: 'uid-ReplicaSet-web-1', controller: true }] });
  const orphanPod = obj('Pod', 'x', { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'gone', uid: 'uid-gone', controller: true }] });
  const token = obj('Secret', 'default-token-abc', {}, 'v1', { type: 'kubernetes.io/service-account-token' });
  const plan = planRestore([pod, token, dep, obj('ConfigMap', 'c'), rs, obj('Namespace', 'shop'), orphanPod,
    obj('CustomResourceDefinition', 'w.example.com', {}, 'apiextensions.k8s.io/v1')]);

  test('namespaces first, then CRDs, then what others refer to, then the rest', () => {
    expect(plan.map((p) => p.object.kind)).toEqual(['Namespace', 'CustomResourceDefinition', 'Secret', 'ConfigMap', 'Deployment', 'Pod', 'Pod', 'ReplicaSet']);
  });

  test('what a restored controller makes again, and ServiceAccount tokens, are skipped with the reason', () => {
    const skip = Object.fromEntries(plan.map((p) => [p.key, p.skip]));
    expect(skip['ReplicaSet.apps/shop/web-1']).toBe('made again by its Deployment web, restored too');
    expect(skip['Pod/shop/web-1-a']).toBe('made again by its ReplicaSet web-1, restored too');
    expect(skip['Secret/shop/default-token-abc']).toContain('token controller');
    expect(skip['Pod/shop/x']).toBeUndefined();
    expect(skip['Deployment.apps/shop/web']).toBeUndefined();
  });
});

describe('remapOwners', () => {
  test('an owner found gets its uid now; one found nowhere is dropped and named', () => {
    const o = obj('ConfigMap', 'c', { ownerReferences: [
      { apiVersion: 'v1', kind: 'ConfigMap', name: 'here', uid: 'old-1' }, { apiVersion: 'v1', kind: 'ConfigMap', name: 'gone', uid: 'old-2' }] });
    const r = remapOwners(o, (kind, name) => (name === 'here' ? 'new-1' : undefined));
    expect(r.ownerReferences).toEqual([{ apiVersion: 'v1', kind: 'ConfigMap', name: 'here', uid: 'new-1' }]);
    expect(r.dropped).toEqual(['ConfigMap/gone']);
    expect(remapOwners(obj('ConfigMap', 'd'), () => undefined)).toEqual({ ownerReferences: undefined, dropped: [] });
  });
});

describe('objects as a user wrote them', () => {
  test('server-set metadata, status of a status subresource and a Service\'s cluster IPs go; the rest stays', () => {
    const svc = obj('Service', 's', { resourceVersion: '9', creationTimestamp: 'x', managedFields: [] } as never, 'v1',
      { spec: { clusterIP: '10.0.0.7', clusterIPs: ['10.0.0.7'], ports: [{ port: 80 }] }, status: { loadBalancer: {} } });
    expect(userFields(svc, { statusSubresource: true })).toEqual({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'shop' },
      spec: { ports: [{ port: 80 }] } } as KubeObject);
    const headless = obj('Service', 'h', {}, 'v1', { spec: { clusterIP: 'None' } });
    expect((userFields(headless, undefined) as unknown as { spec: unknown }).spec).toEqual({ clusterIP: 'None' });
  });

  test('field changes by path; identical objects have none', () => {
    expect(fieldChanges({ a: { b: 1, c: [1, 2] }, d: 'x' }, { a: { b: 2, c: [1, 3] }, e: 'y' })).toEqual([
      { path: 'a.b', before: 1, after: 2 }, { path: 'a.c[1]', before: 2, after: 3 }, { path: 'd', before: 'x', after: undefined },
      { path: 'e', before: undefined, after: 'y' }]);
    expect(fieldChanges({ a: [1] }, { a: [1] })).toEqual([]);
  });

  test('keys tell kinds of different groups apart; kinds resolve as kubectl spells them', () => {
    expect(objectKey(obj('Deployment', 'web', {}, 'apps/v1'))).toBe('Deployment.apps/shop/web');
    expect(objectKey(obj('Namespace', 'shop'))).toBe('Namespace/shop');
    const deploy = { ref: { group: 'apps', version: 'v1', kind: 'Deployment', plural: 'deployments' }, namespaced: true, statusSubresource: true,
      names: ['deployments', 'deployment', 'deploy', 'deployments.apps', 'deployment.apps', 'deploy.apps'] };
    for (const t of ['deploy', 'Deployment', 'deployments.apps']) expect(resolveKind([deploy], t)).toBe(deploy);
    expect(resolveKind([deploy], 'gizmo')).toBeUndefined();
  });
});
