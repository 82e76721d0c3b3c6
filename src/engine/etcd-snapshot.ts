/**
 * @module etcd snapshots through the Maintenance.Snapshot gRPC stream, written to a file as they arrive (never held in
 * memory whole) and checked against the SHA-256 trailer etcd appends (the check `etcdctl snapshot restore` makes).
 * The two messages involved are decoded by hand, so no .proto file has to be found at run time.
 */
import type * as GrpcJs from '@grpc/grpc-js';
import { type Hash, createHash } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { EngineError } from './errors.ts';
import { credentials, type EtcdConnection, grpcError, loadGrpc, target } from './etcd-connection.ts';
import { decodeMemberList, type EtcdMember } from './etcd-members.ts';
import { Reader } from './protobuf-wire.ts';


export type { EtcdConnection } from './etcd-connection.ts';

export interface SnapshotResult {
  /** Bytes written, trailer included. */
  size: number;
  /**
   * etcd revision when the snapshot started (from Maintenance.Status just before it: etcd 3.4 sends no header with
   * snapshot chunks; a newer etcd's header wins when present).
   */
  revision: number;
  /**
   * SHA-256 (hex) of the snapshot's content, i.e. of every byte but the 32-byte trailer, which holds this same value:
   * etcd's own integrity check, verifiable after any restore (`snapshotContentSha256`).
   */
  sha256: string;
  /**
   * The cluster's members when the snapshot was taken (Cluster.MemberList over the same connection): a restore of a
   * backup from a several-member cluster must recreate every member, never a lone one beside the old ones.
   */
  members?: EtcdMember[];
  timings: SnapshotTimings;
}

/** Where the time of a snapshot went, milliseconds (monotonic clock). */
export interface SnapshotTimings {
  /** Connecting (TLS included) and asking etcd for its revision (Maintenance.Status). */
  connectMs: number;
  /** From the Snapshot request to the last byte on disk. */
  streamMs: number;
  /** Of streamMs: hashing, done between chunks as they arrive. */
  hashMs: number;
  /** Of streamMs: writing to the file (the page cache, mostly). */
  writeMs: number;
}

export interface SnapshotOptions {
  signal?: AbortSignal;
  /** Called with the bytes received so far, at most every `progressEveryBytes`. */
  onProgress?: (bytes: number) => void;
  timeoutMs?: number;
}

const TRAILER = 32;
/**
 * HTTP/2 receive window (stream and connection), bytes. grpc-js keeps HTTP/2's 64 KiB default, so etcd stops after
 * every 64 KiB until our window update reaches it: the stream ran at ~60% of etcdctl's speed (Go's gRPC grows its
 * window to 16 MiB). 4 MiB streamed a 490 MB snapshot 1.5-1.7× faster than the default; at most this much is buffered.
 */
const FLOW_CONTROL_WINDOW = 4 << 20;
const SNAPSHOT = '/etcdserverpb.Maintenance/Snapshot';
const STATUS = '/etcdserverpb.Maintenance/Status';
const MEMBER_LIST = '/etcdserverpb.Cluster/MemberList';

interface SnapshotResponse {
  revision?: number;
  /** Bytes of the database still to come after this message's blob (etcd's `remaining_bytes`). */
  remaining: number;
  blob: Buffer;
}

/** ResponseHeader { cluster_id = 1; member_id = 2; revision = 3; raft_term = 4 }: returns the revision. */
function headerRevision(buf: Buffer): number | undefined {
  const r = new Reader(buf);
  while (!r.done) {
    const tag = Number(r.varint());
    if (tag >>> 3 === 3 && (tag & 7) === 0) return Number(r.varint());
    r.skip(tag & 7);
  }
  return undefined;
}

export function decodeSnapshotResponse(buf: Buffer): SnapshotResponse {
  const r = new Reader(buf);
  let revision: number | undefined;
  let remaining = 0;
  let blob: Buffer = Buffer.alloc(0);
  while (!r.done) {
    const tag = Number(r.varint());
    const field = tag >>> 3;
    if (field === 1 && (tag & 7) === 2) revision = headerRevision(r.bytes());
    else if (field === 2 && (tag & 7) === 0) remaining = Number(r.varint());
    else if (field === 3 && (tag & 7) === 2) blob = r.bytes();
    else r.skip(tag & 7);
  }
  return { revision, remaining, blob };
}

