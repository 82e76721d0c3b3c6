/**
 * @module The one tar archive a streamed backup is stored as (engine/backup-archive.ts writes it, engine/restore.ts
 * reads it back into the `data/` layout of a staged backup). POSIX ustar, with a pax `path` record for a name longer
 * than ustar holds and GNU's base-256 size for a file of 8 GiB or more (an etcd database may reach its 8 GiB quota).
 *
 * Written by hand rather than with a tar library because the archive's largest entry is etcd's snapshot as it arrives:
 * its header must go out before its content exists (the size comes from etcd's first message), and its bytes must be
 * written synchronously as they arrive, as the snapshot stream writes its file (etcd-snapshot.ts measured a queueing
 * write stream 15% slower and twice the memory). The reader takes only what the writer makes: regular files and
 * directories under `data/`, so a damaged or foreign archive is refused rather than written anywhere. A restore lets
 * restic restore the archive as a file (its parallel restorer: `restic dump` piped through this process took 40 %
 * longer for 1.1 GB) and takes the entries out of it.
 */
import { chmodSync, closeSync, ftruncateSync, mkdirSync, openSync, readSync, renameSync, utimesSync, writeSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { collapseStart, copyFileRange } from '../util/libc.ts';
import { EngineError } from './errors.ts';

export const BLOCK = 512;

export interface TarEntry {
  /** Path inside the archive, `/`-separated, relative. */
  path: string;
  type: 'file' | 'dir';
  size: number;
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
}

function octal(buf: Buffer, offset: number, width: number, value: number): void {
  buf.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, width, 'ascii');
}

