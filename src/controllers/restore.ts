/**
 * @module MetadataRestore reconciler: checks the record, its location and the claim, runs one restore pod per
 * generation, and turns the pod's outcome into status, an event and metrics. The controller, not the pod, writes
 * status. Every way a restore can end (bad input, pod failure, a pod that never starts, a deleted pod, a pod the API
 * server refuses to create) ends `Failed` with the reason; finished pods are deleted.
 */
import { COMPLETE, FAILED, READY, setCondition } from '../api/conditions.ts';
import { BACKUP_LOCATION, BACKUP_RECORD, POD, PVC, RESTORE, RESTORE_GENERATION_ANNOTATION, SNAPSHOT_FORGOTTEN_ANNOTATION } from '../api/group.ts';
import { BROWSE_READY, RESTORE_FAILED, RESTORE_SUCCEEDED, messages } from '../api/events.ts';
import type { BackupLocation, MetadataBackupRecord, MetadataRestore, PersistentVolumeClaim, Pod, Secret, Toleration } from '../api/types.ts';
import type { BackupOrigin } from '../engine/origin.ts';
import type { Restic } from '../engine/restic.ts';
import { EngineError } from '../engine/errors.ts';
import { snapshotExists } from '../engine/snapshots.ts';
import type { KubeClient } from '../kube/client.ts';
import { ApiError, ignoreNotFound, isAlreadyExists, isNotFound, isRefused, isTransient } from '../kube/errors.ts';
import type { Metrics } from '../metrics/registry.ts';
import type { Reconciler, Result } from '../runtime/controller.ts';
import type { Informer } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import { parseDuration } from '../util/flags.ts';
import type { Logger } from '../util/log.ts';
import { redact } from '../util/redact.ts';
import { InputError, checkLocationReady, locationRepository } from './inputs.ts';
import { browsePod, imageVersion, objectRestorePod, objectsProblem } from './backup-api-pod.ts';
import { podProgress, restorePod, restorePodName } from './restore-pod.ts';

export interface RestoreDeps {
  client: Pick<KubeClient, 'get' | 'list' | 'create' | 'delete' | 'patchStatus'>;
  restores: Informer<MetadataRestore>;
  records: Informer<MetadataBackupRecord>;
  secrets: Informer<Secret>;
  /** Restore pods only (label selector), in the controller's namespace. */
  pods: Informer<Pod>;
  recorder: EventRecorder;
  metrics: Metrics;
  restic: Restic;
  log: Logger;
  /** Image of the restore pod: the controller's own. Without one, restores fail with a message saying so. */
  image?: string;
  /** A pod that has not started after this long fails the restore. */
  startTimeoutMs: number;
  /** A running restore pod is stopped by the kubelet after this long. */
  runTimeoutMs: number;
  /** Where restore pods may run: node labels and tolerated taints (restorePod's defaults when not given). */
  nodeSelector?: Record<string, string>;
  tolerations?: readonly Toleration[];
  /** uid and gid of restore pods; 0 for root (see restorePod). */
  runAsUser?: number;
  /** This cluster and install: a point-in-time restore reads only their chain. */
  origin?: BackupOrigin;
  /** Service account of objects-restore pods (spec.objects); without one, such restores fail saying so. */
  objectRestoreServiceAccount?: string;
  /** The kube-apiserver image those pods serve the backup with; default: the cluster's own static pod's. */
  kubeApiserverImage?: string;
  now?: () => Date;
}

const STATUS_POLL_MS = 30_000;

/**
 * Why the API server refused the restore pod, in its own words, and what to do. OwnerReferencesPermissionEnforcement
 * (OpenShift, hardened clusters) refuses the pod's blockOwnerDeletion unless the controller may update the restore's
 * finalizers, which a Role without `metadatarestores/finalizers` does not allow.
 */
