/**
 * @module A real Prometheus server for end-to-end tests: Debian's `prometheus` (the package that brings promtool), run
 * inside the test cluster's network namespace on a free loopback port with a data directory of its own, and the scrape
 * configuration that prometheus-operator generates for a ServiceMonitor, derived from the rendered object, so that a
 * chart change that would break scraping under prometheus-operator breaks the tests too.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { eventually, freePort, kubectl, repoRoot } from './e2e.ts';
import type { Obj } from './helm.ts';
import type { EndpointsDiscovery } from './kubernetes-sd.ts';

const OPERATOR_CRDS = join(repoRoot, 'test/fixtures/prometheus-operator-crds.yaml');

/** What helm passes as .Capabilities.APIVersions: the group/versions the API server serves, as --api-versions arguments. */
export function servedApiVersions(): string[] {
  const r = kubectl(['api-versions']);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim().split('\n').flatMap((v) => ['--api-versions', v]);
}

/**
 * Makes the API server serve prometheus-operator's ServiceMonitor and PrometheusRule (test/fixtures). Returns whether
 * this call installed them (false: they were served already), so the caller removes only what it added.
 */
export async function installPrometheusOperatorCrds(): Promise<boolean> {
  if (servedApiVersions().includes('monitoring.coreos.com/v1')) return false;
  const r = kubectl(['apply', '-f', OPERATOR_CRDS]);
  if (r.code !== 0) throw new Error(r.stderr);
  const w = kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/servicemonitors.monitoring.coreos.com',
    'crd/prometheusrules.monitoring.coreos.com']);
  if (w.code !== 0) throw new Error(w.stderr);
  await eventually(() => {
    if (!servedApiVersions().includes('monitoring.coreos.com/v1')) throw new Error('monitoring.coreos.com/v1 not served yet');
  }, 30_000, 500);
  return true;
}

export async function removePrometheusOperatorCrds(): Promise<void> {
  kubectl(['delete', '-f', OPERATOR_CRDS, '--ignore-not-found', '--timeout=60s']);
  await eventually(() => {
    if (servedApiVersions().includes('monitoring.coreos.com/v1')) throw new Error('monitoring.coreos.com/v1 still served');
  }, 60_000, 500);
}

/** One scrape job, as in prometheus.yml; loosely typed like the rendered objects it comes from. */
export type ScrapeConfig = Record<string, unknown>;

/** prometheus-operator's way of turning a Kubernetes label name into part of a meta label name. */
const sanitize = (label: string) => label.replace(/[^a-zA-Z0-9_]/g, '_');

/**
 * The scrape jobs prometheus-operator generates for `sm` (pkg/prometheus/promcfg.go, generateServiceMonitorConfig, as
 * in its golden files): endpoints discovery limited to the selected namespaces; keep only endpoints of Services whose
 * labels match the selector, and the named port; target labels node/pod/namespace/service/container, job from the
 * Service's name (or the `jobLabel` label's value), endpoint from the port. Selector and endpoint forms this does not
 * translate throw, rather than being scraped differently from how the operator would.
 *
 * The operator writes `kubernetes_sd_configs: [{role: endpoints, namespaces: {names: [...]}}]`; Debian's Prometheus
 * lacks that discovery, so the same targets and meta labels come from `discovery` over HTTP (test/support/kubernetes-sd.ts).
 */
