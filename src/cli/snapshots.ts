/** @module `kubedr snapshots`: the backups at a location, newest first, for choosing what to restore. */
import { clusterLabel, originOf } from '../engine/origin.ts';
import { filterSnapshots } from '../engine/restore.ts';
import type { SnapshotInfo } from '../engine/restic-output.ts';
import { Restic } from '../engine/restic.ts';
import { withBucketCheck } from '../engine/repository.ts';
import { listSnapshots, snapshotSize } from '../engine/snapshots.ts';
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
} satisfies Record<string, FlagSpec>;

export const snapshotsHelp = helpText('kubedr snapshots --url URL --bucket BUCKET [--credentials FILE] [flags]',
  'Lists the backups in a BackupLocation\'s repository, newest first: time, snapshot id, policy, cluster, host and size.\n' +
  'Needs no cluster: this is where a disaster recovery starts.', flags) + `\n${exitCodesHelp}`;

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
  const listed = await withBucketCheck(repo, (signal) => listSnapshots(restic, repo, { signal }, { tag: parsed.flags.policy, readOnly: true }));
  const rows = filterSnapshots(listed, { policy: parsed.flags.policy, cluster: parsed.flags.cluster }).selected.map(toRow);
  if (parsed.flags.size) {
    for (const row of rows) row.size = await snapshotSize(restic, repo, row.id);
  }
  process.stdout.write(parsed.flags.json ? `${JSON.stringify(rows, null, 2)}\n` : rows.length ? formatTable(rows) : 'no backups found\n');
  return 0;
}
