/**
 * Two clusters on one bucket. The suite's cluster ("alpha") and a second control plane ("beta": its own etcd with TLS
 * and its own kube-apiserver, so its own kube-system UID) each run a controller with the same namespace name, the same
 * location (bucket and repository password) and the same policy name, backing up its own etcd every minute with
 * `retainNumBackups: 2` and a prune after every forget, so prunes and the other's backups meet on restic's locks. The
 * bucket also holds a snapshot with that policy name but no cluster identity (as an earlier version wrote them).
 *
 * What a user checks afterwards: each cluster's records are exactly its own snapshots; nothing of the other cluster,
 * and the unmarked snapshot, was adopted or forgotten; `restic check` passes; no backup failed; `kubedr snapshots`
 * tells the clusters apart and `kubedr restore latest` refuses to choose between them until told which.
 *
 * The drill runs KUBEDR_SHARED_BUCKET_MINUTES minutes (default 3, so the suite stays short; the drill is 15).
 * beta has no kubelet: its controller runs as a process, as the other process-controller tests do.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KubeEvent, MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import { originOf } from '../../src/engine/origin.ts';
import { parseSnapshots } from '../../src/engine/restic-output.ts';
import { startExtraApiserver, startExtraEtcd, stopExtra } from '../../scripts/cluster/node.ts';
import {
  ControllerProcess, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, eventually,
  kubectl, locationInit, locationSecretYaml, locationYaml, policyYaml, repoRoot, resticAt, uniqueBucket,
} from '../support/e2e.ts';

const MINUTES = Number(process.env.KUBEDR_SHARED_BUCKET_MINUTES ?? 3);
const bucket = uniqueBucket('shared');
const password = `shared-pw-${crypto.randomUUID()}`;
let ns: string;
let work: string;
let betaKubeconfig: string;
let betaEtcd: string;
const controllers: ControllerProcess[] = [];
/** When both policies were in place: prunes counted from here. */
let drillStart = 0;
const ids: Record<'alpha' | 'beta', string> = { alpha: '', beta: '' };

/** kubectl against a cluster: alpha is the suite's (the helper's KUBECONFIG), beta the second control plane. */
const kc = (who: 'alpha' | 'beta', args: string[], input?: string) =>
  who === 'alpha' ? kubectl(args, input) : kubectl(['--kubeconfig', betaKubeconfig, ...args], input);
