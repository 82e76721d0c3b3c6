/**
 * @module `kubedr backup POLICY [--wait]`: an on-demand backup from the command line, as `velero backup create --wait`.
 * It sets the policy's backup-now annotation to a new value, which the controller serves once (controllers/backup-policy.ts),
 * and with --wait follows that backup to its end.
 */
import { BACKUP_NOW_ANNOTATION, BACKUP_POLICY } from '../api/group.ts';
import type { MetadataBackupPolicy } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { ApiError, isConflict, isNotFound, isTransient } from '../kube/errors.ts';
import { type FlagSpec, UsageError, helpText, parseFlags } from '../util/flags.ts';
import { sleep } from '../util/sleep.ts';
import { BackupFollower, type Observation, StatusLine, type Terminal, progressLine, successLine, unrunnable } from './backup-progress.ts';
import { clientFromFlags, clusterFlags, explainApiError } from './cluster-flags.ts';
import { EXIT, ExitError, backupExitCodesHelp } from './exit-codes.ts';
import { forProgram, programName } from './program.ts';

const flags = {
  ...clusterFlags,
  wait: {
    type: 'boolean', default: false,
    help: 'follow the backup to its end: progress on stderr, then the snapshot ID and record name on stdout; the exit code says how it ended',
  },
  timeout: { type: 'duration', default: '30m', help: 'with --wait: stop waiting after this long (0: no limit); the backup itself goes on' },
} satisfies Record<string, FlagSpec>;

export const backupHelp = helpText('kubedr backup POLICY [-n NAMESPACE] [--wait [--timeout DURATION]] [flags]',
  `Starts a backup of the MetadataBackupPolicy POLICY now, suspended or not: sets its ${BACKUP_NOW_ANNOTATION}\n` +
  'annotation to a new value, which the controller serves once. A backup of the policy that is already running is\n' +
  'waited for first with --wait (without --wait the command stops: the controller would skip the request).\n' +
  'With --wait, shows the phase, percent and bytes (redrawn in place on a terminal, one line per change otherwise) and\n' +
  'ends with the new backup\'s snapshot ID and MetadataBackupRecord name.', flags) + `\n${backupExitCodesHelp}`;

/**
 * The policy is read once a second. A watch would see each change as it happens, but needs reconnects and relists
 * (410 Gone) for what is a few status changes per backup; one GET a second costs the API server nothing, and no
 * intermediate state matters: the outcome is read from fields written only when a backup ends (backup-progress.ts).
 */
const POLL_MS = 1000;
/** After this long without the controller serving the request, say what may be wrong (and keep waiting). */
const PICKUP_HINT_MS = 20_000;

