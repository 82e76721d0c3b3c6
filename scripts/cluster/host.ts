/**
 * @module What the test node does to the host machine and how `stop` undoes it: the network namespace, the kernel
 * settings the kubelet changes, cgroups, mounts, and the files the kubelet and CNI write outside the node's directory.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, tryRun } from './procs.ts';

/** The kubelet sets these at start; stop puts this machine's values back. */
const KUBELET_SYSCTLS = ['vm.overcommit_memory', 'vm.panic_on_oom', 'kernel.panic', 'kernel.panic_on_oops',
  'kernel.keys.root_maxkeys', 'kernel.keys.root_maxbytes'];
const SYSCTL_SAVE = '/run/kubedr-node-sysctl.orig';

/** True when this process runs inside the network namespace `netns`. */
export function insideNetns(netns: string): boolean {
  try {
    return statSync('/proc/self/ns/net').ino === statSync(`/run/netns/${netns}`).ino;
  } catch {
    return false;
  }
}

/**
 * The namespace with loopback and a port-less bridge standing in for the node's NIC (this kernel has no dummy links),
 * which carries the node IP. Routes: the service CIDR into that bridge, because connect() to a ClusterIP looks up a
 * route before kube-proxy's DNAT applies; and a blackhole default, so nothing leaves and the kubelet's cloud probes
 * fail at once instead of costing seconds.
 */
export function createNetns(netns: string, nodeIp: string, serviceCidr: string): void {
  if (existsSync(`/run/netns/${netns}`)) return;
  run('ip', ['netns', 'add', netns]);
  const ipn = (...a: string[]) => run('ip', ['-n', netns, ...a]);
  ipn('link', 'set', 'lo', 'up');
  ipn('link', 'add', 'kdr0', 'type', 'bridge');
  ipn('link', 'set', 'kdr0', 'up');
  ipn('addr', 'add', `${nodeIp}/32`, 'dev', 'kdr0');
  ipn('route', 'add', serviceCidr, 'dev', 'kdr0');
  ipn('route', 'add', 'blackhole', 'default');
  // Per-namespace settings: forwarding for pods, and bridged traffic through iptables for pod → service → pod.
  tryRun('ip', ['netns', 'exec', netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  tryRun('ip', ['netns', 'exec', netns, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
}

/** The kubelet changes machine-wide kernel settings: keep the machine's own values once, for the last node's stop. */
export function saveSysctls(): void {
  if (existsSync(SYSCTL_SAVE)) return;
  writeFileSync(SYSCTL_SAVE, run('sysctl', KUBELET_SYSCTLS).replace(/ /g, ''));
}

export function restoreSysctls(): void {
  const others = existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith('kdr-')) : [];
  if (others.length > 0 || !existsSync(SYSCTL_SAVE)) return;
  tryRun('sysctl', ['-qw', ...readFileSync(SYSCTL_SAVE, 'utf8').split('\n').filter(Boolean)]);
  unlinkSync(SYSCTL_SAVE);
}

/** The cgroup hierarchies of this machine (v1 controllers, and the v2 `unified` one of a hybrid layout). */
export const cgroupHierarchies = () => readdirSync('/sys/fs/cgroup', { withFileTypes: true }).filter((e) => e.isDirectory())
  .map((e) => join('/sys/fs/cgroup', e.name));

/** Deepest first: unmount everything under `dir` (kubelet volumes, overlay root filesystems, pod namespaces). */
export function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`)).sort().reverse();
  for (const m of mounts) tryRun('umount', ['-l', m]);
}

function removeEmptyTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeEmptyTree(join(dir, e.name));
  try { rmdirSync(dir); } catch { /* not empty: someone else's */ }
}

/**
 * kubelet 1.20 keeps pod logs under /var/log/pods (and links under /var/log/containers), paths it does not let one
 * change, and its container garbage collection removes, every minute, each directory there whose pod it does not know
 * (kuberuntime_gc.go, evictPodLogsDirectories): on a machine running several test nodes, the other nodes' pods. So each
 * node's containerd (which writes the logs) and kubelet (which reads them for `kubectl logs` and collects them) run in
 * a mount namespace of their own, in which /var/log is a bind mount of `<dir>/var-log`. /var/log itself, not
 * /var/log/pods: when one mount namespace removes a directory another has a mount on, the kernel detaches that mount,
 * and a node stopping removes an empty /var/log/pods. Returns the command prefix that runs a command in it.
 */
export function logMountNamespace(dir: string): string[] {
  const pin = join(dir, 'mntns');
  const file = join(pin, 'mnt');
  const varLog = join(dir, 'var-log');
  for (const d of [pin, join(varLog, 'pods'), join(varLog, 'containers')]) mkdirSync(d, { recursive: true });
  // A mount namespace is kept alive by a bind mount of its file, which must sit on a mount that does not propagate
  // (or the namespace would contain itself): the directory becomes a private bind mount of itself (unshare(1)).
  run('mount', ['--bind', pin, pin]);
  run('mount', ['--make-private', pin]);
  writeFileSync(file, '');
  // slave: mounts made on the host later still appear inside; the kubelet's (volumes, root file systems) stay inside.
  run('unshare', [`--mount=${file}`, '--propagation', 'slave', 'mount', '--bind', varLog, '/var/log']);
  return ['nsenter', `--mount=${file}`, '--'];
}

/** What CNI wrote outside the state directory, for this node's pods only (their logs stayed in the node's directory). */
export function removeHostLeftovers(node: string): void {
  const cniCache = '/var/lib/cni/results';
  if (existsSync(cniCache)) for (const f of readdirSync(cniCache)) if (f.startsWith(`kdr-${node}-`)) rmSync(join(cniCache, f), { force: true });
  for (const d of ['/var/lib/cni', '/run/containerd']) removeEmptyTree(d);
}

/** The node's cgroups (`root` under every hierarchy), deepest first; the kubelet made them and left them empty. */
export function removeCgroups(root: string): void {
  for (const c of cgroupHierarchies()) {
    const dir = join(c, root);
    if (existsSync(dir)) tryRun('find', [dir, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';']);
  }
}

/** `ip netns add` made /run/netns (absent before) a bind mount of itself: undo that when no namespace is left in it. */
export function removeNetnsDir(): void {
  if (existsSync('/run/netns') && readdirSync('/run/netns').length === 0) {
    tryRun('umount', ['/run/netns']);
    try { rmdirSync('/run/netns'); } catch { /* in use */ }
  }
}
