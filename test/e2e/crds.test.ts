/** The CRDs as the real API server enforces them: required fields, defaults, minimums, columns, short names. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { apply, createNamespace, deleteNamespace, ensureCrds, getJson, kubectl } from '../support/e2e.ts';
import type { MetadataBackupPolicy } from '../../src/api/types.ts';

let ns: string;

beforeAll(() => {
  ensureCrds();
  ns = createNamespace('crds');
});
afterAll(() => deleteNamespace(ns));

const policy = (name: string, spec: string) => `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata: { name: ${name} }
spec:
${spec}`;

describe('required fields', () => {
  test.each([
    ['BackupLocation without bucketName', `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: no-bucket }
spec: { url: "https://s3.example.com", credentials: creds }`, 'spec.bucketName'],
    ['BackupLocation with an empty url', `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: empty-url }
spec: { url: "", bucketName: b1b, credentials: creds }`, 'spec.url'],
    ['policy without schedule', policy('no-schedule', '  destination: loc\n'), 'spec.schedule'],
    ['policy without destination', policy('no-dest', '  schedule: "*/10 * * * *"\n'), 'spec.destination'],
    ['record without snapshotId', `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupRecord
metadata: { name: mbr-x }
spec: { policy: p, backuploc: l }`, 'spec.snapshotId'],
    // pvcName is optional since a restore may ask for objects or a browse instead (the controller checks that one is given).
    ['restore without mbrName', `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataRestore
metadata: { name: mr-x }
spec: { pvcName: claim }`, 'spec.mbrName'],
    ['browse without its token Secret', `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataRestore
metadata: { name: mr-y }
spec: { mbrName: mbr-x, browse: { timeLimit: 1h } }`, 'spec.browse.tokenSecret'],
    ['retainNumBackups below 1', policy('keep-zero', '  destination: loc\n  schedule: "@daily"\n  retainNumBackups: 0\n'), 'spec.retainNumBackups'],
  ])('%s is rejected by the API server, naming the field', (_name, yaml, field) => {
    // --validate=false: the API server's schema must reject it, not only kubectl's client-side check.
    const r = kubectl(['apply', '--validate=false', '-n', ns, '-f', '-'], yaml);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(field);
  });
});

test('defaults are applied: etcdEndpoint, etcdCreds, retainNumBackups, suspend', () => {
  apply(policy('defaults', '  destination: loc\n  schedule: "*/10 * * * *"\n'), ns);
  const p = getJson<MetadataBackupPolicy>(['mbp', 'defaults', '-n', ns]);
  expect(p.spec).toMatchObject({
    etcdEndpoint: 'https://127.0.0.1:2379', etcdCreds: 'etcd-creds', retainNumBackups: 120, suspend: false,
  });
});

test('a KubeDR manifest from its documentation applies unchanged', () => {
  apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata:
  name: test-backup
spec:
  destination: local-minio
  certsDir: /etc/kubernetes/pki
  etcdCreds: etcd-creds
  schedule: "*/10 * * * *"
  options:
    master-node-label-name: node-role.kubernetes.io/master
`, ns);
  expect(getJson<MetadataBackupPolicy>(['mbp', 'test-backup', '-n', ns]).spec.options).toEqual({
    'master-node-label-name': 'node-role.kubernetes.io/master',
  });
});

test('kubectl get shows the columns that matter, by short name', () => {
  const r = kubectl(['get', 'mbp', '-n', ns]);
  expect(r.code).toBe(0);
  const header = r.stdout.split('\n')[0]!;
  for (const col of ['NAME', 'SCHEDULE', 'SUSPENDED', 'LAST STATUS', 'LAST BACKUP', 'SNAPSHOT', 'AGE']) expect(header).toContain(col);
  for (const short of ['bl', 'mbr', 'mr']) expect(kubectl(['get', short, '-n', ns]).code).toBe(0);
});

test('status is a subresource: a spec update cannot write status', () => {
  apply(policy('sub', '  destination: loc\n  schedule: "@daily"\n'), ns);
  const r = kubectl(['patch', 'mbp', 'sub', '-n', ns, '--type', 'merge', '-p', '{"status":{"backupStatus":"Completed"}}']);
  expect(r.code).toBe(0);
  expect(getJson<MetadataBackupPolicy>(['mbp', 'sub', '-n', ns]).status?.backupStatus).toBeUndefined();
});
