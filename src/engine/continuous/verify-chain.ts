/**
 * @module Proving a chain restores: the point of a revision rebuilt from the full backup and the stored changes (as a
 * restore does), started in a throwaway etcd, and summed up two ways. (1) Its revision, key count and a digest of every
 * key's history (key, create and modify revision, version), read here, page by page. (2) etcd's own content hash of
 * its history up to the revision (HashKV: every revision after the compacted one, values and leases included, computed
 * inside etcd, nothing read out; etcd compares its members with it), after compacting the rebuilt store as far as the
 * live etcd is. The live etcd's digest and hash at the same revision must match both: they do only if every change up
 * to there was stored and replayed, in order, with its value. The digest names the difference (keys, revisions); the
 * hash covers the values without reading them out of a big etcd twice.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '../../util/scratch.ts';
import { DATA_DIR, SNAPSHOT_FILE } from '../backup-layout.ts';
import { EtcdClient } from '../etcd-client.ts';
import { EngineError, type EngineErrorKind } from '../errors.ts';
import type { BackupOrigin } from '../origin.ts';
import type { Repository, Restic } from '../restic.ts';
import { startThrowawayEtcd } from '../throwaway-etcd.ts';
import { KUBERNETES_KEY } from '../verify.ts';
import { restorePointInTime } from './replay.ts';

export interface KeysDigest {
  revision: number;
  keyCount: number;
  /** SHA-256 (hex) over every key's history, in key order. */
  digest: string;
  /** Whether the store holds KUBERNETES_KEY. */
  kubernetes: boolean;
}

/** The digest of a store's keys at `revision` (which etcd must still hold: not compacted). */
export async function keysDigest(client: EtcdClient, revision: number): Promise<KeysDigest> {
  const hash = createHash('sha256');
  let keyCount = 0;
  let kubernetes = false;
  const num = Buffer.alloc(8);
  for await (const page of client.rangeKeys(revision)) {
    for (const k of page) {
      num.writeUInt32BE(k.key.length);
      hash.update(num.subarray(0, 4));
      hash.update(k.key);
      for (const n of [k.createRevision, k.modRevision, k.version]) {
        num.writeBigUInt64BE(BigInt(n));
        hash.update(num);
      }
      keyCount++;
      kubernetes ||= k.key.toString() === KUBERNETES_KEY;
    }
  }
  return { revision, keyCount, digest: hash.digest('hex'), kubernetes };
}

/** etcd's HashKV at a revision, and the compacted revision it counts from (two stores compare only at the same one). */
export interface ContentHash {
  contentHash: number;
  compactRevision: number;
}

/** A store's content hash at `revision` (which it must still hold: not compacted past it). */
export async function contentHashAt(client: EtcdClient, revision: number): Promise<ContentHash> {
  const h = await client.hashKV(revision);
  return { contentHash: h.hash, compactRevision: h.compactRevision };
}

/**
 * The rebuilt store's content hash at `revision`, compacted first to `compactTo` (the live etcd's compacted revision),
 * so that both count the same revisions; without `compactTo`, at the store's own compaction.
 */
export async function rebuiltContentHash(client: EtcdClient, revision: number, compactTo?: number): Promise<ContentHash> {
  const asRebuilt = await contentHashAt(client, revision);
  // etcd says -1 for a store never compacted.
  const target = compactTo !== undefined && compactTo > 0 ? compactTo : undefined;
  if (target === undefined || target === asRebuilt.compactRevision) return asRebuilt;
  if (target < asRebuilt.compactRevision) {
    throw new EngineError('IntegrityError', `the rebuilt etcd is compacted to revision ${asRebuilt.compactRevision}, past the ${target} asked for: its content hash cannot be compared`);
  }
  await client.compact(target);
  return contentHashAt(client, revision);
}

export interface ChainVerifyRequest {
  repo: Repository;
  policy: string;
  origin?: BackupOrigin;
  /** The revision to rebuild; undefined: the newest stored. */
  revision?: number;
  /** The live etcd's compacted revision: the rebuilt store is compacted to it before its content hash. */
  compactRevision?: number;
  kubernetes?: boolean;
  signal?: AbortSignal;
  onStep?: (step: string) => void;
  /** Read under restic's shared lock (PointInTimeRequest.sharedLock): a prune meanwhile is no false failure. */
  sharedLock?: boolean;
}

export interface ChainVerifyResult extends KeysDigest, ContentHash {
  baseSnapshot: string;
  changesApplied: number;
  durationSecs: number;
}

/** What a chain verification pod reports in its termination message (as VerifyOutcome for a full backup). */
export type ChainVerifyOutcome = ({ ok: true } & ChainVerifyResult) | { ok: false; error: string; kind: EngineErrorKind };

export async function verifyChain(restic: Restic, req: ChainVerifyRequest): Promise<ChainVerifyResult> {
  const started = performance.now();
  const work = await scratchDir('verify-chain');
  try {
    const pit = await restorePointInTime(restic, { repo: req.repo, policy: req.policy, origin: req.origin, target: req.revision === undefined ? 'latest' : { revision: req.revision },
      dir: join(work, 'pit'), signal: req.signal, onStep: req.onStep, sharedLock: req.sharedLock });
    if (req.revision !== undefined && pit.revision !== req.revision) {
      throw new EngineError('IntegrityError', `the chain rebuilds to revision ${pit.revision}, not ${req.revision}: changes are missing from it`);
    }
    req.onStep?.('starting a throwaway etcd on the rebuilt snapshot');
    const etcd = await startThrowawayEtcd({ snapshotFile: join(work, 'pit', DATA_DIR, SNAPSHOT_FILE), work: join(work, 'check'), name: 'verify-chain',
      sha256: pit.sha256, signal: req.signal });
    const client = await EtcdClient.connect({ endpoint: etcd.endpoint });
    try {
      const d = await keysDigest(client, pit.revision);
      if (req.kubernetes !== false && !d.kubernetes) {
        throw new EngineError('Failed', `the rebuilt etcd (revision ${pit.revision}) has no ${KUBERNETES_KEY}: not a Kubernetes cluster's etcd`);
      }
      const h = await rebuiltContentHash(client, pit.revision, req.compactRevision);
      return { ...d, ...h, baseSnapshot: pit.baseSnapshot, changesApplied: pit.changesApplied, durationSecs: (performance.now() - started) / 1000 };
    } finally {
      client.close();
      await etcd.stop();
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
