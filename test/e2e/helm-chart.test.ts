/**
 * The Helm chart (helm/kubedr), rendered by scripts/helm-render as `helm template` would: the objects it produces with
 * default and non-default values, every one of them accepted by the real API server (`kubectl apply --dry-run=server`),
 * and its Role as the API server authorizes it. The chart installed for real, the controller running as its pod with
 * only the chart's ServiceAccount, is tested in controller-pod.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { CONTROL_PLANE_TOLERATIONS } from '../../src/api/placement.ts';
import type { Pod, Toleration } from '../../src/api/types.ts';
import { loadConfig } from '../../src/config.ts';
import { apply, cluster, createNamespace, deleteInstall, ensureCrds, eventually, getJson, kubectl, kubedrImage } from '../support/e2e.ts';
import { type Obj, type Rendered, chartDir, render, repoRoot } from '../support/helm.ts';
import { installPrometheusOperatorCrds, removePrometheusOperatorCrds, servedApiVersions } from '../support/prometheus.ts';

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'helm-chart-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const container = (d: Obj) => d.spec.template.spec.containers[0];
const names = (r: Rendered) => r.docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
/** As a cluster with prometheus-operator answers helm's discovery. */
const PROMETHEUS_OPERATOR = ['--api-versions', 'monitoring.coreos.com/v1'];

/** The container's args as the kubelet runs them: `$(VAR)` replaced by the container's env (downward API values given). */
function kubeletArgs(c: { args: string[]; env: { name: string }[] }, fieldValues: Record<string, string>): string[] {
  return c.args.map((a) => a.replace(/\$\((\w+)\)/g, (whole, name: string) =>
    c.env.some((e) => e.name === name) && name in fieldValues ? fieldValues[name]! : whole));
}

