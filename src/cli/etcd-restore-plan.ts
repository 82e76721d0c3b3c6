/**
 * @module `kubedr etcd-restore`'s plan: who the members of the restored cluster are and which one this run builds, from
 * its flags, the node's etcd manifest, copies of the other nodes' manifests, and the membership the backup recorded;
 * and where the node's etcd reads its data. Reads files, decides nothing else; the checks are engine/etcd-members.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { MEMBERS_FILE } from '../engine/backup.ts';
import { type EtcdMember, type Member, parseInitialCluster, restoredMembers } from '../engine/etcd-members.ts';
import { readEtcdManifest } from '../engine/etcd-restore.ts';
import { EngineError } from '../engine/errors.ts';
import { etcdDataHostPath } from '../engine/kubeadm-manifests.ts';
import { UsageError } from '../util/flags.ts';

/** What the node's etcd manifest says (the fields a plan reads). */
export type EtcdManifest = ReturnType<typeof readEtcdManifest>;

/** The flags that name members. */
export interface MemberFlags {
  name?: string;
  'initial-cluster'?: string;
  'member-manifests'?: string;
  'initial-advertise-peer-urls'?: string;
}

function firstIPv4(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    const a = addrs?.find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  return '127.0.0.1';
}

/** The members of the restored cluster and this run's member, from flags, then the manifests, then defaults. */
export function planMembers(f: MemberFlags, manifest: EtcdManifest): { members: Member[]; name: string } {
  const name = f.name ?? manifest.name ?? hostname();
  let members: Member[];
  if (f['initial-cluster']) {
    members = parseInitialCluster(f['initial-cluster']);
  } else if (f['member-manifests']) {
    members = f['member-manifests'].split(',').map((file) => {
      const m = readEtcdManifest(file.trim());
      if (!m.name || !m.peerUrls) throw new UsageError(`${file} has no --name and --initial-advertise-peer-urls: is it an etcd manifest?`);
      return { name: m.name, peerUrls: m.peerUrls };
    });
  } else {
    members = [{ name, peerUrls: f['initial-advertise-peer-urls'] ?? manifest.peerUrls ?? `https://${firstIPv4()}:2380` }];
  }
  const own = members.find((m) => m.name === name);
  if (own && f['initial-advertise-peer-urls'] && f['initial-advertise-peer-urls'] !== own.peerUrls) {
    throw new UsageError(`--initial-advertise-peer-urls ${f['initial-advertise-peer-urls']} is not member ${name}'s URL in the cluster (${own.peerUrls})`);
  }
  return { members, name };
}

/** The members the backup was taken from: etcd-members.json beside the snapshot (backups taken before it was recorded have none). */
export function readBackupMembers(snapshot: string): Member[] | undefined {
  const file = join(dirname(snapshot), MEMBERS_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return restoredMembers(JSON.parse(readFileSync(file, 'utf8')) as EtcdMember[]);
  } catch (err) {
    throw new EngineError('InvalidInput', `${file} cannot be read (${(err as Error).message}): it is the backup's record of its etcd members`);
  }
}

/**
 * Where the node's etcd reads its data: the manifest's etcd-data hostPath, which is what the host sees (the container's
 * --data-dir is a path inside the pod: after an earlier --kubeadm restore they differ). Undefined without a manifest.
 */
export function manifestDataHostPath(path: string): string | undefined {
  return existsSync(path) ? etcdDataHostPath(readFileSync(path, 'utf8'), path) : undefined;
}
