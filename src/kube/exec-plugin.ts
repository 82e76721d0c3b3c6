/**
 * @module Exec credential plugins (a kubeconfig's `users[].user.exec`), run as client-go runs them, with the rules for
 * when a credential is used again and when the plugin runs again:
 * - a credential with `status.expirationTimestamp` is used until that time;
 * - one the API server refused with 401 is dropped at once: the client asks the plugin again and retries the request once;
 * - one without `expirationTimestamp` is used until a 401, as client-go does. The exception is a client certificate:
 *   it is used only until its own notAfter, because an expired certificate fails in the TLS handshake, where no 401
 *   can ever come back to say so.
 *
 * Time limits: one run of the plugin may take at most `timeoutMs` (the client's request time limit); a plugin still
 * running then is killed and the run fails with a CredentialError that says so. Each request waits for the run only as
 * long as its own signal allows (a lease renewal has only what is left of its renew deadline) and then fails with a
 * CredentialError; the run goes on, so a plugin slower than one short deadline still yields a credential for the next
 * request instead of being killed and started again forever.
 */
import { X509Certificate } from 'node:crypto';
import { plainText } from '../util/text.ts';
import { CredentialError } from './errors.ts';

export interface ExecConfig {
  command: string;
  args?: string[];
  env?: { name: string; value: string }[] | null;
  apiVersion?: string;
  /** Shown when the command cannot be run, e.g. how to install it. */
  installHint?: string;
  /** Whether the plugin is told about the cluster (KUBERNETES_EXEC_INFO's spec.cluster). */
  provideClusterInfo?: boolean;
}

/** What a plugin may be told about the cluster (client.authentication.k8s.io Cluster), in its JSON spelling. */
export interface ExecClusterInfo {
  server: string;
  'tls-server-name'?: string;
  'insecure-skip-tls-verify'?: boolean;
  'certificate-authority-data'?: string;
  'proxy-url'?: string;
}

/** The credential an ExecCredential's status carries. */
export interface ExecStatus {
  token?: string;
  clientCertificateData?: string;
  clientKeyData?: string;
  expirationTimestamp?: string;
}

export interface ExecCredentials {
  /** The current credential; runs the plugin when there is none or it expired. Waits at most until `signal` aborts. */
  get(signal?: AbortSignal): Promise<ExecStatus>;
  /** Drops `used` after the API server refused it (401), so the next `get` runs the plugin; a newer one is kept. */
  discard(used: ExecStatus): void;
}

export interface ExecOptions {
  /** Longest time one run of the plugin may take before it is killed. */
  timeoutMs: number;
  now: () => number;
  cluster?: ExecClusterInfo;
}

/**
 * The credentials of one kubeconfig user. Requests that need one while the plugin runs (the informers all start at
 * once) wait for the same run rather than each starting the plugin.
 */
export function execCredentials(exec: ExecConfig, opts: ExecOptions): ExecCredentials {
  let cached: { status: ExecStatus; expires: number } | undefined;
  let running: Promise<ExecStatus> | undefined;
  return {
    get(signal) {
      if (cached && cached.expires > opts.now()) return Promise.resolve(cached.status);
      if (!running) {
        running = runPlugin(exec, opts).then((status) => {
          cached = { status, expires: expiry(exec, status) };
          return status;
        }).finally(() => {
          running = undefined;
        });
        // Every waiter may have given up: the run's failure must not become an unhandled rejection.
        running.catch(() => undefined);
      }
      return waitAtMost(running, signal, () => new CredentialError(
        `the kubeconfig's credential plugin ${exec.command} gave no credential within the request's time limit ` +
        `(it may run for up to ${opts.timeoutMs / 1000} s before it is stopped)`));
    },
    discard(used) {
      if (cached?.status === used) cached = undefined;
    },
  };
}

