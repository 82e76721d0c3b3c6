/**
 * @module Recovery of a restic repository from a versioned bucket after an attack (or a mistaken `forget --prune`):
 * each object is brought back as it was at a chosen time, from the bucket's object versions. Nothing is deleted: the
 * chosen versions are copied, either as the current version of the same key in the same bucket, or into another
 * bucket. Needs credentials that may list object versions (the bucket owner's, not the controller's).
 */
import { createHash } from 'node:crypto';
import { EngineError } from './errors.ts';
import { type S3Endpoint, s3Request, xmlText } from './s3-request.ts';

/** One entry of ListObjectVersions: a version of an object, or a delete marker. */
export interface ObjectVersion {
  key: string;
  versionId: string;
  lastModified: Date;
  isLatest: boolean;
  deleteMarker: boolean;
  size: number;
}

/** What the repository held at a time: for each key, the version to bring back. */
export interface RecoveryPlan {
  /** The versions to copy (the newest at or before the time, for keys that existed then). */
  restore: ObjectVersion[];
  /** Keys whose current version already is the one chosen (same bucket: nothing to copy). */
  unchanged: number;
  /** Keys that did not exist at the time but have a current version now (written later; kept, never deleted). */
  laterOnly: string[];
}

/**
 * Pure: the plan for bringing `prefix`'s objects back as of `asOf`. The state of a key at a time is its newest entry
 * not after it; a delete marker there means the key was gone then (restic removed it itself, e.g. a lock file or an
 * index replaced by prune), and bringing it back would only leave stale locks. Locks are never restored for the same
 * reason: a recovered repository must open without `unlock`.
 */
export function planRecovery(versions: ObjectVersion[], asOf: Date, opts: { sameBucket: boolean; prefix?: string }): RecoveryPlan {
  const byKey = new Map<string, ObjectVersion[]>();
  for (const v of versions) byKey.set(v.key, [...(byKey.get(v.key) ?? []), v]);
  const restore: ObjectVersion[] = [];
  const laterOnly: string[] = [];
  let unchanged = 0;
  const locks = `${opts.prefix ?? ''}locks/`;
  for (const [key, all] of [...byKey].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (key.startsWith(locks)) continue;
    const sorted = [...all].sort((a, b) => b.lastModified.getTime() - a.lastModified.getTime());
    const then = sorted.find((v) => v.lastModified.getTime() <= asOf.getTime());
    const latest = all.find((v) => v.isLatest) ?? sorted[0]!;
    if (!then || then.deleteMarker) {
      if (!latest.deleteMarker) laterOnly.push(key);
      continue;
    }
    if (opts.sameBucket && latest.versionId === then.versionId) unchanged++;
    else restore.push(then);
  }
  return { restore, unchanged, laterOnly };
}

/** Pure: the entries of one ListObjectVersions page. */
export function parseVersions(xml: string): ObjectVersion[] {
  const out: ObjectVersion[] = [];
  for (const m of xml.matchAll(/<(Version|DeleteMarker)>([\s\S]*?)<\/\1>/g)) {
    const body = m[2]!;
    out.push({
      key: xmlText(body, 'Key') ?? '',
      versionId: xmlText(body, 'VersionId') ?? 'null',
      lastModified: new Date(xmlText(body, 'LastModified') ?? 0),
      isLatest: xmlText(body, 'IsLatest') === 'true',
      deleteMarker: m[1] === 'DeleteMarker',
      size: Number(xmlText(body, 'Size') ?? 0),
    });
  }
  return out;
}

async function failed(res: Response, what: string): Promise<EngineError> {
  const text = await res.text();
  const code = xmlText(text, 'Code') ?? `HTTP ${res.status}`;
  if (res.status === 403) {
    return new EngineError('AccessDenied', `${what}: ${code}; these credentials may not do it (recovery needs keys that may list and read ` +
      'object versions, such as the bucket owner\'s; the controller\'s keys may not)');
  }
  if (code === 'NoSuchBucket') return new EngineError('NotFound', `${what}: the bucket does not exist`);
  return new EngineError('Failed', `${what}: ${code}`);
}