/** The size field: octal up to 8 GiB - 1, else GNU base-256 (first byte 0x80, the value big-endian). */
function writeSize(buf: Buffer, value: number): void {
  if (value < 8 ** 11) return octal(buf, 124, 12, value);
  buf[124] = 0x80;
  let v = BigInt(value);
  for (let i = 135; i > 124; i--) {
    buf[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function readSize(buf: Buffer): number {
  if (buf[124]! & 0x80) {
    let v = 0n;
    for (let i = 125; i < 136; i++) v = (v << 8n) | BigInt(buf[i]!);
    return Number(v);
  }
  return readOctal(buf, 124, 12);
}

function readOctal(buf: Buffer, offset: number, width: number): number {
  const text = buf.toString('ascii', offset, offset + width).replace(/\0.*$/s, '').trim();
  return text ? Number.parseInt(text, 8) : 0;
}

function readString(buf: Buffer, offset: number, width: number): string {
  const end = buf.indexOf(0, offset);
  return buf.toString('utf8', offset, end < 0 || end > offset + width ? offset + width : end);
}

function checksum(header: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum;
}

function rawHeader(name: string, prefix: string, type: string, size: number, mode: number, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  octal(h, 100, 8, mode & 0o7777);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  writeSize(h, size);
  octal(h, 136, 12, Math.max(0, Math.floor(mtime)));
  h.write(type, 156, 1, 'ascii');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  h.write(`${checksum(h).toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

/** Splits a path into ustar's prefix (≤ 155 bytes) and name (≤ 100 bytes) at a `/`, or undefined when it cannot. */
function splitName(path: string): { prefix: string; name: string } | undefined {
  if (Buffer.byteLength(path) <= 100) return { prefix: '', name: path };
  for (let i = path.indexOf('/'); i > 0; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100) return { prefix, name };
  }
  return undefined;
}

/** One pax record, "<length> <key>=<value>\n", where the length counts its own digits. */
function paxRecord(key: string, value: string): string {
  const base = Buffer.byteLength(` ${key}=${value}\n`);
  let len = base + 1;
  while (base + String(len).length !== len) len = base + String(len).length;
  return `${len} ${key}=${value}\n`;
}

/** The header block(s) of one entry: a pax record first when the path does not fit ustar's fields. */
export function entryHeader(e: TarEntry): Buffer {
  const { path, type, size } = entryFields(e);
  const split = splitName(path);
  if (split) return rawHeader(split.name, split.prefix, type, size, e.mode, e.mtime);
  return withPax(e, paxRecord('path', path));
}

function entryFields(e: TarEntry): { path: string; type: string; size: number } {
  return { path: e.type === 'dir' && !e.path.endsWith('/') ? `${e.path}/` : e.path, type: e.type === 'dir' ? '5' : '0', size: e.type === 'dir' ? 0 : e.size };
}

/** A pax header carrying `records`, then the entry's ustar header (its name cut: the pax path, if any, rules). */
function withPax(e: TarEntry, records: string): Buffer {
  const { path, type, size } = entryFields(e);
  const record = Buffer.from(records);
  const pax = rawHeader('PaxHeader', '', 'x', record.length, 0o644, e.mtime);
  const split = splitName(path);
  const own = split ? rawHeader(split.name, split.prefix, type, size, e.mode, e.mtime) : rawHeader(path.slice(0, 99), '', type, size, e.mode, e.mtime);
  return Buffer.concat([pax, record, padding(record.length), own]);
}

/**
 * Where a file's data is aligned to in the archive when asked (alignedEntryHeader): a multiple of the block size of
 * the file systems a restore writes to (4 KiB on ext4 and XFS), so a restore can cut the archive down to that file in
 * place (util/libc.ts, collapseStart) instead of copying it.
 */
export const DATA_ALIGNMENT = 4096;

/**
 * The header of an entry whose data is to start at a multiple of DATA_ALIGNMENT, the archive having `offset` bytes
 * before it: a pax header whose `comment` record (which readers ignore) fills the gap. GNU tar reads it as usual.
 */
export function alignedEntryHeader(offset: number, e: TarEntry): Buffer {
  const { path } = entryFields(e);
  const pathRecord = splitName(path) ? '' : paxRecord('path', path);
  // pax header + k record blocks + ustar header, ending on the alignment.
  let k = 1;
  while ((offset + BLOCK + k * BLOCK + BLOCK) % DATA_ALIGNMENT !== 0) k++;
  const minComment = Buffer.byteLength(paxRecord('comment', ''));
  while (k * BLOCK - Buffer.byteLength(pathRecord) < minComment) k += DATA_ALIGNMENT / BLOCK;
  const want = k * BLOCK - Buffer.byteLength(pathRecord);
  let fill = want - minComment;
  while (Buffer.byteLength(paxRecord('comment', ' '.repeat(fill))) > want) fill--;
  // A length that gains a digit may leave one byte short: the record's end is then padding, which changes nothing.
  return withPax(e, pathRecord + paxRecord('comment', ' '.repeat(fill)));
}

/** Zero bytes that fill an entry of `size` bytes up to its last block. */
export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** The end of an archive: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** Why an archive path may not be extracted, or undefined when it may (relative, under `data/`, no `..`). */
function pathProblem(path: string): string | undefined {
  if (path.startsWith('/') || path.split('/').includes('..')) return `unsafe path "${path}"`;
  const n = normalize(path);
  if (n !== 'data' && !n.startsWith('data/')) return `path "${path}" is outside data/`;
  return undefined;
}

/**
 * Extracts the archive in the file `tarPath` under `into` (which must exist): files with their mode and modification
 * time, directories. Each file's bytes are copied inside the kernel where it can (util/libc.ts), so a snapshot of
 * gigabytes never passes through this process. The last file, when its data is aligned (alignedEntryHeader), is not
 * copied: the archive itself is cut down to it and renamed (`inPlace`), so it is gone afterwards. Throws
 * IntegrityError on anything else: a bad header checksum, an entry type the writer never makes, a path outside
 * `data/`, or an archive that ends early.
 */
export function extractTarFile(tarPath: string, into: string): { files: number; bytes: number; inPlace?: string } {
  const bad = (why: string) => new EngineError('IntegrityError', `the backup's archive is damaged: ${why}`);
  const tar = openSync(tarPath, 'r');
  const read = (offset: number, length: number): Buffer => {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const n = readSync(tar, buf, got, length - got, offset + got);
      if (n === 0) throw bad('it ends before its last entry is complete');
      got += n;
    }
    return buf;
  };
  let files = 0;
  let bytes = 0;
  let paxPath: string | undefined;
  try {
    for (let at = 0; ;) {
      const header = read(at, BLOCK);
      at += BLOCK;
      if (header.every((b) => b === 0)) return { files, bytes };
      if (checksum(header) !== readOctal(header, 148, 8)) throw bad('a header fails its checksum');
      const type = String.fromCharCode(header[156]!);
      const size = readSize(header);
      const next = at + size + padding(size).length;
      if (type === 'x') {
        paxPath = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(read(at, size).toString('utf8'))?.[1];
        at = next;
        continue;
      }
      const prefix = readString(header, 345, 155);
      const name = readString(header, 0, 100);
      const path = (paxPath ?? (prefix ? `${prefix}/${name}` : name)).replace(/\/+$/, '');
      paxPath = undefined;
      const problem = pathProblem(path);
      if (problem) throw bad(problem);
      const mtime = readOctal(header, 136, 12);
      if (type === '5') {
        mkdirSync(join(into, path), { recursive: true, mode: 0o700 });
      } else if (type === '0' || type === '\0') {
        mkdirSync(dirname(join(into, path)), { recursive: true, mode: 0o700 });
        const mode = readOctal(header, 100, 8) & 0o777 || 0o600;
        const last = at % DATA_ALIGNMENT === 0 && size > 0 && read(next, BLOCK).every((b) => b === 0);
        if (last && cutDownTo(tarPath, at, size, join(into, path), mode)) {
          utimesSync(join(into, path), mtime, mtime);
          return { files: files + 1, bytes: bytes + size, inPlace: path };
        }
        copyOut(tar, at, size, join(into, path), mode, read);
        utimesSync(join(into, path), mtime, mtime);
        files++;
        bytes += size;
      } else {
        throw bad(`entry "${path}" has type "${type}", which a backup never holds`);
      }
      at = next;
    }
  } finally {
    closeSync(tar);
  }
}

/**
 * Turns the archive into its last file: the `offset` bytes before its data cut off in place, the end-of-archive
 * blocks after it truncated, then renamed to `path`. False, the archive unchanged, where the file system cannot.
 */
function cutDownTo(tarPath: string, offset: number, size: number, path: string, mode: number): boolean {
  const fd = openSync(tarPath, 'r+');
  try {
    if (!collapseStart(fd, offset)) return false;
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  chmodSync(tarPath, mode);
  renameSync(tarPath, path);
  return true;
}

/** Copies `size` bytes at `offset` of the archive to a new file: in the kernel where it can, the rest by reading. */
function copyOut(tar: number, offset: number, size: number, path: string, mode: number, read: (offset: number, length: number) => Buffer): void {
  const out = openSync(path, 'w', mode);
  try {
    let done = copyFileRange(tar, offset, out, size);
    while (done < size) {
      const chunk = read(offset + done, Math.min(size - done, 1 << 20));
      for (let w = 0; w < chunk.length;) w += writeSync(out, chunk, w, chunk.length - w, done + w);
      done += chunk.length;
    }
  } finally {
    closeSync(out);
  }
}
