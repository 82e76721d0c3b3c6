/**
 * @module The test node's etcd and kube-apiserver as static pods, the way kubeadm runs them (issue 18, "Safety"): their
 * images are imported into the node's containerd, their manifests (static-pods.ts) written into the kubelet's
 * --pod-manifest-path, and the kubelet starts them. Stopping and starting them is what a kubeadm operator does: move the
 * manifest out of the kubelet's sight and back. node.ts chooses this mode with `start(dir, { controlPlane: 'static-pods' })`.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { repointEtcdData } from '../../src/engine/kubeadm-manifests.ts';
import { run, tryRun } from './procs.ts';
import { ETCD_IMAGE, apiserverManifest, etcdManifest } from './static-pods.ts';

/** How the node runs etcd and kube-apiserver: as processes it starts itself, or as static pods of its kubelet. */
export type ControlPlaneMode = 'processes' | 'static-pods';
export type Component = 'etcd' | 'apiserver';

/** What this module needs of a node (node.ts's TestEnv). */
interface NodeRef {
  dir: string;
  node: string;
  containerdSocket: string;
}

const FILE: Record<Component, string> = { etcd: 'etcd.yaml', apiserver: 'kube-apiserver.yaml' };
const POD: Record<Component, string> = { etcd: 'etcd', apiserver: 'kube-apiserver' };
const manifest = (n: NodeRef, c: Component) => join(n.dir, 'manifests', FILE[c]);
/** Where a stopped component's manifest waits: beside the manifests directory, as an operator moves it (/etc/kubernetes). */
const aside = (n: NodeRef, c: Component) => join(n.dir, 'manifests-aside', FILE[c]);

const scriptsDir = import.meta.dir;

/**
 * How long the kubelet may take to start or stop a static pod after its manifest came or went. Seconds, usually; but
 * with etcd stopped and the API server up, the kubelet 1.20 first deletes the pod's mirror pod through that API server,
 * which holds each call until its 34 s timeout, and retries: a CI run saw etcd's pod started 2.5 minutes after its
 * manifest was back (kubeadm clusters behave the same).
 */
export const STATIC_START_MS = 240_000;

/**
 * The image archives the static pods run (build-cp-images.sh, cached) and etcd's image name. An `etcdBinary` other than
 * the default (KUBEDR_ETCD, e.g. Debian 12's etcd 3.4) gets an image of its own, named after its version.
 */
export function controlPlaneImages(etcdBinary: string | undefined): { archives: string[]; etcdImage: string } {
  const build = (args: string[]) => run(join(scriptsDir, 'build-cp-images.sh'), args).trim().split('\n').pop()!;
  const dir = build([]);
  if (!etcdBinary) return { archives: [join(dir, 'etcd.tar'), join(dir, 'kube-apiserver.tar')], etcdImage: ETCD_IMAGE };
  const version = /Version:\s*(\S+)/.exec(run(etcdBinary, ['--version']))?.[1];
  if (!version) throw new Error(`cannot read the version of ${etcdBinary} (etcd --version)`);
  const etcdImage = `localhost/kubedr-testenv/etcd:${version}`;
  return { archives: [join(build(['--etcd', etcdBinary, etcdImage]), 'etcd.tar'), join(dir, 'kube-apiserver.tar')], etcdImage };
}

/** Writes etcd.yaml and kube-apiserver.yaml into the kubelet's manifests directory, from the processes' command lines. */
export function writeManifests(n: NodeRef & { pki: string }, etcdImage: string, etcdLine: string[], apiserverLine: string[]): void {
  writeFileSync(manifest(n, 'etcd'), etcdManifest(etcdLine, n.pki, etcdImage), { mode: 0o600 });
  const flag = (name: string) => apiserverLine.find((a) => a.startsWith(`--${name}=`))!.split('=')[1]!;
  writeFileSync(manifest(n, 'apiserver'), apiserverManifest(apiserverLine, n.pki, flag('token-auth-file'), flag('cert-dir')), { mode: 0o600 });
}

const ctr = (n: NodeRef, args: string[]) => tryRun('ctr', ['--address', n.containerdSocket, '-n', 'k8s.io', ...args]).stdout;

/** PIDs of the component's running containers (the kubelet names its static pod `<name>-<node>`). */
export function runningPids(n: NodeRef, c: Component): number[] {
  const ids = new Set(ctr(n, ['containers', 'ls', '-q',
    `labels."io.kubernetes.pod.name"==${POD[c]}-${n.node},labels."io.cri-containerd.kind"==container`]).split('\n').filter(Boolean));
  return ctr(n, ['tasks', 'ls']).split('\n').slice(1).map((l) => l.trim().split(/\s+/))
    .filter(([id, , status]) => ids.has(id!) && status === 'RUNNING').map(([, pid]) => Number(pid));
}