export function podRefusedMessage(podName: string, err: ApiError): string {
  const fix = /blockOwnerDeletion/.test(err.detail)
    ? 'the controller\'s Role needs "update" on metadatarestores/finalizers (the Helm chart\'s Role grants it)'
    : 'fix the cause, then re-create the MetadataRestore';
  return `restore pod ${podName} was refused by the API server (${err.status} ${err.reason}): ${err.detail}; ${fix}`;
}

/** Why the restore could not start, for its status: the API server's own words for a refused read (RBAC, usually). */
function planFailure(err: unknown): string {
  if (err instanceof ApiError) return `the API server refused a read the restore needs (${err.status} ${err.reason}): ${err.detail}`;
  return err instanceof Error ? err.message : String(err);
}

const isFinished = (mr: MetadataRestore): boolean =>
  (mr.status?.restoreStatus === 'Completed' || mr.status?.restoreStatus === 'Failed') &&
  mr.status.observedGeneration === (mr.metadata.generation ?? 0);

/** A repository error that goes away by itself: the endpoint unreachable or slow, or the repository locked. */
const isPassingRepositoryError = (err: unknown): boolean =>
  err instanceof EngineError && (err.kind === 'Unreachable' || err.kind === 'Timeout' || err.kind === 'Locked');

export class RestoreReconciler implements Reconciler {
  private readonly now: () => Date;

