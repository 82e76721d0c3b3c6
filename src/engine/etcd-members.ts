/**
 * @module The members of a restored etcd cluster, and the checks that keep a restore from splitting it. Every member of
 * a restored cluster must be built from the same snapshot, with the same full `--initial-cluster` and one new cluster
 * token; restoring members from different snapshots, or each as its own one-member cluster, is what users report
 * breaking (kubernetes/kubeadm#2641). Pure functions: no files, no processes.
 */
import { EngineError } from './errors.ts';
import { Reader } from './protobuf-wire.ts';

export interface Member {
  name: string;
  /** Peer URL(s), comma-separated as etcd's flags take them. */
  peerUrls: string;
}

/** `a=https://10.0.0.1:2380,b=...` → members in order; a name given twice has several peer URLs, as etcd reads it. */
export function parseInitialCluster(value: string): Member[] {
  const members: Member[] = [];
  for (const part of value.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const name = part.slice(0, eq);
    const url = part.slice(eq + 1);
    if (eq <= 0 || !/^https?:\/\/[^/\s]+$/.test(url)) {
      throw new EngineError('InvalidInput', `"${part}" in --initial-cluster is not NAME=PEER-URL (e.g. node1=https://10.0.0.1:2380)`);
    }
    const known = members.find((m) => m.name === name);
    if (known) known.peerUrls += `,${url}`;
    else members.push({ name, peerUrls: url });
  }
  if (members.length === 0) throw new EngineError('InvalidInput', '--initial-cluster is empty');
  return members;
}

export function formatInitialCluster(members: Member[]): string {
  return members.flatMap((m) => m.peerUrls.split(',').map((u) => `${m.name}=${u}`)).join(',');
}

/**
 * The cluster token of a cluster restored from the snapshot with this SHA-256. etcd derives member and cluster IDs from
 * the peer URLs and the token, so: members restored from one snapshot agree on it without being told; members restored
 * from different snapshots get different cluster IDs and refuse each other ("cluster ID mismatch") instead of
 * replicating two histories; and no member of the replaced cluster that is still running can join the restored one.
 */
export function clusterTokenFor(snapshotSha256: string): string {
  return `kubedr-restore-${snapshotSha256.slice(0, 16)}`;
}

export interface MemberPlanInput {
  /** Members of the restored cluster. */
  members: Member[];
  /** The member this run builds. */
  name: string;
  /** Members listed by this node's etcd manifest (its --initial-cluster), if it has one. */
  manifestMembers?: Member[];
  /** The token of the cluster being replaced (this node's manifest), if known. */
  manifestToken?: string;
  token: string;
  /** The user asked for a one-member cluster although the manifest lists more members. */
  singleMember: boolean;
  /** The members of the cluster the backup was taken from (its etcd-members.json), when the backup records them. */
  backupMembers?: Member[];
  /** SHA-256 of the snapshot being restored: a `kubedr-restore-<prefix>` token must name this snapshot. */
  snapshotSha256?: string;
  /** Whether this member's restore can move the revision ahead (etcdutl), and whether the user said not to. */
  bump?: { possible: boolean; refused: boolean };
  /** The command that restores each of `members` from this snapshot: a one-member refusal prints them, ready to run. */
  commandsFor?: (members: Member[]) => string[];
}

/** The refusal's last words: each member's command, when the caller can write them. */
const everyMember = (p: MemberPlanInput, members: Member[]): string => {
  const commands = p.commandsFor?.(members) ?? [];
  return commands.length ? `. On each member's node:\n${commands.map((c, i) => `  # ${members[i]!.name}\n  ${c}`).join('\n')}` : '';
};

