/**
 * @module An etcd v3 client for what continuous backup needs: the Watch stream of every key, Status, paged Range, and
 * Txn/LeaseGrant to replay changes into a throwaway etcd. The messages come from etcd's own .proto files (as the
 * `etcd3` npm package ships them, options for grpc-gateway and gogoproto removed), parsed by protobufjs and served by
 * grpc-js through @grpc/proto-loader: no message is decoded by hand. The `etcd3` package itself is not used: it reads
 * its .proto files from node_modules at run time, which a compiled binary does not have; here the files are embedded.
 */
import type * as GrpcJs from '@grpc/grpc-js';
import authProto from './etcd-proto/auth.proto' with { type: 'text' };
import kvProto from './etcd-proto/kv.proto' with { type: 'text' };
import rpcProto from './etcd-proto/rpc.proto' with { type: 'text' };
import { credentials, type EtcdConnection, grpcError, loadGrpc, target } from './etcd-connection.ts';
import { EngineError } from './errors.ts';

/** One key's change, as the watch reports it. Revisions are exact up to 2^53, far beyond any etcd's. */
export interface Change {
  type: 'put' | 'delete';
  key: Buffer;
  /** The key's value after a put (absent for a delete). */
  value?: Buffer;
  /** The revision of the transaction that made the change (several changes may share one). */
  revision: number;
  /** Lease the key was attached to ("0" or absent: none), decimal: lease ids use all 64 bits. */
  lease?: string;
}

/** What a watch stream says, in order. */
export type WatchMessage =
  /** Changes of one or more whole revisions (fragments are joined); `revision` is the store's at the time. */
  | { kind: 'changes'; changes: Change[]; revision: number }
  /** No change up to `revision` (a progress notification): the watch has seen every revision up to it. */
  | { kind: 'progress'; revision: number }
  /**
   * The revisions asked for are gone: etcd compacted its history up to `compactRevision`, so the changes between
   * the start revision and it cannot be had any more. The stream ends after this.
   */
  | { kind: 'compacted'; compactRevision: number };

interface KeyValueMsg {
  key: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  value: Buffer;
  lease: string;
}

/** A key's place in etcd's history, without its value. */
export interface KeyHistory {
  key: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
}
interface WatchResponseMsg {
  header?: { revision: string };
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  fragment: boolean;
  events: { type: 'PUT' | 'DELETE'; kv?: KeyValueMsg }[];
}
interface RangeResponseMsg {
  header?: { revision: string };
  kvs: KeyValueMsg[];
  more: boolean;
}
type Unary<Req, Res> = (req: Req, meta: GrpcJs.Metadata, opts: GrpcJs.CallOptions, cb: (err: GrpcJs.ServiceError | null, res?: Res) => void) => void;
interface KvService extends GrpcJs.Client {
  Range: Unary<Record<string, unknown>, RangeResponseMsg>;
  Txn: Unary<Record<string, unknown>, { succeeded: boolean; header?: { revision: string } }>;
  Compact: Unary<{ revision: string; physical: boolean }, { header?: { revision: string } }>;
}
interface WatchService extends GrpcJs.Client {
  Watch: (meta?: GrpcJs.Metadata, opts?: GrpcJs.CallOptions) => GrpcJs.ClientDuplexStream<Record<string, unknown>, WatchResponseMsg>;
}
interface LeaseService extends GrpcJs.Client {
  LeaseGrant: Unary<{ TTL: number; ID: string }, { ID: string; error: string }>;
  LeaseLeases: Unary<Record<string, never>, { leases: { ID: string }[] }>;
  LeaseKeepAlive: (meta?: GrpcJs.Metadata, opts?: GrpcJs.CallOptions) => GrpcJs.ClientDuplexStream<{ ID: string }, { ID: string; TTL: string }>;
}
interface MaintenanceService extends GrpcJs.Client {
  Status: Unary<Record<string, never>, { header?: { revision: string } }>;
  HashKV: Unary<{ revision: string }, { hash: number; compact_revision: string }>;
}
type ServiceCtor<T> = new (address: string, creds: GrpcJs.ChannelCredentials, options?: GrpcJs.ClientOptions) => T;
interface EtcdServices {
  KV: ServiceCtor<KvService>;
  Watch: ServiceCtor<WatchService>;
  Lease: ServiceCtor<LeaseService>;
  Maintenance: ServiceCtor<MaintenanceService>;
}