describe('rendered with default values', () => {
  let r: Rendered;
  beforeAll(() => {
    r = render(['--name', 'kubedr', '--namespace', 'kubedr-system', ...PROMETHEUS_OPERATOR]);
  });

  test('holds exactly the expected objects, all in the release namespace', () => {
    expect(names(r)).toEqual([
      'ClusterRole/kubedr-kubedr-system', 'ClusterRoleBinding/kubedr-kubedr-system',
      'ConfigMap/kubedr-dashboard', 'Deployment/kubedr', 'Job/kubedr-release-records', 'PrometheusRule/kubedr', 'Role/kubedr', 'RoleBinding/kubedr',
      'Service/kubedr-metrics', 'ServiceAccount/kubedr', 'ServiceMonitor/kubedr',
    ]);
    for (const d of r.docs.filter((x) => !x.kind.startsWith('Cluster'))) expect(d.metadata.namespace).toBe('kubedr-system');
    expect(r.text).toContain('# Source: kubedr/templates/deployment.yaml');
  });

  test('the Deployment runs on a control-plane node with host networking and the certificates read-only', () => {
    const dep = r.one('Deployment');
    const pod = dep.spec.template.spec;
    expect(dep.spec.replicas).toBe(1);
    // One replica: no PodDisruptionBudget, which would block every node drain.
    expect(r.all('PodDisruptionBudget')).toEqual([]);
    // A surge pod could not bind the host port on the same node: replace one by one.
    expect(dep.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } });
    expect(pod.nodeSelector).toEqual({ 'node-role.kubernetes.io/control-plane': '' });
    expect(pod.tolerations).toEqual(expect.arrayContaining([
      { key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' },
      { key: 'node-role.kubernetes.io/master', operator: 'Exists', effect: 'NoSchedule' },
    ]));
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(pod.serviceAccountName).toBe('kubedr');
    expect(pod.securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false });
    const c = container(dep);
    expect(c.image).toBe(`kubedr/kubedr:${pkg.version}`);
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'] },
    });
    expect(c.volumeMounts).toEqual([
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'certs-0', mountPath: '/etc/kubernetes/pki', readOnly: true },
    ]);
    expect(pod.volumes).toEqual([
      { name: 'tmp', emptyDir: { sizeLimit: '10Gi' } },
      { name: 'certs-0', hostPath: { path: '/etc/kubernetes/pki', type: 'Directory' } },
    ]);
    expect(c.env).toEqual([
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    ]);
    // Restore pods tolerate kubeadm's control-plane taints and run as the image's user 65532, on any node.
    expect(c.args).toEqual(['controller', '--namespace=kubedr-system', '--http-address=$(POD_IP)', '--http-port=9473', '--log-level=info',
      '--leader-elect=true', '--leader-elect-lease-name=kubedr-controller', '--shutdown-timeout=30s',
      `--restore-image=kubedr/kubedr:${pkg.version}`, '--restore-start-timeout=5m',
      '--restore-tolerations=[{"effect":"NoSchedule","key":"node-role.kubernetes.io/control-plane","operator":"Exists"},' +
      '{"effect":"NoSchedule","key":"node-role.kubernetes.io/master","operator":"Exists"}]',
      '--restore-run-as-user=65532']);
    const config = loadConfig(kubeletArgs(c, { POD_IP: '10.1.2.3' }).slice(1), {});
    if (config === 'help') throw new Error('unexpected help');
    // Metrics and probes on the pod's IP only (the node's, with hostNetwork), on a port kube components leave free.
    expect(config.httpAddress).toBe('10.1.2.3');
    expect(config.httpPort).toBe(9473);
    // The kubelet waits out the controller's shutdown timeout, and 10 s more to release the Lease and exit.
    expect(config.shutdownTimeoutMs).toBe(30_000);
    expect(pod.terminationGracePeriodSeconds).toBe(40);
    expect(config.restoreTolerations).toEqual([...CONTROL_PLANE_TOLERATIONS]);
    expect(config.restoreNodeSelector).toEqual({});
    expect(config.restoreRunAsUser).toBe(65532);
    expect(c.ports).toEqual([{ name: 'metrics', containerPort: 9473, protocol: 'TCP' }]);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    // Room on the node's disk for the etcd snapshot each backup stages in /tmp.
    expect(c.resources.requests).toEqual({ cpu: '50m', memory: '128Mi', 'ephemeral-storage': '2Gi' });
  });

  // The rules themselves are checked against the API calls in src/ by test/chart/rbac.test.ts.
  test('the Role is namespaced and bound to the chart\'s ServiceAccount only; cluster-wide it may read two named namespaces', () => {
    expect(r.one('ClusterRole').rules).toEqual([
      { apiGroups: [''], resources: ['namespaces'], resourceNames: ['kube-system'], verbs: ['get'] },
      { apiGroups: [''], resources: ['namespaces'], resourceNames: ['kubedr-system'], verbs: ['get', 'list', 'watch'] },
    ]);
    expect(r.one('ClusterRoleBinding').subjects).toEqual([{ kind: 'ServiceAccount', name: 'kubedr', namespace: 'kubedr-system' }]);
    const rb = r.one('RoleBinding');
    expect(rb.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'kubedr' });
    expect(rb.subjects).toEqual([{ kind: 'ServiceAccount', name: 'kubedr', namespace: 'kubedr-system' }]);
  });

  test('the ServiceMonitor scrapes the metrics Service, which reaches the pod', () => {
    const svc = r.one('Service');
    const sm = r.one('ServiceMonitor');
    const podLabels = r.one('Deployment').spec.template.metadata.labels;
    for (const [k, v] of Object.entries(svc.spec.selector)) expect(podLabels[k]).toBe(v);
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(svc.metadata.labels?.[k]).toBe(v as string);
    expect(svc.spec.ports).toEqual([{ name: 'metrics', port: 9473, targetPort: 'metrics', protocol: 'TCP' }]);
    expect(sm.spec.endpoints).toEqual([{ port: 'metrics', path: '/metrics', interval: '30s', scrapeTimeout: '10s' }]);
    expect(sm.spec.namespaceSelector).toEqual({ matchNames: ['kubedr-system'] });
  });

  test('every alert has a summary, a description and a runbook section that exists in docs/runbooks.md', () => {
    const rules = r.one('PrometheusRule').spec.groups[0].rules as { alert: string; expr: string; annotations: Record<string, string> }[];
    expect(rules.map((x) => x.alert)).toEqual(['KubeDRBackupFailed', 'KubeDRBackupMissed', 'KubeDRBackupLocationNotReady',
      'KubeDRRestoreFailed', 'KubeDRControlPlaneCertificateExpiring', 'KubeDRBackupUnverified', 'KubeDRBackupVerificationFailed',
      'KubeDRContinuousBackupLagging', 'KubeDRContinuousBackupGap', 'KubeDRContinuousBackupVerificationFailed', 'KubeDRControllerDown']);
    const anchors = new Set([...readFileSync(join(repoRoot, 'docs/runbooks.md'), 'utf8').matchAll(/^#{2,3} (.+)$/gm)]
      .map((m) => m[1]!.trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')));
    for (const x of rules) {
      expect(x.annotations.summary).toBeTruthy();
      expect(x.annotations.description).toBeTruthy();
      const [base, anchor] = x.annotations.runbook_url!.split('#');
      expect(base).toBe('docs/runbooks.md');
      expect(anchors.has(anchor!)).toBe(true);
    }
    const missed = rules.find((x) => x.alert === 'KubeDRBackupMissed')!.expr;
    expect(missed).toContain('kubedr_backup_previous_run_timestamp_seconds{namespace="kubedr-system"} offset 30m');
    expect(missed).toContain('kubedr_backup_policy_suspended');
    const certs = rules.find((x) => x.alert === 'KubeDRControlPlaneCertificateExpiring')!.expr;
    expect(certs).toContain('kubedr_certificate_expiry_timestamp_seconds{namespace="kubedr-system"}');
    expect(certs).toContain('< time() + 30 * 86400');
  });

  test('the dashboard ConfigMap holds the dashboard JSON for Grafana\'s sidecar, covering every per-policy metric', () => {
    const cm = r.one('ConfigMap', 'kubedr-dashboard');
    expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
    const json = cm.data['kubedr.json'] as string;
    expect(json).toBe(readFileSync(join(chartDir, 'dashboards/kubedr.json'), 'utf8').trimEnd());
    const dash = JSON.parse(json) as { uid: string; panels: { targets: { expr: string }[] }[] };
    expect(dash.uid).toBe('kubedr-backups');
    const exprs = dash.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n');
    for (const m of ['kubedr_backup_last_success_timestamp_seconds', 'kubedr_backup_last_status', 'kubedr_backup_duration_seconds_bucket',
      'kubedr_backup_size_bytes', 'kubedr_num_successful_backups', 'kubedr_num_failed_backups', 'kubedr_backups_retained',
      'kubedr_backup_location_ready', 'kubedr_certificate_expiry_timestamp_seconds']) expect(exprs).toContain(m);
  });

  test('the chart\'s CRDs are the repository\'s crds/, byte for byte', () => {
    const files = readdirSync(join(repoRoot, 'crds')).sort();
    expect(readdirSync(join(chartDir, 'crds')).sort()).toEqual(files);
    for (const f of files) expect(readFileSync(join(chartDir, 'crds', f), 'utf8')).toBe(readFileSync(join(repoRoot, 'crds', f), 'utf8'));
    const withCrds = render(['--name', 'kubedr', '--namespace', 'kubedr-system', '--include-crds']);
    expect(withCrds.all('CustomResourceDefinition').length).toBe(files.length);
  });

  test('on a cluster without prometheus-operator there is no ServiceMonitor or PrometheusRule; true forces them', () => {
    const without = render(['--name', 'kubedr', '--namespace', 'kubedr-system']);
    expect(names(without)).toEqual(names(r).filter((n) => !['PrometheusRule/kubedr', 'ServiceMonitor/kubedr'].includes(n)));
    expect(without.text).not.toContain('monitoring.coreos.com');
    // A boolean true, as in values files written for earlier versions of the chart, still renders them.
    const forced = render(['--name', 'kubedr', '--namespace', 'kubedr-system', '--set', 'monitoring.serviceMonitor.enabled=true',
      '--set', 'monitoring.prometheusRule.enabled=true']);
    expect(names(forced)).toEqual(names(r));
    const onlyRule = render(['--name', 'kubedr', '--namespace', 'kubedr-system', '--set', 'monitoring.prometheusRule.enabled=true']);
    expect(onlyRule.all('ServiceMonitor')).toEqual([]);
    // Without the ServiceMonitor nothing scrapes the controller under its job label: no alert on it.
    const alerts = (onlyRule.one('PrometheusRule').spec.groups[0].rules as { alert: string }[]).map((x) => x.alert);
    expect(alerts).not.toContain('KubeDRControllerDown');
    expect(() => render(['--name', 'kubedr', '--namespace', 'x', '--set', 'monitoring.serviceMonitor.enabled=yes']))
      .toThrow('monitoring.*.enabled must be auto, true or false, not "yes"');
  });

  test('Chart.yaml\'s appVersion is the controller\'s version', () => {
    expect(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')).toContain(`appVersion: "${pkg.version}"`);
  });
});

const customValues = {
  image: { repository: 'registry.example.com/ops/kubedr', tag: '1.2.3', pullPolicy: 'Always' },
  replicaCount: 2,
  leaderElection: { enabled: false },
  logLevel: 'debug',
  metrics: { port: 9464, bindPodIP: false },
  shutdownTimeoutSeconds: 120,
  // Helm merges maps: null removes the default control-plane selector.
  nodeSelector: { 'kubernetes.io/hostname': 'cp-1', 'node-role.kubernetes.io/control-plane': null },
  tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'backup', effect: 'NoSchedule' }],
  resources: { requests: { cpu: '200m', memory: '256Mi' }, limits: { cpu: '1', memory: '2Gi' } },
  scratch: { sizeLimit: '20Gi', ephemeralStorageRequest: '8Gi' },
  certsHostPaths: ['/etc/kubernetes/pki', '/srv/etcd/pki'],
  extraArgs: ['--max-concurrent-backups=2'],
  extraEnv: [{ name: 'TZ', value: 'Europe/Berlin' }],
  restore: {
    nodeSelector: { 'kubernetes.io/os': 'linux', 'topology.kubernetes.io/zone': 'eu-1a' },
    tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'restore', effect: 'NoExecute', tolerationSeconds: 60 }] satisfies Toleration[],
    runAsUser: 0,
  },
  monitoring: {
    serviceMonitor: { enabled: false },
    prometheusRule: { enabled: true, labels: { release: 'prom' }, missedBackupGrace: '1h', runbookBaseUrl: 'https://example.com/runbooks.md' },
    dashboard: { enabled: false },
  },
};

