/**
 * @module Prometheus' Kubernetes service discovery, role `endpoints`, served over HTTP service discovery. Debian builds
 * Prometheus without `kubernetes_sd_configs` (NEWS.Debian: "Kubernetes support has been completely removed"), so this
 * stands in for it: on each refresh it reads Endpoints, Services and Pods from the test API server and answers with
 * the targets and `__meta_kubernetes_*` labels Prometheus' own discovery gives them (discovery/kubernetes/endpoints.go
 * in Prometheus 2.42). The relabelling that prometheus-operator generates then runs on them unchanged, in Prometheus.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_TOKEN } from '../../scripts/cluster/node.ts';
import { cluster } from './e2e.ts';

type Labels = Record<string, string>;
interface Meta { name: string; namespace: string; uid?: string; labels?: Labels; annotations?: Labels; ownerReferences?: { kind: string; name: string; controller?: boolean }[] }
interface EndpointAddress { ip: string; hostname?: string; nodeName?: string; targetRef?: { kind: string; name: string; namespace?: string } }
interface EndpointPort { name?: string; port: number; protocol?: string; appProtocol?: string }
interface Endpoints { metadata: Meta; subsets?: { addresses?: EndpointAddress[]; notReadyAddresses?: EndpointAddress[]; ports?: EndpointPort[] }[] }
interface Service { metadata: Meta }
interface ContainerPort { name?: string; containerPort: number; protocol?: string }
interface Container { name: string; image: string; ports?: ContainerPort[] }
interface Pod {
  metadata: Meta;
  spec: { nodeName?: string; containers: Container[]; initContainers?: Container[] };
  status: { podIP?: string; hostIP?: string; phase?: string; conditions?: { type: string; status: string }[] };
}
export interface TargetGroup { targets: string[]; labels: Labels }

const sanitize = (name: string) => name.replace(/[^a-zA-Z0-9_]/g, '_');

/** `<prefix>_label_<name>`, `<prefix>_labelpresent_<name>` and the same for annotations, as Prometheus names them. */
function objectLabels(prefix: string, m: Meta): Labels {
  const out: Labels = {};
  for (const [kind, map] of [['label', m.labels], ['annotation', m.annotations]] as const) {
    for (const [k, v] of Object.entries(map ?? {})) {
      out[`${prefix}_${kind}_${sanitize(k)}`] = v;
      out[`${prefix}_${kind}present_${sanitize(k)}`] = 'true';
    }
  }
  return out;
}

/** The labels of one container port, as discovery gives them to an endpoint's target and to a pod's other ports. */
function containerPortLabels(c: Container, cp: ContainerPort): Labels {
  return {
    __meta_kubernetes_pod_container_name: c.name,
    __meta_kubernetes_pod_container_image: c.image,
    __meta_kubernetes_pod_container_port_name: cp.name ?? '',
    __meta_kubernetes_pod_container_port_number: String(cp.containerPort),
    __meta_kubernetes_pod_container_port_protocol: cp.protocol ?? 'TCP',
    __meta_kubernetes_pod_container_init: 'false',
  };
}

function podLabels(pod: Pod): Labels {
  const owner = pod.metadata.ownerReferences?.find((o) => o.controller);
  const ready = pod.status.conditions?.find((c) => c.type === 'Ready')?.status;
  return {
    ...objectLabels('__meta_kubernetes_pod', pod.metadata),
    __meta_kubernetes_pod_name: pod.metadata.name,
    __meta_kubernetes_pod_ip: pod.status.podIP ?? '',
    __meta_kubernetes_pod_ready: ready === 'True' ? 'true' : ready === 'False' ? 'false' : 'unknown',
    __meta_kubernetes_pod_phase: pod.status.phase ?? '',
    __meta_kubernetes_pod_node_name: pod.spec.nodeName ?? '',
    __meta_kubernetes_pod_host_ip: pod.status.hostIP ?? '',
    __meta_kubernetes_pod_uid: pod.metadata.uid ?? '',
    ...(owner ? { __meta_kubernetes_pod_controller_kind: owner.kind, __meta_kubernetes_pod_controller_name: owner.name } : {}),
  };
}

