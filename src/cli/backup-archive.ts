/**
 * @module `kubedr backup-archive`: run by restic during a streamed backup (`restic backup --stdin-from-command`,
 * engine/backup.ts), never by hand. Writes the backup as one tar archive to standard output while etcd sends its
 * snapshot, and tells the backup its progress and result as JSON lines on standard error. It exits non-zero when
 * anything fails, the snapshot's SHA-256 check included, and restic then saves no snapshot.
 */
import { readFileSync, writeSync } from 'node:fs';
import { type ArchiveMessage, type ArchiveRequest, archiveMessageLine, writeBackupArchive } from '../engine/backup-archive.ts';
import { EngineError } from '../engine/errors.ts';
import { parseFlags, UsageError } from '../util/flags.ts';
import { forProgram } from './program.ts';

const flags = {
  request: { type: 'string', help: 'JSON file of the backup to write (etcd connection, certsDir, extraPaths), made by the controller; only its owner may read it' },
} as const;

const help = `Usage: kubedr backup-archive --request FILE

Run by restic during a backup (restic backup --stdin-from-command), not by hand: writes the backup (certificates, extra
paths, etcd's members and snapshot) as one tar archive to standard output while etcd sends it, and reports on standard
error. Exits 1 when anything fails, etcd's SHA-256 check included: restic then saves no snapshot.

Flags:
  --request FILE   ${flags.request.help}
`;

const tell = (m: ArchiveMessage) => writeSync(2, archiveMessageLine(m));

export async function runBackupArchive(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(help));
    return 0;
  }
  if (!parsed.flags.request) throw new UsageError('--request FILE is required (this command is run by the controller\'s backups)');
  if (process.stdout.isTTY) throw new UsageError('standard output is a terminal: this command writes a tar archive for restic to read');
  const req = JSON.parse(readFileSync(parsed.flags.request, 'utf8')) as Omit<ArchiveRequest, 'signal' | 'onSize' | 'onProgress'>;
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const result = await writeBackupArchive(1, {
      ...req, signal: stop.signal,
      onSize: (bytes) => tell({ kubedrArchive: 'size', bytes }),
      onProgress: (bytes) => tell({ kubedrArchive: 'progress', bytes }),
    });
    tell({ kubedrArchive: 'done', result });
    return 0;
  } catch (err) {
    tell({ kubedrArchive: 'error', kind: err instanceof EngineError ? err.kind : 'Failed', message: err instanceof Error ? err.message : String(err) });
    return 1;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