/** StatusResponse { header = 1; ... }: the header's revision. */
function decodeStatusRevision(buf: Buffer): number {
  const r = new Reader(buf);
  while (!r.done) {
    const tag = Number(r.varint());
    if (tag >>> 3 === 1 && (tag & 7) === 2) return headerRevision(r.bytes()) ?? 0;
    r.skip(tag & 7);
  }
  return 0;
}

function currentRevision(grpc: typeof GrpcJs, client: GrpcJs.Client, deadline: number): Promise<number> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(STATUS, () => Buffer.alloc(0), decodeStatusRevision, {}, new grpc.Metadata(), { deadline },
      (err, rev) => (err ? reject(err) : resolve(rev ?? 0)));
  });
}

/** etcd's current revision (Maintenance.Status), on a connection of its own. */
export async function etcdRevision(conn: EtcdConnection, timeoutMs = 30_000): Promise<number> {
  const grpc = await loadGrpc();
  const { address, host, secure } = target(conn.endpoint);
  const { creds, options } = credentials(conn, host, secure);
  const client = new grpc.Client(address, creds, options);
  try {
    return await currentRevision(grpc, client, Date.now() + timeoutMs);
  } catch (err) {
    if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'number') throw grpcError(err as GrpcJs.ServiceError, conn.endpoint, 'etcd status');
    throw err;
  } finally {
    client.close();
  }
}

/** MemberListRequest { linearizable = 1 }: empty asks the member's own view, as `etcdctl member list` does by default. */
function memberList(grpc: typeof GrpcJs, client: GrpcJs.Client, deadline: number): Promise<EtcdMember[]> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(MEMBER_LIST, () => Buffer.alloc(0), decodeMemberList, {}, new grpc.Metadata(), { deadline },
      (err, members) => (err ? reject(err) : resolve(members ?? [])));
  });
}

