/**
 * @module Proving a chain restores: the point of a revision rebuilt from the full backup and the stored changes (as a
 * restore does), started in a throwaway etcd, and summed up as its revision, key count and a digest of every key's
 * history (key, create and modify revision, version; not the values). The same digest of the live etcd at the same
 * revision must match: it does only if every change up to there was stored and replayed, in order. Values are not
 * compared: restic checks the stored bytes, and reading every value of a big etcd twice would cost the cluster more
 * than the proof is worth.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '../../util/scratch.ts';
import { DATA_DIR, SNAPSHOT_FILE } from '../backup.ts';
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

export interface ChainVerifyRequest {
  repo: Repository;
  policy: string;
  origin?: BackupOrigin;
  /** The revision to rebuild; undefined: the newest stored. */
  revision?: number;
  kubernetes?: boolean;
  signal?: AbortSignal;
  onStep?: (step: string) => void;
}

export interface ChainVerifyResult extends KeysDigest {
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
      dir: join(work, 'pit'), signal: req.signal, onStep: req.onStep });
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
      return { ...d, baseSnapshot: pit.baseSnapshot, changesApplied: pit.changesApplied, durationSecs: (performance.now() - started) / 1000 };
    } finally {
      client.close();
      await etcd.stop();
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