/** When a credential stops being used: its expirationTimestamp, else a client certificate's notAfter, else never (until a 401). */
function expiry(exec: ExecConfig, status: ExecStatus): number {
  if (status.expirationTimestamp) {
    const t = Date.parse(status.expirationTimestamp);
    if (Number.isNaN(t)) {
      throw new CredentialError(`the kubeconfig's credential plugin ${exec.command} printed an expirationTimestamp that is not ` +
        `an RFC 3339 time: "${status.expirationTimestamp}"`);
    }
    return t;
  }
  if (status.clientCertificateData) {
    try {
      return Date.parse(new X509Certificate(status.clientCertificateData).validTo);
    } catch {
      // Not a certificate we can read: the TLS handshake will say what is wrong with it.
    }
  }
  return Number.POSITIVE_INFINITY;
}

/** `p`, or `timedOut()` once `signal` aborts, whichever comes first; `p` itself goes on. */
function waitAtMost<T>(p: Promise<T>, signal: AbortSignal | undefined, timedOut: () => Error): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(timedOut());
  return new Promise((resolve, reject) => {
    const abort = () => reject(timedOut());
    signal.addEventListener('abort', abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

async function runPlugin(exec: ExecConfig, opts: ExecOptions): Promise<ExecStatus> {
  const plugin = `the kubeconfig's credential plugin ${exec.command}`;
  const env: Record<string, string | undefined> = { ...process.env };
  for (const e of exec.env ?? []) env[e.name] = e.value;
  // As client-go: the plugin learns the API version it must answer in, that no one can answer a prompt, and (if it
  // asks for it) which cluster the credential is for.
  env.KUBERNETES_EXEC_INFO = JSON.stringify({
    apiVersion: exec.apiVersion ?? 'client.authentication.k8s.io/v1', kind: 'ExecCredential',
    spec: { interactive: false, ...(exec.provideClusterInfo && opts.cluster ? { cluster: opts.cluster } : {}) },
  });
  let proc;
  try {
    proc = Bun.spawn([exec.command, ...(exec.args ?? [])], { env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
  } catch (err) {
    const hint = exec.installHint ? `\n${exec.installHint.trim()}` : '';
    throw new CredentialError(`cannot run ${plugin}: ${err instanceof Error ? err.message : String(err)}${hint}`, { cause: err });
  }
  inFlight.add(proc);
  void proc.exited.then(() => inFlight.delete(proc));
  const done = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  // Once the plugin is killed, a child of it may still hold its output open: the run ends without waiting for that.
  done.catch(() => undefined);
  let killed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stopped = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      killed = true;
      proc.kill('SIGKILL');
      // Told once it is true: the plugin is gone (and reaped).
      void proc.exited.then(() => resolve(undefined));
    }, opts.timeoutMs);
  });
  let result;
  try {
    result = await Promise.race([done, stopped]);
  } finally {
    clearTimeout(timer);
  }
  if (killed || !result) throw new CredentialError(`${plugin} gave no credential within ${opts.timeoutMs / 1000} s and was stopped`);
  const [out, errText, code] = result;
  // A plugin is often a Go program: a crash of it is told by its cause, not its stack (plainText).
  if (code !== 0) throw new CredentialError(`${plugin} exited with ${code}: ${plainText(errText).trim()}`);
  let status: ExecStatus | undefined;
  try {
    status = (JSON.parse(out) as { status?: ExecStatus }).status;
  } catch {
    throw new CredentialError(`${plugin} did not print an ExecCredential (JSON)`);
  }
  if (!status) throw new CredentialError(`${plugin} printed an ExecCredential without status`);
  return status;
}

/** Plugin runs in flight: a run that outlives the request waiting for it goes on, but never outlives this process. */
const inFlight = new Set<{ kill(signal?: NodeJS.Signals): void; readonly exited: Promise<number> }>();

/**
 * Kills the plugin runs still in flight and waits (at most `waitMs`) until they are gone: called as the controller
 * exits, so a hung plugin does not run on orphaned. Its 'exit' hook below is the last resort, without the wait.
 */
export async function stopPluginRuns(waitMs = 2_000): Promise<void> {
  const runs = [...inFlight];
  for (const p of runs) p.kill('SIGKILL');
  await Promise.race([Promise.allSettled(runs.map((p) => p.exited)), Bun.sleep(waitMs)]);
}

process.once('exit', () => {
  for (const p of inFlight) p.kill('SIGKILL');
});
