/**
 * The chart's monitoring against a real Prometheus: the controller runs as the chart installs it (a pod from this tree's
 * image, with prometheus-operator's CRDs served so the ServiceMonitor and PrometheusRule render), and Debian's
 * Prometheus scrapes it through the metrics Service's endpoints exactly as prometheus-operator would configure it from
 * the rendered ServiceMonitor (Kubernetes discovery, which Debian's build lacks, comes from test/support/kubernetes-sd.ts
 * with the same meta labels; the operator's relabelling runs in Prometheus), and evaluates the rendered PrometheusRule's groups (windows shortened through the chart's
 * values, nothing rewritten). Real faults (a backup that fails, a schedule that is missed and so unverified, a backup
 * damaged in S3 whose verification fails, a location with refused credentials, a restore that fails, a stopped
 * controller, the test PKI's short-lived certificates) must fire their alerts and their fixes resolve them, a rollout of
 * the controller (a real scrape gap) must neither resolve nor restart the alerts that fire, and every query of the
 * Grafana dashboard must answer with data. Unlike the promtool tests, a metric that goes missing, is renamed or
 * changes labels, or a job label that prometheus-operator would not give, fails here.
 *
 * The faults are all injected at the start (beforeAll) so their clocks run together; each test then waits for its alert.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import pkg from '../../package.json' with { type: 'json' };
import type { MetadataBackupPolicy, MetadataBackupRecord, MetadataRestore, Pod } from '../../src/api/types.ts';
import {
  apply, backupNow, events, cluster, createNamespace, deleteInstall, ensureCrds, etcdSecretYaml, eventually, freePort, getJson, kubectl,
  kubedrImage, locationInit, locationSecretYaml, locationYaml, policyYaml, uniqueBucket,
} from '../support/e2e.ts';
import { damagePacks } from '../support/s3.ts';
import { type Rendered, chartDir, render } from '../support/helm.ts';
import { EndpointsDiscovery } from '../support/kubernetes-sd.ts';
import {
  type ActiveAlert, Prometheus, type Sample, installPrometheusOperatorCrds, removePrometheusOperatorCrds, servedApiVersions,
  serviceMonitorScrapeConfigs,
} from '../support/prometheus.ts';

const SCRAPE = 2; // seconds: the ServiceMonitor's interval for this test, and the rule evaluation interval
const password = `prom-pw-${crypto.randomUUID()}`;
let ns: string;
let work: string;
let rendered: Rendered;
let prom: Prometheus | undefined;
let discovery: EndpointsDiscovery | undefined;
let installedCrds = false;
let job: string;
/** The damaged policy's backup, taken and damaged in the background from beforeAll on: its record's name. */
let damagedBackup: Promise<string>;

const policy = (name: string) => getJson<MetadataBackupPolicy>(['mbp', name, '-n', ns]);
const patchPolicy = (name: string, spec: Record<string, unknown>) => {
  const r = kubectl(['patch', 'mbp', name, '-n', ns, '--type', 'merge', '-p', JSON.stringify({ spec })]);
  if (r.code !== 0) throw new Error(r.stderr);
};

const selector = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => `,${k}=${JSON.stringify(v)}`).join('');

/** Waits until `alertname` (with these labels) fires, as ALERTS and in /api/v1/alerts; returns the alert. */
async function firing(alertname: string, labels: Record<string, string>, timeoutMs: number): Promise<ActiveAlert> {
  return eventually(async () => {
    const series = await prom!.query(`ALERTS{alertname="${alertname}",alertstate="firing"${selector(labels)}}`);
    if (series.length !== 1) throw new Error(`${series.length} firing ${alertname} ${JSON.stringify(labels)}; active: ${await activeSummary()}`);
    const alert = (await prom!.alerts()).find((a) => a.labels.alertname === alertname && a.state === 'firing'
      && Object.entries(labels).every(([k, v]) => a.labels[k] === v));
    if (!alert) throw new Error(`${alertname} in ALERTS but not in /api/v1/alerts`);
    return alert;
  }, timeoutMs, 1000);
}

