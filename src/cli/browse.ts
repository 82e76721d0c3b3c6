/**
 * @module `kubedr browse`: a backup served as a read-only Kubernetes API on loopback, for kubectl and any tool that reads
 * a kubeconfig (engine/browse/). Runs until Ctrl-C, SIGTERM, `kubedr browse --stop` or its time limit, then stops its
 * kube-apiserver and etcd and removes everything it restored: the backup holds every Secret of the cluster.
 * `--detach` leaves it running in the background and returns once it answers.
 */
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { servePrepared } from '../engine/browse/prepared.ts';
import { EngineError } from '../engine/errors.ts';
import { stopSession } from '../engine/browse/session.ts';
import { type FlagSpec, UsageError, helpText, parseFlags } from '../util/flags.ts';
import { inClusterFlags, startInCluster } from './browse-in-cluster.ts';
import { namesSource, prepareFromFlags, runningKubeconfig, sessionDir, sourceFlags, startFromFlags } from './browse-source.ts';
import { exitCodesHelp } from './exit-codes.ts';
import { forProgram, programName } from './program.ts';
import { cancelOnSignals } from './restore.ts';
import { selfCommand } from '../util/self.ts';

const flags = {
  ...sourceFlags,
  ...inClusterFlags,
  'time-limit': { type: 'duration', default: '1h', help: 'stop serving after this long' },
  detach: { type: 'boolean', default: false, help: 'run in the background; return once the API answers (stop it with --stop)' },
  stop: { type: 'boolean', default: false, help: 'stop the running browse of this --name and remove its files' },
  kubeconfig: { type: 'boolean', default: false, help: 'print the kubeconfig path of the running browse of this --name, and nothing else' },
  'serve-prepared': { type: 'boolean', default: false, help: 'serve the browse prepared in --dir: start its etcd, wait for the kube-apiserver started on it elsewhere, print that server\'s certificate, and run until stopped (a browse pod\'s container)' },
  ready: { type: 'boolean', default: false, help: 'exit 0 when the browse prepared in --dir is served (--serve-prepared), else 1: a browse pod\'s readiness probe' },
  prepare: { type: 'boolean', default: false, help: 'only prepare the backup in --dir for a kube-apiserver that runs elsewhere (a pod\'s container, with --apiserver-version), print its flags, and exit; kubedr restore-objects --prepared DIR then reads through it' },
} satisfies Record<string, FlagSpec>;

export const browseHelp = helpText(
  'kubedr browse --from ID|latest --url URL --bucket BUCKET [--credentials FILE] [flags]\n' +
  '       kubedr browse --at TIME|latest --policy NAME --url URL --bucket BUCKET [flags]   (a continuous policy)\n' +
  '       kubedr browse --snapshot FILE [flags]\n' +
  '       kubedr browse --in-cluster --record MBR [-n NAMESPACE] [flags]   (served by a pod of the controller; needs kubectl)\n' +
  '       kubedr browse --stop [--name NAME]',
  'Serves a backup as a read-only Kubernetes API: the backup\'s etcd in a throwaway etcd, and a kube-apiserver (of the\n' +
  'cluster\'s version, --kube-apiserver) on it, on 127.0.0.1. Prints a kubeconfig for it: kubectl get, describe and -o yaml\n' +
  'show the objects as the cluster\'s API server showed them at backup time, custom resources and Secrets included (Secrets\n' +
  'encrypted at rest need the backup\'s EncryptionConfiguration; KMS providers cannot be read). Nothing can be changed\n' +
  'through it, and no controller or webhook runs against it. The kubeconfig reads every Secret of the backup: keep it to\n' +
  'yourself; it stops working when the browse stops. kubedr diff and kubedr restore-objects use a running browse.', flags) + `\n${exitCodesHelp}`;