/** The target groups of one Endpoints object, as Prometheus' endpoints role builds them. */
export function endpointsTargets(ep: Endpoints, service: Service | undefined, pods: Map<string, Pod>): TargetGroup[] {
  const group: Labels = {
    __meta_kubernetes_namespace: ep.metadata.namespace,
    __meta_kubernetes_endpoints_name: ep.metadata.name,
    ...objectLabels('__meta_kubernetes_endpoints', ep.metadata),
    ...(service ? { ...objectLabels('__meta_kubernetes_service', service.metadata), __meta_kubernetes_service_name: service.metadata.name } : {}),
  };
  const out: TargetGroup[] = [];
  // Container ports an endpoint covered; the pods' other container ports become targets of their own afterwards.
  const seen = new Map<string, Set<string>>();
  for (const subset of ep.subsets ?? []) {
    for (const [addresses, ready] of [[subset.addresses ?? [], 'true'], [subset.notReadyAddresses ?? [], 'false']] as const) {
      for (const addr of addresses) {
        for (const port of subset.ports ?? []) {
          const labels: Labels = {
            ...group,
            __meta_kubernetes_endpoint_port_name: port.name ?? '',
            __meta_kubernetes_endpoint_port_protocol: port.protocol ?? 'TCP',
            __meta_kubernetes_endpoint_ready: ready,
            ...(port.appProtocol ? { __meta_kubernetes_endpoint_port_app_protocol: port.appProtocol } : {}),
            ...(addr.targetRef ? {
              __meta_kubernetes_endpoint_address_target_kind: addr.targetRef.kind,
              __meta_kubernetes_endpoint_address_target_name: addr.targetRef.name,
            } : {}),
            ...(addr.nodeName ? { __meta_kubernetes_endpoint_node_name: addr.nodeName } : {}),
            ...(addr.hostname ? { __meta_kubernetes_endpoint_hostname: addr.hostname } : {}),
          };
          const pod = addr.targetRef?.kind === 'Pod' ? pods.get(addr.targetRef.name) : undefined;
          if (pod) {
            Object.assign(labels, podLabels(pod));
            for (const c of pod.spec.containers) {
              const cp = c.ports?.find((p) => p.containerPort === port.port && (p.protocol ?? 'TCP') === (port.protocol ?? 'TCP'));
              if (!cp) continue;
              Object.assign(labels, containerPortLabels(c, cp));
              const s = seen.get(pod.metadata.name) ?? new Set<string>();
              s.add(`${c.name}/${cp.containerPort}`);
              seen.set(pod.metadata.name, s);
            }
          }
          out.push({ targets: [`${addr.ip}:${port.port}`], labels });
        }
      }
    }
  }
  for (const [name, covered] of seen) {
    const pod = pods.get(name)!;
    for (const c of pod.spec.containers) {
      for (const cp of c.ports ?? []) {
        if (covered.has(`${c.name}/${cp.containerPort}`)) continue;
        out.push({
          targets: [`${pod.status.podIP}:${cp.containerPort}`],
          labels: { ...group, ...podLabels(pod), ...containerPortLabels(c, cp) },
        });
      }
    }
  }
  return out;
}

/** An HTTP service discovery endpoint for Prometheus: GET /endpoints?namespace=a&namespace=b (none: every namespace). */
export class EndpointsDiscovery {
  private constructor(private readonly server: ReturnType<typeof Bun.serve>) {}

  static start(): EndpointsDiscovery {
    const env = cluster();
    const ca = readFileSync(join(env.pki, 'ca.crt'), 'utf8');
    const list = async <T>(path: string): Promise<T[]> => {
      const res = await fetch(`${env.apiserverUrl}${path}`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, tls: { ca }, signal: AbortSignal.timeout(5000),
      });
      if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
      return (await res.json() as { items: T[] }).items;
    };
    const server = Bun.serve({
      hostname: '127.0.0.1', port: 0,
      async fetch(req) {
        const namespaces = new URL(req.url).searchParams.getAll('namespace');
        const scopes = namespaces.length ? namespaces.map((n) => `/api/v1/namespaces/${encodeURIComponent(n)}`) : ['/api/v1'];
        const groups: TargetGroup[] = [];
        for (const scope of scopes) {
          const [endpoints, services, pods] = await Promise.all([
            list<Endpoints>(`${scope}/endpoints`), list<Service>(`${scope}/services`), list<Pod>(`${scope}/pods`),
          ]);
          const key = (m: Meta) => `${m.namespace}/${m.name}`;
          const svc = new Map(services.map((s) => [key(s.metadata), s]));
          const podsByNs = new Map<string, Map<string, Pod>>();
          for (const p of pods) {
            const m = podsByNs.get(p.metadata.namespace) ?? new Map<string, Pod>();
            m.set(p.metadata.name, p);
            podsByNs.set(p.metadata.namespace, m);
          }
          for (const ep of endpoints) {
            groups.push(...endpointsTargets(ep, svc.get(key(ep.metadata)), podsByNs.get(ep.metadata.namespace) ?? new Map()));
          }
        }
        return Response.json(groups);
      },
    });
    return new EndpointsDiscovery(server);
  }

  /** The URL for http_sd_configs, limited to `namespaces` (all when undefined). */
  url(namespaces?: string[]): string {
    const q = new URLSearchParams();
    for (const n of namespaces ?? []) q.append('namespace', n);
    return `http://127.0.0.1:${this.server.port}/endpoints${namespaces ? `?${q}` : ''}`;
  }

  stop(): void {
    this.server.stop(true);
  }
}
