/**
 * @module `kubedr release-records -n NAMESPACE [--stop-deployment NAME]`: takes the forget finalizer off every
 * MetadataBackupRecord of a namespace without forgetting a snapshot, so that nothing stays pinned by a finalizer no
 * controller serves once KubeDR is uninstalled. The chart runs it as its pre-delete hook (`helm uninstall`), under the
 * chart's ServiceAccount, which Helm deletes only after the hook. The snapshots stay in S3; a new install finds them.
 */
import { DEPLOYMENT, POD } from '../api/group.ts';
import type { Deployment, Pod } from '../api/types.ts';
import { describeRecord, releaseRecords } from '../controllers/release-records.ts';
import type { KubeClient } from '../kube/client.ts';
import { ApiError, isNotFound, isTransient } from '../kube/errors.ts';
import { type FlagSpec, UsageError, helpText, parseFlags } from '../util/flags.ts';
import { sleep } from '../util/sleep.ts';
import { clientFromFlags, clusterFlags, explainApiError } from './cluster-flags.ts';
import { EXIT, ExitError, releaseExitCodesHelp } from './exit-codes.ts';
import { forProgram } from './program.ts';

const flags = {
  ...clusterFlags,
  'stop-deployment': {
    type: 'string',
    help: 'first scale this Deployment of the controller to 0 and wait until its pods are gone (a running controller puts the finalizer back)',
  },
  timeout: { type: 'duration', default: '2m', help: 'give up after this long (0: no limit): the controller still running, or the API server not answering' },
} satisfies Record<string, FlagSpec>;

export const releaseRecordsHelp = helpText('kubedr release-records [-n NAMESPACE] [--stop-deployment NAME] [--timeout DURATION] [flags]',
  'Takes the forget finalizer off every MetadataBackupRecord of the namespace WITHOUT forgetting its snapshot: the\n' +
  'backups stay in S3, and deleting the records, the namespace or the CRDs no longer waits for a controller. For\n' +
  'uninstalling: the Helm chart runs it as its pre-delete hook. Safe to run again. A controller that still runs puts\n' +
  'the finalizer back: name its Deployment with --stop-deployment (it is scaled to 0 first), or stop it yourself.\n' +
  'A new install adopts the snapshots again and puts the finalizer back on the records still there.', flags) + `\n${releaseExitCodesHelp}`;

/** How often the controller's pods and the records are looked at again. */
const POLL_MS = 1000;

export interface ReleaseDeps {
  client: Pick<KubeClient, 'get' | 'list' | 'patch' | 'server'>;
  stdout: { write(s: string): unknown };
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface ReleaseOptions {
  namespace: string;
  stopDeployment?: string;
  timeoutMs: number;
}

const describeError = (err: unknown) => (err instanceof ApiError ? `${err.status} ${err.reason}: ${err.detail}` : err instanceof Error ? err.message : String(err));

/** Pods that still run the controller: not ended, and made by the Deployment's ReplicaSets (never this command's own pod). */
const stillRunning = (pods: Pod[]) => pods.filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed' &&
  p.metadata.ownerReferences?.some((o) => o.kind === 'ReplicaSet' && o.controller === true));

/** Stops the controller, releases the records, says what it did. Returns the exit code; throws ExitError for the rest. */
export async function releaseNamespaceRecords(deps: ReleaseDeps, o: ReleaseOptions): Promise<number> {
  const now = deps.now ?? Date.now;
  const pause = deps.sleep ?? ((ms: number) => sleep(ms));
  const deadline = o.timeoutMs > 0 ? now() + o.timeoutMs : Number.POSITIVE_INFINITY;
  const say = (s: string) => deps.stdout.write(`${s}\n`);
  const timedOut = (what: string) => new ExitError(`gave up after ${Math.round(o.timeoutMs / 1000)} s (--timeout): ${what}`, EXIT.timedOut);
  /** An API server restarting or overloaded is waited for until the deadline; any other error ends the command. */
  const patiently = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (!isTransient(err)) throw err;
        if (now() >= deadline) throw timedOut(`${what}: ${describeError(err)}`);
        say(`${what}: the API server does not answer (${describeError(err)}); trying again`);
        await pause(POLL_MS);
      }
    }
  };

  // 1. Stop the controller: the record reconciler puts the finalizer back on every record it sees without one, and a
  // backup ending meanwhile makes a new record with it.
  if (o.stopDeployment) {
    const name = o.stopDeployment;
    const deployment = await patiently(`reading deployment/${name}`, () => deps.client.get<Deployment>(DEPLOYMENT, o.namespace, name))
      .catch((err) => (isNotFound(err) ? undefined : Promise.reject(err)));
    if (!deployment) {
      say(`deployment/${name} not found in namespace ${o.namespace}: no controller to stop`);
    } else {
      if (deployment.spec?.replicas !== 0) {
        await patiently(`scaling deployment/${name} to 0`, () => deps.client.patch(DEPLOYMENT, o.namespace, name, { spec: { replicas: 0 } }));
        say(`deployment/${name} scaled to 0: the controller stops (it would put the finalizers back)`);
      }
      const labels = deployment.spec?.selector.matchLabels ?? {};
      const labelSelector = Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',');
      if (!labelSelector) throw new ExitError(`deployment/${name} selects its pods without matchLabels: stop its pods yourself, then run this without --stop-deployment`, EXIT.failed);
      for (let waited = false; ;) {
        const pods = stillRunning((await patiently('listing the controller\'s pods', () =>
          deps.client.list<Pod>(POD, o.namespace, { labelSelector }))).items);
        if (pods.length === 0) break;
        const names = pods.map((p) => p.metadata.name).join(', ');
        if (now() >= deadline) throw timedOut(`the controller's pods still run (${names}); no record was released, since a running controller puts the finalizer back`);
        if (!waited) say(`waiting for the controller's pods to stop: ${names}`);
        waited = true;
        await pause(POLL_MS);
      }
      say('the controller is stopped');
    }
  }

  // 2. Release until no record holds the finalizer. A record changed meanwhile (409) is listed and released again.
  let released = 0;
  for (;;) {
    const r = await patiently('releasing the records', () => releaseRecords(deps.client, o.namespace));
    for (const rec of r.released) say(`released ${describeRecord(rec)}: its snapshot stays in S3`);
    released += r.released.length;
    const lasting = r.failed.filter((e) => !isTransient(e));
    if (lasting.length > 0) throw lasting[0];
    const left = r.held.length - r.released.length;
    if (left === 0) break;
    if (now() >= deadline) throw timedOut(`${left} record(s) still hold the finalizer (${describeError(r.failed[0] ?? 'changed meanwhile')})`);
    await pause(POLL_MS);
  }
  say(released === 0
    ? `no MetadataBackupRecord in namespace ${o.namespace} holds the forget finalizer: nothing to release`
    : `${released} MetadataBackupRecord(s) in namespace ${o.namespace} released; their snapshots stay in S3, where a new install finds them`);
  return EXIT.ok;
}

export async function runReleaseRecords(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(releaseRecordsHelp));
    return 0;
  }
  if (parsed.args.length > 0) throw new UsageError(`unexpected argument "${parsed.args[0]}"`);
  const f = parsed.flags;
  const client = clientFromFlags(f);
  try {
    return await releaseNamespaceRecords({ client, stdout: process.stdout },
      { namespace: f.namespace, stopDeployment: f['stop-deployment'], timeoutMs: f.timeout });
  } catch (err) {
    throw explainApiError(err, client.server);
  }
}
