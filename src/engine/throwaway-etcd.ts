/**
 * @module A throwaway etcd built from a snapshot file: a data directory made by `etcdutl`/`etcdctl snapshot restore`
 * and an etcd started on it on free loopback ports, plain http. Verification reads from one; a point-in-time restore
 * replays changes into one. The caller stops it; its files live in the caller's scratch directory.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../util/net.ts';
import { plainText } from '../util/text.ts';
import { EngineError } from './errors.ts';
import { findRestoreTool, restoreEtcdDataDir } from './etcd-restore.ts';

export interface ThrowawayEtcd {
  endpoint: string;
  pid: number;
  stop: () => Promise<void>;
}

export interface ThrowawayEtcdRequest {
  snapshotFile: string;
  /** Scratch directory for its data and log (the caller removes it). */
  work: string;
  /** Member name, also its cluster token's suffix. */
  name: string;
  /** etcd binary (default: `etcd` on PATH) and the restore tool (default: etcdutl, else etcdctl). */
  etcd?: string;
  restoreTool?: string;
  /** More etcd flags (a replay lifts the limits on transaction size). */
  flags?: string[];
  /** Snapshot SHA-256, when already checked (skips reading the file again). */
  sha256?: string;
  signal?: AbortSignal;
}

/** Builds the data directory and starts etcd on it; resolves once it answers. */
export async function startThrowawayEtcd(req: ThrowawayEtcdRequest): Promise<ThrowawayEtcd> {
  await mkdir(req.work, { recursive: true });
  const peerUrl = `http://127.0.0.1:${await freePort()}`;
  const dataDir = join(req.work, 'etcd');
  await restoreEtcdDataDir({
    snapshotFile: req.snapshotFile, dataDir, tool: findRestoreTool(req.restoreTool), sha256: req.sha256,
    member: { name: req.name, peerUrls: peerUrl, initialCluster: `${req.name}=${peerUrl}`, initialClusterToken: `kubedr-${req.name}` },
  });
  return startEtcd(req.etcd ?? 'etcd', req.name, dataDir, peerUrl, join(req.work, 'etcd.log'), req.flags ?? [], req.signal);
}

/**
 * etcd started on a data directory restored earlier (by a browse prepared for a pod), its client URL on a given port:
 * the kube-apiserver beside it was told that port before the data existed.
 */
export function startEtcdOnDataDir(req: { etcd?: string; name: string; dataDir: string; peerUrl: string; clientPort: number; logFile: string;
  signal?: AbortSignal }): Promise<ThrowawayEtcd> {
  return startEtcdOnce(req.etcd ?? 'etcd', req.name, req.dataDir, req.peerUrl, req.logFile, [], req.signal, req.clientPort);
}

/** etcdctl against a throwaway etcd; throws with etcdctl's last line. */
export async function etcdctl(endpoint: string, args: string[], signal?: AbortSignal): Promise<string> {
  const proc = Bun.spawn(['etcdctl', '--endpoints', endpoint, '--command-timeout=10s', ...args],
    { env: { ...process.env, ETCDCTL_API: '3' }, stdout: 'pipe', stderr: 'pipe', signal });
  const [out, err, code] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text(), await proc.exited];
  if (code !== 0) throw new EngineError('Failed', `etcdctl ${args[0]} failed: ${plainText(err).trim().split('\n').pop() || `exit code ${code}`}`);
  return out;
}

/**
 * Starts etcd on a free client port. Ports are found free by binding and releasing them, so another process (or the
 * peer port, found the same way a moment earlier: the kernel may hand out the same port twice) can take one first:
 * etcd then exits with "address already in use", and it is started again on another client port (the peer port is
 * written into the restored member and stays).
 */
async function startEtcd(binary: string, name: string, dataDir: string, peerUrl: string, logFile: string, flags: string[], signal?: AbortSignal): Promise<ThrowawayEtcd> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startEtcdOnce(binary, name, dataDir, peerUrl, logFile, flags, signal);
    } catch (err) {
      if (attempt >= 3 || !(err instanceof EngineError) || !/address already in use/.test(err.message)) throw err;
    }
  }
}

/** A client port other than the peer URL's. */
async function clientPort(peerUrl: string): Promise<number> {
  const peer = Number(new URL(peerUrl).port);
  for (;;) {
    const port = await freePort();
    if (port !== peer) return port;
  }
}

async function startEtcdOnce(binary: string, name: string, dataDir: string, peerUrl: string, logFile: string, flags: string[], signal?: AbortSignal,
  port?: number): Promise<ThrowawayEtcd> {
  const endpoint = `http://127.0.0.1:${port ?? await clientPort(peerUrl)}`;
  const proc = Bun.spawn([binary, '--name', name, '--data-dir', dataDir, '--listen-client-urls', endpoint,
    '--advertise-client-urls', endpoint, '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `${name}=${peerUrl}`, ...flags], { stdout: Bun.file(logFile), stderr: Bun.file(logFile) });
  const stop = async () => {
    proc.kill('SIGTERM');
    const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
    if (!exited) {
      proc.kill('SIGKILL');
      await proc.exited;
    }
  };
  const deadline = performance.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) {
      const log = plainText(await Bun.file(logFile).text()).trim().split('\n').slice(-2).join('; ');
      throw new EngineError('Failed', `the restored etcd did not start (exit code ${proc.exitCode}): ${log}`);
    }
    if (await etcdctl(endpoint, ['endpoint', 'health'], signal).then(() => true, () => false)) return { endpoint, pid: proc.pid, stop };
    if (performance.now() > deadline || signal?.aborted) {
      await stop();
      throw new EngineError(signal?.aborted ? 'Cancelled' : 'Failed', 'the restored etcd did not become healthy within 30 s');
    }
    await Bun.sleep(200);
  }
}
