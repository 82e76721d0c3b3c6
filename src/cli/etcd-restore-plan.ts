/**
 * @module `kubedr etcd-restore`'s plan: who the members of the restored cluster are and which one this run builds, from
 * its flags, the node's etcd manifest, copies of the other nodes' manifests and this host's facts. Pure: the caller
 * reads the files (etcd-restore-files.ts); the checks across members are engine/etcd-members.ts.
 */
import { type Member, parseInitialCluster } from '../engine/etcd-members.ts';
import type { parseEtcdManifest } from '../engine/etcd-restore.ts';
import { UsageError } from '../util/flags.ts';

/** What an etcd manifest says (the fields a plan reads); empty when there is none. */
export type EtcdManifest = ReturnType<typeof parseEtcdManifest>;

/** One of the manifests --member-manifests names, as given and as read. */
export interface MemberManifest {
  file: string;
  manifest: EtcdManifest;
}

/** This host's name and first IPv4 address: the defaults of a one-member restore without a manifest. */
export interface HostFacts {
  hostname: string;
  ipv4: string;
}

/** The flags that name members. */
export interface MemberFlags {
  name?: string;
  'initial-cluster'?: string;
  'initial-advertise-peer-urls'?: string;
}

export interface PlanInput {
  flags: MemberFlags;
  /** The node's etcd manifest. */
  manifest: EtcdManifest;
  /** Those of --member-manifests, when given. */
  memberManifests?: MemberManifest[];
  host: HostFacts;
}

/** The members of the restored cluster and this run's member, from flags, then the manifests, then defaults. */
export function planMembers({ flags: f, manifest, memberManifests, host }: PlanInput): { members: Member[]; name: string } {
  const name = f.name ?? manifest.name ?? host.hostname;
  let members: Member[];
  if (f['initial-cluster']) {
    members = parseInitialCluster(f['initial-cluster']);
  } else if (memberManifests) {
    members = memberManifests.map(({ file, manifest: m }) => {
      if (!m.name || !m.peerUrls) throw new UsageError(`${file} has no --name and --initial-advertise-peer-urls: is it an etcd manifest?`);
      return { name: m.name, peerUrls: m.peerUrls };
    });
  } else {
    members = [{ name, peerUrls: f['initial-advertise-peer-urls'] ?? manifest.peerUrls ?? `https://${host.ipv4}:2380` }];
  }
  const own = members.find((m) => m.name === name);
  if (own && f['initial-advertise-peer-urls'] && f['initial-advertise-peer-urls'] !== own.peerUrls) {
    throw new UsageError(`--initial-advertise-peer-urls ${f['initial-advertise-peer-urls']} is not member ${name}'s URL in the cluster (${own.peerUrls})`);
  }
  return { members, name };
}
