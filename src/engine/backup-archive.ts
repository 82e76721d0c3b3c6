/**
 * @module A backup as one tar archive on a file descriptor, written while etcd sends its snapshot: the certificates,
 * the extra paths and the members first, then `data/etcd-snapshot.db` as its chunks arrive. restic stores it as it
 * is written (`restic backup --stdin-from-command`, engine/backup.ts), so a backup takes about as long as etcd takes
 * to send, and needs no copy of the snapshot on the node's disk.
 *
 * The archive holds the same paths as a staged backup (`data/…`, engine/backup.ts), so a restore extracts it into the
 * layout every reader already knows. The snapshot's SHA-256 trailer is checked at its end, as for a staged backup;
 * what makes a failed check harmless is the caller: the command that writes the archive exits non-zero, and restic
 * (≥ 0.17) then saves no snapshot.
 */
import { type Stats, closeSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CERTS_DIR, DATA_DIR, EXTRA_PATH_HINT, MEMBERS_FILE, SNAPSHOT_FILE, extraPathIn, extraPathProblem, sourceProblem } from './backup-layout.ts';
import { type CertificateExpiry, MAX_FILE_BYTES, certificateExpiry, sortByFile } from './certificates.ts';
import { EngineError } from './errors.ts';
import { type EtcdConnection, type SnapshotResult, streamSnapshot, writeAll } from './etcd-snapshot.ts';
import { END_OF_ARCHIVE, alignedEntryHeader, entryHeader, padding } from './tar.ts';
import { enlargePipe, pipeMaxSize } from '../util/libc.ts';

export interface ArchiveRequest {
  etcd: EtcdConnection;
  certsDir?: string;
  extraPaths?: readonly string[];
  signal?: AbortSignal;
  /** Told the snapshot's size once etcd announces it, then the bytes received so far, at most every 16 MiB. */
  onSize?: (bytes: number) => void;
  onProgress?: (bytes: number) => void;
}

export interface ArchiveResult {
  etcd: SnapshotResult;
  /** Per certificate file stored (path relative to certsDir), its earliest expiry; undefined without certsDir. */
  certificates?: CertificateExpiry[];
  /** The capacity of the pipe to restic, when it could be enlarged (64 KiB otherwise: see util/libc.ts). */
  pipeBytes?: number;
}

/** A file or directory to put in the archive: where it is on the host and its path in the archive. */
interface Source {
  host: string;
  path: string;
  stats: Stats;
}

const CHUNK = 1 << 20;
const PROGRESS_EVERY = 16 << 20;

/**
 * Every file and directory under `host` (links followed, as the staged copy follows them), parents first. `label`
 * starts the message of a path that cannot be read, as the staged backup words it ("certsDir", "extraPaths:").
 */
function walk(host: string, path: string, into: Source[], label: string, hint = ''): void {
  let stats: Stats;
  try {
    stats = statSync(host);
  } catch (err) {
    throw new EngineError('InvalidInput', `${label} ${host} ${sourceProblem(err, hint)}`);
  }
  into.push({ host, path, stats });
  if (!stats.isDirectory()) return;
  let names: string[];
  try {
    names = readdirSync(host).sort();
  } catch (err) {
    throw new EngineError('InvalidInput', `${label} ${host} ${sourceProblem(err)}`);
  }
  for (const name of names) walk(join(host, name), `${path}/${name}`, into, label);
}

/** The files of certsDir and extraPaths, checked before etcd is asked for anything (as a staged backup does). */
function sources(req: Pick<ArchiveRequest, 'certsDir' | 'extraPaths'>): Source[] {
  const found: Source[] = [];
  if (req.certsDir) {
    const before = found.length;
    walk(req.certsDir, `${DATA_DIR}/${CERTS_DIR}`, found, 'certsDir');
    if (!found[before]!.stats.isDirectory()) throw new EngineError('InvalidInput', `certsDir ${req.certsDir} is not a directory`);
  }
  for (const path of req.extraPaths ?? []) {
    const problem = extraPathProblem(path);
    if (problem) throw new EngineError('InvalidInput', `extraPaths: ${problem}`);
  }
  for (const path of req.extraPaths ?? []) walk(path, `${DATA_DIR}/${extraPathIn(path)}`, found, 'extraPaths:', EXTRA_PATH_HINT);
  return found;
}