/** Streams a snapshot of etcd into `file`; verifies its SHA-256 trailer before resolving. */
export async function saveSnapshot(conn: EtcdConnection, file: string, opts: SnapshotOptions = {}): Promise<SnapshotResult> {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'w', 0o600);
    const out = fd;
    return await streamSnapshot(conn, { write: (chunk) => writeAll(out, chunk) }, opts);
  } catch (err) {
    if (err instanceof EngineError) throw err;
    throw new EngineError('Failed', `writing the etcd snapshot failed: ${(err as Error).message}`, { cause: err });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Where a streamed snapshot goes. */
export interface SnapshotSink {
  /**
   * Told, before the first byte, what is known once etcd starts sending: its revision, members and the snapshot's
   * size in bytes (trailer included; from etcd's first message, whose `remaining_bytes` counts the rest).
   */
  begin?: (info: { revision: number; members?: EtcdMember[]; size: number }) => void;
  /** Each chunk as it arrives, in order; synchronous, so etcd is slowed by HTTP/2 flow control while it blocks. */
  write: (chunk: Buffer) => void;
}

/**
 * Streams a snapshot of etcd into `sink`; throws IntegrityError when its SHA-256 trailer does not match the content or
 * when etcd sent another number of bytes than it announced. The sink has seen every byte by then: a caller that must
 * not keep a failed snapshot discards what it wrote.
 */
export async function streamSnapshot(conn: EtcdConnection, sink: SnapshotSink, opts: SnapshotOptions = {}): Promise<SnapshotResult> {
  const grpc = await loadGrpc();
  const { address, host, secure } = target(conn.endpoint);
  const { creds, options } = credentials(conn, host, secure);
  const client = new grpc.Client(address, creds, { ...options, 'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW });
  const content = createHash('sha256');
  let held: Buffer = Buffer.alloc(0);
  let size = 0;
  let revision = 0;
  let members: EtcdMember[] | undefined;
  let announced: number | undefined;
  const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
  let call: GrpcJs.ClientReadableStream<SnapshotResponse> | undefined;
  const cancel = () => call?.cancel();
  opts.signal?.addEventListener('abort', cancel, { once: true });
  const t0 = performance.now();
  const timings: SnapshotTimings = { connectMs: 0, streamMs: 0, hashMs: 0, writeMs: 0 };
  try {
    revision = await currentRevision(grpc, client, Math.min(deadline, Date.now() + 30_000));
    // Membership is what a restore needs to refuse splitting a cluster; an etcd that will not tell it (an unusual
    // permission setup) still gets its backup, which then only lacks that check.
    members = await memberList(grpc, client, Math.min(deadline, Date.now() + 30_000)).catch(() => undefined);
    const t1 = performance.now();
    timings.connectMs = t1 - t0;
    call = client.makeServerStreamRequest<Record<string, never>, SnapshotResponse>(
      SNAPSHOT, () => Buffer.alloc(0), decodeSnapshotResponse, {}, new grpc.Metadata(), { deadline });
    if (opts.signal?.aborted) cancel();
    for await (const msg of call as AsyncIterable<SnapshotResponse>) {
      if (msg.revision) revision = msg.revision;
      if (msg.blob.length === 0) continue;
      if (announced === undefined) {
        announced = msg.blob.length + msg.remaining + TRAILER;
        sink.begin?.({ revision, members, size: announced });
      }
      size += msg.blob.length;
      if (size > announced) throw new EngineError('IntegrityError', `etcd sent more than the ${announced} bytes it announced`);
      const h = performance.now();
      held = hashAllButTrailer(content, held, msg.blob);
      const w = performance.now();
      sink.write(msg.blob);
      timings.hashMs += w - h;
      timings.writeMs += performance.now() - w;
      opts.onProgress?.(size);
    }
    timings.streamMs = performance.now() - t1;
  } catch (err) {
    if (opts.signal?.aborted) throw new EngineError('Cancelled', 'etcd snapshot was cancelled');
    if (err instanceof EngineError) throw err;
    // gRPC errors carry a numeric status code; file errors (ENOSPC, EACCES) a string one.
    if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'number') throw grpcError(err as GrpcJs.ServiceError, conn.endpoint, 'etcd snapshot');
    throw new EngineError('Failed', `writing the etcd snapshot failed: ${(err as Error).message}`, { cause: err });
  } finally {
    opts.signal?.removeEventListener('abort', cancel);
    client.close();
  }
  if (size <= TRAILER) throw new EngineError('IntegrityError', `etcd snapshot is too short (${size} bytes)`);
  if (size !== announced) throw new EngineError('IntegrityError', `etcd snapshot ended after ${size} of the ${announced} bytes etcd announced`);
  const expected = content.digest();
  if (!expected.equals(held)) {
    throw new EngineError('IntegrityError', 'etcd snapshot failed its integrity check: the SHA-256 trailer does not match the content');
  }
  return { size, revision, sha256: held.toString('hex'), members, timings };
}

/** A moment's wait for the reader of a full non-blocking pipe. */
const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes a chunk before the next is taken. Synchronous on purpose: a chunk goes to the page cache in microseconds,
 * whereas a write stream queued the chunks that arrived while a write was in flight (and GC lagged behind them): on
 * a 490 MB snapshot it was 15% slower and peaked at 160-177 MB RSS, against 82 MB for this. No fsync: the file is
 * staged for restic and removed after, unlike `etcdctl snapshot save`'s.
 */
export function writeAll(fd: number, chunk: Buffer): void {
  for (let done = 0; done < chunk.length;) {
    try {
      done += writeSync(fd, chunk, done, chunk.length - done);
    } catch (err) {
      // A pipe another program reads (the archive to restic) may be non-blocking: EAGAIN means it is full.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 2);
    }
  }
}

/**
 * Feeds `chunk` to the hash, holding back the last 32 bytes seen so far (the trailer candidate), without copying
 * the chunk. Returns the new held-back bytes.
 */
function hashAllButTrailer(hash: Hash, held: Buffer, chunk: Buffer): Buffer {
  if (chunk.length >= TRAILER) {
    hash.update(held);
    hash.update(chunk.subarray(0, chunk.length - TRAILER));
    return Buffer.from(chunk.subarray(chunk.length - TRAILER));
  }
  const joined = Buffer.concat([held, chunk]);
  if (joined.length <= TRAILER) return joined;
  hash.update(joined.subarray(0, joined.length - TRAILER));
  return Buffer.from(joined.subarray(joined.length - TRAILER));
}

/** Checks a snapshot file's trailer against its content; returns the content SHA-256 (hex), or throws IntegrityError. */
export async function verifySnapshotFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  let held: Buffer = Buffer.alloc(0);
  for await (const chunk of Bun.file(file).stream()) held = hashAllButTrailer(hash, held, Buffer.from(chunk));
  const expected = hash.digest();
  if (held.length < TRAILER || !expected.equals(held)) {
    throw new EngineError('IntegrityError', `${file} failed its integrity check: the SHA-256 trailer does not match the content`);
  }
  return expected.toString('hex');
}