/** Throws, naming the fix, when the plan would split the cluster in a way this node's files reveal. */
export function checkMemberPlan(p: MemberPlanInput): void {
  const names = p.members.map((m) => m.name);
  if (!names.includes(p.name)) {
    throw new EngineError('InvalidInput', `member "${p.name}" is not in --initial-cluster (${names.join(', ')}): pass --name with one of them`);
  }
  const manifestNames = p.manifestMembers?.map((m) => m.name) ?? [];
  if (p.members.length === 1 && manifestNames.length > 1 && !p.singleMember) {
    throw new EngineError('InvalidInput', `this node's etcd manifest lists ${manifestNames.length} members (${manifestNames.join(', ')}), ` +
      'and restoring only this one would make a one-member cluster that the others can never rejoin as they are. Restore every ' +
      `member from this same snapshot (--initial-cluster ${formatInitialCluster(p.manifestMembers!)}), or pass --single-member to ` +
      `shrink the cluster to this node and join the others again afterwards${everyMember(p, p.manifestMembers!)}`);
  }
  const backupNames = p.backupMembers?.map((m) => m.name) ?? [];
  if (p.members.length === 1 && backupNames.length > 1 && !p.singleMember) {
    throw new EngineError('InvalidInput', `this backup was taken from a cluster of ${backupNames.length} members (${backupNames.join(', ')}), ` +
      'and restoring only one would make a one-member cluster beside the others, which keep the old cluster: two etcd clusters ' +
      `behind one API endpoint. Restore every member from this same snapshot (--initial-cluster ${formatInitialCluster(p.backupMembers!)}: ` +
      `--print prints each member's command), or pass --single-member to shrink the cluster to this node on purpose${everyMember(p, p.backupMembers!)}`);
  }
  const named = /^kubedr-restore-([0-9a-f]+)$/.exec(p.token)?.[1];
  if (named && p.snapshotSha256 && !p.snapshotSha256.startsWith(named)) {
    throw new EngineError('InvalidInput', `cluster token "${p.token}" belongs to the snapshot whose SHA-256 begins ${named}, not to this one ` +
      `(${p.snapshotSha256.slice(0, 16)}…): the other members were restored from another snapshot, and this member would join them ` +
      'with other data. Restore from the snapshot they used (its SHA-256 is in their command\'s --expect-sha256)');
  }
  if (p.bump && !p.bump.possible && !p.bump.refused && p.members.length > 1) {
    throw new EngineError('InvalidInput', 'the revision bump is decided once for all members, and this member\'s tool cannot move the ' +
      'revision ahead (only etcdutl, etcd >= 3.5, can): members restored with and without it would disagree. Put etcdutl on PATH ' +
      '(or --etcdutl), or restore every member with --no-bump-revision');
  }
  if (p.manifestToken && p.token === p.manifestToken) {
    throw new EngineError('InvalidInput', `cluster token "${p.token}" is the one of the cluster being replaced: a member of that cluster ` +
      'that is still running could join the restored one and mix the two histories. Leave --initial-cluster-token out (a new token ' +
      'derived from the snapshot is used)');
  }
}

/** A member of the etcd cluster a backup was taken from (etcd's Cluster.MemberList). */
export interface EtcdMember {
  /** Member id, hex as etcdctl prints it. */
  id: string;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

/** Member { ID = 1; name = 2; peerURLs = 3; clientURLs = 4; isLearner = 5 }. */
function decodeMember(buf: Buffer): EtcdMember {
  const r = new Reader(buf);
  const m: EtcdMember = { id: '', name: '', peerUrls: [], clientUrls: [], isLearner: false };
  while (!r.done) {
    const tag = Number(r.varint());
    const field = tag >>> 3;
    if (field === 1 && (tag & 7) === 0) m.id = r.varint().toString(16);
    else if (field === 2 && (tag & 7) === 2) m.name = r.bytes().toString('utf8');
    else if (field === 3 && (tag & 7) === 2) m.peerUrls.push(r.bytes().toString('utf8'));
    else if (field === 4 && (tag & 7) === 2) m.clientUrls.push(r.bytes().toString('utf8'));
    else if (field === 5 && (tag & 7) === 0) m.isLearner = r.varint() !== 0n;
    else r.skip(tag & 7);
  }
  return m;
}

/** MemberListResponse { header = 1; repeated Member members = 2 }. */
export function decodeMemberList(buf: Buffer): EtcdMember[] {
  const r = new Reader(buf);
  const members: EtcdMember[] = [];
  while (!r.done) {
    const tag = Number(r.varint());
    if (tag >>> 3 === 2 && (tag & 7) === 2) members.push(decodeMember(r.bytes()));
    else r.skip(tag & 7);
  }
  return members;
}

/** The members a restore must recreate, from a backup's membership: voting members (learners are not restored). */
export function restoredMembers(members: EtcdMember[]): Member[] {
  return members.filter((m) => !m.isLearner).map((m) => ({ name: m.name, peerUrls: m.peerUrls.join(',') }));
}
