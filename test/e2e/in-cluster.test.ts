/**
 * In-cluster credentials: the controller runs with no kubeconfig, as in a pod. What a pod has is played openly (there
 * is no kubelet here): a private mount namespace puts the ServiceAccount's token (from the TokenRequest API), the cluster
 * CA and the namespace at /var/run/secrets/kubernetes.io/serviceaccount, and KUBERNETES_SERVICE_HOST/PORT are set.
 * The ServiceAccount holds only the Role below, so this also proves that Role is enough for the controller to start and
 * serve BackupLocations.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackupLocation } from '../../src/api/types.ts';
import { ControllerProcess, apply, cluster, createNamespace, deleteNamespace, ensureCrds, eventually, getJson, kubectl,
  locationSecretYaml, locationYaml, uniqueBucket } from '../support/e2e.ts';

let ns: string;
let dir: string;
let controller: ControllerProcess | undefined;

const role = (namespace: string) => `apiVersion: v1
kind: ServiceAccount
metadata: { name: kubedr, namespace: ${namespace} }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: kubedr, namespace: ${namespace} }
rules:
- apiGroups: [kubedr.catalogicsoftware.com]
  resources: [backuplocations, metadatabackuppolicies]
  verbs: [get, list, watch]
- apiGroups: [kubedr.catalogicsoftware.com]
  resources: [metadatabackuprecords]
  verbs: [get, list, watch, create, delete, patch]
- apiGroups: [kubedr.catalogicsoftware.com]
  resources: [metadatarestores]
  verbs: [get, list, watch]
- apiGroups: [kubedr.catalogicsoftware.com]
  resources: [backuplocations/status, metadatabackuppolicies/status, metadatabackuprecords/status, metadatarestores/status]
  verbs: [get, patch, update]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: kubedr, namespace: ${namespace} }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: kubedr }
subjects:
- { kind: ServiceAccount, name: kubedr, namespace: ${namespace} }
`;

beforeAll(() => {
  ensureCrds();
  ns = createNamespace('incluster');
  dir = mkdtempSync(join(tmpdir(), 'incluster-'));
  apply(role(ns));
  apply(locationSecretYaml(ns, { name: 's3-creds', password: 'in-cluster-test-password' }));
});
afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
  rmSync(dir, { recursive: true, force: true });
});

test('with only the ServiceAccount a pod would have, the controller initialises a location', async () => {
  const token = kubectl(['create', 'token', 'kubedr', '-n', ns, '--duration', '1h']);
  expect(token.code).toBe(0);
  const sa = join(dir, 'sa');
  writeFileSync(join(dir, 'token'), token.stdout.trim());
  writeFileSync(join(dir, 'namespace'), ns);
  const saDir = '/run/secrets/kubernetes.io/serviceaccount';
  // tmpfs over /run exists only in this process's mount namespace: the host's /run is untouched.
  const prefix = ['unshare', '--mount', 'sh', '-c',
    `mount -t tmpfs tmpfs /run && mkdir -p ${saDir} && cp ${join(dir, 'token')} ${join(dir, 'namespace')} ${saDir}/ && ` +
    `cp ${join(cluster().pki, 'ca.crt')} ${saDir}/ca.crt && exec "$@"`, 'sh'];
  const port = new URL(cluster().apiserverUrl).port;
  controller = await ControllerProcess.start(ns, [], {
    kubeconfig: null, prefix,
    // No KUBECONFIG, and a HOME without ~/.kube: the only credentials are the ServiceAccount's.
    env: { PATH: process.env.PATH ?? '', HOME: sa, KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port },
  });

  apply(locationYaml(ns, 'in-cluster', { bucketName: uniqueBucket('sa'), credentials: 's3-creds' }));
  await eventually(() => {
    const l = getJson<BackupLocation>(['bl', 'in-cluster', '-n', ns]);
    if (l.status?.initStatus !== 'Completed') throw new Error(JSON.stringify(l.status));
  });
  await eventually(() => expect(kubectl(['get', 'events', '-n', ns]).stdout).toContain('InitSucceeded'));
  expect(controller.logs).not.toContain('Forbidden');
  expect(controller.logs).not.toContain('forbidden');
});