/** Waits until `alertname` (with these labels) is neither pending nor firing. */
async function resolved(alertname: string, labels: Record<string, string>, timeoutMs: number): Promise<void> {
  await eventually(async () => {
    const series = await prom!.query(`ALERTS{alertname="${alertname}"${selector(labels)}}`);
    const active = (await prom!.alerts()).filter((a) => a.labels.alertname === alertname && Object.entries(labels).every(([k, v]) => a.labels[k] === v));
    if (series.length || active.length) throw new Error(`${alertname} ${JSON.stringify(labels)} still active; active: ${await activeSummary()}`);
  }, timeoutMs, 1000);
}

async function activeSummary(): Promise<string> {
  return JSON.stringify((await prom!.alerts()).map((a) => [a.labels.alertname, a.state, a.labels.policyName ?? a.labels.location ?? '']));
}

beforeAll(async () => {
  ensureCrds();
  installedCrds = await installPrometheusOperatorCrds();
  const image = kubedrImage();
  ns = createNamespace('prom');
  work = mkdtempSync(join(tmpdir(), 'prometheus-e2e-'));
  // A port of its own: the pod uses the node's network, where other test files' controllers may listen too.
  const metricsPort = await freePort();
  writeFileSync(join(work, 'values.yaml'), dump({
    image: { repository: image.split(':')[0], tag: pkg.version, pullPolicy: 'Never' },
    certsHostPaths: [cluster().pki],
    metrics: { port: metricsPort },
    shutdownTimeoutSeconds: 5,
    // The damaged backup below must stay unrestorable for the alerts to fire through the rollout test: repaired (the
    // default), a new backup would be taken and proven at once. Report-only is what a forensic look or a bucket whose
    // objects may not be deleted wants; its event is checked below.
    // No proofs of the continuous policy's chain (a pod each): not what this test is about.
    extraArgs: ['--repair-damage=false', '--continuous-verify-interval=0'],
    monitoring: {
      serviceMonitor: { interval: `${SCRAPE}s`, scrapeTimeout: `${SCRAPE}s` },
      // Seconds instead of minutes, so every alert can fire and resolve within the test; the rule text is the chart's.
      prometheusRule: {
        missedBackupGrace: '10s', failureWindow: '20s', locationNotReadyFor: '6s', unverifiedGrace: '10s', controllerDownFor: '6s',
        continuousLaggingFor: '4s', continuousLaggingWindow: '30s',
      },
    },
  }));
  // As `helm install` renders it: with the API versions the cluster serves, so `enabled: auto` decides for real.
  rendered = render(['--name', 'kubedr', '--namespace', ns, '-f', join(work, 'values.yaml'), ...servedApiVersions()]);
  const r = kubectl(['apply', '-f', '-'], rendered.manifest);
  if (r.code !== 0) throw new Error(`kubectl apply of the chart failed: ${r.stderr}`);

  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: uniqueBucket('prom'), credentials: 's3-creds' }));

  const rule = rendered.one('PrometheusRule');
  // prometheus-operator names the job after the Service (the ServiceMonitor sets no jobLabel).
  job = rendered.one('Service').metadata.name;
  discovery = EndpointsDiscovery.start();
  prom = await Prometheus.start({
    scrapeConfigs: serviceMonitorScrapeConfigs(rendered.one('ServiceMonitor'), discovery!),
    ruleGroups: rule.spec.groups,
    evaluationInterval: `${SCRAPE}s`,
  });

  const rollout = kubectl(['rollout', 'status', 'deployment/kubedr', '-n', ns, '--timeout=180s']);
  if (rollout.code !== 0) throw new Error(`rollout: ${rollout.stderr}`);
  await locationInit(ns, 'loc', 'Completed').catch((err) => {
    const logs = kubectl(['logs', 'deployment/kubedr', '-n', ns, '--tail=40']);
    throw new Error(`${err instanceof Error ? err.message : String(err)}\ncontroller's last lines:\n${logs.stdout}${logs.stderr}`);
  });

  // The faults, all at once so their clocks run together: backups of an etcd that refuses connections (on demand, and
  // every minute), and a location whose Secret holds an access key the S3 server refuses.
  const closed = `https://127.0.0.1:${await freePort()}`;
  apply(policyYaml(ns, 'backup-failed', { etcdEndpoint: closed }));
  apply(policyYaml(ns, 'backup-missed', { etcdEndpoint: closed, schedule: '* * * * *' }));
  apply(locationSecretYaml(ns, { name: 'broken-creds', password, accessKey: 'NOBODY' }));
  apply(locationYaml(ns, 'broken', { bucketName: uniqueBucket('prom-broken'), credentials: 'broken-creds' }));
  // A backup that does not restore: taken with verification off (so no verification races the damage), its packs
  // damaged in a bucket of its own (the other policies' backups must restore), then verified every minute. In the
  // background, while the other faults' clocks run.
  const damagedBucket = uniqueBucket('prom-damaged');
  apply(locationYaml(ns, 'damaged', { bucketName: damagedBucket, credentials: 's3-creds' }));
  apply(policyYaml(ns, 'verify-damaged', { destination: 'damaged', verification: { mode: 'Never' } }));
  damagedBackup = (async () => {
    await locationInit(ns, 'damaged', 'Completed');
    const p = await backupNow(ns, 'verify-damaged', 90_000);
    if (p.status?.backupStatus !== 'Completed') throw new Error(`the backup to damage failed: ${JSON.stringify(p.status)}`);
    if (await damagePacks(damagedBucket) === 0) throw new Error('no pack to damage');
    patchPolicy('verify-damaged', { verification: { mode: 'Schedule', schedule: '* * * * *' } });
    return p.status.mbrName!;
  })();
  damagedBackup.catch(() => undefined); // awaited (and its error reported) by the test
  // Continuous backup of the node's etcd (written every few seconds by the API server's leases), every 5 s, to a
  // location whose keys the test will make the S3 server refuse.
  apply(locationSecretYaml(ns, { name: 'lag-creds', password }));
  apply(locationYaml(ns, 'lagloc', { bucketName: uniqueBucket('prom-lag'), credentials: 'lag-creds' }));
  apply(policyYaml(ns, 'continuous-lag', { destination: 'lagloc', verification: { mode: 'Never' }, continuous: { enabled: true, flushInterval: '5s' } }));
}, 300_000);