export function serviceMonitorScrapeConfigs(sm: Obj, discovery: EndpointsDiscovery): ScrapeConfig[] {
  if (sm.kind !== 'ServiceMonitor') throw new Error(`not a ServiceMonitor: ${sm.kind}`);
  const spec = sm.spec as Record<string, any>;
  const ns = sm.metadata.namespace;
  if (!ns) throw new Error('the ServiceMonitor has no namespace');
  if (spec.selector?.matchExpressions?.length) throw new Error('selector.matchExpressions: not translated here');
  const matchLabels = Object.entries((spec.selector?.matchLabels ?? {}) as Record<string, string>).sort(([a], [b]) => a.localeCompare(b));
  const sel = spec.namespaceSelector as { any?: boolean; matchNames?: string[] } | undefined;
  const namespaces = sel?.any ? undefined : (sel?.matchNames?.length ? sel.matchNames : [ns]);

  return (spec.endpoints as Record<string, any>[]).map((ep, i) => {
    const known = new Set(['port', 'path', 'interval', 'scrapeTimeout', 'scheme', 'honorLabels', 'honorTimestamps', 'params', 'relabelings', 'metricRelabelings']);
    const unknown = Object.keys(ep).filter((k) => !known.has(k));
    if (unknown.length) throw new Error(`ServiceMonitor endpoint fields not translated here: ${unknown.join(', ')}`);
    if (!ep.port) throw new Error('ServiceMonitor endpoint without a port name: not translated here');
    const relabel: Record<string, unknown>[] = [
      { source_labels: ['job'], target_label: '__tmp_prometheus_job_name' },
      ...matchLabels.map(([k, v]) => ({
        action: 'keep',
        source_labels: [`__meta_kubernetes_service_label_${sanitize(k)}`, `__meta_kubernetes_service_labelpresent_${sanitize(k)}`],
        regex: `(${v});true`,
      })),
      { action: 'keep', source_labels: ['__meta_kubernetes_endpoint_port_name'], regex: ep.port },
      ...(['Node', 'Pod'] as const).map((kind) => ({
        source_labels: ['__meta_kubernetes_endpoint_address_target_kind', '__meta_kubernetes_endpoint_address_target_name'],
        separator: ';', regex: `${kind};(.*)`, replacement: '${1}', target_label: kind.toLowerCase(),
      })),
      { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
      { source_labels: ['__meta_kubernetes_service_name'], target_label: 'service' },
      { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
      { source_labels: ['__meta_kubernetes_pod_container_name'], target_label: 'container' },
      { action: 'drop', source_labels: ['__meta_kubernetes_pod_phase'], regex: '(Failed|Succeeded)' },
      ...((spec.targetLabels ?? []) as string[]).map((l) => ({
        source_labels: [`__meta_kubernetes_service_label_${sanitize(l)}`], target_label: sanitize(l), regex: '(.+)', replacement: '${1}',
      })),
      ...((spec.podTargetLabels ?? []) as string[]).map((l) => ({
        source_labels: [`__meta_kubernetes_pod_label_${sanitize(l)}`], target_label: sanitize(l), regex: '(.+)', replacement: '${1}',
      })),
      { source_labels: ['__meta_kubernetes_service_name'], target_label: 'job', replacement: '${1}' },
      ...(spec.jobLabel ? [{
        source_labels: [`__meta_kubernetes_service_label_${sanitize(spec.jobLabel)}`], target_label: 'job', regex: '(.+)', replacement: '${1}',
      }] : []),
      { target_label: 'endpoint', replacement: ep.port },
      ...((ep.relabelings ?? []) as Record<string, unknown>[]).map(snakeCaseKeys),
    ];
    return {
      job_name: `serviceMonitor/${ns}/${sm.metadata.name}/${i}`,
      honor_labels: ep.honorLabels === true,
      ...(ep.honorTimestamps === undefined ? {} : { honor_timestamps: ep.honorTimestamps }),
      // Kubernetes' discovery watches, so targets follow pods at once; refreshing every second comes close.
      http_sd_configs: [{ url: discovery.url(namespaces), refresh_interval: '1s' }],
      ...(ep.interval ? { scrape_interval: ep.interval } : {}),
      ...(ep.scrapeTimeout ? { scrape_timeout: ep.scrapeTimeout } : {}),
      ...(ep.path ? { metrics_path: ep.path } : {}),
      ...(ep.scheme ? { scheme: ep.scheme } : {}),
      ...(ep.params ? { params: ep.params } : {}),
      relabel_configs: relabel,
      ...(ep.metricRelabelings ? { metric_relabel_configs: (ep.metricRelabelings as Record<string, unknown>[]).map(snakeCaseKeys) } : {}),
    };
  });
}

/** A RelabelConfig of the monitoring.coreos.com API (sourceLabels, targetLabel) in Prometheus' own spelling. */
function snakeCaseKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v]));
}

export interface Sample {
  metric: Record<string, string>;
  /** Instant queries: [time, value]. */
  value?: [number, string];
  /** Range queries: [time, value] per step. */
  values?: [number, string][];
}

export interface ActiveAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
  value: string;
}

export interface Target {
  labels: Record<string, string>;
  discoveredLabels: Record<string, string>;
  scrapePool: string;
  scrapeUrl: string;
  health: 'up' | 'down' | 'unknown';
  lastError: string;
}

