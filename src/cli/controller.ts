/** @module `kubedr controller`: the composition root of the operator. Builds every collaborator and runs them. */
import { BACKUP_LOCATION, BACKUP_POLICY, BACKUP_RECORD, COMPONENT, POD, RESTORE, RESTORE_LABEL, type ResourceRef, SECRET } from '../api/group.ts';
import type { BackupLocation, KubeObject, MetadataBackupPolicy, MetadataBackupRecord, MetadataRestore, Pod, Secret } from '../api/types.ts';
import { type Config, controllerFlags, loadConfig } from '../config.ts';
import { BackupLocationReconciler } from '../controllers/backup-location.ts';
import { BackupPolicyReconciler } from '../controllers/backup-policy.ts';
import { BackupRecordReconciler } from '../controllers/backup-record.ts';
import { NamespaceDeletion } from '../controllers/namespace-deletion.ts';
import { protectedForMetric } from '../controllers/protection.ts';
import { Pruner } from '../controllers/pruner.ts';
import { RepositorySync } from '../controllers/repository-sync.ts';
import { ContinuousBackup } from '../controllers/continuous-backup.ts';
import { RepositoryChecker } from '../controllers/repository-checker.ts';
import { RepositoryRepair } from '../controllers/repository-repair.ts';
import { RestoreReconciler } from '../controllers/restore.ts';
import { VerificationPods } from '../controllers/verification-pod.ts';
import { Verifier } from '../controllers/verification.ts';
import type { BackupOrigin } from '../engine/origin.ts';
import { Restic } from '../engine/restic.ts';
import { KubeClient } from '../kube/client.ts';
import { readClusterId } from '../kube/cluster-identity.ts';
import { stopPluginRuns } from '../kube/exec-plugin.ts';
import { policyGauges } from '../metrics/policy-gauges.ts';
import { createMetrics } from '../metrics/registry.ts';
import { HttpServer } from '../metrics/server.ts';
import { Controller, type Reconciler } from '../runtime/controller.ts';
import { Informer, listWatch, objectKey } from '../runtime/informer.ts';
import { LeaderElector } from '../runtime/leader.ts';
import { Manager } from '../runtime/manager.ts';
import { specOrMetadataChanged } from '../runtime/predicates.ts';
import { ApiEventRecorder } from '../runtime/recorder.ts';
import { helpText } from '../util/flags.ts';
import { Semaphore } from '../util/semaphore.ts';
import { type Logger, createLogger } from '../util/log.ts';
import { forProgram } from './program.ts';
import { selfCommand } from '../util/self.ts';

export const controllerHelp = helpText('kubedr controller [flags]',
  'Runs the operator: initialises BackupLocations, takes scheduled etcd and certificate backups, records and expires them,\n' +
  'restores them into PersistentVolumeClaims (MetadataRestore), and reports through status, events and /metrics.', controllerFlags);

/** Enqueues the object's key on creation, deletion, resync and any change a reconcile must see. */
function enqueueOnChange<T extends KubeObject>(informer: Informer<T>, controller: Controller): void {
  informer.addHandlers({
    onAdd: (o) => controller.enqueue(objectKey(o)),
    onUpdate: (old, o) => specOrMetadataChanged(old, o) && controller.enqueue(objectKey(o)),
    onDelete: (o) => controller.enqueue(objectKey(o)),
  });
}

/** Resolves who this controller is in a shared bucket: the cluster's id (flag, else read from the cluster) and name. */
async function resolveOrigin(config: Config, client: KubeClient, log: Logger, signal: AbortSignal): Promise<BackupOrigin> {
  const clusterId = config.clusterId ?? await readClusterId(client, {
    signal, onRetry: (err) => log.warn('cannot read the cluster id yet; retrying', { err }),
  });
  return { clusterId, clusterName: config.clusterName ?? `cluster-${clusterId.slice(0, 8)}`, namespace: config.namespace };
}