export interface BackupDeps {
  client: Pick<KubeClient, 'get' | 'patch' | 'server'>;
  stdout: Terminal;
  stderr: Terminal;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

interface Options {
  namespace: string;
  name: string;
  wait: boolean;
  timeoutMs: number;
}

const describeError = (err: unknown) => (err instanceof ApiError ? `${err.status} ${err.reason}: ${err.detail}` : err instanceof Error ? err.message : String(err));

/** Requests the backup and, with `wait`, follows it. Returns the exit code; throws ExitError for every other outcome. */
export async function backupPolicy(deps: BackupDeps, o: Options): Promise<number> {
  const now = deps.now ?? Date.now;
  const pause = deps.sleep ?? ((ms: number) => sleep(ms));
  const started = now();
  const deadline = o.timeoutMs > 0 ? started + o.timeoutMs : Number.POSITIVE_INFINITY;
  const line = new StatusLine(deps.stderr);
  const policyRef = `${o.namespace}/${o.name}`;
  const watchHint = `kubectl -n ${o.namespace} get mbp ${o.name} -w`;
  const timedOut = (what: string) => {
    line.clear();
    return new ExitError(`stopped waiting after ${Math.round(o.timeoutMs / 1000)} s (--timeout): ${what}`, EXIT.timedOut);
  };
  /**
   * The policy now, or undefined if it is gone. Once the backup is requested, an API server that stops answering for a
   * while does not end the wait (`followThroughOutages`); before, the user hears at once that it cannot be reached.
   */
  const get = async (followThroughOutages: boolean): Promise<MetadataBackupPolicy | undefined> => {
    for (;;) {
      try {
        return await deps.client.get<MetadataBackupPolicy>(BACKUP_POLICY, o.namespace, o.name);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        // The API server restarting or overloaded does not end the backup: poll through it.
        if (!followThroughOutages || !isTransient(err) || now() >= deadline) throw err;
        line.update(`${o.name}: the API server does not answer (${describeError(err)}); trying again`);
        await pause(POLL_MS);
      }
    }
  };

  // 1. Request, only while no backup of the policy runs: the controller skips a request that arrives during one. The
  // resourceVersion precondition makes the write fail if anything changed since the read, e.g. a scheduled backup began.
  let request: { value: string; backupTimeBefore: string | undefined } | undefined;
  while (!request) {
    const policy = await get(false);
    if (!policy) {
      throw new ExitError(`MetadataBackupPolicy "${o.name}" not found in namespace "${o.namespace}" (kubectl get mbp -A lists them)`, EXIT.notFound);
    }
    const why = unrunnable(policy);
    if (why) throw new ExitError(`no backup of ${policyRef} can run: ${why}`, EXIT.backupFailed);
    if (policy.status?.backupStatus === 'Running') {
      const running = `a backup of ${policyRef} (${policy.status.backupTrigger ?? 'started earlier'}) is running`;
      if (!o.wait) throw new ExitError(`${running}; the controller would skip a request now. Add --wait to wait for it and then start one`, EXIT.failed);
      if (now() >= deadline) throw timedOut(`${running} still; no backup was requested`);
      line.update(`${o.name}: ${running}; waiting for it to end before requesting one`);
      await pause(POLL_MS);
      continue;
    }
    const value = new Date(now()).toISOString();
    try {
      await deps.client.patch(BACKUP_POLICY, o.namespace, o.name,
        { metadata: { resourceVersion: policy.metadata.resourceVersion, annotations: { [BACKUP_NOW_ANNOTATION]: value } } });
      request = { value, backupTimeBefore: policy.status?.backupTime };
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
  }
  if (!o.wait) {
    deps.stdout.write(`Backup of ${policyRef} requested (${BACKUP_NOW_ANNOTATION}=${request.value}). Follow it: ${watchHint}\n`);
    return EXIT.ok;
  }

  // 2. Follow it to its end.
  const follower = new BackupFollower(request);
  let hinted = false;
  let last: Observation = { state: 'pending' };
  for (;;) {
    const seen = follower.next(await get(true));
    switch (seen.state) {
      case 'succeeded':
        line.clear();
        deps.stdout.write(successLine(o.namespace, o.name, seen));
        return EXIT.ok;
      case 'failed':
        line.clear();
        throw new ExitError(`the backup of ${policyRef} failed: ${seen.message}`, EXIT.backupFailed);
      case 'skipped':
        line.clear();
        throw new ExitError(`the controller skipped the request: a backup of ${policyRef} was still running when it saw it; run the command again`, EXIT.backupFailed);
      case 'gone':
        line.clear();
        throw new ExitError(`MetadataBackupPolicy ${policyRef} was deleted while its backup was awaited`, EXIT.notFound);
      default:
        last = seen;
        line.update(progressLine(o.name, seen));
    }
    if (last.state === 'pending' && !hinted && now() - started >= PICKUP_HINT_MS) {
      hinted = true;
      line.note(`${o.name}: the controller has not started the backup after ${PICKUP_HINT_MS / 1000} s: is the kubedr controller running and ` +
        `serving namespace ${o.namespace}? (Its log and ${watchHint} tell.)`);
    }
    if (now() >= deadline) {
      throw timedOut(last.state === 'pending'
        ? `the controller did not start the requested backup of ${policyRef}; the request stays and runs when the controller sees it`
        : `the backup of ${policyRef} was still running; it goes on: ${watchHint}`);
    }
    await pause(POLL_MS);
  }
}

export async function runBackup(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(backupHelp));
    return 0;
  }
  const f = parsed.flags;
  const [name, extra] = parsed.args;
  if (!name) throw new UsageError(`name the MetadataBackupPolicy to back up (${programName()} status lists them)`);
  if (extra) throw new UsageError(`unexpected argument "${extra}"`);
  const client = clientFromFlags(f);
  // Ctrl-C stops the waiting, not the backup: say so rather than leave a half-drawn line.
  const onInterrupt = () => {
    process.stderr.write(`${process.stderr.isTTY ? '\r\u001b[2K' : ''}${programName()} backup: stopped waiting; the backup goes on in the cluster\n`);
    process.exit(130);
  };
  if (f.wait) process.on('SIGINT', onInterrupt);
  try {
    return await backupPolicy({ client, stdout: process.stdout, stderr: process.stderr },
      { namespace: f.namespace, name, wait: f.wait, timeoutMs: f.timeout });
  } catch (err) {
    throw explainApiError(err, client.server);
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}
