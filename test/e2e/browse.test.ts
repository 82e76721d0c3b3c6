/**
 * Bring back one thing, as a user does it: a backup taken by the controller, served read-only with `kubedr browse`
 * (a throwaway etcd and the node's own kube-apiserver binary), read with kubectl, compared with the damaged live
 * cluster by `kubedr diff`, and the lost namespace, CRD with its objects and overwritten Secret put back by `kubedr
 * restore-objects`, compared field by field with the objects as they were.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { startExtraApiserver, startExtraEtcd, stopExtra } from '../../scripts/cluster/node.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KubeObject } from '../../src/api/types.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { userFields } from '../../src/kube/all-objects.ts';
import {
  ControllerProcess, kubedrCli, type Run, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, eventually,
  etcdctl, getJson, kubectl, locationInit, locationSecretYaml, locationYaml, policyYaml, repoRoot, resticAt, uniqueBucket,
} from '../support/e2e.ts';

let ns: string;
let controller: ControllerProcess;
let work: string;
let bucket: string;
let credentialsFile: string;
const suffix = crypto.randomUUID().slice(0, 6);
const shop = `shop-${suffix}`;
const vault = `vault-${suffix}`;
const group = `browse${suffix}.example.com`;
const crd = `widgets.${group}`;
const session = ['--name', `e2e-${suffix}`];
const password = `pw-${crypto.randomUUID()}`;
type List = { items: (KubeObject & Record<string, unknown>)[] };

const kubedr = kubedrCli;
const from = () => ['--from', 'latest', '--policy', 'p', '--url', cluster().s3Url, '--bucket', bucket, '--credentials', credentialsFile,
  '--kube-apiserver', join(cluster().bin, 'kube-apiserver')];

function shopYaml(): string {
  const docs = [`apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${shop}\n  labels: {team: shop}`];
  for (let i = 0; i < 1000; i++) docs.push(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-${i}, namespace: ${shop}, labels: {n: "${i}"}}\ndata: {k: "value-${i}"}`);
  for (let i = 0; i < 20; i++) docs.push(`apiVersion: v1\nkind: Secret\nmetadata: {name: s-${i}, namespace: ${shop}}\nstringData: {token: "secret-${i}"}`);
  for (let i = 0; i < 10; i++) docs.push(`apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa-${i}, namespace: ${shop}}`);
  for (let i = 0; i < 5; i++) {
    docs.push(`apiVersion: v1\nkind: Service\nmetadata: {name: svc-${i}, namespace: ${shop}}\nspec: {ports: [{port: 80}], selector: {app: web-${i}}}`);
    docs.push(`apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web-${i}, namespace: ${shop}}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web-${i}}}\n` +
      `  template:\n    metadata: {labels: {app: web-${i}}}\n    spec: {containers: [{name: c, image: k8s.gcr.io/pause:3.4.1}]}`);
  }
  docs.push(`apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: reader, namespace: ${shop}}\nrules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]`);
  docs.push(`apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: reader, namespace: ${shop}}\n` +
    `roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}\nsubjects: [{kind: ServiceAccount, name: sa-0, namespace: ${shop}}]`);
  docs.push(`apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: pdb, namespace: ${shop}}\nspec: {minAvailable: 1, selector: {matchLabels: {app: web-0}}}`);
  docs.push(`apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: ${shop}}\nspec: {podSelector: {}}`);
  docs.push(`apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: ${shop}}\nspec: {hard: {pods: "50"}}`);
  docs.push(`apiVersion: v1\nkind: LimitRange\nmetadata: {name: l, namespace: ${shop}}\nspec: {limits: [{type: Container, default: {memory: 64Mi}}]}`);
  docs.push(`apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: h, namespace: ${shop}}\n` +
    'spec: {maxReplicas: 2, scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web-0}}');
  docs.push(`apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: ${shop}}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}, storageClassName: none}`);
  return docs.join('\n---\n');
}

function crdYaml(): string {
  return `apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: ${crd}}\nspec:\n  group: ${group}\n  scope: Namespaced\n` +
    '  names: {plural: widgets, singular: widget, kind: Widget}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n' +
    '    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {size: {type: integer}}}}}}\n';
}
const widgetsYaml = (n: string, count: number) => Array.from({ length: count }, (_, i) =>
  `apiVersion: ${group}/v1\nkind: Widget\nmetadata: {name: w-${i}, namespace: ${n}}\nspec: {size: ${i}}`).join('\n---\n');

/** The objects as a user wrote them, for comparison after a restore. */
const written = (o: KubeObject & Record<string, unknown>) => {
  const u = userFields(o, { statusSubresource: true }) as KubeObject & Record<string, unknown>;
  delete u.status;
  return u;
};