function build(config: Config, client: KubeClient, origin: BackupOrigin, log: Logger) {
  const metrics = createMetrics();
  const restic = new Restic({ timeoutMs: config.resticTimeoutMs, cacheDir: config.resticCacheDir, lockWaitMs: config.lockWaitMs });
  const ns = config.namespace;
  const informer = <T extends KubeObject>(ref: ResourceRef, resyncMs = config.resyncMs, labelSelector?: string) =>
    new Informer<T>({ name: ref.plural, source: listWatch(client, ref, ns, labelSelector), log, resyncMs });
  const locations = informer<BackupLocation>(BACKUP_LOCATION);
  const policies = informer<MetadataBackupPolicy>(BACKUP_POLICY);
  const records = informer<MetadataBackupRecord>(BACKUP_RECORD);
  // Secrets need no resync: the objects that use them resync and re-read them from this cache.
  const secrets = informer<Secret>(SECRET, 0);
  const restores = informer<MetadataRestore>(RESTORE);
  // Only the restore pods: a controller on a busy node must not cache every pod of its namespace.
  const pods = informer<Pod>(POD, 0, RESTORE_LABEL);
  const recorder = new ApiEventRecorder(client, log, config.identity);
  const controller = (name: string, reconciler: Reconciler, workers = 1) => new Controller({
    name, log, reconciler, workers, drainTimeoutMs: Math.max(config.shutdownTimeoutMs - 2_000, 0),
    onResult: (result) => metrics.reconciles.inc({ controller: name, result }),
  });

  // Location and record reconciles run restic (init, forget): several workers, so one slow endpoint does not hold up
  // every other object. The queue never gives one key to two workers.
  const locationReconciler = new BackupLocationReconciler({
    client, locations, secrets, policies, recorder, metrics, restic, log, retryBaseMs: config.locationRetryBaseMs,
  });
  const locationController = controller('backuplocation', locationReconciler, 4);
  enqueueOnChange(locations, locationController);
  // A changed credentials Secret re-runs initialisation of every location that uses it.
  const secretChanged = (s: Secret) => {
    for (const loc of locations.list()) {
      if (loc.spec.credentials === s.metadata.name && loc.metadata.namespace === s.metadata.namespace) {
        locationController.enqueue(objectKey(loc));
      }
    }
  };
  secrets.addHandlers({ onAdd: secretChanged, onUpdate: (_old, s) => secretChanged(s), onDelete: secretChanged });

  const policyReconciler = new BackupPolicyReconciler({
    client, policies, locations, secrets, records, recorder, metrics, restic, log,
    host: config.backupHost, origin, maxConcurrent: config.maxConcurrentBackups, progressIntervalMs: config.progressIntervalMs,
    stallTimeoutMs: config.backupStallTimeoutMs, locationWaitMs: config.locationWaitMs,
    // Streamed: restic runs this program's backup-archive (the same binary, or the same script under bun).
    archiveCommand: config.backupLayout === 'streamed' ? [...selfCommand(), 'backup-archive'] : undefined,
  });
  // The repository is the truth, records its index: adopt snapshots without a record, flag records without a snapshot.
  const sync = new RepositorySync({
    client, locations, policies, records, secrets, restic, recorder, log, periodMs: config.syncPeriodMs,
    ownership: { origin, adoptUnmarked: config.adoptUnmarkedSnapshots },
    busy: (key) => policyReconciler.isRunning(key),
    onAdopted: (adopted) => policyReconciler.verifyAdopted(adopted),
  });
  policyReconciler.sync = sync;
  // Each backup proven by restoring it. Verifications run one at a time, apart from backups: one stuck on an
  // unreachable S3 endpoint must never keep a due backup waiting (it reads only S3, not the cluster's etcd).
  const verifications = new Semaphore(1);
  // A failed verification has the repository read whole, and repaired if damaged (then new backups at once).
  const repair = new RepositoryRepair({
    client, records, policies, secrets, restic, recorder, log, requestBackup: (key) => policyReconciler.requestBackup(key),
    repairEnabled: config.repairDamage,
  });
  // In a pod of its own when there is an image for it (the chart's install): the throwaway etcd maps the whole
  // database, which the controller's own memory limit is not sized for.
  const inPod = config.verifyInPod && config.restoreImage ? new VerificationPods({
    client, log, image: config.restoreImage, deadlineSeconds: 30 * 60, startTimeoutMs: config.restoreStartTimeoutMs,
    nodeSelector: config.restoreNodeSelector, tolerations: config.restoreTolerations, runAsUser: config.restoreRunAsUser,
  }) : undefined;
  policyReconciler.verifier = new Verifier({
    client, secrets, restic, recorder, metrics, log, acquire: (s) => verifications.acquire(s), timeoutMs: 30 * 60_000, repair, inPod,
  });
  // Policies are few and each reconcile is short (backups run in the background), so workers stay at one per kind.
  const policyController = controller('metadatabackuppolicy', policyReconciler);
  policyReconciler.enqueue = (key) => policyController.enqueue(key);
  enqueueOnChange(policies, policyController);

  const checker = new RepositoryChecker({
    client, locations, secrets, restic, recorder, log, repair, acquire: (s) => verifications.acquire(s),
    intervalMs: config.checkIntervalMs, subset: config.checkReadDataSubset,
  });
  const pruner = new Pruner({
    client, locations, secrets, restic, recorder, log, metrics, intervalMs: config.pruneIntervalMs, afterForgets: config.pruneAfterForgets,
  });
  // Continuous backup: a recorder per policy that asks for one, converged with the policies on every change.
  const continuous = new ContinuousBackup({
    client, policies, locations, secrets, restic, recorder, metrics, log, origin, host: config.backupHost,
    requestBackup: (key) => policyReconciler.requestBackup(key), verifyIntervalMs: config.continuousVerifyIntervalMs, records, pods: inPod,
    acquire: (s) => verifications.acquire(s), onForgotten: (loc, n) => pruner.forgotten(loc, n),
  });
  for (const inf of [policies, locations, secrets] as Informer<KubeObject>[]) {
    inf.addHandlers({ onAdd: () => continuous.poke(), onUpdate: () => continuous.poke(), onDelete: () => continuous.poke() });
  }
  policyReconciler.onForgotten = (loc, n) => pruner.forgotten(loc, n);
  policyReconciler.onCredentialsRefused = (key) => {
    locationReconciler.recheck(key);
    locationController.enqueue(key);
  };
  const recordController = controller('metadatabackuprecord', new BackupRecordReconciler({
    client, records, locations, secrets, recorder, restic, log, origin, retryMs: config.forgetRetryMs,
    onForgotten: (loc, n) => pruner.forgotten(loc, n),
  }), 4);
  enqueueOnChange(records, recordController);
  // A location deleted (or being deleted) releases the records waiting on it: look at them now, not at their next retry.
  const recordsOfLocation = (loc: BackupLocation) => {
    for (const r of records.list()) {
      if (r.metadata.namespace === loc.metadata.namespace && r.spec.backuploc === loc.metadata.name) recordController.enqueue(objectKey(r));
    }
  };
  locations.addHandlers({ onUpdate: (_old, l) => l.metadata.deletionTimestamp && recordsOfLocation(l), onDelete: recordsOfLocation });

  const restoreController = controller('metadatarestore', new RestoreReconciler({
    client, restores, records, secrets, pods, recorder, metrics, restic, log, image: config.restoreImage,
    startTimeoutMs: config.restoreStartTimeoutMs, runTimeoutMs: config.restoreTimeoutMs,
    nodeSelector: config.restoreNodeSelector, tolerations: config.restoreTolerations, runAsUser: config.restoreRunAsUser, origin,
    objectRestoreServiceAccount: config.objectRestoreServiceAccount, kubeApiserverImage: config.kubeApiserverImage,
  }));
  enqueueOnChange(restores, restoreController);
  // Every change of a restore pod (scheduled, started, finished, deleted) may decide its restore.
  const podChanged = (p: Pod) => {
    const owner = p.metadata.ownerReferences?.find((o) => o.kind === RESTORE.kind);
    if (owner) restoreController.enqueue(`${p.metadata.namespace}/${owner.name}`);
  };
  pods.addHandlers({ onAdd: podChanged, onUpdate: (_old, p) => podChanged(p), onDelete: podChanged });

  metrics.setPolicySource(() => policyGauges(policies.list(), records.list(), new Date()));
  metrics.setLocationSource(() => locations.list().map((l) => ({
    name: l.metadata.name, ready: l.status?.initStatus === 'Completed', protected: protectedForMetric(l),
  })));

  const informers = [locations, policies, records, secrets, restores, pods];
  const http = new HttpServer({
    host: config.httpAddress, port: config.httpPort, registry: metrics.registry, log,
    ready: () => informers.every((i) => i.hasSynced()),
  });
  const elector = config.leaderElection
    ? new LeaderElector({ client, namespace: ns, identity: config.identity, log, ...config.leaderElection })
    : undefined;
  return new Manager({
    always: [...informers, http, new NamespaceDeletion({ client: client.unfenced(), namespace: ns, log })],
    leaderOnly: [locationController, policyController, recordController, restoreController, sync, pruner, checker, continuous],
    cachesSynced: () => Promise.all(informers.map((i) => i.waitForSync())).then(() => undefined),
    elector,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    log,
  });
}

