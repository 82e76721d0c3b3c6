/**
 * A backup served in a pod by the cluster's own kube-apiserver image: `kubedr browse --in-cluster` (and a GitOps
 * browse that ends at its time limit), read with kubectl through the port-forward, and
 * MetadataRestore with spec.objects, end to end, as GitOps would do it: a namespace deleted by mistake is brought
 * back by applying one manifest. The controller (a real process) creates the pod; its init container downloads the
 * backup from S3 and builds the etcd data, the cluster's own kube-apiserver image serves it in the pod (discovered from
 * the kube-apiserver static pod when the node runs one, else given), and `kubedr restore-objects` re-creates the
 * objects in the live cluster as the ServiceAccount and ClusterRole the Helm chart makes for it (rendered from the
 * chart, applied as they are). Every object is compared with the object before its deletion, field by field.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { dump } from 'js-yaml';
import { APISERVER_IMAGE } from '../../scripts/cluster/static-pods.ts';
import { controlPlaneImages } from '../../scripts/cluster/static-control-plane.ts';
import { importImage } from '../../scripts/cluster/node.ts';
import { RESTORE_SUCCEEDED } from '../../src/api/events.ts';
import type { KubeObject, MetadataBackupPolicy, MetadataRestore } from '../../src/api/types.ts';
import { restorePodName } from '../../src/controllers/restore-pod.ts';
import { userFields } from '../../src/kube/all-objects.ts';
import {
  ControllerProcess, kubedrCli, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, events, eventually, getJson,
  kubectl, kubedrImage, locationInit, locationSecretYaml, locationYaml, policyYaml, uniqueBucket,
} from '../support/e2e.ts';
import { render } from '../support/helm.ts';

let ns: string;
let controller: ControllerProcess;
let taken: MetadataBackupPolicy;
let chartRbac: string;
const suffix = crypto.randomUUID().slice(0, 6);
const shop = `objshop-${suffix}`;
const password = `pw-${crypto.randomUUID()}`;
type List = { items: (KubeObject & Record<string, unknown>)[] };
const KINDS = 'configmaps,secrets,serviceaccounts,services,deployments,roles,rolebindings';
let before: List;

function shopYaml(): string {
  const docs = [`apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${shop}\n  labels: {team: shop}`];
  for (let i = 0; i < 40; i++) docs.push(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-${i}, namespace: ${shop}, labels: {n: "${i}"}}\ndata: {k: "value-${i}"}`);
  for (let i = 0; i < 5; i++) docs.push(`apiVersion: v1\nkind: Secret\nmetadata: {name: s-${i}, namespace: ${shop}}\nstringData: {token: "secret-${i}"}`);
  docs.push(`apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app, namespace: ${shop}}`);
  docs.push(`apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ${shop}}\nspec: {ports: [{port: 80}], selector: {app: web}}`);
  docs.push(`apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: ${shop}}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: web}}\n` +
    '  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: k8s.gcr.io/pause:3.4.1}]}');
  docs.push(`apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: reader, namespace: ${shop}}\nrules: [{apiGroups: [""], resources: [configmaps], verbs: [get, list]}]`);
  docs.push(`apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: reader, namespace: ${shop}}\n` +
    `roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}\nsubjects: [{kind: ServiceAccount, name: app, namespace: ${shop}}]`);
  return docs.join('\n---\n');
}

function restoreYaml(name: string, objects: Record<string, unknown>): string {
  return `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataRestore
metadata: { name: ${name}, namespace: ${ns} }
spec: { mbrName: ${taken.status!.mbrName}, objects: ${JSON.stringify(objects)} }
`;
}

async function finished(name: string, timeoutMs = 240_000): Promise<MetadataRestore> {
  return eventually(() => {
    const r = getJson<MetadataRestore>(['mr', name, '-n', ns]);
    if (r.status?.restoreStatus !== 'Completed' && r.status?.restoreStatus !== 'Failed') throw new Error(JSON.stringify(r.status));
    return r;
  }, timeoutMs, 1000);
}

/** What a user set on each object (no uid, resourceVersion, managedFields, status), keyed by kind/name. */
function userView(list: List): Record<string, unknown> {
  return Object.fromEntries(list.items
    // The token Secret of a ServiceAccount is made again by its controller, with another name.
    .filter((o) => !(o.kind === 'Secret' && (o as { type?: string }).type === 'kubernetes.io/service-account-token'))
    .map((o) => {
      const u = userFields(o, { statusSubresource: true }) as KubeObject & { secrets?: unknown };
      if (o.kind === 'ServiceAccount') delete u.secrets;
      return [`${o.kind}/${o.metadata.name}`, u];
    }));
}

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('objrestore');
  const bucket = uniqueBucket('objrestore');
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds', null));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  apply(policyYaml(ns, 'p', { verification: { mode: 'Never' } }));
  // The chart's ServiceAccount, ClusterRole and binding for these pods, as `helm install --set objectRestore.enabled=true` makes them.
  const chart = render(['--name', 'kubedr', '--namespace', ns, '--set', 'objectRestore.enabled=true']);
  chartRbac = chart.docs.filter((d) => d.metadata.name.includes('object-restore')).map((d) => dump(d)).join('---\n');
  apply(chartRbac);
  const account = chart.one('ServiceAccount', 'kubedr-object-restore').metadata.name;
  const args = chart.one('Deployment').spec.template.spec.containers[0].args as string[];
  expect(args).toContain(`--object-restore-service-account=${account}`);
  // The cluster's own kube-apiserver image, from its static pod; a node that runs it as a process has none to find.
  const staticPod = getJson<List>(['pods', '-n', 'kube-system', '-l', 'component=kube-apiserver']).items.length > 0;
  if (!staticPod) importImage(cluster(), controlPlaneImages(undefined).archives[1]!);
  controller = await ControllerProcess.start(ns, ['--location-wait', '3s', '--restore-image', kubedrImage(), '--restore-start-timeout', '120s',
    `--object-restore-service-account=${account}`, ...(staticPod ? [] : ['--kube-apiserver-image', APISERVER_IMAGE])]);
  await locationInit(ns, 'loc', 'Completed');
  apply(shopYaml());
  before = getJson<List>([KINDS, '-n', shop]);
  taken = await backupNow(ns, 'p', 120_000);
  expect(taken.status?.backupStatus).toBe('Completed');
}, 420_000);

