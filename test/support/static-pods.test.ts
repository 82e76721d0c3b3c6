/** @module The test node's static pod manifests are in the shape `kubedr etcd-restore --kubeadm` edits. */
import { describe, expect, test } from 'bun:test';
import { etcdDataHostPath, repointEtcdData } from '../../src/engine/kubeadm-manifests.ts';
import { apiserverCmd, etcdCmd } from '../../scripts/cluster/components.ts';
import { apiserverManifest, etcdManifest, kubeadmFlags } from '../../scripts/cluster/static-pods.ts';

const dir = '/tmp/node';
const pki = `${dir}/pki`;

describe('static pod manifests of the test node', () => {
  test('flags are written as kubeadm writes them', () => {
    expect(kubeadmFlags(['--name', 'etcd', '--client-cert-auth', '--x=1', '--snapshot-count', '10000']))
      .toEqual(['--name=etcd', '--client-cert-auth=true', '--x=1', '--snapshot-count=10000']);
  });

  test('etcd: kubeadm shape, etcd-data hostPath found and repointed by the --kubeadm engine', () => {
    const cmd = etcdCmd(dir, pki, 'etcd', ['https://127.0.0.1:2379'], 2380, true);
    const text = etcdManifest(cmd, pki);
    const pod = Bun.YAML.parse(text) as any;
    expect(pod.metadata).toMatchObject({ name: 'etcd', namespace: 'kube-system' });
    expect(pod.spec.hostNetwork).toBe(true);
    expect(pod.spec.priorityClassName).toBe('system-node-critical');
    expect(pod.spec.containers[0].command).toContain(`--data-dir=${dir}/etcd-data`);
    expect(pod.spec.containers[0].command[0]).toBe('etcd');
    expect(etcdDataHostPath(text)).toBe(`${dir}/etcd-data`);
    const moved = Bun.YAML.parse(repointEtcdData(text, `${dir}/restored`)) as any;
    const data = moved.spec.volumes.find((v: any) => v.name === 'etcd-data');
    expect(data.hostPath.path).toBe(`${dir}/restored`);
    // Only the host side moves; the container still mounts and uses the old path (as on kubeadm).
    expect(moved.spec.containers[0].volumeMounts.find((m: any) => m.name === 'etcd-data').mountPath).toBe(`${dir}/etcd-data`);
    expect(moved.spec.containers[0].command).toContain(`--data-dir=${dir}/etcd-data`);
  });

  test('kube-apiserver: k8s-certs and the files its flags name are mounted', () => {
    const env = { dir, pki, bin: '/bin', nodeIp: '10.200.0.2' };
    const cmd = apiserverCmd(env, 'https://127.0.0.1:2379', 6443, `${dir}/apiserver-certs`);
    const pod = Bun.YAML.parse(apiserverManifest(cmd, pki, `${dir}/tokens.csv`, `${dir}/apiserver-certs`)) as any;
    const mounts: string[] = pod.spec.containers[0].volumeMounts.map((m: any) => m.mountPath);
    for (const flag of pod.spec.containers[0].command.slice(1) as string[]) {
      const value = flag.split('=').slice(1).join('=');
      if (value.startsWith('/')) expect(mounts.some((m) => value === m || value.startsWith(`${m}/`))).toBe(true);
    }
    expect(pod.spec.volumes.map((v: any) => v.name)).toContain('k8s-certs');
  });
});
