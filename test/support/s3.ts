/**
 * @module The test node's S3 server as tests reach it without restic: users with keys of their own (RGW), and plain
 * S3 requests signed with AWS Signature Version 4 over the node's CA, to look at or change what a repository holds.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { S3_ACCESS_KEY, S3_SECRET_KEY } from '../../scripts/cluster/node.ts';
import { type S3Keys, addS3User, newS3Keys } from '../../scripts/cluster/s3.ts';
import { s3Request as signedRequest } from '../../src/engine/s3-request.ts';
import { cluster } from './e2e.ts';

export { type S3Keys, newS3Keys };

/** The keys of the node's own S3 user. */
export const NODE_S3_KEYS: S3Keys = { accessKey: S3_ACCESS_KEY, secretKey: S3_SECRET_KEY };

/** Creates a user of the node's S3 server whose keys are `keys` (e.g. from newS3Keys); the server checks both. */
export function createS3User(keys: S3Keys): void {
  addS3User(cluster().dir, keys.accessKey.toLowerCase(), keys);
}

/** Gives the user made by createS3User(`first`) exactly the keys `keys` (S3 key rotation: add the new, then drop the old). */
export function setS3UserKeys(first: S3Keys, keys: S3Keys[]): void {
  addS3User(cluster().dir, first.accessKey.toLowerCase(), keys);
}

/** One signed request to the node's S3 endpoint; `path` is `/bucket/key`. */
export async function s3Request(method: string, path: string, opts: { query?: Record<string, string>; body?: Uint8Array; keys?: S3Keys; headers?: Record<string, string> } = {}): Promise<Response> {
  const env = cluster();
  return signedRequest({ url: env.s3Url, keys: opts.keys ?? NODE_S3_KEYS, caCert: readFileSync(join(env.pki, 'ca.crt'), 'utf8') }, method, path, opts);
}

async function ok(res: Response, what: string): Promise<Response> {
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  return res;
}

/** The keys in `bucket` under `prefix` (the first 1,000). */
export async function listKeys(bucket: string, prefix: string): Promise<string[]> {
  const res = await ok(await s3Request('GET', `/${bucket}`, { query: { 'list-type': '2', prefix } }), `list ${bucket}/${prefix}`);
  return [...(await res.text()).matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]!);
}

export async function getObject(bucket: string, key: string): Promise<Uint8Array> {
  return new Uint8Array(await (await ok(await s3Request('GET', `/${bucket}/${key}`), `get ${bucket}/${key}`)).arrayBuffer());
}

export async function putObject(bucket: string, key: string, body: Uint8Array): Promise<void> {
  await ok(await s3Request('PUT', `/${bucket}/${key}`, { body }), `put ${bucket}/${key}`);
}

/**
 * Flips 64 bytes in the middle of every pack file of the bucket's restic repository (through S3, as any writer of the
 * bucket could), as a bad disk or a bug in the store would: the backups in it no longer restore, though restic still
 * lists them. Returns how many packs it damaged.
 */
export async function damagePacks(bucket: string): Promise<number> {
  const keys = await listKeys(bucket, 'data/');
  for (const key of keys) {
    const pack = await getObject(bucket, key);
    const at = Math.floor(pack.length / 2);
    for (let k = at; k < Math.min(at + 64, pack.length); k++) pack[k] = pack[k]! ^ 0xff;
    await putObject(bucket, key, pack);
  }
  return keys.length;
}
