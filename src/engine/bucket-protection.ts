/**
 * @module What a bucket provides against deletion: its versioning and object-lock settings, read with signed S3 requests
 * (GetBucketVersioning, GetObjectLockConfiguration) as far as the given keys may. A setting the keys may not read is
 * `Unknown`, with the reason, never an error: the keys a user gives the controller need not include these reads.
 */
import { type S3Endpoint, s3Request, xmlText } from './s3-request.ts';

export type VersioningState = 'Enabled' | 'Suspended' | 'Off' | 'Unknown';
export type ObjectLockState = 'Enabled' | 'Off' | 'Unknown';
export type RetentionMode = 'GOVERNANCE' | 'COMPLIANCE';

export interface BucketProtection {
  versioning: VersioningState;
  objectLock: ObjectLockState;
  /** The default retention of new object versions, when object lock has one. */
  retention?: { mode: RetentionMode; days: number };
  /** Why a setting is Unknown, one entry per setting (e.g. "versioning: AccessDenied"). */
  unreadable: string[];
}

/** An S3 answer: its HTTP status and body. */
export interface S3Answer {
  status: number;
  body: string;
  /** The request got no answer (endpoint away, TLS): why. */
  error?: string;
}

/** Why an answer tells nothing, in a user's words: the S3 error code, and which permission a 403 lacks. */
function unreadable(answer: S3Answer, permission: string): string {
  if (answer.error !== undefined) return answer.error;
  const code = xmlText(answer.body, 'Code') ?? `HTTP ${answer.status}`;
  return answer.status === 403 ? `${code} (the keys lack ${permission})` : code;
}

/**
 * Pure: the versioning state from GetBucketVersioning's answer. A bucket that never had versioning answers 200 with an
 * empty configuration (measured on RGW 16.2): that is Off.
 */
export function parseVersioning(answer: S3Answer): { state: VersioningState; why?: string } {
  if (answer.status !== 200) return { state: 'Unknown', why: `versioning: ${unreadable(answer, 's3:GetBucketVersioning')}` };
  const status = xmlText(answer.body, 'Status');
  return { state: status === 'Enabled' ? 'Enabled' : status === 'Suspended' ? 'Suspended' : 'Off' };
}

/**
 * Pure: the object-lock state and default retention from GetObjectLockConfiguration's answer. A bucket without object
 * lock answers 404 ObjectLockConfigurationNotFoundError (RGW 16.2, as AWS): that is Off, not Unknown.
 */
export function parseObjectLock(answer: S3Answer): { state: ObjectLockState; retention?: BucketProtection['retention']; why?: string } {
  if (answer.status === 404 && xmlText(answer.body, 'Code') === 'ObjectLockConfigurationNotFoundError') return { state: 'Off' };
  if (answer.status !== 200) return { state: 'Unknown', why: `object lock: ${unreadable(answer, 's3:GetBucketObjectLockConfiguration')}` };
  if (xmlText(answer.body, 'ObjectLockEnabled') !== 'Enabled') return { state: 'Off' };
  const mode = xmlText(answer.body, 'Mode');
  const days = Number(xmlText(answer.body, 'Days') ?? 0) + 365 * Number(xmlText(answer.body, 'Years') ?? 0);
  if ((mode !== 'GOVERNANCE' && mode !== 'COMPLIANCE') || !(days > 0)) return { state: 'Enabled' };
  return { state: 'Enabled', retention: { mode, days } };
}

/** Pure: the two answers together. */
export function bucketProtection(versioning: S3Answer, objectLock: S3Answer): BucketProtection {
  const v = parseVersioning(versioning);
  const l = parseObjectLock(objectLock);
  return {
    versioning: v.state, objectLock: l.state, ...(l.retention ? { retention: l.retention } : {}),
    unreadable: [v.why, l.why].filter((w): w is string => w !== undefined),
  };
}

/** Reads the bucket's settings; a request that fails (endpoint away, TLS) makes its setting Unknown with the cause. */
export async function readBucketProtection(endpoint: S3Endpoint, bucket: string, signal?: AbortSignal): Promise<BucketProtection> {
  const ask = async (query: Record<string, string>): Promise<S3Answer> => {
    try {
      const res = await s3Request(endpoint, 'GET', `/${bucket}`, { query, signal });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      if (signal?.aborted) throw err;
      return { status: 0, body: '', error: err instanceof Error ? err.message : String(err) };
    }
  };
  return bucketProtection(await ask({ versioning: '' }), await ask({ 'object-lock': '' }));
}