/** Every version and delete marker under `prefix` in `bucket`, page by page. */
export async function listObjectVersions(s3: S3Endpoint, bucket: string, prefix = '', signal?: AbortSignal): Promise<ObjectVersion[]> {
  const out: ObjectVersion[] = [];
  let marker: { key: string; version: string } | undefined;
  for (;;) {
    const query: Record<string, string> = { versions: '', prefix, 'max-keys': '1000' };
    if (marker) Object.assign(query, { 'key-marker': marker.key, 'version-id-marker': marker.version });
    const res = await s3Request(s3, 'GET', `/${bucket}`, { query, signal });
    if (!res.ok) throw await failed(res, `listing the object versions of bucket ${bucket}`);
    const xml = await res.text();
    out.push(...parseVersions(xml));
    if (xmlText(xml, 'IsTruncated') !== 'true') return out;
    const key = xmlText(xml, 'NextKeyMarker');
    if (!key) return out;
    marker = { key, version: xmlText(xml, 'NextVersionIdMarker') ?? '' };
  }
}

/** Whether the bucket keeps versions (`Enabled`), had them (`Suspended`), or never did (undefined). */
export async function bucketVersioning(s3: S3Endpoint, bucket: string, signal?: AbortSignal): Promise<string | undefined> {
  const res = await s3Request(s3, 'GET', `/${bucket}`, { query: { versioning: '' }, signal });
  if (!res.ok) throw await failed(res, `reading the versioning of bucket ${bucket}`);
  return xmlText(await res.text(), 'Status');
}

export interface RecoverOptions {
  source: S3Endpoint;
  bucket: string;
  /** Another bucket (same endpoint and keys) to write into; by default the same bucket, as new current versions. */
  targetBucket?: string;
  asOf: Date;
  /** Only plan; copy nothing. */
  dryRun?: boolean;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface RecoverResult extends RecoveryPlan {
  copied: number;
  bytes: number;
}

/**
 * Brings the repository in `bucket` back as of `asOf`. Each chosen version is read (GET with versionId) and written
 * again, one at a time (restic's objects are some MiB). CopyObject would spare the transfer; in the first attack drill
 * it was refused (AccessDenied), most likely because the objects belong to the controller's user, which also refused
 * the plain GET until the bucket policy granted the recovering user reads; not tried again since. A write to the same
 * key in the same bucket adds a new current version and removes nothing.
 */
export async function recoverRepository(opts: RecoverOptions): Promise<RecoverResult> {
  if (Number.isNaN(opts.asOf.getTime())) throw new EngineError('InvalidInput', 'the time to recover to is not a valid time');
  const target = opts.targetBucket ?? opts.bucket;
  const versioning = await bucketVersioning(opts.source, opts.bucket, opts.signal);
  if (versioning !== 'Enabled' && versioning !== 'Suspended') {
    throw new EngineError('InvalidInput', `bucket ${opts.bucket} has never kept object versions, so there is nothing earlier to recover from`);
  }
  const versions = await listObjectVersions(opts.source, opts.bucket, '', opts.signal);
  const plan = planRecovery(versions, opts.asOf, { sameBucket: target === opts.bucket });
  if (!plan.restore.some((v) => v.key === 'config')) {
    throw new EngineError('NotFound', `bucket ${opts.bucket} held no restic repository (no "config" object) at ${opts.asOf.toISOString()}`);
  }
  let copied = 0;
  let bytes = 0;
  if (!opts.dryRun) {
    for (const v of plan.restore) {
      const got = await s3Request(opts.source, 'GET', `/${opts.bucket}/${v.key}`, { query: { versionId: v.versionId }, signal: opts.signal });
      if (!got.ok) throw await failed(got, `reading ${v.key} (version ${v.versionId}) of bucket ${opts.bucket}`);
      const body = new Uint8Array(await got.arrayBuffer());
      // Content-MD5: S3 wants it for a PUT into a bucket with object lock.
      const put = await s3Request(opts.source, 'PUT', `/${target}/${v.key}`, {
        body, headers: { 'content-md5': createHash('md5').update(body).digest('base64') }, signal: opts.signal,
      });
      if (!put.ok) throw await failed(put, `writing ${v.key} into bucket ${target}`);
      copied++;
      bytes += v.size;
      opts.onProgress?.(copied, plan.restore.length);
    }
  }
  return { ...plan, copied, bytes };
}