export async function runBrowse(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  const f = parsed.flags;
  if (parsed.help) {
    process.stdout.write(forProgram(browseHelp));
    return 0;
  }
  const dir = sessionDir(f);
  if (f.stop) {
    const stopped = await stopSession(dir);
    process.stderr.write(stopped ? `kubedr browse: stopped "${f.name}"; its files are removed\n` : `kubedr browse: no browse named "${f.name}" was running\n`);
    return 0;
  }
  if (f.kubeconfig) {
    process.stdout.write(`${runningKubeconfig(f)}\n`);
    return 0;
  }
  if (f['serve-prepared']) return servePreparedUntilStopped(f.dir, f.etcd);
  if (f.ready) return f.dir && existsSync(join(resolve(f.dir), SERVING_FILE)) ? 0 : 1;
  const inCluster = f['in-cluster'] || Boolean(f.restore);
  if (f['in-cluster'] && !f.record) throw new UsageError('--in-cluster needs --record MBR: the backup to serve (kubectl get mbr)');
  if (!inCluster && !namesSource(f)) {
    throw new EngineError('InvalidInput', 'name what to serve: --from ID|latest, --at TIME, --snapshot FILE, or --in-cluster --record MBR');
  }
  if (f.prepare) {
    const stop = cancelOnSignals('browse');
    try {
      const args = await prepareFromFlags(f, stop.signal, (s) => process.stderr.write(`kubedr browse: ${s}\n`));
      process.stderr.write(`kubedr browse: prepared in ${f.dir}; start kube-apiserver with these flags:\n`);
      process.stdout.write(`${args.join('\n')}\n`);
      return 0;
    } finally {
      stop.dispose();
    }
  }
  if (f.detach) return detach(argv.filter((a) => a !== '--detach'), dir, f.name);

  const stop = cancelOnSignals('browse');
  const started = performance.now();
  const onStep = (s: string) => process.stderr.write(`kubedr browse: ${s}\n`);
  const session = await (inCluster
    ? startInCluster({ namespace: f.namespace, record: f['in-cluster'] ? f.record : undefined, restore: f.restore, context: f['kube-context'],
      timeLimitMs: f['time-limit'], dir, name: f.name, signal: stop.signal, onStep })
    : startFromFlags(f, stop.signal, onStep)).catch((err) => {
    stop.dispose();
    throw err;
  });
  try {
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    // The kubeconfig first and the serving line with its hint in one write: a detached parent returns on that line.
    process.stdout.write(`${session.kubeconfig}\n`);
    process.stderr.write(`${SERVING_LINE}${session.url} (ready in ${secs} s); until ${new Date(Date.now() + f['time-limit']).toISOString()} ` +
      `or ${programName()} browse --stop${f.name === 'default' ? '' : ` --name ${f.name}`}\n` +
      `  kubectl --kubeconfig ${session.kubeconfig} get namespaces\n`);
    await Promise.race([
      new Promise((ok) => stop.signal.addEventListener('abort', ok, { once: true })),
      Bun.sleep(f['time-limit']),
    ]);
    return 0;
  } finally {
    await session.stop();
    if (inCluster) rmSync(dir, { recursive: true, force: true });
    stop.dispose();
    process.stderr.write('kubedr browse: stopped; its files are removed\n');
    // A detached browse's output; the file goes, the open descriptor stays writable until this process ends.
    rmSync(`${dir}.log`, { force: true });
  }
}

/** Present in a prepared browse's directory while it is served: what `--ready` (the pod's readiness probe) looks for. */
const SERVING_FILE = 'serving';

/**
 * A browse pod's `serve` container: etcd on the prepared data until SIGTERM (the pod's deletion or its time limit).
 * The API server's certificate goes to the log, where `kubedr browse --restore` reads it to trust the server through
 * a port-forward: it is public, unlike the token.
 */
async function servePreparedUntilStopped(dir: string | undefined, etcd: string): Promise<number> {
  if (!dir) throw new UsageError('--serve-prepared needs --dir: the directory kubedr browse --prepare wrote');
  const serving = join(resolve(dir), SERVING_FILE);
  const stop = cancelOnSignals('browse');
  try {
    const served = await servePrepared(resolve(dir), { etcd, signal: stop.signal });
    process.stdout.write(`kubedr browse: serving; the kube-apiserver's certificate:\n${served.caPem.trim()}\n`);
    writeFileSync(serving, '');
    await new Promise((ok) => stop.signal.addEventListener('abort', ok, { once: true }));
    rmSync(serving, { force: true });
    await served.stop();
    return 0;
  } finally {
    stop.dispose();
  }
}

/** What the browse prints once it serves; a detached browse's parent returns when its log holds this line. */
const SERVING_LINE = 'kubedr browse: serving at ';

/**
 * This command again, in the background, its output in a log beside the session; returns once it serves. "Serves" is
 * the serving line in the log, not the session's kubeconfig alone: the session is published a moment before that line
 * is written, and a parent that returned in between printed a log without it.
 */
async function detach(argv: string[], dir: string, name: string): Promise<number> {
  const log = `${dir}.log`;
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  rmSync(log, { force: true });
  const self = selfCommand();
  const fd = openSync(log, 'w', 0o600);
  const child = Bun.spawn([...self, 'browse', ...argv], { stdin: 'ignore', stdout: fd, stderr: fd, detached: true });
  child.unref();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const text = readFileSync(log, 'utf8').trim();
      rmSync(log, { force: true });
      process.stderr.write(`${text}\n`);
      if (child.exitCode !== null) return child.exitCode;
      process.stderr.write(`${programName()} browse: the background browse was killed (${child.signalCode}) before it served\n`);
      return 1;
    }
    const text = readFileSync(log, 'utf8');
    if (text.includes(SERVING_LINE)) {
      process.stderr.write(text);
      process.stdout.write(`${runningKubeconfig({ name, dir })}\n`);
      return 0;
    }
    await Bun.sleep(200);
  }
}