let services: EtcdServices | undefined;
/** Parses the embedded .proto files once (about 40 ms), on first use. */
async function loadServices(grpc: typeof GrpcJs): Promise<EtcdServices> {
  if (services) return services;
  const protobuf = (await import('protobufjs')).default;
  const { fromJSON } = await import('@grpc/proto-loader');
  const root = new protobuf.Root();
  for (const source of [kvProto, authProto, rpcProto]) protobuf.parse(source, root, { keepCase: true });
  const definition = fromJSON(root.toJSON(), { keepCase: true, longs: String, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { etcdserverpb: EtcdServices };
  services = pkg.etcdserverpb;
  return services;
}

const ALL_KEYS = Buffer.from([0]);
const num = (s: string | undefined): number => Number(s ?? 0);

export class EtcdClient {
  private constructor(
    private readonly grpc: typeof GrpcJs,
    private readonly endpoint: string,
    private readonly kv: KvService,
    private readonly watchService: WatchService,
    private readonly lease: LeaseService,
    private readonly maintenance: MaintenanceService,
  ) {}

  static async connect(conn: EtcdConnection): Promise<EtcdClient> {
    const grpc = await loadGrpc();
    const svc = await loadServices(grpc);
    const { address, host, secure } = target(conn.endpoint);
    const { creds, options } = credentials(conn, host, secure);
    // One channel for every service: one TLS connection to etcd, as etcd's Go client keeps.
    // Range pages and watch responses may be large (Kubernetes objects up to 1.5 MiB each); grpc-js refuses more than
    // 4 MiB by default.
    const kv = new svc.KV(address, creds, { ...options, 'grpc.max_receive_message_length': 256 << 20 });
    const shared = { ...options, channelOverride: kv.getChannel() };
    return new EtcdClient(grpc, conn.endpoint, kv, new svc.Watch(address, creds, shared), new svc.Lease(address, creds, shared),
      new svc.Maintenance(address, creds, shared));
  }

  close(): void {
    for (const c of [this.watchService, this.lease, this.maintenance, this.kv]) c.close();
  }

  private unary<Req, Res>(fn: Unary<Req, Res>, svc: GrpcJs.Client, req: Req, what: string, timeoutMs = 30_000): Promise<Res> {
    return new Promise((resolve, reject) => {
      fn.call(svc, req, new this.grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(grpcError(err, this.endpoint, what));
        else resolve(res as Res);
      });
    });
  }

  /** The store's current revision. */
  async revision(): Promise<number> {
    const res = await this.unary(this.maintenance.Status, this.maintenance, {}, 'etcd status');
    return num(res.header?.revision);
  }

  /**
   * etcd's own hash of its history up to `revision` (HashKV: every revision after the compacted one, values and leases
   * included, computed inside etcd: nothing is read out), and the compacted revision it started from. Two stores with
   * the same history and compaction give the same hash; etcd compares its members this way.
   */
  async hashKV(revision: number): Promise<{ hash: number; compactRevision: number }> {
    const res = await this.unary(this.maintenance.HashKV, this.maintenance, { revision: String(revision) }, 'etcd hash', 300_000);
    return { hash: res.hash, compactRevision: num(res.compact_revision) };
  }

  /** Compacts the history up to `revision`, waiting until it is applied (for a throwaway etcd only). */
  async compact(revision: number): Promise<void> {
    await this.unary(this.kv.Compact, this.kv, { revision: String(revision), physical: true }, 'etcd compaction', 300_000);
  }

  /**
   * Every change to every key from `fromRevision` on, as etcd reports them, until `signal` aborts or the stream fails
   * (an EngineError). Progress notifications are asked for, so a quiet store still tells how far the watch has seen.
   */
  async *watch(fromRevision: number, signal: AbortSignal): AsyncGenerator<WatchMessage> {
    const call = this.watchService.Watch();
    const cancel = () => call.cancel();
    signal.addEventListener('abort', cancel, { once: true });
    let fragments: Change[] = [];
    try {
      call.write({ create_request: { key: ALL_KEYS, range_end: ALL_KEYS, start_revision: String(fromRevision), progress_notify: true, fragment: true } });
      for await (const res of call as AsyncIterable<WatchResponseMsg>) {
        const revision = num(res.header?.revision);
        if (res.compact_revision !== '0' && res.compact_revision !== undefined && num(res.compact_revision) > 0) {
          yield { kind: 'compacted', compactRevision: num(res.compact_revision) };
          return;
        }
        if (res.canceled) throw new EngineError('Failed', `etcd at ${this.endpoint} cancelled the watch: ${res.cancel_reason || 'no reason given'}`);
        if (res.created && res.events.length === 0) continue;
        fragments.push(...res.events.map(toChange));
        if (res.fragment) continue;
        if (fragments.length === 0) yield { kind: 'progress', revision };
        else yield { kind: 'changes', changes: fragments, revision };
        fragments = [];
      }
      if (!signal.aborted) throw new EngineError('Unreachable', `etcd at ${this.endpoint} ended the watch stream`);
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof EngineError) throw err;
      if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'number') throw grpcError(err as GrpcJs.ServiceError, this.endpoint, 'etcd watch');
      throw err;
    } finally {
      signal.removeEventListener('abort', cancel);
      call.cancel();
    }
  }

  /**
   * Every key and value at `revision` (0: now), in key order, `pageSize` keys per request so memory stays bounded.
   */
  async *range(revision = 0, pageSize = 1000): AsyncGenerator<{ key: Buffer; value: Buffer }[]> {
    let from = ALL_KEYS;
    let at = revision;
    for (;;) {
      const res = await this.unary(this.kv.Range, this.kv, { key: from, range_end: ALL_KEYS, revision: String(at), limit: String(pageSize) }, 'etcd range', 120_000);
      // Every page reads the same revision as the first, so the pages make one consistent picture.
      if (at === 0) at = num(res.header?.revision);
      if (res.kvs.length > 0) yield res.kvs.map((kv) => ({ key: kv.key, value: kv.value }));
      const last = res.kvs.at(-1);
      if (!res.more || !last) return;
      from = Buffer.concat([last.key, ALL_KEYS]);
    }
  }

  /**
   * Every key at `revision` with its create and modify revisions and version, not its value, in key order, 10,000 keys
   * per request: what two stores must agree on to have the same history, at a small part of the cost of the values.
   */
  async *rangeKeys(revision: number, pageSize = 10_000): AsyncGenerator<KeyHistory[]> {
    let from = ALL_KEYS;
    for (;;) {
      const res = await this.unary(this.kv.Range, this.kv,
        { key: from, range_end: ALL_KEYS, revision: String(revision), limit: String(pageSize), keys_only: true }, 'etcd range', 120_000);
      if (res.kvs.length > 0) {
        yield res.kvs.map((kv) => ({ key: kv.key, createRevision: num(kv.create_revision), modRevision: num(kv.mod_revision), version: num(kv.version) }));
      }
      const last = res.kvs.at(-1);
      if (!res.more || !last) return;
      from = Buffer.concat([last.key, ALL_KEYS]);
    }
  }

  /** Applies the changes as one transaction (one new revision); returns the revision it made. */
  async apply(changes: readonly Change[]): Promise<number> {
    const success = changes.map((c) => c.type === 'put'
      ? { request_put: { key: c.key, value: c.value ?? Buffer.alloc(0), lease: c.lease ?? '0' } }
      : { request_delete_range: { key: c.key } });
    const res = await this.unary(this.kv.Txn, this.kv, { compare: [], success, failure: [] }, 'etcd transaction');
    return num(res.header?.revision);
  }

  /** Grants a lease with a chosen id (replaying keys that were attached to it); false when it exists already. */
  async grantLease(id: string, ttlSeconds: number): Promise<boolean> {
    try {
      const res = await this.unary(this.lease.LeaseGrant, this.lease, { TTL: ttlSeconds, ID: id }, 'etcd lease grant');
      if (res.error) throw new EngineError('Failed', `etcd refused lease ${id}: ${res.error}`);
      return true;
    } catch (err) {
      if (err instanceof EngineError && /lease already exists/.test(err.message)) return false;
      throw err;
    }
  }

  /** Every lease the store holds (ids, decimal). */
  async leases(): Promise<string[]> {
    const res = await this.unary(this.lease.LeaseLeases, this.lease, {}, 'etcd lease list');
    return res.leases.map((l) => l.ID);
  }

  /**
   * Keeps every lease of `ids()` alive, renewing each every `everyMs`, until the returned function is called. A
   * replay must not lose keys to leases expiring while it runs: the cluster that wrote them was renewing them.
   */
  keepLeasesAlive(ids: () => Iterable<string>, everyMs = 2000): () => void {
    const call = this.lease.LeaseKeepAlive();
    call.on('data', () => {});
    // A failed stream is noticed by the replay itself: an expired lease deletes keys, and the revisions stop matching.
    call.on('error', () => {});
    const renew = () => {
      for (const id of ids()) call.write({ ID: id });
    };
    renew();
    const timer = setInterval(renew, everyMs);
    return () => {
      clearInterval(timer);
      call.cancel();
    };
  }
}

function toChange(e: { type: 'PUT' | 'DELETE'; kv?: KeyValueMsg }): Change {
  const kv = e.kv;
  if (!kv) throw new EngineError('Failed', 'etcd sent a watch event without its key');
  const revision = num(kv.mod_revision);
  if (e.type === 'DELETE') return { type: 'delete', key: kv.key, revision };
  return { type: 'put', key: kv.key, value: kv.value, revision, ...(kv.lease && kv.lease !== '0' ? { lease: kv.lease } : {}) };
}
