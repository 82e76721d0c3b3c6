/**
 * @module The words `kubedr etcd-restore` prints: each other member's command, the steps left to a person after a
 * restore (by hand, or after --kubeadm did this node's part), what --stop-apiserver and --start-apiserver did, and the
 * advice when the revision cannot move ahead. Text only: no files, no processes.
 */
import type { MemberLayout } from '../engine/etcd-restore.ts';
import type { MoveResult } from '../engine/kubeadm-manifests.ts';

/** The command that restores `member` from the same snapshot, to run on that member's node. */
export function memberCommand(o: { snapshot: string; sha256: string; initialCluster: string; token: string; member: string; dataDir?: string; kubeadm: boolean; noBump: boolean }): string {
  return ['kubedr etcd-restore', `--snapshot ${o.snapshot}`, `--expect-sha256 ${o.sha256}`, `--initial-cluster ${o.initialCluster}`,
    `--initial-cluster-token ${o.token}`, `--name ${o.member}`, o.dataDir ? `--data-dir ${o.dataDir}` : '',
    o.kubeadm ? '--kubeadm' : '', o.noBump ? '--no-bump-revision' : ''].filter(Boolean).join(' ');
}

export function nextSteps(o: { dataDir: string; member: MemberLayout; certificates?: string; extra?: string; previous?: string; manifest: string }): string {
  const m = o.member;
  return [
    `etcd data directory ready: ${o.dataDir} (member ${m.name}, peer URL ${m.peerUrls})`,
    o.previous ? `The directory that was there is kept at ${o.previous}; delete it once the cluster is back.` : '',
    '',
    'Next steps on a kubeadm control-plane node (as root):',
    '  1. Stop the control plane: move its static pod manifests out of the kubelet\'s sight, e.g.',
    '       mkdir -p /etc/kubernetes/manifests.stopped && mv /etc/kubernetes/manifests/*.yaml /etc/kubernetes/manifests.stopped/',
    '     and wait until `crictl ps` lists no etcd and no kube-apiserver.',
    certificatesStep(2, o.certificates, o.extra),
    `  3. In ${o.manifest}, the etcd-data hostPath volume and --data-dir must point to ${o.dataDir}, and these flags must match:`,
    `       --name=${m.name} --initial-advertise-peer-urls=${m.peerUrls} --initial-cluster=${m.initialCluster}`,
    '  4. Start the control plane again: mv /etc/kubernetes/manifests.stopped/*.yaml /etc/kubernetes/manifests/',
    '  5. Check: kubectl get nodes; kubectl -n kube-system get pods; kubectl get metadatabackuppolicies -A',
    'Other control-plane nodes: stop their etcd, remove their etcd data, remove them with `etcdctl member remove` if listed,',
    'and join them again one at a time (kubeadm join --control-plane).',
    'Or restore every member from this snapshot instead: see --initial-cluster and --kubeadm in `kubedr etcd-restore --help`.',
    '',
  ].filter((l, i, all) => l !== '' || (i > 0 && all[i - 1] !== '')).join('\n');
}

function certificatesStep(n: number, certificates?: string, extra?: string): string {
  return [
    certificates
      ? `  ${n}. If /etc/kubernetes/pki was lost too, put the backed-up certificates back: cp -a ${certificates}/. /etc/kubernetes/pki/`
      : `  ${n}. This backup holds no certificates: /etc/kubernetes/pki must still be intact (or restored from elsewhere).`,
    ...(extra ? [`     Host paths stored with the backup (extraPaths) are under ${extra}/, each at its path on the host: put back those`,
      `     that were lost (cp -a ${extra}/PATH /PATH), the API server's --encryption-provider-config first.`] : []),
  ].join('\n');
}

/** What is left to a person after `--kubeadm` did this node's part: the steps across nodes, in order. */
export function kubeadmNextSteps(o: { dataDir: string; member: MemberLayout; others: string[]; copy: string; previousDataDir: string; stoppedAt: string; certificates?: string; extra?: string }): string {
  const step = (n: number, text: string) => `  ${n}. ${text}`;
  const lines = [
    `etcd data directory ready: ${o.dataDir} (member ${o.member.name}, peer URL ${o.member.peerUrls}, token ${o.member.initialClusterToken})`,
    `kube-apiserver manifest moved aside to ${o.stoppedAt}`,
    `etcd.yaml's etcd-data hostPath now points to ${o.dataDir} (was ${o.previousDataDir}, left as it was; original manifest: ${o.copy})`,
    '',
    'Next steps (as root). These stay with you: only you know every node and can check each one.',
  ];
  let n = 1;
  if (o.others.length > 0) {
    lines.push(step(n++, 'On every other control-plane node, first stop its API server: kubedr etcd-restore --stop-apiserver'),
      step(n++, 'Then on each of them, with the same snapshot file copied there, run its member\'s command:'),
      ...o.others.map((c) => `       ${c}`));
  }
  lines.push(
    step(n++, 'Wait until the kubelet has restarted etcd on the new directory on every member: crictl ps --name etcd, then'),
    '       etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt \\',
    '         --key /etc/kubernetes/pki/etcd/server.key endpoint health --cluster   (every member healthy, one cluster ID)',
    certificatesStep(n++, o.certificates, o.extra),
    step(n++, 'On every control-plane node, start the API server again: kubedr etcd-restore --start-apiserver'),
    step(n++, 'Restart the kubelet, kube-controller-manager and kube-scheduler on every node, so none keeps state from after the snapshot'),
    step(n++, 'Check: kubectl get nodes; kubectl -n kube-system get pods; kubectl get metadatabackuppolicies -A'),
    `  Once the cluster is back, ${o.previousDataDir} (the old data) and ${o.copy} can be deleted.`,
    '',
  );
  return lines.join('\n');
}

/** What --stop-apiserver says it did: the manifest moved to `to`, or found there already. */
export function apiserverStopped(r: { result: MoveResult; to: string }): string {
  return r.result === 'moved'
    ? `kube-apiserver manifest moved to ${r.to}; the kubelet stops the API server within about 20 s (check: crictl ps --name kube-apiserver)\n`
    : `kube-apiserver manifest was already moved aside (${r.to})\n`;
}

/** What --start-apiserver says it did: the manifest back in `manifestsDir`, or found there already. */
export function apiserverStarted(result: MoveResult, manifestsDir: string): string {
  return result === 'moved'
    ? `kube-apiserver manifest back in ${manifestsDir}; the kubelet starts the API server\n`
    : `kube-apiserver manifest is already in ${manifestsDir}\n`;
}

/** The warning when etcd's tool cannot move the revision ahead (3.4's etcdctl): what to do instead. */
export function noBumpWarning(tool: string): string {
  return `warning: ${tool} cannot move the revision ahead (only etcdutl, etcd >= 3.5, can; it restores ` +
    '3.4 snapshots too). Restored as is: restart every client of the API server (kubelets, controller-manager, scheduler, operators) ' +
    'after the restore, so none waits for resource versions from after the snapshot.';
}
