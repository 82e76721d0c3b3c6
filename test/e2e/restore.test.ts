/**
 * MetadataRestore end to end on the real node: the controller (a real process) checks the record, location and claim,
 * and creates a restore pod from the kubedr image; the scheduler places it on the node (tainted as a kubeadm control
 * plane), the kubelet runs it with the claim that the controller-manager bound to a hostPath volume, and the pod
 * restores a real backup of the cluster's etcd and PKI from S3. Nothing is played: every pod state below comes from the
 * kubelet or the scheduler.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { RESTORE_FAILED, RESTORE_SUCCEEDED, messages } from '../../src/api/events.ts';
import type { V1Node } from '@kubernetes/client-node';
import type { Builtin, MetadataBackupRecord, MetadataRestore, Pod } from '../../src/api/types.ts';
import { restorePodName } from '../../src/controllers/restore-pod.ts';
import { verifySnapshotFile } from '../../src/engine/etcd-snapshot.ts';
import {
  ControllerProcess, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, events,
  eventually, getJson, hostPathClaim, kubectl, kubedrImage, locationSecretYaml, locationYaml, metricValue, pem, policyYaml,
  uniqueBucket, locationInit
} from '../support/e2e.ts';
import { createS3User, newS3Keys } from '../support/s3.ts';

let ns: string;
let controller: ControllerProcess;
let work: string;
let record: MetadataBackupRecord;
let image: string;
const volumes = new Set<string>();
const password = `restore-pw-${crypto.randomUUID()}`;
/** S3 keys of a user of this run's own: the server checks them, and finding them in output proves a leak. */
const s3Keys = newS3Keys('restore');
const START_TIMEOUT_S = 8;

const restore = (name: string) => getJson<MetadataRestore>(['mr', name, '-n', ns]);
const podOf = (name: string) => kubectl(['get', 'pod', restorePodName(name), '-n', ns, '-o', 'json']);

function restoreYaml(name: string, mbrName: string, pvcName: string): string {
  return `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataRestore
metadata: { name: ${name}, namespace: ${ns} }
spec: { mbrName: ${mbrName}, pvcName: ${pvcName} }
`;
}

/** A claim bound to a fresh hostPath directory under the test's work dir; returns that directory. */
async function claim(name: string, mode = 0o777): Promise<string> {
  const dir = join(work, name);
  volumes.add(await hostPathClaim(ns, name, dir, mode));
  return dir;
}