describe('rendered with non-default values', () => {
  let r: Rendered;
  beforeAll(() => {
    const file = join(work, 'values.yaml');
    writeFileSync(file, dump(customValues));
    r = render(['--name', 'dr', '--namespace', 'backup-ops', '-f', file, '--set', 'restore.startTimeout=10m']);
  });

  test('names, namespace and monitoring switches follow the values', () => {
    expect(names(r)).toEqual([
      'ClusterRole/dr-kubedr-backup-ops', 'ClusterRoleBinding/dr-kubedr-backup-ops',
      'Deployment/dr-kubedr', 'Job/dr-kubedr-release-records', 'PodDisruptionBudget/dr-kubedr', 'PrometheusRule/dr-kubedr', 'Role/dr-kubedr', 'RoleBinding/dr-kubedr',
      'Service/dr-kubedr-metrics', 'ServiceAccount/dr-kubedr',
    ]);
    for (const d of r.docs.filter((x) => !x.kind.startsWith('Cluster'))) expect(d.metadata.namespace).toBe('backup-ops');
    expect(r.one('RoleBinding').subjects).toEqual([{ kind: 'ServiceAccount', name: 'dr-kubedr', namespace: 'backup-ops' }]);
  });

  test('the Deployment takes the image, replicas, placement, resources, paths, arguments and environment', () => {
    const dep = r.one('Deployment');
    const pod = dep.spec.template.spec;
    const c = container(dep);
    expect(dep.spec.replicas).toBe(2);
    expect(c.image).toBe('registry.example.com/ops/kubedr:1.2.3');
    expect(c.imagePullPolicy).toBe('Always');
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/hostname': 'cp-1' });
    expect(pod.tolerations).toEqual(customValues.tolerations);
    expect(c.resources).toEqual({ ...customValues.resources, requests: { ...customValues.resources.requests, 'ephemeral-storage': '8Gi' } });
    expect(pod.volumes[0]).toEqual({ name: 'tmp', emptyDir: { sizeLimit: '20Gi' } });
    expect(c.volumeMounts.filter((m: { readOnly?: boolean }) => m.readOnly).map((m: { mountPath: string }) => m.mountPath))
      .toEqual(['/etc/kubernetes/pki', '/srv/etcd/pki']);
    // Two replicas force leader election on, whatever leaderElection.enabled says.
    expect(c.args).toEqual(['controller', '--namespace=backup-ops', '--http-port=9464', '--log-level=debug', '--leader-elect=true',
      '--leader-elect-lease-name=kubedr-controller', '--shutdown-timeout=120s', '--restore-image=registry.example.com/ops/kubedr:1.2.3', '--restore-start-timeout=10m',
      '--restore-node-selector=kubernetes.io/os=linux,topology.kubernetes.io/zone=eu-1a',
      '--restore-tolerations=[{"effect":"NoExecute","key":"dedicated","operator":"Equal","tolerationSeconds":60,"value":"restore"}]',
      '--restore-run-as-user=0', '--max-concurrent-backups=2']);
    // The controller takes the restore values back as they were given.
    const config = loadConfig((c.args as string[]).slice(1), {});
    if (config === 'help') throw new Error('unexpected help');
    expect(config.restoreNodeSelector).toEqual(customValues.restore.nodeSelector);
    expect(config.restoreTolerations).toEqual(customValues.restore.tolerations);
    expect(config.restoreRunAsUser).toBe(0);
    expect(c.env.at(-1)).toEqual({ name: 'TZ', value: 'Europe/Berlin' });
    // bindPodIP off: the controller's default address (every interface), no POD_IP.
    expect(config.httpAddress).toBe('0.0.0.0');
    expect(c.env.map((e: { name: string }) => e.name)).not.toContain('POD_IP');
    expect(config.shutdownTimeoutMs).toBe(120_000);
    expect(pod.terminationGracePeriodSeconds).toBe(130);
    expect(c.ports[0].containerPort).toBe(9464);
    expect(r.one('Service').spec.ports[0].port).toBe(9464);
  });

  test('the rules take their labels, grace and runbook address; without a ServiceMonitor there is no scrape-based alert', () => {
    const rule = r.one('PrometheusRule');
    expect(rule.metadata.labels?.release).toBe('prom');
    const rules = rule.spec.groups[0].rules as { alert: string; expr: string; annotations: Record<string, string> }[];
    expect(rules.map((x) => x.alert)).not.toContain('KubeDRControllerDown');
    expect(rules.find((x) => x.alert === 'KubeDRBackupMissed')!.expr).toContain('{namespace="backup-ops"} offset 1h');
    for (const x of rules) expect(x.annotations.runbook_url).toStartWith('https://example.com/runbooks.md#kubedr');
  });

  test('more than one replica: a PodDisruptionBudget keeps one controller pod; policy/v1 where served, else v1beta1', () => {
    // Kubernetes 1.20 serves only policy/v1beta1.
    const pdb = r.one('PodDisruptionBudget');
    expect(pdb.apiVersion).toBe('policy/v1beta1');
    expect(pdb.spec).toEqual({
      minAvailable: 1,
      selector: { matchLabels: { 'app.kubernetes.io/name': 'kubedr', 'app.kubernetes.io/instance': 'dr', 'app.kubernetes.io/component': 'controller' } },
    });
    const podLabels = r.one('Deployment').spec.template.metadata.labels;
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) expect(podLabels[k]).toBe(v as string);
    const v1 = render(['--name', 'dr', '--namespace', 'x', '--set', 'replicaCount=3', '--api-versions', 'policy/v1', '--api-versions', 'policy/v1beta1']);
    expect(v1.one('PodDisruptionBudget').apiVersion).toBe('policy/v1');
  });

  test('a shutdown timeout that is not a positive number of seconds is refused', () => {
    expect(() => render(['--name', 'kubedr', '--namespace', 'x', '--set', 'shutdownTimeoutSeconds=0']))
      .toThrow('shutdownTimeoutSeconds must be a whole number of seconds above 0');
  });

  test('one replica with leader election off, no host network, all monitoring off', () => {
    const off = render(['--name', 'kubedr', '--namespace', 'x', ...PROMETHEUS_OPERATOR, '--set', 'leaderElection.enabled=false,hostNetwork=false',
      '--set', 'monitoring.serviceMonitor.enabled=false', '--set', 'monitoring.prometheusRule.enabled=false',
      '--set', 'monitoring.dashboard.enabled=false']);
    expect(off.docs.filter((d) => d.apiVersion.startsWith('monitoring.coreos.com') || d.kind === 'ConfigMap')).toEqual([]);
    const dep = off.one('Deployment');
    expect(container(dep).args).toContain('--leader-elect=false');
    expect(dep.spec.template.spec.hostNetwork).toBeUndefined();
    expect(dep.spec.template.spec.dnsPolicy).toBeUndefined();
    expect(dep.spec.strategy).toBeUndefined();
  });
});

