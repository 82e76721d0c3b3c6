/**
 * @module `kubedr restore`: brings a backup back from S3 and verifies the etcd snapshot. Used by hand when the cluster
 * is gone, and by the MetadataRestore pod, which reads its outcome from the termination log.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { restoreBackup, type RestoreOutcome, type RestoreResult } from '../engine/restore.ts';
import { Restic } from '../engine/restic.ts';
import { redact } from '../util/redact.ts';
import { exitCodeFor, exitCodesHelp } from './exit-codes.ts';
import { type FlagSpec, helpText, parseFlags, UsageError } from './flags.ts';
import { repositoryFlags, repositoryFromFlags } from './repository-flags.ts';

const flags = {
  ...repositoryFlags,
  target: { type: 'string', help: 'directory to restore into; the backup arrives as DIR/data/etcd-snapshot.db and DIR/data/certificates/' },
  policy: { type: 'string', help: 'restore the backups of this MetadataBackupPolicy (needed for "latest" when several policies share the location)' },
  force: { type: 'boolean', help: 'replace an existing DIR/data (only after the new backup restored and verified)', default: false },
  'expect-sha256': { type: 'string', help: 'fail unless the etcd snapshot has this SHA-256 (a record\'s status.etcdSnapshotSha256)' },
  json: { type: 'boolean', help: 'print the result as JSON', default: false },
  'termination-log': { type: 'string', help: 'also write the outcome as JSON to this file (a pod\'s /dev/termination-log)' },
} satisfies Record<string, FlagSpec>;

export const restoreHelp = helpText('kubedr restore <snapshot-id|latest> --target DIR --url URL --bucket BUCKET [--credentials FILE] [flags]',
  'Restores a backup (the etcd snapshot and the certificates) from a BackupLocation\'s repository and verifies the etcd\n' +
  'snapshot\'s SHA-256 trailer. Then build an etcd data directory from it with \'kubedr etcd-restore\'.', flags) + `\n${exitCodesHelp}`;

function summary(r: RestoreResult): string {
  const lines = [
    `Restored snapshot ${r.snapshot.shortId} (${r.snapshot.time}, policy ${r.snapshot.tags[0] ?? '-'}, host ${r.snapshot.hostname}): ${r.files} files, ${r.bytes} bytes`,
    `  etcd snapshot: ${r.etcdSnapshot} (${r.etcdSnapshotSize} bytes, SHA-256 ${r.sha256}, integrity verified)`,
    r.certificates ? `  certificates:  ${r.certificates}/` : '  certificates:  none in this backup',
    '',
    `Next: kubedr etcd-restore --snapshot ${r.etcdSnapshot} --help`,
  ];
  return `${lines.join('\n')}\n`;
}

export async function runRestore(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(restoreHelp);
    return 0;
  }
  const f = parsed.flags;
  const writeOutcome = (o: RestoreOutcome) => {
    if (f['termination-log']) writeFileSync(f['termination-log'], JSON.stringify(o).slice(0, 4000));
  };
  try {
    const [snapshot, extra] = parsed.args;
    if (!snapshot) throw new UsageError('name the snapshot to restore: a snapshot id (see \'kubedr snapshots\') or "latest"');
    if (extra) throw new UsageError(`unexpected argument "${extra}"`);
    if (!f.target) throw new UsageError('--target is required');
    const repo = repositoryFromFlags(f);
    const result = await restoreBackup(new Restic(), {
      repo, snapshot, policy: f.policy, target: resolve(f.target), overwrite: f.force, expectSha256: f['expect-sha256'],
      onStep: (s) => process.stderr.write(`kubedr restore: ${s}\n`),
    });
    writeOutcome({ ok: true, snapshotId: result.snapshot.id, sha256: result.sha256, etcdSnapshotSize: result.etcdSnapshotSize,
      files: result.files, bytes: result.bytes });
    process.stdout.write(f.json ? `${JSON.stringify(result, null, 2)}\n` : summary(result));
    return 0;
  } catch (err) {
    const exitCode = exitCodeFor(err);
    writeOutcome({ ok: false, error: redact(err instanceof Error ? err.message : String(err)), exitCode });
    throw err;
  }
}