  constructor(private readonly deps: RestoreDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  async reconcile(key: string, signal: AbortSignal): Promise<Result | void> {
    const [ns = '', name = ''] = key.split('/');
    const podName = restorePodName(name);
    const mr = this.deps.restores.get(key);
    const pod = this.deps.pods.get(`${ns}/${podName}`);

    // 1. Gone, or already finished for this generation: only the pod is left to clean up.
    if (!mr || isFinished(mr)) {
      if (pod) await this.deletePod(ns, podName);
      return;
    }
    const generation = String(mr.metadata.generation ?? 0);

    // 2. A pod of an older spec: replace it (its deletion brings us back here).
    if (pod && pod.metadata.annotations?.[RESTORE_GENERATION_ANNOTATION] !== generation) {
      await this.deletePod(ns, podName);
      return;
    }
    if (pod) return this.follow(mr, pod);

    // 3. Status says our pod runs, but the cache has none: it may only lag behind our create, so ask the API.
    if (mr.status?.restoreStatus === 'Running' && String(mr.status.observedGeneration) === generation) {
      const live = await this.deps.client.get<Pod>(POD, ns, podName).catch(ignoreNotFound);
      if (live) return this.follow(mr, live);
      return this.finish(mr, 'Failed', `restore pod ${podName} was deleted before it finished`);
    }
    return this.start(mr, signal);
  }

  /** Checks the inputs and creates the pod; bad input ends the restore at once. */
  private async start(mr: MetadataRestore, signal: AbortSignal): Promise<Result | void> {
    const ns = mr.metadata.namespace ?? '';
    let pod: Pod;
    try {
      pod = await this.plan(mr, signal);
    } catch (err) {
      // A Kubernetes read, or a look into the repository, that failed for now (the API or S3 away, a prune holding the
      // repository) is retried with the work queue's backoff; bad input, an unusable repository or a refused read end
      // the restore with the reason.
      if (signal.aborted || isTransient(err) || isPassingRepositoryError(err)) throw err;
      return this.finish(mr, 'Failed', planFailure(err));
    }
    try {
      await this.deps.client.create(POD, ns, pod);
    } catch (err) {
      // Refused (a quota, an admission webhook, RBAC): the same pod would be refused again, so we choose to end the
      // restore now, with the API server's reason, rather than retry in silence. Created already by an earlier attempt
      // whose status write failed: the pod's events bring us back. Anything else (5xx, 429, a lost connection) is thrown
      // and retried with backoff.
      if (isRefused(err)) return this.finish(mr, 'Failed', podRefusedMessage(pod.metadata.name, err));
      if (!isAlreadyExists(err)) throw err;
    }
    this.deps.log.info('restore pod created', { restore: `${ns}/${mr.metadata.name}`, pod: pod.metadata.name });
    await this.deps.client.patchStatus(RESTORE, ns, mr.metadata.name, {
      restoreStatus: 'Running', restoreErrorMessage: '', observedGeneration: mr.metadata.generation ?? 0,
    });
    return { requeueAfter: this.deps.startTimeoutMs };
  }

  /** The restore pod for this restore, once record, snapshot, location and claim check out. */
  private async plan(mr: MetadataRestore, signal: AbortSignal): Promise<Pod> {
    const ns = mr.metadata.namespace ?? '';
    const image = this.deps.image;
    if ([mr.spec.pvcName, mr.spec.objects, mr.spec.browse].filter(Boolean).length !== 1) {
      throw new InputError('InvalidSpec', 'give one of spec.pvcName (restore the backup\'s files into a claim), spec.objects (re-create chosen objects in ' +
        'the cluster) and spec.browse (serve the backup read-only)');
    }
    const objectsWrong = mr.spec.objects && objectsProblem(mr.spec.objects);
    if (objectsWrong) throw new InputError('InvalidSpec', objectsWrong);
    if (!image) throw new InputError('NoRestoreImage', 'the controller runs without --restore-image, so it cannot start a restore pod (the Helm chart sets it)');
    // Read from the API, not the caches: a restore ends for good on what it reads here, and a record created (or a
    // location made ready) a moment before the restore may not have reached its cache yet. Restores are rare.
    const record = await this.deps.client.get<MetadataBackupRecord>(BACKUP_RECORD, ns, mr.spec.mbrName).catch(ignoreNotFound);
    if (!record) throw new InputError('RecordNotFound', `MetadataBackupRecord "${mr.spec.mbrName}" not found`);
    const snapshotId = record.spec.snapshotId;
    if (record.metadata.deletionTimestamp || record.metadata.annotations?.[SNAPSHOT_FORGOTTEN_ANNOTATION] === 'true') {
      throw new InputError('SnapshotGone', `snapshot ${snapshotId} of MetadataBackupRecord "${mr.spec.mbrName}" is being deleted`);
    }
    const location = checkLocationReady(record.spec.backuploc,
      await this.deps.client.get<BackupLocation>(BACKUP_LOCATION, ns, record.spec.backuploc).catch(ignoreNotFound));
    const repo = locationRepository(location, this.deps.secrets);
    if (!await snapshotExists(this.deps.restic, repo, snapshotId, { signal })) {
      throw new InputError('SnapshotGone', `snapshot ${snapshotId} of MetadataBackupRecord "${mr.spec.mbrName}" is no longer in ` +
        `BackupLocation "${location.metadata.name}"'s repository`);
    }
    const { nodeSelector, tolerations, runAsUser } = this.deps;
    const common = {
      restore: mr, record, location, image, deadlineSeconds: Math.ceil(this.deps.runTimeoutMs / 1000), nodeSelector, tolerations, runAsUser,
      ...(this.deps.origin ? { cluster: `${this.deps.origin.clusterId}/${this.deps.origin.namespace}` } : {}),
    };
    if (mr.spec.browse) {
      let timeLimitMs: number;
      try {
        timeLimitMs = parseDuration(mr.spec.browse.timeLimit ?? '1h');
      } catch (err) {
        throw new InputError('InvalidSpec', `spec.browse.timeLimit: ${(err as Error).message}`);
      }
      const apiserverImage = this.deps.kubeApiserverImage ?? await this.clusterApiserverImage();
      return browsePod({ ...common, apiserverImage, apiserverVersion: imageVersion(apiserverImage), timeLimitSeconds: Math.ceil(timeLimitMs / 1000) });
    }
    if (mr.spec.objects) {
      const serviceAccount = this.deps.objectRestoreServiceAccount;
      if (!serviceAccount) {
        throw new InputError('NoObjectRestoreAccount', 'the controller runs without --object-restore-service-account, so it cannot write objects into the ' +
          'cluster (the Helm chart sets it with objectRestore.enabled=true)');
      }
      const apiserverImage = this.deps.kubeApiserverImage ?? await this.clusterApiserverImage();
      return objectRestorePod({ ...common, serviceAccount, apiserverImage, apiserverVersion: imageVersion(apiserverImage) });
    }
    const pvc = await this.deps.client.get<PersistentVolumeClaim>(PVC, ns, mr.spec.pvcName!).catch((err) => {
      if (isNotFound(err)) throw new InputError('ClaimNotFound', `PersistentVolumeClaim "${mr.spec.pvcName}" not found in namespace ${ns}`);
      throw err;
    });
    if (pvc.status?.phase !== 'Bound') {
      throw new InputError('ClaimNotBound', `PersistentVolumeClaim "${mr.spec.pvcName}" is not bound (phase ${pvc.status?.phase ?? 'unknown'})`);
    }
    return restorePod(common);
  }

  /**
   * The image of the cluster's own kube-apiserver: its static pod's in kube-system, as kubeadm makes it (label
   * component=kube-apiserver). The backup is of this cluster, so its version is the backup's, unless the cluster was
   * upgraded since (the prepare step checks the version against the backup's and refuses another minor).
   */
  private async clusterApiserverImage(): Promise<string> {
    const pods = await this.deps.client.list<Pod>(POD, 'kube-system', { labelSelector: 'component=kube-apiserver' }).catch((err) => {
      throw new InputError('NoApiserverImage', `cannot read the cluster's kube-apiserver pod in kube-system (${planFailure(err)}): ` +
        'give the image with the controller\'s --kube-apiserver-image');
    });
    const image = pods.items.flatMap((p) => p.spec?.containers ?? []).find((c) => c.name === 'kube-apiserver')?.image;
    if (!image) {
      throw new InputError('NoApiserverImage', 'no kube-apiserver static pod in kube-system (not a kubeadm cluster?): give the image with the ' +
        'controller\'s --kube-apiserver-image');
    }
    return image;
  }

  private async follow(mr: MetadataRestore, pod: Pod): Promise<Result | void> {
    const p = podProgress(pod, this.now());
    switch (p.state) {
      case 'succeeded':
        return this.finish(mr, 'Completed', '', p.message === undefined ? undefined : mr.spec.browse ? { browse: p.message } : { objects: p.message });
      case 'failed':
        return this.finish(mr, 'Failed', p.message);
      case 'running':
        if (mr.spec.browse) await this.browseReady(mr, pod, p.ready === true);
        return;
      case 'starting': {
        const left = this.deps.startTimeoutMs - p.sinceMs;
        if (left > 0) return { requeueAfter: Math.min(left, STATUS_POLL_MS) };
        const seconds = Math.round(this.deps.startTimeoutMs / 1000);
        return this.finish(mr, 'Failed', `restore pod ${pod.metadata.name} did not start within ${seconds} s${p.problem ? `: ${p.problem}` : ''}`);
      }
    }
  }

  /**
   * A browse pod's readiness as the MetadataRestore's Ready condition (`kubectl wait --for=condition=Ready`), and one
   * BrowseReady event when it first serves. The API is asked first: the cache may lag behind the last write.
   */
  private async browseReady(mr: MetadataRestore, pod: Pod, ready: boolean): Promise<void> {
    const ns = mr.metadata.namespace ?? '';
    const live = await this.deps.client.get<MetadataRestore>(RESTORE, ns, mr.metadata.name).catch(ignoreNotFound);
    const was = live?.status?.conditions?.find((c) => c.type === READY);
    if (!live || (was?.status === 'True') === ready) return;
    const deadline = Date.parse(pod.status?.startTime ?? pod.metadata.creationTimestamp ?? '') + (pod.spec?.activeDeadlineSeconds ?? 0) * 1000;
    const until = Number.isFinite(deadline) ? ` until ${new Date(deadline).toISOString()}` : '';
    const message = ready
      ? `The backup is served${until}: kubedr browse --restore ${mr.metadata.name} -n ${ns} port-forwards to it and writes a kubeconfig`
      : 'The backup\'s kube-apiserver does not answer';
    const now = this.now();
    await this.deps.client.patchStatus(RESTORE, ns, mr.metadata.name, {
      conditions: setCondition(live.status?.conditions, {
        type: READY, status: ready ? 'True' : 'False', observedGeneration: mr.metadata.generation ?? 0, reason: ready ? 'Serving' : 'NotServing', message,
      }, now),
    });
    if (ready) await this.deps.recorder.event(mr, 'Normal', BROWSE_READY, message);
  }

  /**
   * Writes the final status, reports it, and deletes the pod. Status first: a crash after it only leaves a pod to delete.
   * The cache may not show a status written a moment ago, so the API is asked first: a restore is reported once.
   */
  private async finish(mr: MetadataRestore, result: 'Completed' | 'Failed', rawMessage = '', ended?: { objects?: string; browse?: string }): Promise<void> {
    const ns = mr.metadata.namespace ?? '';
    // Status is read as widely as events and logs: the same redactor.
    const message = redact(rawMessage);
    const live = await this.deps.client.get<MetadataRestore>(RESTORE, ns, mr.metadata.name).catch(ignoreNotFound);
    if (!live || isFinished(live)) {
      await this.deletePod(ns, restorePodName(mr.metadata.name), 0);
      return;
    }
    const now = this.now();
    const generation = mr.metadata.generation ?? 0;
    const summary = ended?.objects === undefined ? undefined : redact(ended.objects) || 'nothing to do';
    const completed = ended?.browse !== undefined ? `The browse ended: ${ended.browse}`
      : summary === undefined ? 'The backup was restored and verified' : `Objects of the backup restored: ${summary}`;
    // A browse that ended serves no more: its Ready condition says so.
    const notServing = (conditions: ReturnType<typeof setCondition>) => (mr.spec.browse ? setCondition(conditions, {
      type: READY, status: 'False', observedGeneration: generation, reason: 'Ended', message: 'The browse has ended',
    }, now) : conditions);
    const done = (type: string, yes: boolean) => ({
      type, status: yes ? 'True' : 'False', observedGeneration: generation,
      reason: result === 'Completed' ? 'Restored' : 'RestoreFailed', message: result === 'Completed' ? completed : message,
    } as const);
    await this.deps.client.patchStatus(RESTORE, ns, mr.metadata.name, {
      restoreStatus: result, restoreErrorMessage: message, restoreTime: now.toISOString(), observedGeneration: generation,
      ...(summary !== undefined ? { objectsRestored: summary } : {}),
      conditions: notServing(setCondition(setCondition(live.status?.conditions, done(COMPLETE, result === 'Completed'), now),
        done(FAILED, result === 'Failed'), now)),
    });
    this.deps.metrics.numRestores.inc();
    const snapshotId = this.deps.records.get(`${ns}/${mr.spec.mbrName}`)?.spec.snapshotId ?? '';
    if (result === 'Completed') {
      await this.deps.recorder.event(mr, 'Normal', RESTORE_SUCCEEDED,
        `${messages.restoreSucceeded(snapshotId)}${summary !== undefined ? `: objects ${summary}` : ended?.browse !== undefined ? `: the browse ${ended.browse}` : ''}`);
    } else {
      this.deps.metrics.numFailedRestores.inc();
      await this.deps.recorder.event(mr, 'Warning', RESTORE_FAILED, message);
    }
    this.deps.log.info('restore finished', { restore: `${ns}/${mr.metadata.name}`, result, message: message || undefined });
    // Finished, or never started: nothing in it needs a graceful stop, and a pod left Terminating for the kubelet's
    // grace period would hold up a new restore of the same name.
    await this.deletePod(ns, restorePodName(mr.metadata.name), 0);
  }

  /** Without `gracePeriodSeconds`, the pod's own grace: a running restore removes its staged files on SIGTERM. */
  private async deletePod(ns: string, name: string, gracePeriodSeconds?: number): Promise<void> {
    await this.deps.client.delete(POD, ns, name, { gracePeriodSeconds }).catch(ignoreNotFound);
  }
}