describe('on the local cluster', () => {
  let ns: string;
  beforeAll(async () => {
    ensureCrds();
    await installPrometheusOperatorCrds();
    ns = createNamespace('helm');
  });
  afterAll(async () => {
    deleteInstall(ns);
  });

  const dryRun = (yaml: string) => kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], yaml);

  test('the API server accepts every rendered object, with default and non-default values (dry run)', async () => {
    const defaults = render(['--name', 'kubedr', '--namespace', ns, '--include-crds', ...servedApiVersions()]);
    expect(defaults.all('ServiceMonitor').length).toBe(1);
    const d = dryRun(defaults.text);
    expect(d.stderr).toBe('');
    expect(d.code).toBe(0);
    for (const o of defaults.docs) {
      expect(d.stdout).toMatch(new RegExp(`^${o.kind.toLowerCase()}(\\.[\\w.]+)?/${o.metadata.name} (created|unchanged|configured) \\(server dry run\\)$`, 'm'));
    }
    const file = join(work, 'values-dry.yaml');
    writeFileSync(file, dump({ ...customValues, monitoring: { serviceMonitor: { enabled: true } } }));
    // Two replicas: the PodDisruptionBudget in the version this cluster serves.
    const customRendered = render(['--name', 'dr', '--namespace', ns, '-f', file, ...servedApiVersions()]);
    expect(customRendered.all('PodDisruptionBudget').length).toBe(1);
    const custom = dryRun(customRendered.text);
    expect(custom.stderr).toBe('');
    expect(custom.code).toBe(0);
    // The schema check is real: a misspelt field is refused (once the API server publishes the new CRD's schema in its
    // OpenAPI document, which kubectl validates against; that lags the CRD's Established condition by a few seconds).
    const misspelt = defaults.text.replace('scrapeTimeout: 10s', 'scrapeTimeout: 10s\n      scrapeTimout: 10s');
    await eventually(() => expect(dryRun(misspelt).stderr).toContain('scrapeTimout'), 30_000, 1000);
  });

  // The controller running as the chart's pod, with only this ServiceAccount's token, is tested in controller-pod.test.ts.
  test('the chart\'s Role allows what the controller uses and refuses the rest, as the API server decides it', () => {
    const rendered = render(['--name', 'kubedr', '--namespace', ns]);
    apply(rendered.docs.filter((d) => ['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'].includes(d.kind))
      .map((d) => dump(d)).join('---\n'));

    // What the Role allows and refuses, as the API server decides it.
    const can = (verb: string, resource: string, ...more: string[]) =>
      kubectl(['auth', 'can-i', verb, resource, '-n', ns, `--as=system:serviceaccount:${ns}:kubedr`, ...more]).stdout.trim();
    expect(can('create', 'pods')).toBe('yes');
    expect(can('get', 'persistentvolumeclaims')).toBe('yes');
    expect(can('patch', 'metadatarestores.kubedr.catalogicsoftware.com', '--subresource=status')).toBe('yes');
    expect(can('update', 'metadatarestores.kubedr.catalogicsoftware.com', '--subresource=status')).toBe('no');
    expect(can('patch', 'metadatarestores.kubedr.catalogicsoftware.com')).toBe('no');
    // The Lease: created by any name, renewed only by the controller's own.
    expect(can('create', 'leases.coordination.k8s.io')).toBe('yes');
    expect(can('update', 'leases.coordination.k8s.io/kubedr-controller')).toBe('yes');
    expect(can('update', 'leases.coordination.k8s.io/someone-elses')).toBe('no');
    expect(can('get', 'secrets')).toBe('no');
    expect(can('list', 'secrets')).toBe('yes');
    expect(can('update', 'metadatabackuppolicies.kubedr.catalogicsoftware.com')).toBe('no');
    expect(can('delete', 'secrets')).toBe('no');
    expect(can('create', 'deployments.apps')).toBe('no');
    // The uninstall hook scales the chart's own Deployment to 0, and may touch no other.
    expect(can('patch', 'deployments.apps/kubedr')).toBe('yes');
    expect(can('patch', 'deployments.apps/someone-elses')).toBe('no');
    expect(can('delete', 'deployments.apps/kubedr')).toBe('no');
    expect(kubectl(['auth', 'can-i', 'get', 'secrets', '-n', 'default', `--as=system:serviceaccount:${ns}:kubedr`]).stdout.trim()).toBe('no');
    // Cluster-wide: the two namespaces it reads, nothing else.
    const canAll = (verb: string, resource: string) => kubectl(['auth', 'can-i', verb, resource, `--as=system:serviceaccount:${ns}:kubedr`]).stdout.trim();
    expect(canAll('get', 'namespaces/kube-system')).toBe('yes');
    expect(canAll('get', `namespaces/${ns}`)).toBe('yes');
    expect(canAll('get', 'namespaces/default')).toBe('no');
    expect(canAll('list', 'namespaces')).toBe('no');
    // Its own namespace is watched by name (its deletion releases the records); kube-system only read.
    expect(canAll('watch', `namespaces/${ns}`)).toBe('yes');
    expect(canAll('watch', 'namespaces/kube-system')).toBe('no');
    expect(canAll('delete', 'namespaces/kube-system')).toBe('no');
  });
});

