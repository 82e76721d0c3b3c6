/**
 * @module `kubedr etcd-restore`: turns a restored etcd snapshot into the data directory of a new single-member etcd,
 * with kubeadm's layout as the default, and says what to do next on the control-plane node. It warns, and goes on, when
 * the restored certificates have expired or soon will, and when the node's API server needs an encryption-at-rest
 * config that the restored backup does not hold.
 */
import { existsSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CERTS_DIR, EXTRA_DIR, extraPathIn } from '../engine/backup.ts';
import { readCertificateExpiries } from '../engine/certificates.ts';
import { readEncryptionConfigPath } from '../engine/encryption-config.ts';
import { findRestoreTool, type MemberLayout, readEtcdManifest, restoreEtcdDataDir } from '../engine/etcd-restore.ts';
import { type FlagSpec, helpText, parseFlags, UsageError } from '../util/flags.ts';
import { exitCodesHelp } from './exit-codes.ts';
import { certificateWarning, encryptionConfigWarning } from './restored-warnings.ts';

const KUBEADM_MANIFEST = '/etc/kubernetes/manifests/etcd.yaml';
const KUBEADM_APISERVER_MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const KUBEADM_DATA_DIR = '/var/lib/etcd';

const flags = {
  snapshot: { type: 'string', help: 'the etcd snapshot file (DIR/data/etcd-snapshot.db after \'kubedr restore\')' },
  'data-dir': { type: 'string', help: `data directory to create (default: --data-dir of the etcd manifest, else ${KUBEADM_DATA_DIR})` },
  name: { type: 'string', help: 'member name (default: --name of the etcd manifest, else this host\'s name, as kubeadm names it)' },
  'initial-advertise-peer-urls': { type: 'string', help: 'this member\'s peer URL (default: the manifest\'s, else https://<this host\'s first IPv4>:2380)' },
  'initial-cluster': { type: 'string', help: 'the new cluster, NAME=PEER-URL (default: this one member)' },
  'initial-cluster-token': { type: 'string', help: 'cluster token (default: the manifest\'s, else etcd\'s default etcd-cluster)' },
  'etcd-manifest': { type: 'string', help: 'kubeadm\'s etcd static pod manifest, read for defaults when present', default: KUBEADM_MANIFEST },
  'apiserver-manifest': {
    type: 'string', default: KUBEADM_APISERVER_MANIFEST,
    help: 'the kube-apiserver static pod manifest, read when present: a warning if its --encryption-provider-config is not in the backup',
  },
  force: { type: 'boolean', help: 'if the data directory is not empty, move it aside (renamed, kept) instead of refusing', default: false },
  etcdutl: { type: 'string', help: 'etcdutl or etcdctl to run (default: the first on PATH)' },
} satisfies Record<string, FlagSpec>;

export const etcdRestoreHelp = helpText('kubedr etcd-restore --snapshot FILE [flags]',
  'Builds the data directory of a new single-member etcd from a verified etcd snapshot (what \'etcdutl snapshot restore\'\n' +
  'does, with kubeadm\'s layout as the default), then prints the next steps on a kubeadm control-plane node.\n' +
  'Stop etcd before restoring over its data directory.', flags) + `\n${exitCodesHelp}`;

function firstIPv4(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    const a = addrs?.find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  return '127.0.0.1';
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
    o.certificates
      ? `  2. If /etc/kubernetes/pki was lost too, put the backed-up certificates back: cp -a ${o.certificates}/. /etc/kubernetes/pki/`
      : '  2. This backup holds no certificates: /etc/kubernetes/pki must still be intact (or restored from elsewhere).',
    ...(o.extra ? [`     Host paths stored with the backup (extraPaths) are under ${o.extra}/, each at its path on the host: put back those`,
      `     that were lost (cp -a ${o.extra}/PATH /PATH), the API server's --encryption-provider-config first.`] : []),
    `  3. In ${o.manifest}, the etcd-data hostPath volume and --data-dir must point to ${o.dataDir}, and these flags must match:`,
    `       --name=${m.name} --initial-advertise-peer-urls=${m.peerUrls} --initial-cluster=${m.initialCluster}`,
    '  4. Start the control plane again: mv /etc/kubernetes/manifests.stopped/*.yaml /etc/kubernetes/manifests/',
    '  5. Check: kubectl get nodes; kubectl -n kube-system get pods; kubectl get metadatabackuppolicies -A',
    'Other control-plane nodes: stop their etcd, remove their etcd data, remove them with `etcdctl member remove` if listed,',
    'and join them again one at a time (kubeadm join --control-plane).',
    '',
  ].filter((l, i, all) => l !== '' || (i > 0 && all[i - 1] !== '')).join('\n');
}

export async function runEtcdRestore(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(etcdRestoreHelp);
    return 0;
  }
  const f = parsed.flags;
  if (parsed.args.length > 0) throw new UsageError(`unexpected argument "${parsed.args[0]}" (the snapshot goes in --snapshot)`);
  if (!f.snapshot) throw new UsageError('--snapshot is required (the etcd-snapshot.db from \'kubedr restore\')');
  const manifest = readEtcdManifest(f['etcd-manifest']);
  const name = f.name ?? manifest.name ?? hostname();
  const peerUrls = f['initial-advertise-peer-urls'] ?? manifest.peerUrls ?? `https://${firstIPv4()}:2380`;
  const member: MemberLayout = {
    name, peerUrls,
    initialCluster: f['initial-cluster'] ?? `${name}=${peerUrls}`,
    initialClusterToken: f['initial-cluster-token'] ?? manifest.initialClusterToken ?? 'etcd-cluster',
  };
  const snapshot = resolve(f.snapshot);
  const dataDir = resolve(f['data-dir'] ?? manifest.dataDir ?? KUBEADM_DATA_DIR);
  process.stderr.write(`kubedr etcd-restore: building ${dataDir} for member ${name} (${peerUrls}) from ${snapshot}\n`);
  const result = await restoreEtcdDataDir({ snapshotFile: snapshot, dataDir, member, force: f.force, tool: findRestoreTool(f.etcdutl) });
  // The backup's data/ directory: the snapshot's, where `kubedr restore` put the certificates and extra paths beside it.
  const data = dirname(snapshot);
  const certs = join(data, CERTS_DIR);
  const extra = join(data, EXTRA_DIR);
  for (const warning of await restoredWarnings(data, f['apiserver-manifest'])) process.stderr.write(`kubedr etcd-restore: ${warning}\n`);
  process.stdout.write(nextSteps({
    dataDir, member, previous: result.previousDataDir, manifest: f['etcd-manifest'], certificates: existsSync(certs) ? certs : undefined,
    extra: existsSync(extra) ? extra : undefined,
  }));
  return 0;
}

/** What a restored backup (its `data/` directory) lacks or holds that will stop the control plane; warnings only. */
export async function restoredWarnings(data: string, apiserverManifest: string, now = new Date()): Promise<string[]> {
  const certs = join(data, CERTS_DIR);
  const expiries = existsSync(certs) ? await readCertificateExpiries(certs).catch(() => []) : [];
  const configPath = readEncryptionConfigPath(apiserverManifest);
  const expectedAt = configPath && join(data, extraPathIn(configPath));
  return [
    certificateWarning(expiries, certs, now),
    encryptionConfigWarning({
      manifest: apiserverManifest, configPath, expectedAt,
      held: !!expectedAt && existsSync(expectedAt), onNode: !!configPath && existsSync(configPath),
    }),
  ].filter((w): w is string => w !== undefined);
}
