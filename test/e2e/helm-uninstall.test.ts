/**
 * `helm uninstall` of the chart-installed controller, as installed: backups through the chart's pod, then the uninstall
 * done the way Helm does it, since there is no helm binary here (the chart is rendered with Helm's own template engine,
 * test/support/helm.ts): Helm creates the release's pre-delete hooks and waits for each to complete, deletes a hook
 * that succeeded (hook-delete-policy hook-succeeded), then deletes the release's other objects in the reverse of their
 * install order. The release's CRDs and the user's objects (locations, policies, records) are not part of the release:
 * Helm leaves them. Then a reinstall takes the records back, a second uninstall releases them again, and deleting the
 * namespace and the CRDs finishes within 2 minutes with every snapshot still in S3.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { ADOPTED_ANNOTATION, RECORD_FINALIZER } from '../../src/api/group.ts';
import type { KubeObject, MetadataBackupRecord } from '../../src/api/types.ts';
import {
  KUBEDR_CRDS, apply, backupNow, chartTestValues, createNamespace, deleteInstall, ensureCrds, etcdSecretYaml, eventually, getJson,
  kubectl, locationInit, locationSecretYaml, locationYaml, policyYaml, resticAt, uniqueBucket,
} from '../support/e2e.ts';
import { type Rendered, render } from '../support/helm.ts';

let ns: string;
let work: string;
let rendered: Rendered;
const bucket = uniqueBucket('uninstall');
const password = `uninstall-pw-${crypto.randomUUID()}`;

const records = () => getJson<{ items: MetadataBackupRecord[] }>(['mbr', '-n', ns]).items;
const holding = (rs: MetadataBackupRecord[]) => rs.filter((r) => r.metadata.finalizers?.includes(RECORD_FINALIZER)).map((r) => r.metadata.name);
/** The repository's snapshots, read without a lock (as a user checks a bucket), short IDs sorted. */
function snapshotIds(): string[] {
  const r = resticAt(bucket, password, ['snapshots', '--json', '--no-lock']);
  if (r.code !== 0) throw new Error(`restic snapshots failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { short_id: string }[]).map((s) => s.short_id).sort();
}
const controllerPods = () => kubectl(['get', 'pods', '-n', ns, '-l', 'app.kubernetes.io/component=controller', '-o', 'name']).stdout.trim();

/** helm install: what the release applies (not its hooks), and the controller's rollout. */
function helmInstall(): void {
  const r = kubectl(['apply', '-f', '-'], rendered.manifest);
  if (r.code !== 0) throw new Error(`kubectl apply of the chart failed: ${r.stderr}`);
  const rollout = kubectl(['rollout', 'status', 'deployment/kubedr', '-n', ns, '--timeout=180s']);
  if (rollout.code !== 0) throw new Error(`the controller did not roll out: ${rollout.stderr}`);
}

/** helm uninstall, in Helm's order (see the module comment). Returns the hook's output and how long Helm waited for it. */
function helmUninstall(): { output: string; hookSeconds: number } {
  const hooks = rendered.hooks('pre-delete');
  expect(hooks.map((h) => `${h.kind}/${h.metadata.name}`)).toEqual(['Job/kubedr-release-records']);
  const job = hooks[0]!.metadata.name;
  // before-hook-creation: a Job an earlier uninstall left is deleted first.
  kubectl(['delete', 'job', job, '-n', ns, '--ignore-not-found', '--wait=true']);
  const started = performance.now();
  apply(dump(hooks[0]));
  const done = kubectl(['wait', '--for=condition=complete', `job/${job}`, '-n', ns, '--timeout=180s']);
  const hookSeconds = (performance.now() - started) / 1000;
  const output = kubectl(['logs', `job/${job}`, '-n', ns]).stdout;
  if (done.code !== 0) {
    const status = kubectl(['get', 'job,pods', '-n', ns, '-o', 'wide']).stdout;
    throw new Error(`the pre-delete hook did not complete: ${done.stderr}\n${status}\nits output:\n${output}`);
  }
  // hook-succeeded: Helm deletes the Job, then the release's objects, last installed first.
  kubectl(['delete', 'job', job, '-n', ns, '--wait=true']);
  const objects = rendered.docs.filter((d) => !d.metadata.annotations?.['helm.sh/hook']).reverse();
  const removed = kubectl(['delete', '-f', '-', '--wait=true'], objects.map((d) => dump(d)).join('---\n'));
  if (removed.code !== 0) throw new Error(`deleting the release's objects failed: ${removed.stderr}`);
  return { output, hookSeconds };
}

beforeAll(() => {
  ensureCrds();
  ns = createNamespace('uninstall');
  work = mkdtempSync(join(tmpdir(), 'helm-uninstall-'));
  const values = join(work, 'values.yaml');
  // Its own metrics port: controller-pod.test.ts's install may still be going with its namespace.
  writeFileSync(values, dump(chartTestValues(18081)));
  rendered = render(['--name', 'kubedr', '--namespace', ns, '-f', values]);
  helmInstall();
}, 300_000);

afterAll(() => {
  deleteInstall(ns);
  rmSync(work, { recursive: true, force: true });
});

describe('helm uninstall', () => {
  let before: string[];

  test('installed: backups through the chart\'s pod make records that hold the forget finalizer', async () => {
    apply(locationSecretYaml(ns, { name: 's3-creds', password }));
    apply(etcdSecretYaml(ns, 'etcd-creds'));
    apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
    await locationInit(ns, 'loc', 'Completed');
    apply(policyYaml(ns, 'daily', { retainNumBackups: 5 }));
    for (let i = 0; i < 2; i++) expect((await backupNow(ns, 'daily', 90_000)).status?.backupStatus).toBe('Completed');
    await eventually(() => expect(holding(records()).length).toBe(2));
    before = snapshotIds();
    expect(before.length).toBe(2);
  }, 240_000);

  test('the pre-delete hook stops the controller and releases every record, saying so; the snapshots stay in S3', () => {
    const held = records();
    const { output, hookSeconds } = helmUninstall();
    console.log(`pre-delete hook: ${hookSeconds.toFixed(1)} s; its output:\n${output}`);
    expect(output).toContain('deployment/kubedr scaled to 0: the controller stops');
    for (const r of held) expect(output).toContain(`released ${r.metadata.name} (loc, snapshot ${r.spec.snapshotId}): its snapshot stays in S3`);
    expect(output).toContain(`2 MetadataBackupRecord(s) in namespace ${ns} released`);
    // Helm's objects are gone; the user's stay, and nothing holds a finalizer that no one serves any more.
    expect(kubectl(['get', 'deployment,serviceaccount,role', 'kubedr', '-n', ns, '--ignore-not-found', '-o', 'name']).stdout.trim()).toBe('');
    expect(controllerPods()).toBe('');
    const after = records();
    expect(after.map((r) => r.metadata.name).sort()).toEqual(held.map((r) => r.metadata.name).sort());
    expect(holding(after)).toEqual([]);
    expect(snapshotIds()).toEqual(before);
  }, 240_000);

  test('meanwhile a record deleted by hand goes at once, and its snapshot stays', () => {
    const gone = records()[0]!.metadata.name;
    const del = kubectl(['delete', 'mbr', gone, '-n', ns, '--timeout=20s']);
    expect(del.code).toBe(0);
    expect(records().map((r) => r.metadata.name)).not.toContain(gone);
    expect(snapshotIds()).toEqual(before);
  });

  test('a new install takes the records back: the finalizer is put back, and the deleted record is adopted from the repository', async () => {
    helmInstall();
    const back = await eventually(() => {
      const rs = records();
      expect(holding(rs).length).toBe(2);
      return rs;
    }, 120_000, 1000);
    expect(back.map((r) => r.spec.snapshotId.slice(0, 8)).sort()).toEqual(before);
    expect(back.filter((r) => r.metadata.annotations?.[ADOPTED_ANNOTATION] === 'true').length).toBe(1);
  }, 240_000);

  test('uninstalled again, deleting the namespace and the CRDs finishes within 2 minutes; every snapshot stays in S3', async () => {
    const { output } = helmUninstall();
    expect(output).toContain(`2 MetadataBackupRecord(s) in namespace ${ns} released`);
    expect(holding(records())).toEqual([]);
    // The CRDs are cluster-wide: deleting them deletes every file's KubeDR objects, and one held by a finalizer (a file
    // whose controller stopped before its namespace went) would keep them Terminating for the files after this one.
    // So they are deleted only when this file's are the only KubeDR objects in the cluster (as when it runs alone).
    const others = getJson<{ items: KubeObject[] }>(['mbr,mbp,bl,mr', '-A']).items.filter((o) => o.metadata.namespace !== ns);
    const deleteCrds = others.length === 0;
    if (!deleteCrds) console.log(`CRDs not deleted: ${others.length} KubeDR objects of other test files exist; the namespace deletion alone is proven`);
    const started = performance.now();
    expect(kubectl(['delete', 'namespace', ns, '--wait=false']).code).toBe(0);
    if (deleteCrds) expect(kubectl(['delete', 'crd', ...KUBEDR_CRDS, '--wait=false']).code).toBe(0);
    try {
      await eventually(() => {
        expect(kubectl(['get', 'namespace', ns]).stderr).toContain('NotFound');
        if (deleteCrds) expect(kubectl(['get', 'crd', ...KUBEDR_CRDS, '--ignore-not-found', '-o', 'name']).stdout.trim()).toBe('');
      }, 120_000, 1000);
    } finally {
      if (deleteCrds) {
        await eventually(() => expect(kubectl(['get', 'crd', ...KUBEDR_CRDS, '--ignore-not-found', '-o', 'name']).stdout.trim()).toBe(''), 120_000, 1000)
          .catch(() => undefined);
        ensureCrds({ reapply: true });
      }
    }
    const tookS = (performance.now() - started) / 1000;
    console.log(`namespace ${ns}${deleteCrds ? ' and the CRDs' : ''} deleted in ${tookS.toFixed(1)} s after helm uninstall`);
    expect(tookS).toBeLessThan(120);
    expect(snapshotIds()).toEqual(before);
  }, 420_000);
});