/** Copies one file into the archive, exactly the size its header announced (a file that shrank meanwhile fails). */
function copyFile(out: Output, src: Source, keep?: (bytes: Buffer) => void): void {
  const size = src.stats.size;
  out.put(entryHeader({ path: src.path, type: 'file', size, mode: src.stats.mode, mtime: src.stats.mtimeMs / 1000 }));
  const fd = openSync(src.host, 'r');
  const kept: Buffer[] = [];
  try {
    const buf = Buffer.alloc(Math.min(CHUNK, Math.max(size, 1)));
    for (let done = 0; done < size;) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, size - done), done);
      if (n === 0) throw new EngineError('Failed', `${src.host} shrank while it was being backed up`);
      const part = buf.subarray(0, n);
      if (keep) kept.push(Buffer.from(part));
      out.put(part);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  out.put(padding(size));
  keep?.(Buffer.concat(kept));
}

/** The archive's file descriptor and how many bytes went to it (the snapshot's data is aligned by that count). */
class Output {
  written = 0;
  constructor(private readonly fd: number) {}
  put(bytes: Buffer): void {
    writeAll(this.fd, bytes);
    this.written += bytes.length;
  }
}

/** Writes the backup as one tar archive to `out`. Throws EngineError naming the cause; the archive is then incomplete. */
export async function writeBackupArchive(fd: number, req: ArchiveRequest): Promise<ArchiveResult> {
  const found = sources(req);
  const pipeBytes = enlargePipe(fd, await pipeMaxSize());
  const out = new Output(fd);
  const certificates: CertificateExpiry[] | undefined = req.certsDir ? [] : undefined;
  const certsPrefix = `${DATA_DIR}/${CERTS_DIR}/`;
  const now = Date.now() / 1000;
  out.put(entryHeader({ path: DATA_DIR, type: 'dir', size: 0, mode: 0o700, mtime: now }));
  for (const src of found) {
    if (src.stats.isDirectory()) {
      out.put(entryHeader({ path: src.path, type: 'dir', size: 0, mode: src.stats.mode, mtime: src.stats.mtimeMs / 1000 }));
      continue;
    }
    if (!src.stats.isFile()) continue;
    // The expiries recorded are those of the bytes stored, read once.
    const isCert = certificates && src.path.startsWith(certsPrefix) && src.stats.size <= MAX_FILE_BYTES;
    copyFile(out, src, isCert ? (bytes) => {
      const expiry = certificateExpiry(src.path.slice(certsPrefix.length), bytes.toString('latin1'));
      if (expiry) certificates.push(expiry);
    } : undefined);
  }
  if (certificates) sortByFile(certificates);
  let reported = 0;
  let received = 0;
  const etcd = await streamSnapshot(req.etcd, {
    begin: ({ members, size }) => {
      if (members) {
        const json = Buffer.from(`${JSON.stringify(members, null, 2)}\n`);
        out.put(entryHeader({ path: `${DATA_DIR}/${MEMBERS_FILE}`, type: 'file', size: json.length, mode: 0o600, mtime: now }));
        out.put(json);
        out.put(padding(json.length));
      }
      // Aligned, so a restore can cut the archive down to the snapshot in place (tar.ts, extractTarFile).
      out.put(alignedEntryHeader(out.written, { path: `${DATA_DIR}/${SNAPSHOT_FILE}`, type: 'file', size, mode: 0o600, mtime: now }));
      req.onSize?.(size);
    },
    write: (chunk) => {
      out.put(chunk);
      received += chunk.length;
      if (received - reported >= PROGRESS_EVERY) {
        reported = received;
        req.onProgress?.(received);
      }
    },
  }, { signal: req.signal });
  out.put(padding(etcd.size));
  out.put(END_OF_ARCHIVE);
  return { etcd, certificates, pipeBytes };
}

/** Checks certsDir and extraPaths as the archive will read them; throws the EngineError a backup would fail with. */
export function checkArchiveSources(req: Pick<ArchiveRequest, 'certsDir' | 'extraPaths'>): void {
  sources(req);
}

/**
 * What the archive command tells the backup that runs it, one JSON line each on its stderr (restic relays them as
 * `subprocess <command>: <line>`): the snapshot's size, progress, and the result or the error.
 */
export type ArchiveMessage =
  | { kubedrArchive: 'size'; bytes: number }
  | { kubedrArchive: 'progress'; bytes: number }
  | { kubedrArchive: 'done'; result: ArchiveResult }
  | { kubedrArchive: 'error'; kind: string; message: string };

const MESSAGE_START = '{"kubedrArchive":';

export function archiveMessageLine(m: ArchiveMessage): string {
  return `${JSON.stringify(m)}\n`;
}

/** The archive command's message in a line restic relays, or undefined when the line is something else. */
export function parseArchiveMessage(line: string): ArchiveMessage | undefined {
  const at = line.indexOf(MESSAGE_START);
  if (at < 0) return undefined;
  try {
    return JSON.parse(line.slice(at)) as ArchiveMessage;
  } catch {
    return undefined;
  }
}
