/**
 * @module `kubedr etcd-restore`: turns a restored etcd snapshot into the data directory of a member of a new etcd
 * cluster (one member, or each of several from the same snapshot), with kubeadm's layout as the default; with
 * `--kubeadm` it also takes the safe steps on the node, and it says what is left to do. It warns, and goes on, when
 * the restored certificates have expired or soon will, and when the node's API server needs an encryption-at-rest
 * config that the restored backup does not hold.
 */
import { basename, dirname, resolve } from 'node:path';
import { checkMemberPlan, clusterTokenFor, formatInitialCluster, parseInitialCluster } from '../engine/etcd-members.ts';
import {
  BUMP_REVISION, canBumpRevision, findRestoreTool, type MemberLayout, readEtcdManifest, restoreEtcdDataDir, snapshotStatus,
} from '../engine/etcd-restore.ts';
import { verifySnapshotFile } from '../engine/etcd-snapshot.ts';
import { EngineError } from '../engine/errors.ts';
import { etcdDataHostPath, repointEtcdManifest, stamp, startApiserver, stopApiserver } from '../engine/kubeadm-manifests.ts';
import {
  manifestDataHostPath, readBackupMembers, readManifestText, readMemberManifests, restoredParts, restoredWarnings, thisHost,
} from './etcd-restore-files.ts';
import { planMembers } from './etcd-restore-plan.ts';
import { apiserverStarted, apiserverStopped, kubeadmNextSteps, memberCommand, nextSteps, noBumpWarning } from './etcd-restore-steps.ts';
import { type FlagSpec, helpText, parseFlags, UsageError } from '../util/flags.ts';
import { exitCodesHelp } from './exit-codes.ts';
import { forProgram } from './program.ts';

const KUBEADM_MANIFEST = '/etc/kubernetes/manifests/etcd.yaml';
const KUBEADM_APISERVER_MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const KUBEADM_DATA_DIR = '/var/lib/etcd';

const flags = {
  snapshot: { type: 'string', help: 'the etcd snapshot file (DIR/data/etcd-snapshot.db after \'kubedr restore\')' },
  'data-dir': {
    type: 'string',
    help: `data directory to create (default: the etcd manifest's etcd-data hostPath, else ${KUBEADM_DATA_DIR}; with --kubeadm, a new ` +
      'directory beside the etcd-data hostPath, <path>-restored-<time>)',
  },
  name: { type: 'string', help: 'this member\'s name (default: --name of the etcd manifest, else this host\'s name, as kubeadm names it)' },
  'initial-advertise-peer-urls': { type: 'string', help: 'this member\'s peer URL (default: its entry in --initial-cluster, the manifest\'s, else https://<this host\'s first IPv4>:2380)' },
  'initial-cluster': { type: 'string', help: 'every member of the restored cluster, NAME=PEER-URL,... (default: --member-manifests, else this one member)' },
  'member-manifests': { type: 'string', help: 'the etcd manifests of all control-plane nodes, comma-separated (copies of each node\'s etcd.yaml): the members are read from them' },
  'initial-cluster-token': { type: 'string', help: 'cluster token (default: kubedr-restore-<the snapshot\'s SHA-256 prefix>, new and the same on every member)' },
  'single-member': { type: 'boolean', default: false, help: 'restore one member although the node\'s manifest lists more (shrink the cluster; join the others again afterwards)' },
  'expect-sha256': { type: 'string', help: 'refuse a snapshot with another SHA-256 (the commands printed for the other members pass it)' },
  'no-bump-revision': { type: 'boolean', default: false, help: `do not move the revision ${BUMP_REVISION.toLocaleString('en')} ahead and mark older ones compacted (etcdutl does by default)` },
  print: { type: 'boolean', default: false, help: 'restore nothing: check the snapshot and print the restore command of every member' },
  kubeadm: {
    type: 'boolean', default: false,
    help: 'also take the safe steps on this kubeadm node: restore into a new directory, move the kube-apiserver manifest aside, ' +
      'point etcd.yaml\'s etcd-data hostPath at the new directory (the original is kept beside the manifests directory)',
  },
  'stop-apiserver': { type: 'boolean', default: false, help: 'only move the kube-apiserver manifest aside (first step on every control-plane node)' },
  'start-apiserver': { type: 'boolean', default: false, help: 'only move the kube-apiserver manifest back (last step, once etcd is healthy on every member)' },
  'etcd-manifest': { type: 'string', help: 'kubeadm\'s etcd static pod manifest, read for defaults when present', default: KUBEADM_MANIFEST },
  'apiserver-manifest': {
    type: 'string', default: KUBEADM_APISERVER_MANIFEST,
    help: 'the kube-apiserver static pod manifest, read when present: a warning if its --encryption-provider-config is not in the backup',
  },
  force: { type: 'boolean', help: 'if the data directory is not empty, move it aside (renamed, kept) instead of refusing (not with --kubeadm)', default: false },
  etcdutl: { type: 'string', help: 'etcdutl or etcdctl to run (default: the first on PATH, etcdutl before etcdctl)' },
} satisfies Record<string, FlagSpec>;

