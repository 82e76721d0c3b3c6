import { expect, test } from 'bun:test';
import { parseEtcdManifest } from '../../src/engine/etcd-restore.ts';

// The command section of the etcd static pod manifest kubeadm 1.28 writes.
const manifest = `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.0.5:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://10.0.0.5:2380
    - --initial-cluster=cp-1=https://10.0.0.5:2380
    - --name=cp-1
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
`;

test('the member layout comes from the flags of kubeadm\'s etcd manifest', () => {
  expect(parseEtcdManifest(manifest)).toEqual({
    name: 'cp-1', peerUrls: 'https://10.0.0.5:2380', initialCluster: 'cp-1=https://10.0.0.5:2380',
    initialClusterToken: undefined, dataDir: '/var/lib/etcd',
  });
});

test('a manifest without those flags gives no defaults', () => {
  expect(parseEtcdManifest('kind: Pod\n')).toEqual({
    name: undefined, peerUrls: undefined, initialCluster: undefined, initialClusterToken: undefined, dataDir: undefined,
  });
});