let before: Record<'shop' | 'widgets' | 'db', List>;
/** Kinds no controller writes to after creation: equal to the last field between the live cluster and the browse. */
const STILL = 'configmaps,roles,rolebindings,networkpolicies,limitranges,poddisruptionbudgets';
let still: List;

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('browse');
  work = mkdtempSync(join(tmpdir(), 'browse-e2e-'));
  bucket = uniqueBucket('browse');
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds', null));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  apply(policyYaml(ns, 'p'));
  credentialsFile = join(work, 's3-creds.yaml');
  writeFileSync(credentialsFile, kubectl(['get', 'secret', 's3-creds', '-n', ns, '-o', 'yaml']).stdout, { mode: 0o600 });
  apply(crdYaml());
  await eventually(() => expect(kubectl(['get', `widgets.${group}`, '-A']).code).toBe(0), 30_000);
  apply(shopYaml());
  apply(`apiVersion: v1\nkind: Namespace\nmetadata: {name: ${vault}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: ${vault}}\nstringData: {password: "the-right-one"}`);
  apply(widgetsYaml(shop, 10));
  apply(widgetsYaml(vault, 5));
  controller = await ControllerProcess.start(ns, ['--location-wait', '3s']);
  await locationInit(ns, 'loc', 'Completed');
  before = {
    shop: getJson<List>(['configmaps,secrets,serviceaccounts,services,deployments,roles,rolebindings,networkpolicies,resourcequotas,limitranges', '-n', shop]),
    widgets: getJson<List>([`widgets.${group}`, '-A']),
    db: getJson<List>(['secrets', '-n', vault, '--field-selector', 'metadata.name=db']),
  };
  still = getJson<List>([STILL, '-n', shop]);
  // The backup holds what the cluster's controllers made of it too: each Deployment's ReplicaSet (restore-objects skips
  // those, saying the Deployment makes them again). On a busy node the controller-manager makes them seconds later.
  await eventually(() => expect(getJson<List>(['replicasets', '-n', shop]).items).toHaveLength(5), 60_000);
  await backupNow(ns, 'p', 120_000);
}, 240_000);

afterAll(async () => {
  await kubedr(['browse', '--stop', ...session]);
  await controller?.stop();
  deleteNamespace(ns);
  for (const n of [shop, vault]) kubectl(['delete', 'namespace', n, '--wait=false']);
  kubectl(['delete', 'crd', crd, '--wait=false']);
  rmSync(work, { recursive: true, force: true });
});

/** Every object of `before` is back with the fields the user set (ServiceAccount tokens aside: new ones are issued). */
function compareRestored(): void {
  const after = {
    shop: getJson<List>(['configmaps,secrets,serviceaccounts,services,deployments,roles,rolebindings,networkpolicies,resourcequotas,limitranges', '-n', shop]),
    widgets: getJson<List>([`widgets.${group}`, '-A']),
    db: getJson<List>(['secrets', '-n', vault, '--field-selector', 'metadata.name=db']),
  };
  const byKey = (l: List) => new Map(l.items.map((o) => [`${o.kind}/${o.metadata.name}`, o]));
  for (const k of ['shop', 'widgets', 'db'] as const) {
    const now = byKey(after[k]);
    for (const [key, o] of byKey(before[k])) {
      // ServiceAccount token Secrets are new (the token controller's), and so is each ServiceAccount's list of them.
      if ((o as { type?: string }).type === 'kubernetes.io/service-account-token') continue;
      const n = now.get(key);
      expect(n, key).toBeDefined();
      const [w, g] = [written(o), written(n!)];
      if (o.kind === 'ServiceAccount') {
        delete w.secrets;
        delete g.secrets;
      }
      // A Service's cluster IP is the server's choice; everything else is what the user set.
      if (o.kind === 'Service') {
        for (const spec of [w.spec, g.spec] as Record<string, unknown>[]) {
          delete spec.clusterIP;
          delete spec.clusterIPs;
        }
      }
      expect(g, key).toEqual(w);
    }
  }
}

let browseKubeconfig: string;
const viaBrowse = (args: string[]) => kubectl(['--kubeconfig', browseKubeconfig, ...args]);