export const etcdRestoreHelp = helpText('kubedr etcd-restore --snapshot FILE [flags]',
  'Builds the data directory of a member of a new etcd cluster from a verified etcd snapshot (what \'etcdutl snapshot\n' +
  'restore\' does, with kubeadm\'s layout as the default), then prints the next steps. For several members, every member\n' +
  'is restored from the same snapshot with the same --initial-cluster and token: run it on each node with the command it\n' +
  'prints. It never deletes or overwrites a data directory. Stop etcd before restoring over its data directory.', flags) + `\n${exitCodesHelp}`;

export async function runEtcdRestore(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(etcdRestoreHelp));
    return 0;
  }
  const f = parsed.flags;
  if (parsed.args.length > 0) throw new UsageError(`unexpected argument "${parsed.args[0]}" (the snapshot goes in --snapshot)`);
  const manifestsDir = dirname(f['etcd-manifest']);
  if (f['stop-apiserver'] || f['start-apiserver']) return moveApiserver(manifestsDir, f['stop-apiserver'] ? 'stop' : 'start', !!f.snapshot);
  if (!f.snapshot) throw new UsageError('--snapshot is required (the etcd-snapshot.db from \'kubedr restore\')');
  if (f.kubeadm && f.force) throw new UsageError('--kubeadm restores into a new directory and never moves one aside: leave out --force');
  const manifest = readEtcdManifest(f['etcd-manifest']);
  const { members, name } = planMembers({
    flags: f, manifest, host: thisHost(), memberManifests: f['member-manifests'] ? readMemberManifests(f['member-manifests']) : undefined,
  });
  const tool = findRestoreTool(f.etcdutl);
  const snapshot = resolve(f.snapshot);

  // 1. The snapshot: whole (SHA-256 trailer), the expected one, and what etcd's own tool reads in it.
  const sha256 = await verifySnapshotFile(snapshot);
  if (f['expect-sha256'] && f['expect-sha256'] !== sha256) {
    throw new EngineError('IntegrityError', `${snapshot} has SHA-256 ${sha256}, not ${f['expect-sha256']}: it is not the snapshot the other ` +
      'members were restored from, and members restored from different snapshots cannot form one cluster. Copy that snapshot here');
  }
  const status = await snapshotStatus(tool, snapshot);
  process.stderr.write(`kubedr etcd-restore: snapshot ${snapshot}: SHA-256 ${sha256}, revision ${status.revision}, ${status.totalKey} keys, ` +
    `${(status.totalSize / 1e6).toFixed(1)} MB\n`);

  // 2. The plan: one snapshot, one member list, one new token; refused where this node's files show it would split.
  const token = f['initial-cluster-token'] ?? clusterTokenFor(sha256);
  const manifestMembers = manifest.initialCluster ? parseInitialCluster(manifest.initialCluster) : undefined;
  checkMemberPlan({
    members, name, manifestMembers, manifestToken: manifest.initialClusterToken, token, singleMember: f['single-member'],
    backupMembers: readBackupMembers(snapshot), snapshotSha256: sha256, bump: { possible: canBumpRevision(tool), refused: f['no-bump-revision'] },
    commandsFor: (all) => all.map((m) => memberCommand({ snapshot, sha256, initialCluster: formatInitialCluster(all), token, member: m.name,
      kubeadm: f.kubeadm, noBump: f['no-bump-revision'] })),
  });
  const initialCluster = formatInitialCluster(members);
  const bump = canBumpRevision(tool) && !f['no-bump-revision'] ? BUMP_REVISION : undefined;
  if (!canBumpRevision(tool) && !f['no-bump-revision']) {
    process.stderr.write(`kubedr etcd-restore: ${noBumpWarning(basename(tool))}\n`);
  }
  const command = (member: string, dataDir?: string) => memberCommand({
    snapshot, sha256, initialCluster, token, member, dataDir, kubeadm: f.kubeadm, noBump: f['no-bump-revision'],
  });
  if (f.print) {
    process.stdout.write(`${members.map((m) => `# on ${m.name}'s node:\n${command(m.name, f['data-dir'])}\n`).join('')}`);
    return 0;
  }

  // 3. This member, into a new directory when --kubeadm (beside the etcd-data hostPath; never the old one).
  const member: MemberLayout = { name, peerUrls: members.find((m) => m.name === name)!.peerUrls, initialCluster, initialClusterToken: token };
  const kubeadmData = f.kubeadm ? etcdDataHostPath(readManifestText(f['etcd-manifest']), f['etcd-manifest']) : undefined;
  const dataDir = resolve(f['data-dir'] ?? (kubeadmData ? `${kubeadmData}-restored-${stamp(new Date())}`
    : manifestDataHostPath(f['etcd-manifest']) ?? KUBEADM_DATA_DIR));
  process.stderr.write(`kubedr etcd-restore: building ${dataDir} for member ${name} (${member.peerUrls}) of ${members.length}\n`);
  const result = await restoreEtcdDataDir({ snapshotFile: snapshot, sha256, dataDir, member, force: f.force, tool, bumpRevision: bump, requireNew: f.kubeadm });
  const data = dirname(snapshot);
  const { certificates: certs, extra } = restoredParts(data);
  for (const warning of await restoredWarnings(data, f['apiserver-manifest'])) process.stderr.write(`kubedr etcd-restore: ${warning}\n`);
  const others = members.filter((m) => m.name !== name).map((m) => command(m.name, f.kubeadm ? undefined : dataDir));

  // 4. --kubeadm: the API server goes first, so nothing reads etcd while it changes; then etcd's manifest.
  if (f.kubeadm) {
    const stopped = stopApiserver(manifestsDir);
    const repointed = repointEtcdManifest(manifestsDir, dataDir);
    process.stdout.write(kubeadmNextSteps({ dataDir, member, others, copy: repointed.copy, previousDataDir: repointed.previousDataDir, stoppedAt: stopped.to, certificates: certs, extra }));
    return 0;
  }
  process.stdout.write(nextSteps({ dataDir, member, previous: result.previousDataDir, manifest: f['etcd-manifest'], certificates: certs, extra }));
  if (others.length > 0) process.stdout.write(`Restore every other member from this same snapshot, on its node:\n${others.map((c) => `  ${c}\n`).join('')}`);
  return 0;
}

function moveApiserver(manifestsDir: string, how: 'stop' | 'start', snapshotGiven: boolean): number {
  if (snapshotGiven) throw new UsageError(`--${how}-apiserver only moves the kube-apiserver manifest: leave out --snapshot`);
  if (how === 'stop') process.stdout.write(apiserverStopped(stopApiserver(manifestsDir)));
  else process.stdout.write(apiserverStarted(startApiserver(manifestsDir).result, manifestsDir));
  return 0;
}