/** Every Prometheus this process started and has not stopped: killed when the test process exits, however it exits. */
const live = new Set<{ kill(signal?: number | NodeJS.Signals): void }>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export class Prometheus {
  private constructor(
    private readonly proc: ReturnType<typeof Bun.spawn>,
    private readonly dir: string,
    readonly url: string,
  ) {}

  /**
   * Starts `prometheus` with these scrape jobs and rule groups, evaluating every `evaluationInterval`, and waits until
   * it is ready. Its configuration, data and log live in a temporary directory that stop() removes.
   */
  static async start(opts: { scrapeConfigs: ScrapeConfig[]; ruleGroups: unknown[]; evaluationInterval: string }): Promise<Prometheus> {
    const dir = mkdtempSync(join(tmpdir(), 'kubedr-prometheus-'));
    writeFileSync(join(dir, 'rules.yaml'), dump({ groups: opts.ruleGroups }));
    writeFileSync(join(dir, 'prometheus.yml'), dump({
      global: { evaluation_interval: opts.evaluationInterval },
      rule_files: [join(dir, 'rules.yaml')],
      scrape_configs: opts.scrapeConfigs,
    }));
    const port = await freePort();
    const log = Bun.file(join(dir, 'prometheus.log'));
    const proc = Bun.spawn(['prometheus', `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`, '--log.level=info'], { stdin: 'ignore', stdout: log, stderr: log });
    const p = new Prometheus(proc, dir, `http://127.0.0.1:${port}`);
    live.add(proc);
    try {
      await eventually(async () => {
        if (proc.exitCode !== null) throw new Error(`prometheus exited with ${proc.exitCode}:\n${p.log.slice(-3000)}`);
        const r = await fetch(`${p.url}/-/ready`, { signal: AbortSignal.timeout(2000) });
        if (!r.ok) throw new Error(`not ready: ${r.status}`);
      }, 30_000);
    } catch (err) {
      await p.stop();
      throw err;
    }
    return p;
  }

  /** Prometheus' own log (for a failing test's message). */
  get log(): string {
    try {
      return readFileSync(join(this.dir, 'prometheus.log'), 'utf8');
    } catch {
      return '';
    }
  }

  private async api<T>(path: string, params: Record<string, string | string[]> = {}): Promise<T> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const x of [v].flat()) q.append(k, x);
    const res = await fetch(`${this.url}/api/v1/${path}?${q}`, { signal: AbortSignal.timeout(10_000) });
    const body = await res.json() as { status: string; data: T; error?: string; errorType?: string; warnings?: string[] };
    if (body.status !== 'success') throw new Error(`${path} ${JSON.stringify(params)}: ${body.errorType}: ${body.error}`);
    if (body.warnings?.length) throw new Error(`${path} ${JSON.stringify(params)}: warnings ${body.warnings.join('; ')}`);
    return body.data;
  }

  /** An instant query; a query error (bad syntax, unknown function, many-to-many match) throws. */
  async query(query: string): Promise<Sample[]> {
    const d = await this.api<{ resultType: string; result: Sample[] | [number, string] }>('query', { query });
    // A scalar (e.g. time()) is one unlabelled sample.
    return d.resultType === 'scalar' ? [{ metric: {}, value: d.result as [number, string] }] : d.result as Sample[];
  }

  /** A range query over the last `seconds`, as a Grafana time series panel asks for it. */
  async queryRange(query: string, seconds: number, stepSeconds: number): Promise<Sample[]> {
    const end = Date.now() / 1000;
    const d = await this.api<{ result: Sample[] }>('query_range', {
      query, start: String(end - seconds), end: String(end), step: String(stepSeconds),
    });
    return d.result;
  }

  /** Series matching `match` (what Grafana's label_values(match, label) reads). */
  async series(match: string): Promise<Record<string, string>[]> {
    return this.api<Record<string, string>[]>('series', { 'match[]': match });
  }

  /** Pending and firing alerts (resolved ones are not listed). */
  async alerts(): Promise<ActiveAlert[]> {
    return (await this.api<{ alerts: ActiveAlert[] }>('alerts')).alerts;
  }

  async targets(): Promise<Target[]> {
    return (await this.api<{ activeTargets: Target[] }>('targets', { state: 'active' })).activeTargets;
  }

  /** Stops the server and removes its directory. */
  async stop(): Promise<void> {
    this.proc.kill('SIGTERM');
    const exited = await Promise.race([this.proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
    if (!exited) {
      this.proc.kill('SIGKILL');
      await this.proc.exited;
    }
    live.delete(this.proc);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