describe('kubedr browse', () => {
  test('serves the backup: kubectl lists the same objects with the same content as the cluster had', async () => {
    const started = performance.now();
    const r = await kubedr(['browse', ...from(), ...session, '--detach']);
    expect(r.stderr).toContain('serving at https://127.0.0.1:');
    expect(r.code).toBe(0);
    console.log(`kubedr browse --from latest: answering after ${((performance.now() - started) / 1000).toFixed(1)} s`);
    browseKubeconfig = r.stdout.trim();
    const cmp = (args: string[], want: List) => {
      const got = JSON.parse(viaBrowse(['get', ...args, '-o', 'json']).stdout) as List;
    console.log(`compared ${got.items.length} objects (${args[0]}) between the browse and the cluster at backup time`);
      expect(got.items.length).toBe(want.items.length);
      // Same etcd data, same API server code: every field is equal, uid and resourceVersion included.
      expect(got.items).toEqual(want.items);
    };
    cmp([STILL, '-n', shop], still);
    cmp([`widgets.${group}`, '-A'], before.widgets);
    expect(viaBrowse(['get', 'secret', 'db', '-n', vault, '-o', 'jsonpath={.data.password}']).stdout).toBe(btoa('the-right-one'));
  }, 240_000);

  test('it is read-only, and its kubeconfig is the same for the next command', async () => {
    const w = viaBrowse(['create', 'configmap', 'x', '-n', shop]);
    expect(w.code).not.toBe(0);
    expect(w.stderr).toContain('forbidden');
    expect((await kubedr(['browse', '--kubeconfig', ...session])).stdout.trim()).toBe(browseKubeconfig);
  });
});

