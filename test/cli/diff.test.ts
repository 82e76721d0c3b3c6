import { describe, expect, test } from 'bun:test';
import type { KubeObject } from '../../src/api/types.ts';
import { diffObjects, diffReport } from '../../src/cli/diff.ts';

const o = (kind: string, name: string, data: Record<string, unknown>, rv = '1'): KubeObject =>
  ({ apiVersion: 'v1', kind, metadata: { name, namespace: 'ns', resourceVersion: rv, uid: `u-${name}` }, ...data });

describe('kubedr diff', () => {
  const backup = [o('ConfigMap', 'kept', { data: { a: '1' } }), o('ConfigMap', 'gone', { data: {} }), o('Secret', 'db', { data: { password: 'b2xk' } }),
    o('Service', 'svc', { spec: { port: 80 }, status: { x: 1 } })];
  const live = [o('ConfigMap', 'kept', { data: { a: '1' } }, '7'), o('ConfigMap', 'new', { data: {} }), o('Secret', 'db', { data: { password: 'bmV3' } }, '9'),
    o('Service', 'svc', { spec: { port: 81 }, status: { x: 2 } }, '3')];
  const d = diffObjects(backup, live, () => true);

  test('deleted, added and changed by identity; server-set fields and status are no change', () => {
    expect(d.deleted).toEqual(['ConfigMap/ns/gone']);
    expect(d.added).toEqual(['ConfigMap/ns/new']);
    expect(d.changed).toEqual([
      { object: 'Secret/ns/db', fields: [{ path: 'data.password' }] },
      { object: 'Service/ns/svc', fields: [{ path: 'spec.port', before: '80', after: '81' }] },
    ]);
  });

  test('the report never prints a Secret\'s value', () => {
    const text = diffReport(d, 'namespace ns');
    expect(text).toContain('1 deleted since, 1 added since, 2 changed');
    expect(text).toContain('data.password: changed (value not shown)');
    expect(text).toContain('spec.port: 80 -> 81');
    expect(text).not.toContain('b2xk');
    expect(text).not.toContain('bmV3');
  });
});
