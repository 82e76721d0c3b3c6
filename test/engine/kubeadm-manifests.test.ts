import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  etcdDataHostPath, repointEtcdData, repointEtcdManifest, startApiserver, stopApiserver,
} from '../../src/engine/kubeadm-manifests.ts';
import { kubeadmEtcd } from '../fixtures/kubeadm.ts';

describe('repointing the etcd-data hostPath', () => {
  test('changes that one line and nothing else: not the mount path, not --data-dir, not the certs volume', () => {
    const out = repointEtcdData(kubeadmEtcd, '/var/lib/etcd-restored-1');
    expect(etcdDataHostPath(out)).toBe('/var/lib/etcd-restored-1');
    const changed = out.split('\n').filter((l, i) => l !== kubeadmEtcd.split('\n')[i]);
    expect(changed).toEqual(['      path: /var/lib/etcd-restored-1']);
  });

  test('a volume written name-first is found too', () => {
    const nameFirst = kubeadmEtcd.replace('  - hostPath:\n      path: /var/lib/etcd\n      type: DirectoryOrCreate\n    name: etcd-data\n',
      '  - name: etcd-data\n    hostPath:\n      path: /var/lib/etcd\n      type: DirectoryOrCreate\n');
    expect(etcdDataHostPath(repointEtcdData(nameFirst, '/data/new'))).toBe('/data/new');
  });

  test('a manifest without an etcd-data hostPath is refused, naming it', () => {
    expect(() => repointEtcdData(kubeadmEtcd.replace(/name: etcd-data\nstatus/, 'name: other\nstatus'), '/x', 'etcd.yaml'))
      .toThrow('etcd.yaml has no hostPath volume named etcd-data');
  });

  test('a layout the text edit cannot do safely is refused rather than guessed (flow style)', () => {
    const flow = kubeadmEtcd.replace(/  - hostPath:\n      path: \/var\/lib\/etcd\n      type: DirectoryOrCreate\n    name: etcd-data\n/,
      '  - {name: etcd-data, hostPath: {path: /var/lib/etcd}}\n');
    expect(etcdDataHostPath(flow)).toBe('/var/lib/etcd');
    expect(() => repointEtcdData(flow, '/x')).toThrow(/cannot edit the etcd-data hostPath .* safely/);
  });
});

describe('on a manifests directory', () => {
  let root: string;
  let manifests: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'kubeadm-'));
    manifests = join(root, 'manifests');
    mkdirSync(manifests);
    writeFileSync(join(manifests, 'etcd.yaml'), kubeadmEtcd);
    writeFileSync(join(manifests, 'kube-apiserver.yaml'), 'kind: Pod # apiserver\n');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  test('etcd.yaml is repointed, its original kept outside the manifests directory (the kubelet would run it)', () => {
    const r = repointEtcdManifest(manifests, '/var/lib/etcd-new', new Date('2026-11-30T21:15:02.123Z'));
    expect(r).toEqual({ copy: join(root, 'etcd.yaml.before-restore-20261130T211502Z'), previousDataDir: '/var/lib/etcd' });
    expect(readFileSync(r.copy, 'utf8')).toBe(kubeadmEtcd);
    expect(etcdDataHostPath(readFileSync(join(manifests, 'etcd.yaml'), 'utf8'))).toBe('/var/lib/etcd-new');
    expect(readdirSync(manifests).sort()).toEqual(['etcd.yaml', 'kube-apiserver.yaml']);
  });

  test('the API server manifest goes aside and back; both are idempotent; a conflict is refused', () => {
    expect(stopApiserver(manifests).result).toBe('moved');
    expect(existsSync(join(manifests, 'kube-apiserver.yaml'))).toBe(false);
    expect(stopApiserver(manifests).result).toBe('already');
    expect(startApiserver(manifests).result).toBe('moved');
    expect(readFileSync(join(manifests, 'kube-apiserver.yaml'), 'utf8')).toBe('kind: Pod # apiserver\n');
    expect(startApiserver(manifests).result).toBe('already');
    stopApiserver(manifests);
    writeFileSync(join(manifests, 'kube-apiserver.yaml'), 'kind: Pod # written since\n');
    expect(() => startApiserver(manifests)).toThrow(/exists already/);
  });
});
