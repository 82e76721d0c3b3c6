/**
 * @module What the benchmark scripts (bench.ts, bench-scale.ts and the measure-*.ts) share: running a command, reading a
 * process's memory, reading the controller's log, filling an etcd, one backup.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BACKUP_NOW_ANNOTATION, BACKUP_POLICY } from '../src/api/group.ts';
import type { MetadataBackupPolicy } from '../src/api/types.ts';
import type { KubeClient } from '../src/kube/client.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, type TestEnv } from './cluster/node.ts';

/** Runs a command to completion and returns its stdout; throws with its stderr when it fails. */
export function sh(cmd: string[], env: Record<string, string> = {}, input?: string): string {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', input, env: { ...process.env, ...env }, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** VmRSS (now) and VmHWM (peak) of a process in MB; zeros once it has exited. */
export function memoryMb(pid: number): { rss: number; hwm: number } {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return { rss: 0, hwm: 0 };
  }
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}
/**
 * The controller's JSON log lines as they arrive, each with the bench's clock; warnings, errors and lines that are not
 * JSON are passed on to stderr.
 */
export interface LogLine {
  at: number;
  entry: Record<string, unknown>;
}

export function readLog(stream: ReadableStream<Uint8Array>): LogLine[] {
  const lines: LogLine[] = [];
  void eachLine(stream, (line) => {
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      lines.push({ at: performance.now(), entry });
      if (entry.level === 'warn' || entry.level === 'error') process.stderr.write(`${line}\n`);
    } catch {
      process.stderr.write(`${line}\n`);
    }
  });
  return lines;
}

/** Calls `onLine` with each whole line of `stream` as it arrives; resolves at its end. */
export async function eachLine(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let pending = '';
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  }
}


/**
 * The CRDs, and a namespace with what a bench's BackupLocation and policies read: `s3-creds` for the test node's S3
 * (with `password` for the repository) and `etcd-creds` with the node's etcd client certificate.
 */
export function prepareNamespace(env: TestEnv, ns: string, password: string): void {
  const kubectl = (args: string[]) => sh(['kubectl', '--kubeconfig', env.kubeconfig, ...args]);
  kubectl(['apply', '-f', resolve(import.meta.dir, '../crds')]);
  kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
  kubectl(['create', 'namespace', ns]);
  kubectl(['-n', ns, 'create', 'secret', 'generic', 's3-creds', `--from-literal=access_key=${S3_ACCESS_KEY}`,
    `--from-literal=secret_key=${S3_SECRET_KEY}`, `--from-literal=restic_repo_password=${password}`, `--from-file=ca.crt=${join(env.pki, 'ca.crt')}`]);
  kubectl(['-n', ns, 'create', 'secret', 'generic', 'etcd-creds', `--from-file=ca.crt=${join(env.pki, 'etcd/ca.crt')}`,
    `--from-file=client.crt=${join(env.pki, 'etcd/healthcheck-client.crt')}`, `--from-file=client.key=${join(env.pki, 'etcd/healthcheck-client.key')}`]);
}

/** etcdctl's flags for an etcd of the node (mTLS with the node's health-check client certificate). */
export const etcdctlFlags = (env: TestEnv, endpoint: string): string[] => ['--endpoints', endpoint, '--cacert', join(env.pki, 'etcd/ca.crt'),
  '--cert', join(env.pki, 'etcd/healthcheck-client.crt'), '--key', join(env.pki, 'etcd/healthcheck-client.key')];

/** Fills an etcd with `mb` MB of incompressible values under /fill/ (outside the API server's /registry). */
export function fillEtcdMb(env: TestEnv, endpoint: string, mb: number): void {
  for (let i = 0; i < mb; i++) {
    sh(['etcdctl', ...etcdctlFlags(env, endpoint), 'put', `/fill/${i}`], {}, Buffer.from(crypto.getRandomValues(new Uint8Array(768 * 1024))).toString('base64'));
  }
}

/**
 * A policy named `name` in `ns` backing up the etcd at `endpoint` to the location `loc` (never scheduled; never
 * verified unless `spec` says otherwise: its fields replace the defaults), backed up once on demand; resolves when
 * that backup completed.
 */
export async function backedUpOnce(env: TestEnv, client: KubeClient, ns: string, name: string, endpoint: string,
  spec: Partial<MetadataBackupPolicy['spec']> = {}): Promise<void> {
  const full = { destination: 'loc', etcdEndpoint: endpoint, etcdCreds: 'etcd-creds', schedule: '0 0 1 1 *', verification: { mode: 'Never' }, ...spec };
  sh(['kubectl', '--kubeconfig', env.kubeconfig, 'apply', '-f', '-'], {}, `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata: { name: ${name}, namespace: ${ns} }
spec: ${JSON.stringify(full)}
`);
  await Bun.sleep(1000);
  await client.patch(BACKUP_POLICY, ns, name, { metadata: { annotations: { [BACKUP_NOW_ANNOTATION]: 'measure' } } });
  for (;;) {
    const st = (await client.get<MetadataBackupPolicy>(BACKUP_POLICY, ns, name)).status ?? {};
    if (st.backupNowServed === 'measure' && st.backupStatus === 'Completed') return;
    if (st.backupNowServed === 'measure' && st.backupStatus === 'Failed') throw new Error(`backup failed: ${st.backupErrorMessage}`);
    await Bun.sleep(200);
  }
}