function kcJson<T>(who: 'alpha' | 'beta', args: string[]): T {
  const r = kc(who, ['get', ...args, '-o', 'json']);
  if (r.code !== 0) throw new Error(`kubectl get ${args.join(' ')} (${who}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
const applyTo = (who: 'alpha' | 'beta', yaml: string) => {
  const r = kc(who, ['apply', '-f', '-'], yaml);
  if (r.code !== 0) throw new Error(`kubectl apply (${who}): ${r.stderr}`);
};
const records = (who: 'alpha' | 'beta') => kcJson<{ items: MetadataBackupRecord[] }>(who, ['mbr', '-n', ns]).items;
const policy = (who: 'alpha' | 'beta') => kcJson<MetadataBackupPolicy>(who, ['mbp', 'etcd', '-n', ns]);
const events = (who: 'alpha' | 'beta') => kcJson<{ items: KubeEvent[] }>(who, ['events', '-n', ns]).items;
const snapshots = () => {
  const r = resticAt(bucket, password, ['snapshots', '--json', '--no-lock']);
  if (r.code !== 0) throw new Error(`restic snapshots: ${r.stderr}`);
  return parseSnapshots(r.stdout);
};

function kubedr(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env } });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('shared');
  work = mkdtempSync(join(tmpdir(), 'shared-'));
  const env = cluster();
  betaEtcd = await startExtraEtcd(env, 'beta-etcd');
  betaKubeconfig = await startExtraApiserver(env, 'beta-apiserver', betaEtcd);
  expect(kc('beta', ['apply', '-f', join(repoRoot, 'crds')]).code).toBe(0);
  expect(kc('beta', ['wait', '--for=condition=Established', '--timeout=60s', 'crd/metadatabackuppolicies.kubedr.catalogicsoftware.com']).code).toBe(0);
  expect(kc('beta', ['create', 'namespace', ns]).code).toBe(0);
  for (const who of ['alpha', 'beta'] as const) {
    ids[who] = kc(who, ['get', 'namespace', 'kube-system', '-o', 'jsonpath={.metadata.uid}']).stdout;
    expect(ids[who]).toMatch(/^[0-9a-f-]{36}$/);
    applyTo(who, locationSecretYaml(ns, { name: 's3-creds', password }));
    applyTo(who, etcdSecretYaml(ns, 'etcd-creds'));
    applyTo(who, locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  }
  expect(ids.alpha).not.toBe(ids.beta);

  // The repository first (alpha's location creates it), then an unmarked snapshot of the same policy name.
  const first = await ControllerProcess.start(ns, ['--cluster-name', 'alpha', '--sync-period', '20s', '--prune-after-forgets', '1']);
  controllers.push(first);
  await locationInit(ns, 'loc');
  writeFileSync(join(work, 'etcd-snapshot.db'), 'written by an earlier version');
  const unmarked = resticAt(bucket, password, ['backup', '--tag', 'etcd', '--host', 'old-version', join(work, 'etcd-snapshot.db')]);
  expect(unmarked.code).toBe(0);
  controllers.push(await ControllerProcess.start(ns, ['--cluster-name', 'beta', '--sync-period', '20s', '--prune-after-forgets', '1'],
    { kubeconfig: betaKubeconfig }));
  await eventually(() => expect(kcJson<{ status?: { initStatus?: string } }>('beta', ['bl', 'loc', '-n', ns]).status?.initStatus).toBe('Completed'));

  drillStart = Date.now();
  applyTo('alpha', policyYaml(ns, 'etcd', { schedule: '* * * * *', retainNumBackups: 2 }));
  applyTo('beta', policyYaml(ns, 'etcd', { schedule: '* * * * *', retainNumBackups: 2, etcdEndpoint: betaEtcd }));
  // Something only beta's etcd holds, to tell its snapshots apart by content too.
  expect(kc('beta', ['create', 'configmap', 'only-in-beta', '-n', ns]).code).toBe(0);
  // Two backups each at once (backup-now), so that from the first scheduled minute on every backup forgets one and a
  // prune follows while the other cluster writes (with scheduled backups alone the first prune came at the drill's end).
  for (const who of ['alpha', 'beta'] as const) {
    for (const served of ['seed-1', 'seed-2']) {
      expect(kc(who, ['annotate', 'mbp', 'etcd', '-n', ns, '--overwrite', `kubedr.catalogicsoftware.com/backup-now=${served}`]).code).toBe(0);
      await eventually(() => expect(policy(who).status).toMatchObject({ backupNowServed: served, backupStatus: 'Completed' }), 60_000, 500);
    }
  }

  await Bun.sleep(MINUTES * 60_000);
  // Stopped gracefully: a backup in flight finishes (or is resolved) before the comparison.
  for (const c of controllers.splice(0)) expect(await c.stop()).toBe(0);
}, (MINUTES + 5) * 60_000);

afterAll(async () => {
  for (const c of controllers) await c.stop('SIGKILL');
  for (const name of ['beta-apiserver', 'beta-etcd']) await stopExtra(cluster(), name);
  deleteNamespace(ns);
  rmSync(work, { recursive: true, force: true });
});

describe(`two clusters backing up to one bucket every minute for ${MINUTES} minutes`, () => {
  test('each cluster\'s records are exactly its own snapshots, and retention kept two of each', () => {
    const all = snapshots();
    for (const who of ['alpha', 'beta'] as const) {
      const own = all.filter((s) => originOf(s.tags)?.clusterId === ids[who]).map((s) => s.shortId).sort();
      const recorded = records(who).map((r) => r.spec.snapshotId.slice(0, 8)).sort();
      expect({ who, recorded }).toEqual({ who, recorded: own });
      expect(own.length).toBe(2);
      for (const s of all.filter((x) => originOf(x.tags)?.clusterId === ids[who])) {
        expect(originOf(s.tags)).toEqual({ clusterId: ids[who], clusterName: who, namespace: ns });
      }
    }
  });

  test('both took backups all along, none failed, and both pruned', () => {
    for (const who of ['alpha', 'beta'] as const) {
      const p = policy(who);
      expect(p.status?.backupStatus).toBe('Completed');
      const reasons = events(who).map((e) => e.reason);
      expect(reasons.filter((r) => r === 'BackupSucceeded').length).toBeGreaterThanOrEqual(2 + MINUTES - 1);
      expect({ who, failed: events(who).filter((e) => e.type === 'Warning' && e.reason !== 'UnmarkedSnapshotsIgnored') })
        .toEqual({ who, failed: [] });
      expect(reasons).toContain('BackupsExpired');
      // A prune really ran (each forget asks for one): data of forgotten snapshots removed while the other cluster wrote.
      const pruned = Date.parse(kcJson<{ status?: { lastPruneTime?: string } }>(who, ['bl', 'loc', '-n', ns]).status?.lastPruneTime ?? '');
      expect({ who, prunedDuringDrill: pruned >= drillStart - 1000 }).toEqual({ who, prunedDuringDrill: true });
    }
  });

  test('the snapshot without a cluster identity was neither adopted nor forgotten, and both said so on the location', () => {
    const unmarked = snapshots().filter((s) => !originOf(s.tags));
    expect(unmarked.map((s) => s.hostname)).toEqual(['old-version']);
    for (const who of ['alpha', 'beta'] as const) {
      expect(records(who).some((r) => r.spec.snapshotId.startsWith(unmarked[0]!.shortId))).toBe(false);
      const said = events(who).find((e) => e.reason === 'UnmarkedSnapshotsIgnored' && e.involvedObject.name === 'loc');
      expect(said?.message).toContain('1 snapshot(s) tagged with this namespace\'s policy names (etcd) carry no cluster identity');
    }
  });

  test('restic check passes: no prune removed data another cluster\'s backup was writing', () => {
    const r = resticAt(bucket, password, ['check']);
    expect(r.stderr).not.toContain('error');
    expect(r.code).toBe(0);
  });

  test('kubedr snapshots tells the clusters apart; restore "latest" refuses to choose between them until told which', () => {
    const credentials = join(work, 'creds.yaml');
    writeFileSync(credentials, kubectl(['get', 'secret', 's3-creds', '-n', ns, '-o', 'yaml']).stdout, { mode: 0o600 });
    const at = ['--url', cluster().s3Url, '--bucket', bucket, '--credentials', credentials];

    const beta = JSON.parse(kubedr(['snapshots', ...at, '--json', '--no-size', '--cluster', 'beta']).stdout) as { shortId: string; cluster: string; namespace: string }[];
    expect(beta.map((r) => r.shortId).sort()).toEqual(records('beta').map((r) => r.spec.snapshotId.slice(0, 8)).sort());
    for (const row of beta) expect(row).toMatchObject({ cluster: `beta (${ids.beta.slice(0, 8)})`, namespace: ns });
    expect(kubedr(['snapshots', ...at, '--no-size']).stdout).toContain(`alpha (${ids.alpha.slice(0, 8)})`);

    const ambiguous = kubedr(['restore', 'latest', '--policy', 'etcd', '--target', join(work, 'r0'), ...at]);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain('"latest" is ambiguous');
    expect(ambiguous.stderr).toContain(`beta (${ids.beta.slice(0, 8)}) in namespace ${ns}`);
    expect(ambiguous.stderr).toContain('--cluster');

    const newestBeta = records('beta').sort((a, b) => Date.parse(b.status?.backupTime ?? '') - Date.parse(a.status?.backupTime ?? ''))[0]!;
    const restored = kubedr(['restore', 'latest', '--policy', 'etcd', '--cluster', 'beta', '--target', join(work, 'r1'), '--json', ...at]);
    expect(restored.stderr).not.toContain('ambiguous');
    expect(restored.code).toBe(0);
    expect((JSON.parse(restored.stdout) as { sha256: string }).sha256).toBe(newestBeta.status?.etcdSnapshotSha256 ?? "no SHA-256 in the record");
  });
});
