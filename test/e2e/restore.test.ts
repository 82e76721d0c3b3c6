/**
 * MetadataRestore end to end: the controller (a real process) checks the record, location and claim, and creates a
 * restore pod; a real backup of the test cluster's etcd and PKI, in restic on S3, is restored by `kubedr restore`.
 * Played openly, because the local cluster runs no kubelet, scheduler or controller-manager: test/support/kubelet.ts
 * runs the pod's container locally (claim → a directory) and writes the pod's status; the tests mark claims Bound
 * (the PV controller's job) and write pod states a kubelet would report (image pull failure, running).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { RESTORE_FAILED, RESTORE_SUCCEEDED, messages } from '../../src/api/events.ts';
import { PVC } from '../../src/api/group.ts';
import type { MetadataBackupRecord, MetadataRestore, Pod } from '../../src/api/types.ts';
import { restorePodName } from '../../src/controllers/restore-pod.ts';
import { verifySnapshotFile } from '../../src/engine/etcd-snapshot.ts';
import {
  ControllerProcess, admin, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, events,
  eventually, getJson, kubectl, locationSecretYaml, locationYaml, metricValue, pem, policyYaml, uniqueBucket,
} from '../support/e2e.ts';
import { containerStatus, runPodAsKubelet, setPodStatus } from '../support/kubelet.ts';

let ns: string;
let controller: ControllerProcess;
let work: string;
let record: MetadataBackupRecord;
const password = `restore-pw-${crypto.randomUUID()}`;
const secretKey = `restore-sk-${crypto.randomUUID()}`;
const START_TIMEOUT_S = 4;

const restore = (name: string) => getJson<MetadataRestore>(['mr', name, '-n', ns]);
const podOf = (name: string) => kubectl(['get', 'pod', restorePodName(name), '-n', ns, '-o', 'json']);

function restoreYaml(name: string, mbrName: string, pvcName: string): string {
  return `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataRestore
metadata: { name: ${name}, namespace: ${ns} }
spec: { mbrName: ${mbrName}, pvcName: ${pvcName} }
`;
}

/** A claim; `bound` plays the PV controller, which would bind it to a volume. */
async function claim(name: string, bound: boolean): Promise<void> {
  apply(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: { name: ${name}, namespace: ${ns} }
spec: { accessModes: [ReadWriteOnce], resources: { requests: { storage: 1Gi } } }
`);
  if (bound) await admin().patchStatus(PVC, ns, name, { phase: 'Bound', accessModes: ['ReadWriteOnce'], capacity: { storage: '1Gi' } });
}

async function finished(name: string): Promise<MetadataRestore> {
  return eventually(() => {
    const r = restore(name);
    if (r.status?.restoreStatus !== 'Completed' && r.status?.restoreStatus !== 'Failed') throw new Error(JSON.stringify(r.status));
    return r;
  }, 60_000);
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

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('restore');
  work = mkdtempSync(join(tmpdir(), 'restore-e2e-'));
  apply(locationSecretYaml(ns, { name: 's3-creds', password, secretKey }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: uniqueBucket('restore'), credentials: 's3-creds' }));
  apply(policyYaml(ns, 'pol'));
  controller = await ControllerProcess.start(ns, ['--restore-image', 'kubedr:test', '--restore-start-timeout', `${START_TIMEOUT_S}s`]);
  await eventually(() => expect(getJson<{ status?: { initStatus?: string } }>(['bl', 'loc', '-n', ns]).status?.initStatus).toBe('Completed'));
  const p = await backupNow(ns, 'pol');
  expect(p.status?.backupStatus).toBe('Completed');
  record = getJson<MetadataBackupRecord>(['mbr', p.status!.mbrName!, '-n', ns]);
});

afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
  rmSync(work, { recursive: true, force: true });
});

describe('a restore into a bound claim', () => {
  let pod: Pod;
  let dir: string;

  test('creates one restore pod from the controller image, with credentials only as Secret references', async () => {
    await claim('claim', true);
    apply(restoreYaml('r1', record.metadata.name, 'claim'));
    pod = await waitForPod('r1');
    expect(restore('r1').status?.restoreStatus).toBe('Running');
    const spec = pod.spec as Record<string, any>;
    const c = spec.containers[0];
    expect(c.image).toBe('kubedr:test');
    expect(spec.restartPolicy).toBe('Never');
    expect(c.resources.requests).toEqual({ cpu: '100m', memory: '256Mi' });
    expect(spec.securityContext.runAsNonRoot).toBe(true);
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(spec.volumes).toContainEqual({ name: 'target', persistentVolumeClaim: { claimName: 'claim' } });
    expect(c.args.slice(0, 2)).toEqual(['restore', record.spec.snapshotId]);
    const byName = Object.fromEntries(c.env.map((e: { name: string }) => [e.name, e]));
    expect(byName.RESTIC_PASSWORD.valueFrom.secretKeyRef).toEqual({ name: 's3-creds', key: 'restic_repo_password' });
    expect(byName.AWS_SECRET_ACCESS_KEY.valueFrom.secretKeyRef).toEqual({ name: 's3-creds', key: 'secret_key' });
    const podJson = JSON.stringify(pod);
    expect(podJson.includes(password) || podJson.includes(secretKey)).toBe(false);
  });

  test('the pod restores the backup byte for byte, and the controller reports Completed', async () => {
    dir = join(work, 'claim');
    const run = await runPodAsKubelet(ns, restorePodName('r1'), { claim: dir });
    expect(run.stderr).toContain('verifying data/etcd-snapshot.db');
    expect(run.code).toBe(0);

    const done = await finished('r1');
    expect(done.status).toMatchObject({ restoreStatus: 'Completed', restoreErrorMessage: '', observedGeneration: 1 });
    expect(Date.parse(done.status?.restoreTime ?? '')).toBeGreaterThan(Date.now() - 120_000);
    const ev = events(ns, 'r1');
    expect(ev.map((e) => [e.type, e.reason, e.message])).toContainEqual(['Normal', RESTORE_SUCCEEDED, messages.restoreSucceeded(record.spec.snapshotId)]);

    // What a user would check: the etcd snapshot verifies and has the recorded hash; the certificates are the originals.
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
});

describe('bad input ends in Failed with the reason, a Warning event, and no pod', () => {
  const cases: { name: string; setup?: () => Promise<void>; mbr?: string; pvc?: string; message: RegExp }[] = [
    { name: 'no-record', mbr: 'mbr-nonexistent', message: /MetadataBackupRecord "mbr-nonexistent" not found/ },
    {
      name: 'gone-snapshot', mbr: 'mbr-0123abcd',
      setup: async () => apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupRecord
metadata: { name: mbr-0123abcd, namespace: ${ns} }
spec: { snapshotId: 0123abcd, policy: pol, backuploc: loc }
`),
      message: /snapshot 0123abcd of MetadataBackupRecord "mbr-0123abcd" is no longer in BackupLocation "loc"'s repository/,
    },
    { name: 'no-claim', pvc: 'nonexistent-claim', message: /PersistentVolumeClaim "nonexistent-claim" not found/ },
    { name: 'unbound-claim', pvc: 'pending-claim', setup: () => claim('pending-claim', false), message: /PersistentVolumeClaim "pending-claim" is not bound \(phase Pending\)/ },
    {
      name: 'location-not-ready', mbr: 'mbr-badloc',
      setup: async () => {
        apply(locationYaml(ns, 'loc-no-secret', { bucketName: uniqueBucket('nosecret'), credentials: 'missing-secret' }));
        await eventually(() => expect(getJson<{ status?: { initStatus?: string } }>(['bl', 'loc-no-secret', '-n', ns]).status?.initStatus).toBe('Failed'));
        apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupRecord
metadata: { name: mbr-badloc, namespace: ${ns} }
spec: { snapshotId: ${record.spec.snapshotId}, policy: pol, backuploc: loc-no-secret }
`);
      },
      message: /BackupLocation "loc-no-secret" is not ready: credentials Secret "missing-secret" not found/,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      await claim('claim-bad-input', true);
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
});

describe('a restore pod that does not finish properly', () => {
  test('a pod that never starts (image pull failure) fails the restore within the start timeout, with the reason', async () => {
    await claim('claim-stuck', true);
    apply(restoreYaml('stuck', record.metadata.name, 'claim-stuck'));
    await waitForPod('stuck');
    // The kubelet's report of an image it cannot pull.
    await setPodStatus(ns, restorePodName('stuck'), {
      phase: 'Pending',
      conditions: [{ type: 'PodScheduled', status: 'True' }],
      containerStatuses: [containerStatus('restore', { waiting: { reason: 'ErrImagePull', message: 'pull access denied for kubedr:test' } })],
    });
    const r = await finished('stuck');
    expect(r.status?.restoreErrorMessage).toBe(`restore pod ${restorePodName('stuck')} did not start within ${START_TIMEOUT_S} s: ErrImagePull: pull access denied for kubedr:test`);
    await eventually(() => expect(podOf('stuck').code).not.toBe(0));
  });

  test('an unscheduled pod fails the restore within the start timeout', async () => {
    await claim('claim-unscheduled', true);
    apply(restoreYaml('unscheduled', record.metadata.name, 'claim-unscheduled'));
    const r = await finished('unscheduled');
    expect(r.status?.restoreErrorMessage).toMatch(/did not start within 4 s: not scheduled to a node/);
  });

  test('a deleted pod fails the restore', async () => {
    await claim('claim-deleted', true);
    apply(restoreYaml('deleted', record.metadata.name, 'claim-deleted'));
    await waitForPod('deleted');
    await setPodStatus(ns, restorePodName('deleted'), {
      phase: 'Running', containerStatuses: [containerStatus('restore', { running: { startedAt: new Date().toISOString() } })],
    });
    expect(kubectl(['delete', 'pod', restorePodName('deleted'), '-n', ns]).code).toBe(0);
    const r = await finished('deleted');
    expect(r.status?.restoreErrorMessage).toBe(`restore pod ${restorePodName('deleted')} was deleted before it finished`);
  });

  test('a restore that fails in the pod reports the pod\'s own error (a backup that does not match its record)', async () => {
    // The record now claims another hash, as if the stored snapshot had changed since the backup.
    const wrong = 'f'.repeat(64);
    const copy = `mbr-tampered`;
    apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupRecord
metadata: { name: ${copy}, namespace: ${ns} }
spec: { snapshotId: ${record.spec.snapshotId}, policy: pol, backuploc: loc }
`);
    const patched = kubectl(['patch', 'mbr', copy, '-n', ns, '--subresource=status', '--type', 'merge', '-p',
      JSON.stringify({ status: { etcdSnapshotSha256: wrong } })]);
    expect(patched.stderr).toBe('');
    await claim('claim-tampered', true);
    apply(restoreYaml('tampered', copy, 'claim-tampered'));
    await waitForPod('tampered');
    const dir = join(work, 'tampered');
    const run = await runPodAsKubelet(ns, restorePodName('tampered'), { 'claim-tampered': dir });
    expect(run.code).toBe(6);
    const r = await finished('tampered');
    expect(r.status?.restoreStatus).toBe('Failed');
    expect(r.status?.restoreErrorMessage).toBe(`restored etcd snapshot has SHA-256 ${record.status!.etcdSnapshotSha256}, but the backup record says ${wrong}`);
    // Nothing unverified was left in the claim.
    expect(readdirSync(dir)).toEqual([]);
  });
});

test('no credential appears in logs, events, status or pods', () => {
  const leaks = (text: string) => [password, secretKey, pem('etcd/healthcheck-client.key').split('\n')[1]!].filter((s) => text.includes(s));
  expect(leaks(controller.logs)).toEqual([]);
  expect(leaks(kubectl(['get', 'events,mr,mbr,bl,pods', '-n', ns, '-o', 'json']).stdout)).toEqual([]);
});

test('each finished restore is counted once: 1 completed and 9 failed above', async () => {
  const text = await controller.metrics();
  expect(metricValue(text, 'kubedr_num_restores')).toBe(10);
  expect(metricValue(text, 'kubedr_num_failed_restores')).toBe(9);
});