afterAll(async () => {
  await controller?.stop();
  if (chartRbac) kubectl(['delete', '-f', '-', '--ignore-not-found', '--wait=false'], chartRbac);
  kubectl(['delete', 'namespace', shop, '--ignore-not-found', '--wait=false']);
  if (ns) await deleteNamespace(ns);
});

test('a deleted namespace comes back from a MetadataRestore with spec.objects: every object as it was, the pod gone after', async () => {
  kubectl(['delete', 'namespace', shop, '--wait=true', '--timeout=120s']);
  expect(kubectl(['get', 'namespace', shop]).code).not.toBe(0);

  const t0 = performance.now();
  apply(restoreYaml('bring-back', { namespace: shop }));
  const r = await finished('bring-back');
  console.log(`objects restore took ${((performance.now() - t0) / 1000).toFixed(1)} s: ${r.status?.objectsRestored}`);
  expect(r.status?.restoreErrorMessage).toBe('');
  expect(r.status?.restoreStatus).toBe('Completed');
  // The namespace, 40 ConfigMaps, 5 Secrets, the ServiceAccount, Service, Deployment, Role and RoleBinding (the token
  // Secret and the default ServiceAccount exist already or are made again by their controllers).
  expect(r.status?.objectsRestored).toMatch(/^5\d created/);
  expect(userView(getJson<List>([KINDS, '-n', shop]))).toEqual(userView(before));
  expect(getJson<KubeObject & { metadata: { labels?: Record<string, string> } }>(['namespace', shop]).metadata.labels?.team).toBe('shop');
  expect(events(ns, 'bring-back').filter((e) => e.reason === RESTORE_SUCCEEDED).map((e) => e.message))
    .toEqual([expect.stringMatching(/completed: objects 5\d created/)]);
  await eventually(() => expect(kubectl(['get', 'pod', restorePodName('bring-back'), '-n', ns]).code).not.toBe(0), 60_000);
}, 420_000);