/** Runs the controller until SIGTERM/SIGINT; a second signal exits at once. Returns the exit code. */
export async function runController(argv: string[]): Promise<number> {
  const config = loadConfig(argv);
  if (config === 'help') {
    process.stdout.write(forProgram(controllerHelp));
    return 0;
  }
  const log = createLogger({ level: config.logLevel });
  log.info('starting', { namespace: config.namespace, identity: config.identity, leaderElection: config.leaderElection !== false });
  const client = KubeClient.load({ kubeconfig: config.kubeconfig, context: config.context, fieldManager: COMPONENT });
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (sig: string) => {
    signals += 1;
    if (signals > 1) {
      log.warn('second signal: exiting now', { signal: sig });
      process.exit(1);
    }
    log.info('shutting down', { signal: sig });
    stop.abort();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  try {
    const origin = await resolveOrigin(config, client, log, stop.signal);
    if (stop.signal.aborted) return 0;
    log.info('cluster identity', { clusterId: origin.clusterId, clusterName: origin.clusterName, fromFlag: config.clusterId !== undefined });
    await build(config, client, origin, log).run(stop.signal);
    log.info('stopped');
    return 0;
  } catch (err) {
    log.error('controller failed', { err });
    return 1;
  } finally {
    // A credential plugin still running (hung) must not outlive the controller.
    await stopPluginRuns();
  }
}
