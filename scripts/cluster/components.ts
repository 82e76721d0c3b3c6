/**
 * @module What the test node's Kubernetes components are: its addresses, the configuration files of containerd and the
 * CNI bridge, and the command lines of etcd and kube-apiserver (node.ts starts them; tests start more of both).
 */
import { join } from 'node:path';

/** Addresses inside the namespace; the same in every node, since each has a namespace of its own. */
export const NODE_IP = '10.200.0.2';
export const POD_CIDR = '10.244.0.0/24';
export const SERVICE_CIDR = '10.0.0.0/24';
export const SERVICE_IP = '10.0.0.1';
export const PAUSE_IMAGE = 'k8s.gcr.io/pause:3.4.1';

export function containerdConfig(n: string): string {
  return `version = 2
root = "${n}/containerd/root"
state = "${n}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "${n}/run/containerd.sock"
[ttrpc]
  address = "${n}/run/containerd.ttrpc.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "${n}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # No CAP_SYS_RESOURCE in this VM: runc cannot lower oom_score_adj and fails with "failed to update
  # /proc/self/oom_score_adj: Permission denied". Clamp to containerd's own value.
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "${n}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${n}/cni/net.d"
    max_conf_num = 1
`;
}

export function cniConfig(n: string, node: string): string {
  return JSON.stringify({
    cniVersion: '0.4.0',
    name: `kdr-${node}`,
    plugins: [
      {
        type: 'bridge', bridge: 'cni0', isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: 'host-local', dataDir: `${n}/cni/ipam`, ranges: [[{ subnet: POD_CIDR }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  }, null, 2);
}

/**
 * The etcd the node runs: KUBEDR_ETCD (a path) when set, e.g. Debian 12's /usr/bin/etcd (3.4) for a drill on an older
 * cluster's etcd; else the first on PATH, which with-node.sh makes Debian 13's 3.5.
 */
function etcdBinary(): string {
  return process.env.KUBEDR_ETCD || 'etcd';
}

/** An etcd member with mTLS for clients; peers on https with peer certificates (as kubeadm) when `peerTls`. */
export function etcdCmd(dir: string, pki: string, name: string, clientUrls: string[], peerPort: number, peerTls = false): string[] {
  const peer = `${peerTls ? 'https' : 'http'}://127.0.0.1:${peerPort}`;
  const peerFlags = peerTls ? ['--peer-cert-file', join(pki, 'etcd/peer.crt'), '--peer-key-file', join(pki, 'etcd/peer.key'),
    '--peer-client-cert-auth', '--peer-trusted-ca-file', join(pki, 'etcd/ca.crt')] : [];
  return [etcdBinary(), '--name', name, '--data-dir', join(dir, `${name}-data`),
    '--listen-client-urls', clientUrls.join(','), '--advertise-client-urls', clientUrls.at(-1)!,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `${name}=${peer}`,
    '--cert-file', join(pki, 'etcd/server.crt'), '--key-file', join(pki, 'etcd/server.key'),
    '--client-cert-auth', '--trusted-ca-file', join(pki, 'etcd/ca.crt'), ...peerFlags, '--snapshot-count', '10000'];
}

/** A kube-apiserver of the node (or a test's extra one) on `etcdEndpoint`, with the node's PKI and admin token file. */
export function apiserverCmd(env: { dir: string; pki: string; bin: string; nodeIp: string }, etcdEndpoint: string, port: number,
  certDir: string): string[] {
  const p = env.pki;
  return [join(env.bin, 'kube-apiserver'),
    `--etcd-servers=${etcdEndpoint}`, `--etcd-cafile=${join(p, 'etcd/ca.crt')}`,
    `--etcd-certfile=${join(p, 'apiserver-etcd-client.crt')}`, `--etcd-keyfile=${join(p, 'apiserver-etcd-client.key')}`,
    `--secure-port=${port}`, '--bind-address=0.0.0.0', `--advertise-address=${env.nodeIp}`,
    `--tls-cert-file=${join(p, 'apiserver.crt')}`, `--tls-private-key-file=${join(p, 'apiserver.key')}`,
    `--client-ca-file=${join(p, 'ca.crt')}`, `--cert-dir=${certDir}`,
    `--kubelet-client-certificate=${join(p, 'apiserver-kubelet-client.crt')}`,
    `--kubelet-client-key=${join(p, 'apiserver-kubelet-client.key')}`, '--kubelet-preferred-address-types=InternalIP',
    '--service-account-issuer=https://kubernetes.default.svc',
    `--service-account-key-file=${join(p, 'sa.pub')}`, `--service-account-signing-key-file=${join(p, 'sa.key')}`,
    `--token-auth-file=${join(env.dir, 'tokens.csv')}`,
    '--authorization-mode=Node,RBAC', '--enable-admission-plugins=NodeRestriction', '--allow-privileged=true',
    `--service-cluster-ip-range=${SERVICE_CIDR}`, '--event-ttl=1h'];
}

/** What the other components' command lines need of the node (node.ts's TestEnv). */
interface NodeDirs {
  dir: string;
  pki: string;
  bin: string;
  containerdSocket: string;
}

/** kube-controller-manager, kube-scheduler and kube-proxy of node `node`, each with its kubeconfig from pki.ts. */
export function controlPlaneCmds(env: NodeDirs, node: string): Record<'controller-manager' | 'scheduler' | 'kube-proxy', string[]> {
  const kc = (c: string) => join(env.dir, `${c}.kubeconfig`);
  const ca = join(env.pki, 'ca.crt');
  return {
    'controller-manager': [join(env.bin, 'kube-controller-manager'), `--kubeconfig=${kc('controller-manager')}`,
      `--authentication-kubeconfig=${kc('controller-manager')}`, `--authorization-kubeconfig=${kc('controller-manager')}`,
      `--service-account-private-key-file=${join(env.pki, 'sa.key')}`, `--root-ca-file=${ca}`, '--use-service-account-credentials=true',
      `--cluster-signing-cert-file=${ca}`, `--cluster-signing-key-file=${join(env.pki, 'ca.key')}`,
      '--leader-elect=false', '--bind-address=127.0.0.1', '--port=0', '--controllers=*'],
    scheduler: [join(env.bin, 'kube-scheduler'), `--kubeconfig=${kc('scheduler')}`,
      `--authentication-kubeconfig=${kc('scheduler')}`, `--authorization-kubeconfig=${kc('scheduler')}`,
      '--leader-elect=false', '--bind-address=127.0.0.1', '--port=0'],
    // iptables mode inside the namespace; the conntrack flags at 0 keep it from changing machine-wide settings.
    'kube-proxy': [join(env.bin, 'kube-proxy'), `--kubeconfig=${kc('kube-proxy')}`, `--hostname-override=${node}`,
      `--bind-address=${NODE_IP}`, '--cluster-cidr=10.244.0.0/16', '--proxy-mode=iptables',
      '--conntrack-max-per-core=0', '--conntrack-tcp-timeout-established=0', '--conntrack-tcp-timeout-close-wait=0',
      '--metrics-bind-address=127.0.0.1:10249', '--healthz-bind-address=127.0.0.1:10256'],
  };
}

/** The kubelet of node `node` (cgroupfs, under `cgroupRoot`), running static pods from `<dir>/manifests` as kubeadm's does. */
export function kubeletCmd(env: NodeDirs, node: string, cgroupRoot: string): string[] {
  const n = env.dir;
  return [join(env.bin, 'kubelet'), `--kubeconfig=${join(n, 'kubelet.kubeconfig')}`, `--root-dir=${join(n, 'kubelet')}`,
    `--cert-dir=${join(n, 'kubelet/pki')}`, `--tls-cert-file=${join(env.pki, 'kubelet-server.crt')}`,
    `--tls-private-key-file=${join(env.pki, 'kubelet-server.key')}`,
    '--container-runtime=remote', `--container-runtime-endpoint=unix://${env.containerdSocket}`, '--runtime-request-timeout=5m',
    '--cgroup-driver=cgroupfs', `--cgroup-root=${cgroupRoot}`, '--fail-swap-on=false',
    `--hostname-override=${node}`, `--node-ip=${NODE_IP}`, `--pod-infra-container-image=${PAUSE_IMAGE}`,
    `--client-ca-file=${join(env.pki, 'ca.crt')}`, '--anonymous-auth=false', '--authorization-mode=Webhook',
    `--resolv-conf=${join(n, 'resolv.conf')}`, `--volume-plugin-dir=${join(n, 'kubelet/volume-plugins')}`,
    // Static pods, as on kubeadm (/etc/kubernetes/manifests): etcd and kube-apiserver when the node runs them so
    // (static-control-plane.ts), and the HA drill's members. Those are links to files elsewhere, whose changes raise no
    // event in this directory: the kubelet rereads it every 5 s (default 20 s), as it would notice them on a real node.
    `--pod-manifest-path=${join(n, 'manifests')}`, '--file-check-frequency=5s',
    // As kubeadm taints a control-plane node (1.20); tests keep it, so a pod that does not tolerate it is seen.
    '--register-with-taints=node-role.kubernetes.io/master=:NoSchedule',
    // A test machine's disk may be fuller than a real node's: never evict or collect images for that.
    '--image-gc-high-threshold=100', '--image-gc-low-threshold=99',
    '--eviction-hard=memory.available<1Mi,nodefs.available<1%,imagefs.available<1%', '--v=1'];
}
