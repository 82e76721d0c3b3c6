/** @module `kubedr snapshots`: the backups at a location, newest first, for choosing what to restore. */
import { chainOf } from '../engine/continuous/change-store.ts';
import { restorableWindows } from '../engine/continuous/window.ts';
import { CHANGES_TAG, clusterLabel, isChangeSet, matchesCluster, originOf } from '../engine/origin.ts';
import { filterSnapshots } from '../engine/restore.ts';
import { parseSnapshots, type SnapshotInfo } from '../engine/restic-output.ts';
import { Restic } from '../engine/restic.ts';
import { withBucketCheck } from '../engine/repository.ts';
import { snapshotSize } from '../engine/snapshots.ts';
import { type FlagSpec, helpText, parseFlags, UsageError } from '../util/flags.ts';
import { scratchDir } from '../util/scratch.ts';
import { exitCodesHelp } from './exit-codes.ts';
import { clusterFlag, repositoryFlags, repositoryFromFlags } from './repository-flags.ts';
import { forProgram } from './program.ts';

const flags = {
  ...repositoryFlags,
  policy: { type: 'string', help: 'only the backups of this MetadataBackupPolicy' },
  ...clusterFlag,
  json: { type: 'boolean', help: 'print a JSON array (for scripts) instead of a table', default: false },
  size: { type: 'boolean', help: 'show each backup\'s size (backups taken by restic before 0.17 cost one repository read each; --no-size skips it)', default: true },
  continuous: { type: 'boolean', help: 'only the restorable windows of continuous policies (with --json: a JSON array of them)', default: false },
} satisfies Record<string, FlagSpec>;

export const snapshotsHelp = helpText('kubedr snapshots --url URL --bucket BUCKET [--credentials FILE] [flags]',
  'Lists the backups in a BackupLocation\'s repository, newest first: time, snapshot id, policy, cluster, host and size;\n' +
  'then, for each continuous policy, the windows of time it can be restored to (kubedr restore --at) and the gaps\n' +
  'between them. Needs no cluster: this is where a disaster recovery starts.', flags) + `\n${exitCodesHelp}`;

export interface SnapshotRow {
  id: string;
  shortId: string;
  time: string;
  policy: string;
  /** The cluster that took it: "name (id prefix)", or "-" when it carries no identity. */
  cluster: string;
  /** Its namespace (the install), or "" when it carries no identity. */
  namespace: string;
  host: string;
  /** Bytes a restore writes; absent with --no-size. */
  size?: number;
  tags: string[];
}

/** 1536 → "1.5 KiB". */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function formatTable(rows: SnapshotRow[]): string {
  const table = [['TIME', 'ID', 'POLICY', 'CLUSTER', 'NAMESPACE', 'HOST', 'SIZE'],
    ...rows.map((r) => [r.time.replace(/\.\d+/, ''), r.shortId, r.policy, r.cluster, r.namespace || '-', r.host,
      r.size === undefined ? '-' : humanBytes(r.size)])];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

const toRow = (s: SnapshotInfo): SnapshotRow => ({
  id: s.id, shortId: s.shortId, time: s.time, policy: s.tags[0] ?? '', cluster: clusterLabel(s.tags),
  namespace: originOf(s.tags)?.namespace ?? '', host: s.hostname, tags: s.tags,
});

export async function runSnapshots(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(snapshotsHelp));
    return 0;
  }
  if (parsed.args.length > 0) throw new UsageError(`unexpected argument "${parsed.args[0]}"`);
  const repo = repositoryFromFlags(parsed.flags);
  // A private cache makes the per-snapshot size lookups read the index once; it goes when the process exits.
  const restic = new Restic({ cacheDir: await scratchDir('cache') });
  // One listing for the full backups and the change sets of continuous backup (no lock: see listSnapshots).
  const { stdout } = await withBucketCheck(repo, (signal) => restic.run(repo, ['snapshots', '--json', '--no-lock'], { signal }));
  const all = parseSnapshots(stdout).sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
  const windows = continuousWindows(all, parsed.flags.policy, parsed.flags.cluster);
  if (parsed.flags.continuous) {
    process.stdout.write(parsed.flags.json ? `${JSON.stringify(windows, null, 2)}\n` : windows.length ? formatWindows(windows) : 'no continuous backups found\n');
    return 0;
  }
  // As `restic snapshots --tag <policy>` selects: the policy's name among the tags.
  const listed = all.filter((x) => !isChangeSet(x.tags) && (!parsed.flags.policy || x.tags.includes(parsed.flags.policy)));
  const rows = filterSnapshots(listed, { policy: parsed.flags.policy, cluster: parsed.flags.cluster }).selected.map(toRow);
  if (parsed.flags.size) {
    for (const row of rows) row.size = await snapshotSize(restic, repo, row.id);
  }
  process.stdout.write(parsed.flags.json ? `${JSON.stringify(rows, null, 2)}\n`
    : `${rows.length ? formatTable(rows) : 'no backups found\n'}${windows.length ? `\n${formatWindows(windows)}` : ''}`);
  return 0;
}

/** What one continuous policy (of one cluster and install) can be restored to. */
export interface ContinuousWindows {
  policy: string;
  cluster: string;
  namespace: string;
  changeSets: number;
  lastStoredRevision: number;
  windows: { from: string; to: string }[];
  gaps: { from: string; to: string }[];
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The restorable windows of every policy with change sets among `all`, per policy and cluster. */
export function continuousWindows(all: readonly SnapshotInfo[], policy?: string, cluster?: string): ContinuousWindows[] {
  const groups = new Map<string, SnapshotInfo[]>();
  for (const x of all) {
    const name = isChangeSet(x.tags) ? x.tags[0]!.slice(CHANGES_TAG.length) : x.tags[0] ?? '';
    if ((policy && name !== policy) || (cluster && !matchesCluster(x.tags, cluster))) continue;
    const o = originOf(x.tags);
    const key = `${name}\u0000${o ? `${o.clusterId}/${o.namespace}` : '-'}`;
    groups.set(key, [...(groups.get(key) ?? []), x]);
  }
  const out: ContinuousWindows[] = [];
  for (const [key, members] of groups) {
    const { fulls, sets } = chainOf(members);
    if (sets.length === 0) continue;
    const { windows, gaps } = restorableWindows(fulls, sets);
    const sample = members[0]!;
    out.push({
      policy: key.split('\u0000')[0]!, cluster: clusterLabel(sample.tags), namespace: originOf(sample.tags)?.namespace ?? '',
      changeSets: sets.length, lastStoredRevision: Math.max(...sets.map((x) => x.toRevision)),
      windows: windows.map((w) => ({ from: iso(w.fromTime), to: iso(w.toTime) })), gaps: gaps.map((g) => ({ from: iso(g.fromTime), to: iso(g.toTime) })),
    });
  }
  return out.sort((a, b) => a.policy.localeCompare(b.policy) || a.cluster.localeCompare(b.cluster));
}

export function formatWindows(list: readonly ContinuousWindows[]): string {
  return list.map((c) => [
    `Continuous backup of policy ${c.policy} (cluster ${c.cluster}${c.namespace ? `, namespace ${c.namespace}` : ''}): ${c.changeSets} change sets, ` +
      `up to revision ${c.lastStoredRevision}`,
    ...(c.windows.length ? c.windows.map((w) => `  restorable ${w.from} – ${w.to}`) : ['  nothing restorable yet: no full backup that records its etcd revision']),
    ...c.gaps.map((g) => `  gap        ${g.from} – ${g.to}: no restore reaches it`),
  ].join('\n')).join('\n') + '\n';
}