/** The end of the component's container log (the kubelet writes it under the node's own /var/log: host.ts). */
export function staticPodLog(n: NodeRef, c: Component, lines = 15): string {
  const pods = join(n.dir, 'var-log/pods');
  const dirs = existsSync(pods) ? readdirSync(pods).filter((d) => d.startsWith(`kube-system_${POD[c]}-${n.node}_`)) : [];
  const logs = dirs.flatMap((d) => {
    const cdir = join(pods, d, POD[c]);
    return existsSync(cdir) ? readdirSync(cdir).map((f) => join(cdir, f)) : [];
  }).sort();
  const last = logs.at(-1);
  return last ? readFileSync(last, 'utf8').split('\n').slice(-lines).join('\n') : '(no container log yet)';
}

/** Polls `check` until true; fails with the container's log after `timeoutMs`. */
export async function waitStaticPod(n: NodeRef, c: Component, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await Promise.resolve().then(check).catch(() => false)) return;
    await Bun.sleep(250);
  }
  throw new Error(`static pod ${POD[c]} not ready after ${timeoutMs} ms; last log lines:\n${staticPodLog(n, c)}`);
}

/** Moves the component's manifest out of the kubelet's sight and waits until the kubelet has stopped its container. */
export async function stopStaticPod(n: NodeRef, c: Component): Promise<void> {
  if (existsSync(manifest(n, c))) {
    mkdirSync(join(n.dir, 'manifests-aside'), { recursive: true });
    renameSync(manifest(n, c), aside(n, c));
  }
  // The kubelet gives a pod 30 s to stop (its default grace period) and both stop within a second or two of SIGTERM;
  // but the kubelet's pod workers may first be held by its mirror-pod calls to an API server whose etcd is away (up to
  // 34 s each, STATIC_START_MS).
  const deadline = Date.now() + STATIC_START_MS;
  while (runningPids(n, c).length > 0) {
    if (Date.now() > deadline) throw new Error(`the kubelet did not stop static pod ${POD[c]} within ${STATIC_START_MS / 1000} s of its manifest leaving`);
    await Bun.sleep(250);
  }
}

/** Whether the component's manifest is out of the kubelet's sight (stopped by stopStaticPod and not started again). */
export function isSetAside(n: NodeRef, c: Component): boolean {
  return existsSync(aside(n, c)) && !existsSync(manifest(n, c));
}

/** Puts the component's manifest back (the kubelet starts the pod; the caller waits for it to answer). */
export function startStaticPod(n: NodeRef, c: Component): void {
  if (existsSync(aside(n, c))) {
    // A new start mark makes a new pod for the kubelet (a static pod's UID is a hash of its manifest). With the same
    // UID, every stop counts as a crash of the same container, and the kubelet's crash back-off (10 s doubling up to
    // 5 min, forgotten only after 10 min of running) grew over a suite's many restarts until an API server came back
    // after minutes, in CrashLoopBackOff: a CI run lost its node that way.
    writeFileSync(aside(n, c), withStartMark(readFileSync(aside(n, c), 'utf8'), `${Date.now()}`), { mode: 0o600 });
    renameSync(aside(n, c), manifest(n, c));
  } else if (!existsSync(manifest(n, c))) throw new Error(`no manifest for ${POD[c]} in ${join(n.dir, 'manifests')} nor aside`);
}

const START_MARK = 'kubedr-testenv/started';

/** The manifest with its start-mark annotation set to `mark` (added under metadata when it has none). */
export function withStartMark(yaml: string, mark: string): string {
  const line = `    ${START_MARK}: "${mark}"`;
  const existing = new RegExp(`^    ${START_MARK}: .*$`, 'm');
  if (existing.test(yaml)) return yaml.replace(existing, line);
  if (/^  annotations:\n/m.test(yaml)) return yaml.replace(/^  annotations:\n/m, `  annotations:\n${line}\n`);
  return yaml.replace(/^metadata:\n/m, `metadata:\n  annotations:\n${line}\n`);
}

/** Points etcd's manifest (wherever it is, in place or aside) at another data directory, as a restore runbook does. */
export function repointEtcd(n: NodeRef, dataDir: string): void {
  const file = existsSync(aside(n, 'etcd')) ? aside(n, 'etcd') : manifest(n, 'etcd');
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, repointEtcdData(readFileSync(file, 'utf8'), resolve(dataDir), file), { mode: 0o600 });
  renameSync(tmp, file);
}