describe('after damage: a namespace and a CRD deleted, a Secret overwritten', () => {
  beforeAll(async () => {
    kubectl(['delete', 'crd', crd]);
    kubectl(['delete', 'namespace', shop]);
    apply(`apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: ${vault}}\nstringData: {password: "overwritten"}`);
    await eventually(() => expect(kubectl(['get', 'namespace', shop]).code).not.toBe(0), 120_000, 1000);
  }, 180_000);

  test('kubedr diff lists exactly what was deleted and changed, without Secret values', async () => {
    const r = await kubedr(['diff', ...session, '-n', vault, '--json']);
    expect(r.code).toBe(0);
    const d = JSON.parse(r.stdout) as { deleted: string[]; added: string[]; changed: { object: string; fields: { path: string }[] }[] };
    expect(d.deleted.sort()).toEqual(Array.from({ length: 5 }, (_, i) => `Widget.${group}/${vault}/w-${i}`).sort());
    expect(d.changed.map((c) => c.object)).toContain(`Secret/${vault}/db`);
    // kubectl apply keeps what it applied in an annotation: changed too, and as much a secret as the data.
    expect(d.changed.find((c) => c.object === `Secret/${vault}/db`)!.fields.map((x) => x.path))
      .toEqual(['data.password', 'metadata.annotations.kubectl.kubernetes.io/last-applied-configuration']);
    const shopDiff = JSON.parse((await kubedr(['diff', ...session, '-n', shop, '--json'])).stdout) as { deleted: string[]; added: string[] };
    expect(shopDiff.added).toEqual([]);
    expect(shopDiff.deleted).toContain(`Namespace/${shop}`);
    expect(shopDiff.deleted).toContain(`ConfigMap/${shop}/cm-999`);
    expect(shopDiff.deleted.length).toBeGreaterThanOrEqual(1050);
    const text = await kubedr(['diff', ...session, '-n', vault]);
    expect(text.stdout).toContain('data.password: changed (value not shown)');
    for (const secret of ['overwritten', 'the-right-one']) {
      expect(text.stdout + text.stderr).not.toContain(secret);
      expect(text.stdout + text.stderr).not.toContain(btoa(secret));
    }
  }, 120_000);

  test('kubedr restore-objects brings them back as they were, in every field the user set', async () => {
    const dry = await kubedr(['restore-objects', ...session, '--crd', crd, '--dry-run']);
    if (dry.code !== 0) console.log(dry.stdout, dry.stderr);
    expect(dry.code).toBe(0);
    expect(kubectl(['get', 'crd', crd]).code).not.toBe(0);
    const c = await kubedr(['restore-objects', ...session, '--crd', crd]);
    if (c.code !== 0) console.log(c.stdout, c.stderr);
    expect(c.stdout).toContain(`created   CustomResourceDefinition.apiextensions.k8s.io/${crd}`);
    // The namespace of some of its objects is gone too: it comes along, from the backup.
    expect(c.stdout).toContain(`created   Namespace/${shop}`);
    expect(c.code).toBe(0);
    const t0 = performance.now();
    const s = await kubedr(['restore-objects', ...session, '-n', shop]);
    console.log(`kubedr restore-objects -n ${shop}: ${s.stdout.trim().split('\n').at(-1)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    if (s.code !== 0) console.log(s.stdout, s.stderr);
    if (s.code !== 0) console.log(s.stdout, s.stderr);
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/skipped   ReplicaSet\.apps\/.*made again by its Deployment/);
    expect(s.stdout).toContain(`exists    Widget.${group}/${shop}/w-0`);
    const db = await kubedr(['restore-objects', ...session, '-n', vault, 'secret/db']);
    expect(db.stdout).toContain('exists');
    expect((await kubedr(['restore-objects', ...session, '-n', vault, 'secret/db', '--overwrite'])).stdout).toContain(`replaced  Secret/${vault}/db`);

    await eventually(() => compareRestored(), 60_000, 2000);
  }, 240_000);


  test('bad input is a plain error and changes nothing; --stop removes everything', async () => {
    const nope = await kubedr(['restore-objects', ...session, '-n', 'never-existed']);
    expect(nope.code).toBe(EXIT.usage);
    expect(nope.stderr).toContain('the backup holds nothing of namespace never-existed');
    expect(kubectl(['get', 'namespace', 'never-existed']).code).not.toBe(0);
    const kind = await kubedr(['restore-objects', ...session, '-n', shop, 'gizmo/x']);
    expect(kind.stderr).toContain('"gizmo" is no kind the backup knows');
    const stopped = await kubedr(['browse', '--stop', ...session]);
    expect(stopped.stderr).toContain('stopped');
    expect(existsSync(browseKubeconfig)).toBe(false);
    expect(readdirSync(join(browseKubeconfig, '../..')).filter((f) => f.includes(`e2e-${suffix}`))).toEqual([]);
    const gone = await kubedr(['diff', ...session]);
    expect(gone.code).toBe(EXIT.notFound);
    expect(gone.stderr).toContain(`no browse named "e2e-${suffix}" is running`);
  }, 60_000);
});

describe('Secrets encrypted at rest (aescbc)', () => {
  const encConfig = (key: string) => `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n` +
    `    providers:\n      - aescbc:\n          keys:\n            - name: ${key}\n              secret: ${randomBytes(32).toString('base64')}\n      - identity: {}\n`;
  let snapshot: string;
  let config: string;
  const name = ['--name', `enc-${suffix}`];
  const api = () => ['--kube-apiserver', join(cluster().bin, 'kube-apiserver')];

  beforeAll(async () => {
    // A cluster of its own (etcd and API server) that encrypts Secrets, as a user's would with this config.
    config = join(work, 'enc', 'config.yaml');
    mkdirSync(join(work, 'enc'));
    writeFileSync(config, encConfig('key1'), { mode: 0o600 });
    const etcd = await startExtraEtcd(cluster(), `enc-etcd-${suffix}`);
    const kc = await startExtraApiserver(cluster(), `enc-api-${suffix}`, etcd, [`--encryption-provider-config=${config}`]);
    const r = kubectl(['--kubeconfig', kc, 'create', 'secret', 'generic', 'db', '-n', 'default', '--from-literal=password=kept-secret']);
    expect(r.stderr).toBe('');
    const stored = etcdctl(['get', '/registry/secrets/default/db', '--print-value-only'], etcd);
    expect(stored.stdout.startsWith('k8s:enc:aescbc:v1:key1:')).toBe(true);
    mkdirSync(join(work, 'snap'));
    snapshot = join(work, 'snap', 'etcd-snapshot.db');
    expect(etcdctl(['snapshot', 'save', snapshot], etcd).code).toBe(0);
    await stopExtra(cluster(), `enc-api-${suffix}`);
    await stopExtra(cluster(), `enc-etcd-${suffix}`);
  }, 180_000);

  test('without the key: refused in words, nothing left running', async () => {
    const r = await kubedr(['browse', '--snapshot', snapshot, ...api(), ...name]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('the backup\'s Secrets are encrypted at rest with aescbc key "key1" and the backup holds no EncryptionConfiguration');
    const other = join(work, 'enc', 'other.yaml');
    writeFileSync(other, encConfig('key7'));
    const wrong = await kubedr(['browse', '--snapshot', snapshot, '--encryption-config', other, ...api(), ...name]);
    expect(wrong.stderr).toContain('does not hold (its aescbc keys: key7)');
    expect((await kubedr(['browse', '--kubeconfig', ...name])).code).toBe(EXIT.notFound);
  }, 120_000);

  test('with the config: kubectl reads the Secret\'s value', async () => {
    const r = await kubedr(['browse', '--snapshot', snapshot, '--encryption-config', config, ...api(), ...name, '--detach']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`Secrets decrypted with ${config}`);
    const got = kubectl(['--kubeconfig', r.stdout.trim(), 'get', 'secret', 'db', '-n', 'default', '-o', 'jsonpath={.data.password}']);
    expect(got.stdout).toBe(btoa('kept-secret'));
    // The owner killed outright (kill -9): the next --stop still ends its etcd and API server and removes its files.
    const dir = join(r.stdout.trim(), '..');
    const children = readFileSync(join(dir, 'children.pid'), 'utf8').trim().split('\n').map(Number);
    process.kill(Number(readFileSync(join(dir, 'owner.pid'), 'utf8')), 'SIGKILL');
    expect((await kubedr(['browse', '--stop', ...name])).stderr).toContain('was running');
    await eventually(() => expect(children.filter((p) => existsSync(`/proc/${p}`) && !readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z '))).toEqual([]), 15_000);
    expect(existsSync(dir)).toBe(false);
  }, 120_000);
});

describe('a kube-apiserver of another minor version than the backed-up cluster', () => {
  type Snap = { id: string; short_id: string; tags: string[] };
  const snapshots = () => JSON.parse(resticAt(bucket, password, ['snapshots', '--json', '--no-lock']).stdout) as Snap[];

  test('each backup records the cluster\'s version; a backup of another minor is refused before anything is served', async () => {
    const live = JSON.parse(kubectl(['version', '-o', 'json']).stdout).serverVersion.gitVersion as string;
    const taken = snapshots().find((x) => x.tags[0] === 'p')!;
    expect(taken.tags).toContain(`kubedr-kubernetes=${live}`);
    // Only this release's binaries exist here, so the other cluster's backup is this one with its recorded version
    // changed (restic rewrites the snapshot under a new ID): a backup of a v1.<minor+1> cluster as the repository says.
    const [major, minor] = live.replace(/^v/, '').split('.').map(Number) as [number, number];
    const newer = `v${major}.${minor + 1}.0`;
    const retag = resticAt(bucket, password, ['tag', '--remove', `kubedr-kubernetes=${live}`, '--add', `kubedr-kubernetes=${newer}`, taken.id]);
    expect(retag.code).toBe(0);
    const other = snapshots().find((x) => x.tags.includes(`kubedr-kubernetes=${newer}`))!;
    const at = ['--url', cluster().s3Url, '--bucket', bucket, '--credentials', credentialsFile, '--kube-apiserver', join(cluster().bin, 'kube-apiserver')];
    const name = ['--name', `skew-${suffix}`];

    const r = await kubedr(['browse', '--from', other.short_id, ...at, ...name, '--detach']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain(`the backup is of a cluster at Kubernetes ${newer}, the kube-apiserver given is ${live}`);
    expect(r.stderr).toContain(`Give a kube-apiserver of v${major}.${minor + 1}.x with --kube-apiserver`);
    expect(r.stderr).not.toContain(password);
    // Refused from the snapshot's tags, before its files were fetched from S3.
    expect(r.stderr).not.toContain('restoring snapshot');
    // Nothing is left: no browse to find, no restored copy of the backup on disk.
    expect((await kubedr(['browse', '--kubeconfig', ...name])).code).toBe(EXIT.notFound);
    expect(readdirSync(join(tmpdir(), `kubedr-browse-${process.getuid!()}`)).filter((f) => f.startsWith(`skew-${suffix}`))).toEqual([]);

    const skewed = await kubedr(['browse', '--from', other.short_id, ...at, ...name, '--detach', '--allow-version-skew']);
    expect(skewed.code).toBe(0);
    expect(skewed.stderr).toContain('will be missing or fail to decode (--allow-version-skew)');
    expect(skewed.stderr).toContain(`restoring snapshot ${other.short_id}`);
    expect((await kubedr(['browse', '--stop', ...name])).code).toBe(0);
  }, 180_000);
});
