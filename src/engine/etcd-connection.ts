/**
 * @module Connecting to etcd over gRPC as kubeadm runs it (mutual TLS, often addressed by IP), and etcd's gRPC errors in
 * words a user can act on. Shared by the snapshot stream and the etcd client of continuous backup.
 */
import type * as GrpcJs from '@grpc/grpc-js';
import { isIP } from 'node:net';
import { checkServerIdentity } from 'node:tls';
import { EngineError } from './errors.ts';

export interface EtcdConnection {
  /** Client URL, e.g. https://127.0.0.1:2379. */
  endpoint: string;
  /** PEM: CA, client certificate and key (mutual TLS, as kubeadm runs etcd). */
  ca?: string;
  cert?: string;
  key?: string;
}

/**
 * grpc-js, loaded with the first use rather than at start: a controller waits for its schedule most of its life, and
 * the library's code and state are a good part of an idle process' memory.
 */
let grpc: typeof GrpcJs | undefined;
export async function loadGrpc(): Promise<typeof GrpcJs> {
  grpc ??= await import('@grpc/grpc-js');
  return grpc;
}

export function target(endpoint: string): { address: string; host: string; secure: boolean } {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new EngineError('InvalidInput', `invalid etcd endpoint "${endpoint}": expected e.g. https://127.0.0.1:2379`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new EngineError('InvalidInput', `invalid etcd endpoint "${endpoint}": scheme must be https or http`);
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return { address: `${u.hostname}:${u.port || '2379'}`, host, secure: u.protocol === 'https:' };
}

/**
 * grpc-js's TLS setup fails with OpenSSL's codes (`error:0b000074:…:KEY_VALUES_MISMATCH`); say what they mean. The
 * front ends check the Secret first and name it (controllers/inputs.ts); this is the engine's own guard.
 */
function tlsSetupError(err: unknown): EngineError {
  const raw = err instanceof Error ? err.message : String(err);
  if (/KEY_VALUES_MISMATCH|key values mismatch/i.test(raw)) {
    return new EngineError('InvalidInput', 'the etcd client key (client.key) does not belong to the client certificate (client.crt)');
  }
  if (/NO_START_LINE|no start line|bad base64|ASN1|PEM/i.test(raw)) {
    return new EngineError('InvalidInput', 'the etcd TLS credentials are not PEM (ca.crt, client.crt, client.key)');
  }
  return new EngineError('InvalidInput', `the etcd TLS credentials cannot be used: ${raw}`, { cause: err });
}

export function credentials(conn: EtcdConnection, host: string, secure: boolean): { creds: GrpcJs.ChannelCredentials; options: GrpcJs.ChannelOptions } {
  const grpc = loaded();
  if (!secure) return { creds: grpc.credentials.createInsecure(), options: {} };
  const buf = (s?: string) => (s ? Buffer.from(s) : null);
  try {
    if (!isIP(host)) {
      return { creds: grpc.credentials.createSsl(buf(conn.ca), buf(conn.key), buf(conn.cert)), options: {} };
    }
    // Bun refuses an IP address as TLS server name, and grpc-js always sends the target host. Send a placeholder name
    // and check the certificate against the IP ourselves, so a certificate for another address is still rejected.
    return {
      creds: grpc.credentials.createSsl(buf(conn.ca), buf(conn.key), buf(conn.cert), {
        checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert),
      }),
      options: { 'grpc.ssl_target_name_override': 'etcd-by-ip', 'grpc.default_authority': host },
    };
  } catch (err) {
    throw tlsSetupError(err);
  }
}

/**
 * grpc-js's details made plain: it ends "No connection established. Last error: Error: … . Resolution note: " with an
 * empty note when name resolution had nothing to say.
 */
export function grpcDetail(detail: string): string {
  return detail.replace(/\.?\s*Resolution note:\s*$/, '').replace(/Last error: Error: /, 'Last error: ').trim();
}

export function grpcError(err: GrpcJs.ServiceError, endpoint: string, what: string): EngineError {
  const grpc = loaded();
  const detail = grpcDetail(err.details || err.message);
  if (/certificate|ssl|tls|handshake|altname|self.signed/i.test(detail)) {
    return new EngineError('TlsError', `TLS with etcd at ${endpoint} failed (check etcdCreds ca.crt, client.crt, client.key): ${detail}`);
  }
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
    return new EngineError('Unreachable', `etcd at ${endpoint} unreachable: ${detail}`);
  }
  if (err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED) {
    return new EngineError('AccessDenied', `etcd at ${endpoint} refused the client certificate: ${detail}`);
  }
  if (err.code === grpc.status.CANCELLED) return new EngineError('Cancelled', `${what} was cancelled`);
  return new EngineError('Failed', `${what} from ${endpoint} failed: ${detail}`);
}


function loaded(): typeof GrpcJs {
  if (!grpc) throw new Error('loadGrpc() first');
  return grpc;
}