afterAll(async () => {
  await prom?.stop();
  discovery?.stop();
  if (ns) {
    // Records first, while the controller still runs to release their finalizers; then the rest.
    kubectl(['scale', 'deployment/kubedr', '-n', ns, '--replicas=1']);
    kubectl(['delete', 'mbr', '--all', '-n', ns, '--timeout=60s']);
    deleteInstall(ns);
  }
  if (installedCrds) await removePrometheusOperatorCrds();
  if (work) rmSync(work, { recursive: true, force: true });
}, 120_000);

describe('scraping as prometheus-operator would', () => {
  test('the scrape job comes from the rendered ServiceMonitor: its port name, path, and the interval set in values', () => {
    const [config] = serviceMonitorScrapeConfigs(rendered.one('ServiceMonitor'), discovery!);
    expect(config).toMatchObject({ scrape_interval: `${SCRAPE}s`, metrics_path: '/metrics' });
    expect(JSON.stringify(config!.relabel_configs)).toContain('"regex":"metrics"');
  });

  test('Prometheus finds the controller pod through the metrics Service\'s endpoints and scrapes it, with the operator\'s target labels', async () => {
    const pod = getJson<{ items: Pod[] }>(
      ['pods', '-n', ns, '-l', 'app.kubernetes.io/component=controller']).items[0]!;
    const target = await eventually(async () => {
      const targets = await prom!.targets();
      if (targets.length !== 1 || targets[0]!.health !== 'up') throw new Error(JSON.stringify(targets));
      return targets[0]!;
    }, 60_000, 1000);
    expect(target.labels).toMatchObject({
      job, namespace: ns, service: job, pod: pod.metadata.name, container: 'controller', endpoint: 'metrics',
    });
    expect(target.scrapeUrl).toBe(`http://${pod.status?.podIP}:${rendered.one('Service').spec.ports[0].port}/metrics`);
    const up = await prom!.query(`up{job="${job}",namespace="${ns}"}`);
    expect(up.map((s) => s.value![1])).toEqual(['1']);
    // The series the alerts need arrive with the target's namespace label (the controller's own metrics carry none).
    await eventually(async () => expect((await prom!.query(`kubedr_backup_location_ready{namespace="${ns}",location="loc"}`))
      .map((s) => s.value![1])).toEqual(['1']), 30_000, 1000);
  }, 90_000);

  test('every rule of the rendered PrometheusRule is loaded and evaluates without error', async () => {
    const groups = await eventually(async () => {
      const res = await fetch(`${prom!.url}/api/v1/rules`);
      const body = await res.json() as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
      const rules = body.data.groups.flatMap((g) => g.rules);
      if (rules.some((r) => r.health !== 'ok')) throw new Error(JSON.stringify(rules.filter((r) => r.health !== 'ok')));
      return rules;
    }, 30_000, 1000);
    const names = rendered.one('PrometheusRule').spec.groups.flatMap((g: { rules: { alert: string }[] }) => g.rules.map((r) => r.alert));
    expect(groups.map((r) => r.name)).toEqual(names);
    expect(names).toContain('KubeDRControllerDown');
  });
});