test('chosen objects that exist are left alone and reported; an overwritten one is put back with overwrite', async () => {
  apply(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-1, namespace: ${shop}, labels: {n: "1"}}\ndata: {k: "changed by mistake"}`);
  apply(restoreYaml('keep', { namespace: shop, names: ['cm/cm-0', 'configmap/cm-1'] }));
  const kept = await finished('keep');
  expect(kept.status?.restoreStatus).toBe('Completed');
  expect(kept.status?.objectsRestored).toBe('2 exists');
  expect(getJson<{ data: Record<string, string> }>(['cm', 'cm-1', '-n', shop]).data.k).toBe('changed by mistake');

  apply(restoreYaml('put-back', { namespace: shop, names: ['configmap/cm-1'], overwrite: true }));
  const put = await finished('put-back');
  expect(put.status?.objectsRestored).toBe('1 replaced');
  expect(getJson<{ data: Record<string, string> }>(['cm', 'cm-1', '-n', shop]).data.k).toBe('value-1');
}, 420_000);

test('a namespace the backup never had: Failed with a plain reason, nothing created', async () => {
  apply(restoreYaml('nothing', { namespace: 'never-existed' }));
  const r = await finished('nothing');
  expect(r.status?.restoreStatus).toBe('Failed');
  expect(r.status?.restoreErrorMessage).toContain('the backup holds nothing of namespace never-existed');
  expect(kubectl(['get', 'namespace', 'never-existed']).code).not.toBe(0);
}, 420_000);

const kubedr = kubedrCli;
const names = (l: List) => l.items.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`).sort();

const session = ['--name', `incluster-${suffix}`];
afterAll(async () => {
  // A failed test above leaves its browse running: its port-forward, and the MetadataRestore until its time limit.
  await kubedr(['browse', '--stop', ...session]);
});

test('kubedr browse --in-cluster: the controller serves the backup in a pod; kubectl reads it through the port-forward, read-only; --stop removes it all', async () => {
  const t0 = performance.now();
  const r = await kubedr(['browse', '--in-cluster', '--record', taken.status!.mbrName!, '-n', ns, ...session, '--detach']);
  console.log(`in-cluster browse ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  expect(r.stderr).toContain('serving at https://127.0.0.1:');
  expect(r.code).toBe(0);
  const kubeconfig = r.stdout.trim();
  const browse = getJson<List>(['mr', '-n', ns]).items.find((m) => m.metadata.name.startsWith(`browse-incluster-${suffix}`))!;
  expect((browse as unknown as MetadataRestore).status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
  expect(events(ns, browse.metadata.name).map((e) => e.reason)).toContain('BrowseReady');

  // The backup's objects as the cluster had them (the namespace was brought back since: same names, same content).
  const served = JSON.parse(kubectl(['--kubeconfig', kubeconfig, 'get', KINDS, '-n', shop, '-o', 'json']).stdout) as List;
  expect(names(served)).toEqual(names(before));
  expect(userView(served)).toEqual(userView(before));
  const write = kubectl(['--kubeconfig', kubeconfig, 'create', 'configmap', 'nope', '-n', shop]);
  expect(write.code).not.toBe(0);
  expect(write.stderr).toContain('forbidden');
  // diff uses the running browse, as it uses a local one.
  apply(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-2, namespace: ${shop}, labels: {n: "2"}}\ndata: {k: "edited live"}`);
  const diff = await kubedr(['diff', '-n', shop, ...session]);
  expect(diff.stdout).toContain(`ConfigMap/${shop}/cm-2\n    data.k: changed (value not shown)`);
  expect(diff.stdout).not.toContain(`ConfigMap/${shop}/cm-1\n`);

  const stopped = await kubedr(['browse', '--stop', ...session]);
  expect(stopped.stderr).toContain('stopped');
  await eventually(() => expect(kubectl(['get', 'mr', browse.metadata.name, '-n', ns]).code).not.toBe(0), 60_000);
  await eventually(() => expect(getJson<List>(['secrets', '-n', ns]).items.map((s) => s.metadata.name).filter((n) => n.startsWith('kubedr-browse-'))).toEqual([]), 60_000);
  await eventually(() => expect(kubectl(['get', 'pod', restorePodName(browse.metadata.name), '-n', ns]).code).not.toBe(0), 60_000);
  expect(kubectl(['--kubeconfig', kubeconfig, 'get', 'ns']).code).not.toBe(0);
}, 420_000);

test('a browse asked for by a manifest ends at its time limit: Completed, pod gone', async () => {
  apply(`apiVersion: v1\nkind: Secret\nmetadata: {name: gitops-token, namespace: ${ns}}\nstringData: {token: "${crypto.randomUUID()}"}`);
  apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataRestore
metadata: { name: gitops-browse, namespace: ${ns} }
spec: { mbrName: ${taken.status!.mbrName}, browse: { tokenSecret: gitops-token, timeLimit: 45s } }
`);
  expect(kubectl(['wait', '--for=condition=Ready', 'mr/gitops-browse', '-n', ns, '--timeout=180s']).code).toBe(0);
  const r = await finished('gitops-browse', 240_000);
  expect(r.status?.restoreStatus).toBe('Completed');
  expect(r.status?.conditions?.find((c) => c.type === 'Complete')?.message).toBe('The browse ended: served until its time limit');
  await eventually(() => expect(kubectl(['get', 'pod', restorePodName('gitops-browse'), '-n', ns]).code).not.toBe(0), 60_000);
}, 420_000);
