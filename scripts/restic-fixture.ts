/**
 * @module Snapshots for scale fixtures, written straight into a local restic repository (format as restic 0.14
 * writes it): thousands of `restic backup` runs would take an hour, each paying the repository key's scrypt. A written
 * snapshot points at the tree of a real one, so restic lists, checks, copies and restores it like any other; `restic
 * copy` then takes them to the S3 repository under test. Fixture code for the benchmarks only, never the product.
 *
 * restic's format: a key file holds the master key encrypted under scrypt(password); a file is IV ‖ AES-256-CTR
 * ciphertext ‖ Poly1305-AES MAC of the ciphertext; an unpacked file (a snapshot) is stored under the SHA-256 of its
 * encrypted bytes. https://restic.readthedocs.io/en/stable/100_references.html#repository-format
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, scryptSync } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface MasterKey {
  encrypt: Buffer;
  macK: Buffer;
  macR: Buffer;
}

const P1305 = (1n << 130n) - 5n;
const CLAMP = 0x0ffffffc0ffffffc0ffffffc0fffffffn;

const littleEndian = (b: Buffer): bigint => BigInt(`0x${Buffer.from(b).reverse().toString('hex') || '0'}`);

/** Poly1305 with r and s given (RFC 8439 §2.5). */
function poly1305(msg: Buffer, r: Buffer, s: Buffer): Buffer {
  const rn = littleEndian(r) & CLAMP;
  let acc = 0n;
  for (let i = 0; i < msg.length; i += 16) {
    const block = msg.subarray(i, i + 16);
    acc = ((acc + littleEndian(block) + (1n << BigInt(8 * block.length))) * rn) % P1305;
  }
  const tag = (acc + littleEndian(s)) & ((1n << 128n) - 1n);
  return Buffer.from(tag.toString(16).padStart(32, '0'), 'hex').reverse();
}

/** restic's MAC: Poly1305 keyed with r and AES-128_k(IV). */
function mac(key: Pick<MasterKey, 'macK' | 'macR'>, iv: Buffer, ciphertext: Buffer): Buffer {
  const aes = createCipheriv('aes-128-ecb', key.macK, null).setAutoPadding(false);
  return poly1305(ciphertext, key.macR, aes.update(iv));
}

function open(key: MasterKey, file: Buffer): Buffer {
  const iv = file.subarray(0, 16);
  const ct = file.subarray(16, file.length - 16);
  if (!mac(key, iv, ct).equals(file.subarray(file.length - 16))) throw new Error('restic fixture: MAC mismatch (wrong password?)');
  return createDecipheriv('aes-256-ctr', key.encrypt, iv).update(ct);
}

function seal(key: MasterKey, plaintext: Buffer): Buffer {
  const iv = randomBytes(16);
  const ct = createCipheriv('aes-256-ctr', key.encrypt, iv).update(plaintext);
  return Buffer.concat([iv, ct, mac(key, iv, ct)]);
}

/** The master key of a local repository, from its (first) key file and the password. */
export function masterKey(repoDir: string, password: string): MasterKey {
  const keyDir = join(repoDir, 'keys');
  const file = JSON.parse(readFileSync(join(keyDir, readdirSync(keyDir)[0]!), 'utf8')) as
    { N: number; r: number; p: number; salt: string; data: string };
  const derived = scryptSync(password, Buffer.from(file.salt, 'base64'), 64,
    { N: file.N, r: file.r, p: file.p, maxmem: 256 * file.N * file.r + (1 << 20) });
  const user = { encrypt: derived.subarray(0, 32), macK: derived.subarray(32, 48), macR: derived.subarray(48, 64) };
  const master = JSON.parse(open(user, Buffer.from(file.data, 'base64')).toString('utf8')) as
    { encrypt: string; mac: { k: string; r: string } };
  return { encrypt: Buffer.from(master.encrypt, 'base64'), macK: Buffer.from(master.mac.k, 'base64'), macR: Buffer.from(master.mac.r, 'base64') };
}

/** A snapshot as `restic snapshots --json` shows it (without its id, which is the hash of the stored file). */
export interface SnapshotJson {
  time: string;
  tree: string;
  paths: string[];
  hostname: string;
  username: string;
  tags: string[];
}

/** Reads a snapshot of the local repository (to copy its tree and paths); version 2 stores it zstd-compressed after a 2. */
export function readSnapshot(repoDir: string, key: MasterKey, id: string): SnapshotJson {
  const plain = open(key, readFileSync(join(repoDir, 'snapshots', id)));
  const json = plain[0] === 2 ? Buffer.from(Bun.zstdDecompressSync(plain.subarray(1))) : plain;
  return JSON.parse(json.toString('utf8')) as SnapshotJson;
}

/** Stores a snapshot (plain JSON, which restic reads uncompressed in either repository version); returns its id. */
export function writeSnapshot(repoDir: string, key: MasterKey, snapshot: SnapshotJson): string {
  const file = seal(key, Buffer.from(JSON.stringify(snapshot)));
  const id = createHash('sha256').update(file).digest('hex');
  writeFileSync(join(repoDir, 'snapshots', id), file, { mode: 0o600 });
  return id;
}
