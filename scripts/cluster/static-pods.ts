/**
 * @module Static pod manifests for the test node's etcd and kube-apiserver in kubeadm's shape (issue 18, "Safety"): the
 * same command lines as components.ts builds for processes, turned into pods the kubelet runs from its
 * --pod-manifest-path, with hostNetwork, system-node-critical and hostPath volumes named as kubeadm names them
 * (`etcd-data`, `etcd-certs`, `k8s-certs`), so `kubedr etcd-restore --kubeadm` edits files a real kubelet acts on.
 * Images: scripts/cluster/build-cp-images.sh; static-control-plane.ts writes these into the node's manifests directory.
 */
export const ETCD_IMAGE = 'localhost/kubedr-testenv/etcd:3.5';
export const APISERVER_IMAGE = 'localhost/kubedr-testenv/kube-apiserver:v1.20.2';

export interface HostVolume {
  name: string;
  /** Path on the node; mounted at the same path in the container unless `mountPath` says otherwise. */
  hostPath: string;
  mountPath?: string;
  type: 'DirectoryOrCreate' | 'Directory' | 'File';
  readOnly?: boolean;
}

/** `--flag value` pairs as kubeadm writes them, `--flag=value`; a flag alone is a boolean (`--flag=true`). */
export function kubeadmFlags(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--') || a.includes('=')) out.push(a);
    else if (i + 1 < args.length && !args[i + 1]!.startsWith('--')) out.push(`${a}=${args[++i]}`);
    else out.push(`${a}=true`);
  }
  return out;
}

const q = (s: string) => JSON.stringify(s); // a YAML double-quoted scalar

/**
 * A static pod in the layout kubeadm writes (kube-system, label component=<name>, tier=control-plane). `cmd[0]` is the
 * program (its base name is run from the image's /usr/local/bin); the rest are its flags.
 */
export function staticPodYaml(name: string, image: string, cmd: string[], volumes: HostVolume[]): string {
  const program = cmd[0]!.split('/').pop()!;
  const lines = [
    'apiVersion: v1', 'kind: Pod', 'metadata:', '  labels:', `    component: ${name}`, '    tier: control-plane',
    `  name: ${name}`, '  namespace: kube-system', 'spec:', '  containers:', '  - command:', `    - ${program}`,
    ...kubeadmFlags(cmd.slice(1)).map((f) => `    - ${q(f)}`),
    `    image: ${image}`, '    imagePullPolicy: Never', `    name: ${name}`, '    volumeMounts:',
    ...volumes.flatMap((v) => [`    - mountPath: ${q(v.mountPath ?? v.hostPath)}`, `      name: ${v.name}`, ...(v.readOnly ? ['      readOnly: true'] : [])]),
    '  hostNetwork: true', '  priorityClassName: system-node-critical', '  volumes:',
    ...volumes.flatMap((v) => ['  - hostPath:', `      path: ${q(v.hostPath)}`, `      type: ${v.type}`, `    name: ${v.name}`]),
    '',
  ];
  return lines.join('\n');
}

/** etcd's manifest from its process command line (components.ts etcdCmd): data and certificates as hostPath volumes. */
export function etcdManifest(cmd: string[], pki: string, image = ETCD_IMAGE): string {
  const dataDir = cmd[cmd.indexOf('--data-dir') + 1]!;
  return staticPodYaml('etcd', image, cmd, [
    { name: 'etcd-certs', hostPath: `${pki}/etcd`, type: 'DirectoryOrCreate' },
    { name: 'etcd-data', hostPath: dataDir, type: 'DirectoryOrCreate' },
  ]);
}

/** kube-apiserver's manifest from its command line (components.ts apiserverCmd). */
export function apiserverManifest(cmd: string[], pki: string, tokenFile: string, certDir: string): string {
  return staticPodYaml('kube-apiserver', APISERVER_IMAGE, cmd, [
    { name: 'k8s-certs', hostPath: pki, type: 'DirectoryOrCreate', readOnly: true },
    { name: 'token-auth', hostPath: tokenFile, type: 'File', readOnly: true },
    { name: 'cert-dir', hostPath: certDir, type: 'DirectoryOrCreate' },
  ]);
}