describe('alerts fire on real faults and resolve when fixed', () => {
  test('a backup that fails fires KubeDRBackupFailed; a good endpoint and a successful backup resolve it', async () => {
    // As a user would see it: the policy is already known to Prometheus (its failure counter at 0) when it fails.
    await eventually(async () => expect(await prom!.query(`kubedr_num_failed_backups{namespace="${ns}",policyName="backup-failed"}`))
      .toHaveLength(1), 30_000, 1000);
    const failed = await backupNow(ns, 'backup-failed', 60_000);
    expect(failed.status?.backupStatus).toBe('Failed');
    const alert = await firing('KubeDRBackupFailed', { policyName: 'backup-failed', namespace: ns }, 30_000);
    expect(alert.labels.severity).toBe('warning');
    expect(alert.annotations.runbook_url).toBe('docs/runbooks.md#kubedrbackupfailed');
    expect(alert.annotations.summary).toBe(`KubeDR backup of policy ${ns}/backup-failed failed`);

    patchPolicy('backup-failed', { etcdEndpoint: cluster().etcdEndpoint });
    const ok = await backupNow(ns, 'backup-failed', 90_000);
    expect(ok.status?.backupStatus).toBe('Completed');
    // The failure stays within the (shortened) failure window, then the alert goes.
    await resolved('KubeDRBackupFailed', { policyName: 'backup-failed' }, 60_000);
  }, 180_000);

  test('a backed-up certificate that expires within certificateExpiryDays fires KubeDRControlPlaneCertificateExpiring, valued at its expiry', async () => {
    // The test node's PKI is issued for 30 days, inside the default 30-day threshold: real certificates, real alert.
    const record = getJson<MetadataBackupRecord>(['mbr', policy('backup-failed').status!.mbrName!, '-n', ns]);
    const cert = record.status?.certificates?.find((c) => c.file === 'apiserver.crt');
    expect(cert?.notAfter).toBeString();
    const alert = await firing('KubeDRControlPlaneCertificateExpiring', { policyName: 'backup-failed', certificate: 'apiserver.crt', namespace: ns }, 30_000);
    expect(Number(alert.value)).toBe(Date.parse(cert!.notAfter!) / 1000);
  }, 60_000);

  test('a scheduled run that brings no successful backup fires KubeDRBackupMissed; a successful backup resolves it', async () => {
    // Created in beforeAll with an every-minute schedule and an etcd that refuses: the first run time, plus the grace.
    const alert = await firing('KubeDRBackupMissed', { policyName: 'backup-missed', namespace: ns }, 100_000);
    expect(alert.labels.severity).toBe('critical');
    // Its value is the missed run time: a whole minute.
    expect(Number(alert.value) % 60).toBe(0);
    expect(policy('backup-missed').status?.backupStatus).toBe('Failed');
    // Nothing was backed up, so nothing was proven to restore since that run either (same grace here).
    const unverified = await firing('KubeDRBackupUnverified', { policyName: 'backup-missed', namespace: ns }, 30_000);
    expect(Number(unverified.value) % 60).toBe(0);

    patchPolicy('backup-missed', { etcdEndpoint: cluster().etcdEndpoint });
    const ok = await backupNow(ns, 'backup-missed', 90_000);
    expect(ok.status?.backupStatus).toBe('Completed');
    await resolved('KubeDRBackupMissed', { policyName: 'backup-missed' }, 30_000);
    // Once the controller has restored that backup into a throwaway etcd and checked it.
    await resolved('KubeDRBackupUnverified', { policyName: 'backup-missed' }, 90_000);
    // No more backups every minute for the rest of the file.
    patchPolicy('backup-missed', { schedule: '0 0 1 1 *' });
  }, 180_000);

  test('a backup that does not restore fires KubeDRBackupVerificationFailed from a really failed verification', async () => {
    const mbr = await damagedBackup;
    await eventually(() => expect(getJson<MetadataBackupRecord>(['mbr', mbr, '-n', ns]).status?.verification?.result).toBe('Failed'), 120_000, 1000);
    const alert = await firing('KubeDRBackupVerificationFailed', { policyName: 'verify-damaged', namespace: ns }, 30_000);
    expect(alert.labels.severity).toBe('warning');
    expect(alert.annotations.runbook_url).toBe('docs/runbooks.md#kubedrbackupverificationfailed');
    expect(alert.annotations.summary).toBe(`The latest backup of KubeDR policy ${ns}/verify-damaged that was verified does not restore`);
    // The backup itself stays Completed: only the verification alert says it cannot be restored from.
    expect(policy('verify-damaged').status?.backupStatus).toBe('Completed');
    // The whole repository was read: the damage is named with the command that repairs it, and nothing was changed.
    const damage = await eventually(() => {
      const e = events(ns, 'verify-damaged').find((x) => x.reason === 'RepositoryDamaged');
      if (!e) throw new Error('no RepositoryDamaged event yet');
      return e;
    }, 60_000, 1000);
    expect(damage.message).toMatch(/Not repaired \(--repair-damage=false\).*To repair: restic -r s3:\S+ repair packs [0-9a-f]{64}/);
    expect((await prom!.alerts()).filter((a) => a.labels.alertname === 'KubeDRBackupFailed' && a.labels.policyName === 'verify-damaged')).toEqual([]);
  }, 150_000);

  test('a rollout of the controller (a real scrape gap) neither resolves nor restarts the alerts that fire', async () => {
    // Firing now: the location with refused credentials (a for: alert), and the damaged policy's two verification alerts.
    const watched = [
      ['KubeDRBackupLocationNotReady', { location: 'broken', namespace: ns }],
      ['KubeDRBackupVerificationFailed', { policyName: 'verify-damaged', namespace: ns }],
      ['KubeDRBackupUnverified', { policyName: 'verify-damaged', namespace: ns }],
    ] as const;
    const before = await Promise.all(watched.map(([name, labels]) => firing(name, labels, 60_000)));
    const podName = () => getJson<{ items: Pod[] }>(['pods', '-n', ns, '-l', 'app.kubernetes.io/component=controller']).items
      .map((p) => p.metadata.name);
    const [oldPod] = podName();
    const started = Date.now();
    expect(kubectl(['rollout', 'restart', 'deployment/kubedr', '-n', ns]).code).toBe(0);
    expect(kubectl(['rollout', 'status', 'deployment/kubedr', '-n', ns, '--timeout=180s']).code).toBe(0);
    const [newPod] = podName();
    expect(newPod).not.toBe(oldPod);
    // Until the new pod's gauges are scraped.
    await eventually(async () => expect(await prom!.query(`kubedr_backup_location_ready{namespace="${ns}",location="broken",pod="${newPod}"}`))
      .toHaveLength(1), 60_000, 1000);
    // There was a gap: evaluations at which no pod reported the location at all. The unheld expression (the rule
    // before scrapeGapTolerance) was empty then, which would have resolved the alert and restarted its for:.
    const seconds = Math.ceil((Date.now() - started) / 1000) + 10;
    const [series] = await prom!.queryRange(`max by (location) (kubedr_backup_location_ready{namespace="${ns}",location="broken"}) == 0`, seconds, 1);
    const times = series!.values!.map(([t]) => t);
    const gap = Math.max(...times.slice(1).map((t, i) => t - times[i]!));
    console.log(`rollout: ${((Date.now() - started) / 1000).toFixed(1)} s; longest stretch with no sample: ${gap} s`);
    expect(gap).toBeGreaterThan(2 * SCRAPE);

    // Each alert fires as it did, since the same moment: it never resolved, so its for: never started over.
    const after = await Promise.all(watched.map(([name, labels]) => firing(name, labels, 10_000)));
    expect(after.map((a) => a.activeAt)).toEqual(before.map((a) => a.activeAt));
    // The damaged policy need not be verified every minute for the rest of the file.
    patchPolicy('verify-damaged', { verification: { mode: 'Never' } });
  }, 300_000);

  test('changes received but not stored (S3 refuses the keys) fire KubeDRContinuousBackupLagging; keys that work again resolve it', async () => {
    await eventually(() => expect(policy('continuous-lag').status?.continuous?.lastStoredTime).toBeString(), 90_000, 1000);
    apply(locationSecretYaml(ns, { name: 'lag-creds', password, secretKey: 'not-the-secret-key' }));
    const alert = await firing('KubeDRContinuousBackupLagging', { namespace: ns, policyName: 'continuous-lag' }, 120_000);
    expect(alert.annotations.summary).toBe(`KubeDR continuous backup of policy ${ns}/continuous-lag is not storing changes`);
    expect(alert.annotations.runbook_url).toEndWith('#kubedrcontinuousbackuplagging');
    expect(events(ns, 'continuous-lag').some((e) => e.reason === 'ContinuousBackupFailed' && e.type === 'Warning')).toBe(true);
    const brokenAt = Date.now();
    apply(locationSecretYaml(ns, { name: 'lag-creds', password }));
    await eventually(() => expect(Date.parse(policy('continuous-lag').status?.continuous?.lastStoredTime ?? '')).toBeGreaterThan(brokenAt), 90_000, 1000);
    await resolved('KubeDRContinuousBackupLagging', { namespace: ns, policyName: 'continuous-lag' }, 60_000);
  }, 300_000);

  test('a location whose credentials are refused fires KubeDRBackupLocationNotReady; fixing the Secret resolves it', async () => {
    const alert = await firing('KubeDRBackupLocationNotReady', { location: 'broken', namespace: ns }, 60_000);
    expect(alert.annotations.runbook_url).toBe('docs/runbooks.md#kubedrbackuplocationnotready');
    expect((await prom!.alerts()).filter((a) => a.labels.location === 'loc')).toEqual([]);

    apply(locationSecretYaml(ns, { name: 'broken-creds', password }));
    await locationInit(ns, 'broken', 'Completed');
    await resolved('KubeDRBackupLocationNotReady', { location: 'broken' }, 30_000);
  }, 120_000);

  test('a restore that fails fires KubeDRRestoreFailed, which resolves after the failure window', async () => {
    // Known to Prometheus at 0 first, so increase() sees the failure as a user's Prometheus would.
    await eventually(async () => expect(await prom!.query(`kubedr_num_failed_restores{namespace="${ns}"}`)).toHaveLength(1), 30_000, 1000);
    apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataRestore
metadata: { name: restore-failed, namespace: ${ns} }
spec: { mbrName: mbr-nonexistent, pvcName: no-claim }
`);
    await eventually(() => expect(getJson<MetadataRestore>(['mr', 'restore-failed', '-n', ns]).status?.restoreStatus).toBe('Failed'));
    const alert = await firing('KubeDRRestoreFailed', { namespace: ns }, 30_000);
    expect(alert.annotations.runbook_url).toBe('docs/runbooks.md#kubedrrestorefailed');
    expect(alert.annotations.summary).toBe(`A KubeDR MetadataRestore failed in ${ns}`);
    await resolved('KubeDRRestoreFailed', { namespace: ns }, 60_000);
  }, 120_000);
});

/** Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]]. */
const VARIABLE = /\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]/g;

describe('the Grafana dashboard', () => {
  interface Target { expr: string; instant?: boolean; refId?: string }
  interface Panel { title: string; targets?: Target[]; panels?: Panel[] }
  interface Variable { name: string; type: string; query?: string | { query: string }; current?: { value: string }; options?: { value: string }[] }
  const dashboard = JSON.parse(readFileSync(join(chartDir, 'dashboards/kubedr.json'), 'utf8')) as { panels: Panel[]; templating: { list: Variable[] } };
  const panels = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...panels(p.panels ?? [])]);
  const RANGE = 300; // seconds of the time range the timeseries panels are asked for
  const STEP = SCRAPE;

  test('every panel query and variable query answers with data after a successful, verified backup', async () => {
    // backup-failed had its successful backup above; its verification (restore into a throwaway etcd) follows it.
    await eventually(() => expect(policy('backup-failed').status?.lastVerifiedTime).toBeString(), 90_000, 1000);
    const vars: Record<string, string> = {
      namespace: ns, policy: 'backup-failed',
      __interval: `${STEP}s`, __rate_interval: `${4 * SCRAPE}s`, __range: `${RANGE}s`, __range_s: `${RANGE}`,
    };
    for (const v of dashboard.templating.list) {
      if (v.type === 'custom') vars[v.name] = v.current?.value ?? v.options![0]!.value;
    }
    const substitute = (expr: string) => expr.replace(VARIABLE, (_m, a?: string, b?: string, c?: string) => {
      const name = (a ?? b ?? c)!;
      if (!(name in vars)) throw new Error(`dashboard variable $${name} has no test value (in ${expr})`);
      // The continuous-backup panel reads the policy that has continuous backup.
      if (name === 'policy' && expr.includes('kubedr_continuous_')) return 'continuous-lag';
      return vars[name]!;
    });

    // Query variables, as Grafana's label_values(<series selector>, <label>) reads them.
    const variableQueries = dashboard.templating.list.filter((v) => v.type === 'query');
    expect(variableQueries.map((v) => v.name)).toEqual(['namespace', 'policy']);
    for (const v of variableQueries) {
      const q = typeof v.query === 'string' ? v.query : v.query!.query;
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q);
      if (!m) throw new Error(`variable ${v.name}: query form not handled here: ${q}`);
      const values = [...new Set((await prom!.series(substitute(m[1]!))).map((s) => s[m[2]!]))];
      expect(values).toContain(vars[v.name]);
    }

    // Panels wait until Prometheus has scraped the verified state.
    await eventually(async () => expect(await prom!.query(`kubedr_backup_last_verified_timestamp_seconds{namespace="${ns}",policyName="backup-failed"}`))
      .toHaveLength(1), 30_000, 1000);
    const targets = panels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));
    expect(targets.length).toBeGreaterThan(20);
    const problems: string[] = [];
    for (const t of targets) {
      const expr = substitute(t.expr);
      let samples: Sample[];
      try {
        samples = t.instant ? await prom!.query(expr) : await prom!.queryRange(expr, RANGE, STEP);
      } catch (err) {
        problems.push(`${t.panel} / ${t.refId}: ${(err as Error).message}`);
        continue;
      }
      const values = samples.flatMap((s) => s.value ? [s.value] : s.values ?? []).map(([, v]) => Number(v));
      if (!values.some(Number.isFinite)) problems.push(`${t.panel} / ${t.refId}: no data (${samples.length} series): ${expr}`);
    }
    expect(problems).toEqual([]);
  }, 150_000);
});

describe('the controller itself', () => {
  test('a stopped controller fires KubeDRControllerDown; scaling it back resolves it', async () => {
    // Up and scraped under the job name the rule expects, so the alert is quiet now.
    await resolved('KubeDRControllerDown', {}, 30_000);
    expect(kubectl(['scale', 'deployment/kubedr', '-n', ns, '--replicas=0']).code).toBe(0);
    const alert = await firing('KubeDRControllerDown', {}, 60_000);
    expect(alert.labels.severity).toBe('critical');
    expect(alert.annotations.description).toContain(`job ${job} in ${ns}`);

    expect(kubectl(['scale', 'deployment/kubedr', '-n', ns, '--replicas=1']).code).toBe(0);
    expect(kubectl(['rollout', 'status', 'deployment/kubedr', '-n', ns, '--timeout=90s']).code).toBe(0);
    await resolved('KubeDRControllerDown', {}, 60_000);
  }, 180_000);
});
