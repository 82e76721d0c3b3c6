/**
 * @module One browse: an etcd snapshot served read-only through a kube-apiserver on loopback (apiserver.ts), and the
 * session directory another `kubedr` command finds it by: the kubeconfig for it and the pid of the process that owns
 * it. The owner stops the API server and etcd and removes the directory; `stopSession` asks the owner to.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive } from '../../util/process.ts';
import { EngineError } from '../errors.ts';
import { startThrowawayEtcd } from '../throwaway-etcd.ts';
import { browseKubeconfig, startBrowseApiserver } from './apiserver.ts';
import { chooseEncryptionConfig, secretStorage } from './encryption.ts';

export interface BrowseRequest {
  snapshotFile: string;
  /** SHA-256 of the snapshot, when already checked. */
  sha256?: string;
  /** The directory a restore wrote (`<dir>/data`), searched for the backup's EncryptionConfiguration. */
  restoredDir?: string;
  encryptionConfig?: string;
  kubeApiserver: string;
  etcd?: string;
  etcdPrefix?: string;
  /** The session's directory (kubeconfig, pid, the throwaway etcd's data); made here, removed by stop(). */
  dir: string;
  name: string;
  onStep?: (step: string) => void;
  signal?: AbortSignal;
}

export interface BrowseSession {
  kubeconfig: string;
  url: string;
  /** Secrets served decrypted with this config, or undefined when they are stored in the clear. */
  encryptionConfig?: string;
  stop: () => Promise<void>;
}

export const KUBECONFIG_FILE = 'kubeconfig';
const PID_FILE = 'owner.pid';
/** The etcd and kube-apiserver the owner started: killed by the next --stop if the owner itself was killed. */
const CHILDREN_FILE = 'children.pid';

/** Makes the session directory afresh; refuses while a browse of that name runs. */
export function claimSession(dir: string, name: string): void {
  if (existsSync(join(dir, PID_FILE)) && isAlive(Number(readFileSync(join(dir, PID_FILE), 'utf8')))) {
    throw new EngineError('InvalidInput', `a browse named "${name}" is already running (${dir}): stop it with kubedr browse --stop --name ${name}`);
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/**
 * Writes the kubeconfig and this process as the owner: from now on diff, restore-objects and --stop find the browse.
 * `children`: processes of the browse that a killed owner would leave (their command lines must name `dir`).
 */
export function publishSession(dir: string, kubeconfigText: string, children: number[] = []): string {
  const kubeconfig = join(dir, KUBECONFIG_FILE);
  if (children.length) writeFileSync(join(dir, CHILDREN_FILE), children.map((p) => `${p}\n`).join(''));
  writeFileSync(kubeconfig, kubeconfigText, { mode: 0o600 });
  writeFileSync(join(dir, PID_FILE), String(process.pid));
  return kubeconfig;
}

export async function startSession(req: BrowseRequest): Promise<BrowseSession> {
  claimSession(req.dir, req.name);
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    rmSync(req.dir, { recursive: true, force: true });
  };
  try {
    req.onStep?.('starting etcd on the backup');
    const etcd = await startThrowawayEtcd({ snapshotFile: req.snapshotFile, work: join(req.dir, 'etcd'), name: 'kubedr-browse', etcd: req.etcd,
      sha256: req.sha256, signal: req.signal });
    stops.push(etcd.stop);
    writeFileSync(join(req.dir, CHILDREN_FILE), `${etcd.pid}\n`);
    const storage = await secretStorage(etcd.endpoint, req.etcdPrefix, req.signal);
    const encryptionConfig = chooseEncryptionConfig(storage, req.encryptionConfig, req.restoredDir);
    req.onStep?.(`starting kube-apiserver on it${encryptionConfig ? `, Secrets decrypted with ${encryptionConfig}` : ''}`);
    const api = await startBrowseApiserver({ binary: req.kubeApiserver, etcdEndpoint: etcd.endpoint, work: req.dir, encryptionConfig,
      etcdPrefix: req.etcdPrefix, signal: req.signal });
    stops.push(api.stop);
    writeFileSync(join(req.dir, CHILDREN_FILE), `${etcd.pid}\n${api.pid}\n`);
    const kubeconfig = publishSession(req.dir, browseKubeconfig(api, `kubedr-browse-${req.name}`));
    return { kubeconfig, url: api.url, encryptionConfig, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The kubeconfig of a running browse, or a plain error naming how to start one. */
export function sessionKubeconfig(dir: string, name: string): string {
  const pid = readPid(dir);
  const kubeconfig = join(dir, KUBECONFIG_FILE);
  if (!pid || !isAlive(pid) || !existsSync(kubeconfig)) {
    throw new EngineError('NotFound', `no browse named "${name}" is running: start one with kubedr browse --from … --detach --name ${name}`);
  }
  return kubeconfig;
}

/**
 * Asks the owner of a browse to stop (SIGTERM) and waits until it has; false when none was running. Whatever a killed
 * owner left (its etcd and API server, its files: the backup's Secrets among them) goes too.
 */
export async function stopSession(dir: string, timeoutMs = 30_000): Promise<boolean> {
  const pid = readPid(dir);
  const running = pid !== undefined && isAlive(pid);
  if (running) {
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + timeoutMs;
    while (isAlive(pid)) {
      if (Date.now() > deadline) throw new EngineError('Timeout', `the browse's process ${pid} did not stop within ${timeoutMs / 1000} s`);
      await Bun.sleep(100);
    }
  }
  killOrphans(dir);
  for (const p of [dir, `${dir}.log`, `${dir}.backup`]) rmSync(p, { recursive: true, force: true });
  return running;
}

/** Kills the processes a killed owner left, those whose command line still names the browse's directory (not a reused pid). */
function killOrphans(dir: string): void {
  let pids: number[];
  try {
    pids = readFileSync(join(dir, CHILDREN_FILE), 'utf8').split('\n').map(Number).filter((p) => Number.isSafeInteger(p) && p > 0);
  } catch {
    return;
  }
  for (const p of pids) {
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)) process.kill(p, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

function readPid(dir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dir, PID_FILE), 'utf8'));
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