/** A claim no volume will ever satisfy: its storage class has neither volumes nor a provisioner. */
function pendingClaim(name: string): void {
  apply(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: { name: ${name}, namespace: ${ns} }
spec: { accessModes: [ReadWriteOnce], storageClassName: no-such-class, resources: { requests: { storage: 1Gi } } }
`);
}

async function finished(name: string, timeoutMs = 90_000): Promise<MetadataRestore> {
  return eventually(() => {
    const r = restore(name);
    if (r.status?.restoreStatus !== 'Completed' && r.status?.restoreStatus !== 'Failed') throw new Error(JSON.stringify(r.status));
    return r;
  }, timeoutMs);
}

const waitForPod = (name: string) => eventually(() => {
  const r = podOf(name);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as Pod;
});

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).filter((f) => statSync(join(dir, f)).isFile())
    .map((f) => relative(dir, join(dir, f))).sort();
}

const controllerArgs = (restoreImage: string, more: string[] = []) =>
  ['--restore-image', restoreImage, '--restore-start-timeout', `${START_TIMEOUT_S}s`, ...more];

beforeAll(async () => {
  ensureCrds();
  image = kubedrImage();
  ns = createNamespace('restore');
  work = mkdtempSync(join(tmpdir(), 'restore-e2e-'));
  createS3User(s3Keys);
  apply(locationSecretYaml(ns, { name: 's3-creds', password, ...s3Keys }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: uniqueBucket('restore'), credentials: 's3-creds' }));
  apply(policyYaml(ns, 'pol'));
  controller = await ControllerProcess.start(ns, controllerArgs(image));
  await locationInit(ns, 'loc', 'Completed');
  const p = await backupNow(ns, 'pol');
  expect(p.status?.backupStatus).toBe('Completed');
  record = getJson<MetadataBackupRecord>(['mbr', p.status!.mbrName!, '-n', ns]);
});

afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
  if (volumes.size) kubectl(['delete', 'pv', ...volumes, '--wait=false']);
  rmSync(work, { recursive: true, force: true });
});

/** Every state of the namespace's pods as the API reports them, from a `kubectl get --watch` started beforehand. */
function watchPods(): { seen: (name: string) => Pod[]; stop: () => void } {
  const proc = Bun.spawn(['kubectl', '--kubeconfig', cluster().kubeconfig, 'get', 'pods', '-n', ns, '--watch', '-o', 'json'],
    { stdout: 'pipe', stderr: 'ignore' });
  let text = '';
  void (async () => {
    const d = new TextDecoder();
    for await (const c of proc.stdout) text += d.decode(c, { stream: true });
  })();
  return {
    // kubectl prints each object as indented JSON whose closing brace is the only one in column 0.
    seen: (name) => text.split(/^}$/m).filter((t) => t.trim()).map((t) => JSON.parse(`${t}}`) as Pod)
      .filter((p) => p.metadata.name === name),
    stop: () => proc.kill(),
  };
}

const taints = () => getJson<Builtin<V1Node>>(['node', cluster().node]).spec?.taints ?? [];

describe('a restore into a claim bound to a hostPath volume, on a node tainted as a control plane', () => {
  let dir: string;
  let states: Pod[];

  test('the pod from the controller image is scheduled despite the taint, run by the kubelet, and ends Completed', async () => {
    // The taint kubeadm puts on a control-plane node stays: a restore pod must tolerate it.
    expect(taints()).toContainEqual(expect.objectContaining({ key: 'node-role.kubernetes.io/master', effect: 'NoSchedule' }));
    dir = await claim('claim');
    const watch = watchPods();
    try {
      apply(restoreYaml('r1', record.metadata.name, 'claim'));
      const done = await finished('r1');
      await eventually(() => expect(watch.seen(restorePodName('r1')).some((p) => p.metadata.deletionTimestamp)).toBe(true));
      states = watch.seen(restorePodName('r1'));
      expect(done.status).toMatchObject({ restoreStatus: 'Completed', restoreErrorMessage: '', observedGeneration: 1 });
      expect(Date.parse(done.status?.restoreTime ?? '')).toBeGreaterThan(Date.now() - 120_000);
    } finally {
      watch.stop();
    }
    expect(states.some((p) => p.status?.phase === 'Succeeded')).toBe(true);
    // As on a Job: a user (or a script) can wait for the restore.
    expect(kubectl(['wait', '--for=condition=Complete', '--timeout=5s', 'mr/r1', '-n', ns]).code).toBe(0);
    expect(events(ns, 'r1').map((e) => [e.type, e.reason, e.message])).toContainEqual(['Normal', RESTORE_SUCCEEDED, messages.restoreSucceeded(record.spec.snapshotId)]);
  });

  test('the pod ran on the node from the controller image, non-root, with credentials only as Secret references (the password as a file)', () => {
    const pod = states[0]!;
    const spec = pod.spec as Record<string, any>;
    expect(states.at(-1)!.spec?.nodeName).toBe(cluster().node);
    const c = spec.containers[0];
    expect(c.image).toBe(image);
    expect(spec.restartPolicy).toBe('Never');
    expect(c.resources.requests).toEqual({ cpu: '100m', memory: '256Mi' });
    expect(spec.securityContext.runAsNonRoot).toBe(true);
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(spec.volumes).toContainEqual({ name: 'target', persistentVolumeClaim: { claimName: 'claim' } });
    expect(c.args.slice(0, 2)).toEqual(['restore', record.spec.snapshotId]);
    const byName = Object.fromEntries(c.env.map((e: { name: string }) => [e.name, e]));
    // The password: a file of the Secret's key (read by uid 65532 through fsGroup), never an environment variable.
    expect(byName.RESTIC_PASSWORD).toBeUndefined();
    expect(byName.RESTIC_PASSWORD_FILE.value).toBe('/var/run/kubedr/repository/restic_repo_password');
    expect(spec.volumes).toContainEqual({ name: 'repository-password',
      secret: { secretName: 's3-creds', items: [{ key: 'restic_repo_password', path: 'restic_repo_password' }], defaultMode: 0o400 } });
    expect(byName.AWS_SECRET_ACCESS_KEY.valueFrom.secretKeyRef).toEqual({ name: 's3-creds', key: 'secret_key' });
    const podJson = JSON.stringify(states);
    expect(podJson.includes(password) || podJson.includes(s3Keys.secretKey)).toBe(false);
  });

  test('the volume holds the backup byte for byte: a verified etcd snapshot with the recorded hash and the certificates', async () => {
    expect(await verifySnapshotFile(join(dir, 'data/etcd-snapshot.db'))).toBe(record.status!.etcdSnapshotSha256!);
    const certs = join(dir, 'data/certificates');
    expect(filesUnder(certs)).toEqual(filesUnder(cluster().pki));
    for (const f of filesUnder(cluster().pki)) expect(readFileSync(join(certs, f)).equals(readFileSync(join(cluster().pki, f)))).toBe(true);
    expect(readdirSync(dir)).toEqual(['data']);
  });

  test('the finished pod is deleted and the restore is not run again', async () => {
    await eventually(() => expect(podOf('r1').code).not.toBe(0));
    await Bun.sleep(1500);
    expect(podOf('r1').code).not.toBe(0);
    expect(restore('r1').status?.restoreStatus).toBe('Completed');
    expect(metricValue(await controller.metrics(), 'kubedr_num_restores')).toBe(1);
  });

  test('a volume that ignores fsGroup and is not writable for the pod fails at once, saying what to change', async () => {
    // hostPath and local volumes keep their owner: a root-owned 0755 directory, as `mkdir` on the node leaves it.
    const rootOwned = await claim('claim-root-owned', 0o755);
    apply(restoreYaml('root-owned', record.metadata.name, 'claim-root-owned'));
    const r = await finished('root-owned');
    expect(r.status?.restoreStatus).toBe('Failed');
    expect(r.status?.restoreErrorMessage).toMatch(/not writable by uid 65532/);
    expect(r.status?.restoreErrorMessage).toMatch(/fsGroup/);
    expect(events(ns, 'root-owned').map((e) => [e.type, e.reason, e.message])).toContainEqual(['Warning', RESTORE_FAILED, r.status!.restoreErrorMessage!]);
    expect(readdirSync(rootOwned)).toEqual([]);
  });
});

describe('bad input ends in Failed with the reason, a Warning event, and no pod', () => {
  const cases: { name: string; setup?: () => Promise<void> | void; mbr?: string; pvc?: string; message: RegExp }[] = [
    { name: 'no-record', mbr: 'mbr-nonexistent', message: /MetadataBackupRecord "mbr-nonexistent" not found/ },
    {
      name: 'gone-snapshot', mbr: 'mbr-0123abcd',
      setup: () => apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupRecord
metadata: { name: mbr-0123abcd, namespace: ${ns} }
spec: { snapshotId: "0123abcd", policy: pol, backuploc: loc }
`),
      message: /snapshot 0123abcd of MetadataBackupRecord "mbr-0123abcd" is no longer in BackupLocation "loc"'s repository/,
    },
    { name: 'no-claim', pvc: 'nonexistent-claim', message: /PersistentVolumeClaim "nonexistent-claim" not found/ },
    { name: 'unbound-claim', pvc: 'pending-claim', setup: () => pendingClaim('pending-claim'), message: /PersistentVolumeClaim "pending-claim" is not bound \(phase Pending\)/ },
    {
      name: 'location-not-ready', mbr: 'mbr-badloc',
      setup: async () => {
        apply(locationYaml(ns, 'loc-no-secret', { bucketName: uniqueBucket('nosecret'), credentials: 'missing-secret' }));
        await locationInit(ns, 'loc-no-secret', 'Failed');
        apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupRecord
metadata: { name: mbr-badloc, namespace: ${ns} }
spec: { snapshotId: "${record.spec.snapshotId}", policy: pol, backuploc: loc-no-secret }
`);
      },
      message: /BackupLocation "loc-no-secret" is not ready: credentials Secret "missing-secret" not found/,
    },
  ];
  beforeAll(() => claim('claim-bad-input'));
  for (const c of cases) {
    test(c.name, async () => {
      await c.setup?.();
      apply(restoreYaml(c.name, c.mbr ?? record.metadata.name, c.pvc ?? 'claim-bad-input'));
      const r = await finished(c.name);
      expect(r.status?.restoreStatus).toBe('Failed');
      expect(r.status?.restoreErrorMessage).toMatch(c.message);
      expect(r.status?.observedGeneration).toBe(1);
      expect(events(ns, c.name).map((e) => [e.type, e.reason, e.message])).toContainEqual(['Warning', RESTORE_FAILED, r.status!.restoreErrorMessage!]);
      expect(podOf(c.name).code).not.toBe(0);
    });
  }

  test('each finished restore is counted once: 1 completed, 1 not writable and 5 bad inputs', async () => {
    const text = await controller.metrics();
    expect(metricValue(text, 'kubedr_num_restores')).toBe(7);
    expect(metricValue(text, 'kubedr_num_failed_restores')).toBe(6);
  });
});

describe('a restore pod that does not finish properly', () => {
  /** The controller restarted with other restore-pod settings (a controller serves one image and placement). */
  async function restartController(args: string[]): Promise<void> {
    await controller.stop();
    controller = await ControllerProcess.start(ns, args);
  }

  test('a pod whose image cannot be pulled fails the restore within the start timeout, with the kubelet\'s reason', async () => {
    await restartController(controllerArgs('localhost/kubedr:no-such-tag'));
    await claim('claim-stuck');
    apply(restoreYaml('stuck', record.metadata.name, 'claim-stuck'));
    const r = await finished('stuck');
    expect(r.status?.restoreErrorMessage).toMatch(new RegExp(`^restore pod ${restorePodName('stuck')} did not start within ${START_TIMEOUT_S} s: (ErrImagePull|ImagePullBackOff): `));
    await eventually(() => expect(podOf('stuck').code).not.toBe(0));
  });

  test('a pod no node can take fails the restore within the start timeout, with the scheduler\'s reason', async () => {
    await restartController(controllerArgs(image, ['--restore-node-selector', 'kubedr.test/no-such-node=true']));
    await claim('claim-unscheduled');
    apply(restoreYaml('unscheduled', record.metadata.name, 'claim-unscheduled'));
    const r = await finished('unscheduled');
    expect(r.status?.restoreErrorMessage).toMatch(/did not start within \d+ s: Unschedulable: 0\/1 nodes are available: 1 node\(s\) didn't match (node selector|Pod's node affinity)/);
  });

  test('a deleted pod fails the restore', async () => {
    await claim('claim-deleted');
    apply(restoreYaml('deleted', record.metadata.name, 'claim-deleted'));
    await waitForPod('deleted');
    expect(kubectl(['delete', 'pod', restorePodName('deleted'), '-n', ns]).code).toBe(0);
    const r = await finished('deleted');
    expect(r.status?.restoreErrorMessage).toBe(`restore pod ${restorePodName('deleted')} was deleted before it finished`);
  });

  test('a restore that fails in the pod reports the pod\'s own error (a backup that does not match its record)', async () => {
    await restartController(controllerArgs(image));
    // The record now claims another hash, as if the stored snapshot had changed since the backup.
    const wrong = 'f'.repeat(64);
    const copy = `mbr-tampered`;
    apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupRecord
metadata: { name: ${copy}, namespace: ${ns} }
spec: { snapshotId: "${record.spec.snapshotId}", policy: pol, backuploc: loc }
`);
    const patched = kubectl(['patch', 'mbr', copy, '-n', ns, '--subresource=status', '--type', 'merge', '-p',
      JSON.stringify({ status: { etcdSnapshotSha256: wrong } })]);
    expect(patched.stderr).toBe('');
    const dir = await claim('claim-tampered');
    apply(restoreYaml('tampered', copy, 'claim-tampered'));
    const r = await finished('tampered');
    expect(r.status?.restoreStatus).toBe('Failed');
    expect(r.status?.restoreErrorMessage).toBe(`restored etcd snapshot has SHA-256 ${record.status!.etcdSnapshotSha256}, but the backup record says ${wrong}`);
    // Nothing unverified was left in the claim.
    expect(readdirSync(dir)).toEqual([]);
    const text = await controller.metrics();
    expect(metricValue(text, 'kubedr_num_failed_restores')).toBe(1);
  });
});

test('no credential appears in logs, events, status or pods', () => {
  const leaks = (text: string) => [password, s3Keys.secretKey, pem('etcd/healthcheck-client.key').split('\n')[1]!].filter((s) => text.includes(s));
  expect(leaks(controller.logs)).toEqual([]);
  expect(leaks(kubectl(['get', 'events,mr,mbr,bl,pods', '-n', ns, '-o', 'json']).stdout)).toEqual([]);
});