/**
 * `helm install` with default values on a cluster without prometheus-operator, then `helm upgrade` once its CRDs are
 * there: rendered with the API versions the cluster serves (what helm passes as .Capabilities) and applied for real.
 * The controller's pod from this tree's image becomes Ready through probes on the pod IP and port 9473.
 */
describe('installed with default values, without and then with prometheus-operator', () => {
  let ns: string;
  let values: string;
  const install = () => {
    const rendered = render(['--name', 'kubedr', '--namespace', ns, '-f', values, ...servedApiVersions()]);
    const r = kubectl(['apply', '-f', '-'], rendered.manifest);
    return { rendered, ...r };
  };
  beforeAll(async () => {
    ensureCrds();
    await removePrometheusOperatorCrds();
    ns = createNamespace('helm-install');
    values = join(work, 'install-values.yaml');
    const image = kubedrImage();
    // Only what this cluster needs: its image, and its PKI directory (not kubeadm's path).
    writeFileSync(values, dump({ image: { repository: image.split(':')[0], tag: pkg.version, pullPolicy: 'Never' }, certsHostPaths: [cluster().pki] }));
  }, 300_000);
  afterAll(async () => {
    deleteInstall(ns);
    await installPrometheusOperatorCrds();
  });

  test('without prometheus-operator: installs, no monitoring objects, and the controller becomes Ready', async () => {
    const r = install();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.rendered.all('ServiceMonitor')).toEqual([]);
    expect(r.rendered.all('PrometheusRule')).toEqual([]);
    const rollout = kubectl(['rollout', 'status', 'deployment/kubedr', '-n', ns, '--timeout=180s']);
    expect(rollout.code).toBe(0);
    const pod = getJson<{ items: Pod[] }>(['pods', '-n', ns, '-l', 'app.kubernetes.io/component=controller']).items[0]!;
    // Host network: the pod IP is the node's. The endpoint answers there, and not on the node's loopback.
    const health = await fetch(`http://${pod.status?.podIP}:9473/healthz`, { signal: AbortSignal.timeout(5000) });
    expect(health.status).toBe(200);
    expect(await fetch('http://127.0.0.1:9473/healthz', { signal: AbortSignal.timeout(5000) }).then(() => 'answered', () => 'refused')).toBe('refused');
  }, 240_000);

  test('once prometheus-operator\'s CRDs are served, an upgrade adds the ServiceMonitor and PrometheusRule', async () => {
    await installPrometheusOperatorCrds();
    const r = install();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('servicemonitor.monitoring.coreos.com/kubedr created');
    expect(r.stdout).toContain('prometheusrule.monitoring.coreos.com/kubedr created');
    expect(getJson<Obj>(['servicemonitor', 'kubedr', '-n', ns]).spec.endpoints[0].port).toBe('metrics');
  }, 120_000);
});
