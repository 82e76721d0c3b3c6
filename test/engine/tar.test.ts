/** The backup archive's tar format: what the writer makes, the reader takes back, and what the reader refuses. */
import { afterEach, describe, expect, test } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineError } from '../../src/engine/errors.ts';
import { BLOCK, DATA_ALIGNMENT, END_OF_ARCHIVE, alignedEntryHeader, entryHeader, extractTarFile, padding } from '../../src/engine/tar.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const scratch = () => {
  const d = mkdtempSync(join(tmpdir(), 'tar-test-'));
  dirs.push(d);
  return d;
};

/** An archive of `files` (path → content) in the writer's order; `aligned`: that file's data aligned, as the writer does the snapshot's. */
function archive(files: Record<string, string>, mtime = 1_700_000_000, aligned?: string): Buffer {
  const parts: Buffer[] = [entryHeader({ path: 'data', type: 'dir', size: 0, mode: 0o700, mtime })];
  for (const [path, text] of Object.entries(files)) {
    const body = Buffer.from(text);
    const entry = { path, type: 'file' as const, size: body.length, mode: 0o640, mtime };
    const offset = parts.reduce((n, p) => n + p.length, 0);
    parts.push(path === aligned ? alignedEntryHeader(offset, entry) : entryHeader(entry), body, padding(body.length));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/** Extracts `buf` as an archive file into a new directory; returns the directory and what was extracted. */
function extract(buf: Buffer): { into: string; got: { files: number; bytes: number; inPlace?: string } } {
  const into = scratch();
  writeFileSync(join(into, 'a.tar'), buf);
  const got = extractTarFile(join(into, 'a.tar'), into);
  return { into, got };
}

describe('extractTarFile', () => {
  const long = `data/extra/${'very-long-directory-name/'.repeat(12)}enc.yaml`;
  const files = { 'data/certificates/ca.crt': 'ca', 'data/etcd-snapshot.db': 'x'.repeat(5000), 'data/empty': '', [long]: 'kind: EncryptionConfiguration\n' };

  test('what the writer makes comes back byte for byte, with mode and time', () => {
    const { into, got } = extract(archive(files));
    expect(got).toEqual({ files: 4, bytes: 5000 + 2 + 30 });
    for (const [path, text] of Object.entries(files)) expect(readFileSync(join(into, path), 'utf8')).toBe(text);
    const st = statSync(join(into, 'data/certificates/ca.crt'));
    expect(st.mode & 0o777).toBe(0o640);
    expect(Math.round(st.mtimeMs / 1000)).toBe(1_700_000_000);
    expect(readdirSync(join(into, 'data')).sort()).toEqual(['certificates', 'empty', 'etcd-snapshot.db', 'extra']);
  });

  test('a file of megabytes is copied whole (in the kernel, then by reading where that stops)', () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
    const { into } = extract(archive({ 'data/etcd-snapshot.db': big.toString('latin1') }));
    expect(readFileSync(join(into, 'data/etcd-snapshot.db')).equals(Buffer.from(big.toString('latin1'), 'utf8'))).toBe(true);
  });

  test('a path longer than ustar holds travels in a pax record; GNU tar reads the archive too', async () => {
    const into = scratch();
    const file = join(into, 'a.tar');
    await Bun.write(file, archive(files));
    const listed = Bun.spawnSync(['tar', '-tf', file]);
    expect(listed.exitCode).toBe(0);
    expect(listed.stdout.toString().split('\n').filter(Boolean)).toEqual(['data/', ...Object.keys(files)]);
  });

  test('a size of 8 GiB or more is written in GNU\'s base-256 (octal holds less)', () => {
    const h = entryHeader({ path: 'data/etcd-snapshot.db', type: 'file', size: 9 * 2 ** 30, mode: 0o600, mtime: 0 });
    expect(h.length).toBe(BLOCK);
    expect(h[124]).toBe(0x80);
    let v = 0n;
    for (let i = 125; i < 136; i++) v = (v << 8n) | BigInt(h[i]!);
    expect(Number(v)).toBe(9 * 2 ** 30);
  });

  test('an aligned entry\'s data starts on a 4 KiB boundary wherever the archive stood, long path or not; GNU tar reads it', async () => {
    for (const path of ['data/etcd-snapshot.db', long]) {
      for (let offset = 0; offset < 2 * DATA_ALIGNMENT; offset += BLOCK) {
        const h = alignedEntryHeader(offset, { path, type: 'file', size: 10, mode: 0o600, mtime: 0 });
        expect({ path, offset, end: (offset + h.length) % DATA_ALIGNMENT }).toEqual({ path, offset, end: 0 });
      }
    }
    const into = scratch();
    await Bun.write(join(into, 'a.tar'), archive(files, 1_700_000_000, 'data/etcd-snapshot.db'));
    const listed = Bun.spawnSync(['tar', '-tf', join(into, 'a.tar')]);
    expect(listed.stdout.toString().split('\n').filter(Boolean)).toEqual(['data/', ...Object.keys(files)]);
    expect(Bun.spawnSync(['tar', '-xOf', join(into, 'a.tar'), 'data/etcd-snapshot.db']).stdout.toString()).toBe(files['data/etcd-snapshot.db']);
  });

  test('an aligned last entry becomes the archive itself, cut down in place where the file system can (else copied)', () => {
    const snapshot = Buffer.alloc(3 * DATA_ALIGNMENT + 124);
    for (let i = 0; i < snapshot.length; i += 4) snapshot.writeUInt32BE(i, i);
    const text = snapshot.toString('latin1');
    const withSnapshotLast = { 'data/certificates/ca.crt': 'ca', 'data/etcd-members.json': '[]\n', 'data/etcd-snapshot.db': text };
    const { into, got } = extract(archive(withSnapshotLast, 1_700_000_000, 'data/etcd-snapshot.db'));
    const fsType = Bun.spawnSync(['stat', '-f', '-c', '%T', into]).stdout.toString().trim();
    // ext4 and XFS collapse a range of whole blocks; tmpfs and others do not, and the snapshot is copied instead.
    const collapses = ['ext2/ext3', 'xfs'].includes(fsType);
    expect({ fsType, inPlace: got.inPlace }).toEqual({ fsType, inPlace: collapses ? 'data/etcd-snapshot.db' : undefined });
    expect(existsSync(join(into, 'a.tar'))).toBe(!collapses);
    expect(got.files).toBe(3);
    expect(readFileSync(join(into, 'data/etcd-snapshot.db')).equals(Buffer.from(text, 'utf8'))).toBe(true);
    expect(readFileSync(join(into, 'data/certificates/ca.crt'), 'utf8')).toBe('ca');
    const st = statSync(join(into, 'data/etcd-snapshot.db'));
    expect(st.mode & 0o777).toBe(0o640);
    expect(Math.round(st.mtimeMs / 1000)).toBe(1_700_000_000);
  });

  test('an aligned entry that is not the last is copied: the archive stays whole', () => {
    const { into, got } = extract(archive({ 'data/etcd-snapshot.db': 'x'.repeat(5000), 'data/after': 'y' }, 1_700_000_000, 'data/etcd-snapshot.db'));
    expect(got).toEqual({ files: 2, bytes: 5001 });
    expect(existsSync(join(into, 'a.tar'))).toBe(true);
    expect(readFileSync(join(into, 'data/etcd-snapshot.db'), 'utf8')).toBe('x'.repeat(5000));
  });

  const refused = async (buf: Buffer) => {
    let err: unknown;
    try {
      extract(buf);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).kind).toBe('IntegrityError');
    return (err as EngineError).message;
  };

  test('a damaged header, an archive cut short and a path outside data/ are refused', async () => {
    const damaged = archive(files);
    damaged[BLOCK + 10]! ^= 0xff;
    expect(await refused(damaged)).toBe('the backup\'s archive is damaged: a header fails its checksum');
    const whole = archive(files);
    expect(await refused(whole.subarray(0, whole.length - END_OF_ARCHIVE.length - 600)))
      .toBe('the backup\'s archive is damaged: it ends before its last entry is complete');
    expect(await refused(archive({ 'etc/passwd': 'x' }))).toBe('the backup\'s archive is damaged: path "etc/passwd" is outside data/');
    expect(await refused(archive({ 'data/../../x': 'x' }))).toBe('the backup\'s archive is damaged: unsafe path "data/../../x"');
  });
});
