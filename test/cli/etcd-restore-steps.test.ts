/** The words `kubedr etcd-restore` prints: which steps appear, in what order and numbering, for what was restored. */
import { describe, expect, test } from 'bun:test';
import { apiserverStarted, apiserverStopped, kubeadmNextSteps, memberCommand, nextSteps, noBumpWarning } from '../../src/cli/etcd-restore-steps.ts';

const member = { name: 'cp-1', peerUrls: 'https://10.0.0.1:2380', initialCluster: 'cp-1=https://10.0.0.1:2380', initialClusterToken: 'kubedr-restore-ab' };
const numbered = (text: string) => [...text.matchAll(/^ {2}(\d+)\. /gm)].map((m) => Number(m[1]));

describe('memberCommand', () => {
  test('the same snapshot, cluster and token for every member; optional flags only when set', () => {
    const base = { snapshot: '/s.db', sha256: 'ab', initialCluster: 'x', token: 't', member: 'cp-2', kubeadm: false, noBump: false };
    expect(memberCommand(base)).toBe('kubedr etcd-restore --snapshot /s.db --expect-sha256 ab --initial-cluster x --initial-cluster-token t --name cp-2');
    expect(memberCommand({ ...base, dataDir: '/d', kubeadm: true, noBump: true })).toEndWith('--name cp-2 --data-dir /d --kubeadm --no-bump-revision');
  });
});

describe('nextSteps', () => {
  test('a directory moved aside is named; without one, no empty line is left in its place', () => {
    const moved = nextSteps({ dataDir: '/var/lib/etcd', member, manifest: '/m/etcd.yaml', previous: '/var/lib/etcd.old' });
    expect(moved).toContain('The directory that was there is kept at /var/lib/etcd.old');
    const fresh = nextSteps({ dataDir: '/var/lib/etcd', member, manifest: '/m/etcd.yaml' });
    expect(fresh).not.toContain('kept at');
    expect(fresh).not.toContain('\n\n\n');
    expect(numbered(fresh)).toEqual([1, 2, 3, 4, 5]);
  });

  test('the certificates step follows what the backup holds', () => {
    expect(nextSteps({ dataDir: '/d', member, manifest: '/m', certificates: '/r/certificates' })).toContain('cp -a /r/certificates/. /etc/kubernetes/pki/');
    const none = nextSteps({ dataDir: '/d', member, manifest: '/m', extra: '/r/extra' });
    expect(none).toContain('This backup holds no certificates');
    expect(none).toContain('cp -a /r/extra/PATH /PATH');
  });
});

describe('kubeadmNextSteps', () => {
  const base = { dataDir: '/var/lib/etcd-restored-x', member, copy: '/m.orig', previousDataDir: '/var/lib/etcd', stoppedAt: '/stopped/kube-apiserver.yaml' };

  test('with other members, their steps come first, each member\'s command listed, the rest numbered on', () => {
    const text = kubeadmNextSteps({ ...base, others: ['kubedr etcd-restore --name cp-2', 'kubedr etcd-restore --name cp-3'] });
    expect(numbered(text)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(text.indexOf('--stop-apiserver')).toBeLessThan(text.indexOf('--name cp-2'));
    expect(text.indexOf('--name cp-3')).toBeLessThan(text.indexOf('--start-apiserver'));
  });

  test('alone, the steps across nodes are left out and the numbering starts at waiting for etcd', () => {
    const text = kubeadmNextSteps({ ...base, others: [] });
    expect(numbered(text)).toEqual([1, 2, 3, 4, 5]);
    expect(text).toMatch(/^ {2}1\. Wait until the kubelet has restarted etcd/m);
    expect(text).toContain('Once the cluster is back, /var/lib/etcd (the old data) and /m.orig can be deleted.');
  });
});

test('the API server moves say what happened, moved or found so already', () => {
  expect(apiserverStopped({ result: 'moved', to: '/s/kube-apiserver.yaml' })).toContain('moved to /s/kube-apiserver.yaml; the kubelet stops');
  expect(apiserverStopped({ result: 'already', to: '/s/kube-apiserver.yaml' })).toBe('kube-apiserver manifest was already moved aside (/s/kube-apiserver.yaml)\n');
  expect(apiserverStarted('moved', '/m')).toBe('kube-apiserver manifest back in /m; the kubelet starts the API server\n');
  expect(apiserverStarted('already', '/m')).toBe('kube-apiserver manifest is already in /m\n');
  expect(noBumpWarning('etcdctl')).toStartWith('warning: etcdctl cannot move the revision ahead');
});
