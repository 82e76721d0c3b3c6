/** The verification pod, a pure function of its inputs, and how its answer is read back (fake pods). */
import { describe, expect, test } from 'bun:test';
import type { BackupLocation, MetadataBackupRecord, Pod } from '../../src/api/types.ts';
import { VerificationPods, chainVerificationPod, verificationOutcome, verificationPod, verificationPodName, verificationResources } from '../../src/controllers/verification-pod.ts';
import { EngineError } from '../../src/engine/errors.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { createLogger } from '../../src/util/log.ts';

const location: BackupLocation = {
  metadata: { name: 'loc', namespace: 'kubedr-system' }, spec: { url: 'https://s3.example.com', bucketName: 'backups', credentials: 's3-creds' },
};
const record: MetadataBackupRecord = {
  metadata: { name: 'mbr-abcdef12', namespace: 'kubedr-system', uid: 'u-1' }, spec: { snapshotId: 'abcdef12', policy: 'p', backuploc: 'loc' },
  status: { etcdSnapshotSha256: 'f'.repeat(64), etcdSnapshotSize: 1209 * 1024 * 1024 },
};
const pod = (terminated: object, phase = 'Failed'): Pod => ({ metadata: { name: 'x' }, status: { phase, containerStatuses: [
  { name: 'verify', image: 'i', imageID: '', ready: false, restartCount: 0, state: { terminated: { exitCode: 1, ...terminated } } }] } } as Pod);

describe('the verification pod', () => {
  const p = verificationPod({ record, location, image: 'localhost/kubedr:0.1.0', deadlineSeconds: 1800 });
  const c = p.spec!.containers[0]!;

  test('runs kubedr verify of the record\'s snapshot, under restic\'s shared lock, against the record\'s SHA-256, with its outcome in the termination log', () => {
    expect(p.metadata.name).toBe('kubedr-verify-mbr-abcdef12');
    expect(c.args).toEqual(['verify', 'abcdef12', '--lock', '--timeout', '1740s', '--expect-sha256', 'f'.repeat(64), '--url', 'https://s3.example.com',
      '--bucket', 'backups', '--termination-log', '/dev/termination-log']);
    expect(p.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'MetadataBackupRecord', name: 'mbr-abcdef12', uid: 'u-1' });
    expect(p.spec?.automountServiceAccountToken).toBe(false);
    expect(p.spec?.tolerations?.length).toBeGreaterThan(0);
  });

  test('holds no secret value: the credentials come from the location\'s Secret by reference', () => {
    expect(c.env?.filter((e) => e.valueFrom).map((e) => [e.name, e.valueFrom?.secretKeyRef?.name])).toEqual([
      ['AWS_ACCESS_KEY_ID', 's3-creds'], ['AWS_SECRET_ACCESS_KEY', 's3-creds'], ['KUBEDR_S3_CA_CERT', 's3-creds']]);
    // The password: a file of the Secret's key, mounted read-only; the environment says only where.
    expect(c.env?.filter((e) => e.value !== undefined).map((e) => e.name)).toEqual(['RESTIC_PASSWORD_FILE', 'TMPDIR']);
    expect(p.spec?.volumes?.find((v) => v.name === 'repository-password')?.secret?.secretName).toBe('s3-creds');
  });

  test('memory and scratch space follow the snapshot\'s size (the throwaway etcd maps it whole)', () => {
    expect(verificationResources(1209 * 1024 * 1024)).toEqual({ memoryMi: 1768, scratchMi: 2674 });
    expect(verificationResources(undefined)).toEqual({ memoryMi: 512, scratchMi: 256 });
    expect(c.resources?.limits?.memory).toBe('1768Mi');
    expect(p.spec?.volumes?.[0]?.emptyDir?.sizeLimit).toBe('2674Mi');
  });

  test('a long record name still makes a valid pod name', () => {
    expect(verificationPodName(`mbr-${'a'.repeat(80)}`)).toHaveLength(63);
  });
});

describe('its answer', () => {
  test('success: the result as kubedr verify wrote it', () => {
    const result = { snapshotId: 'abcdef12', sha256: 'f'.repeat(64), etcdSnapshotSize: 4096, revision: 7, keyCount: 300, durationSecs: 2 };
    expect(verificationOutcome(pod({ exitCode: 0, message: JSON.stringify({ ok: true, ...result }) }, 'Succeeded'))).toEqual(result);
  });

  test('a failure keeps its kind and words (so damaged data has the repository checked)', () => {
    const message = JSON.stringify({ ok: false, kind: 'IntegrityError', error: 'the repository\'s data is damaged: ciphertext verification failed' });
    expect(() => verificationOutcome(pod({ message }))).toThrow(new EngineError('IntegrityError', 'the repository\'s data is damaged: ciphertext verification failed'));
  });

  test('killed for memory: said plainly, and not taken for damaged data', () => {
    let err: unknown;
    try {
      verificationOutcome(pod({ exitCode: 137, reason: 'OOMKilled' }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).message).toBe('verification pod failed: exit code 137 (OOMKilled)');
    expect((err as EngineError).kind).not.toBe('Failed');
  });
});

describe('VerificationPods.verify (fake API)', () => {
  const result = { snapshotId: 'abcdef12', sha256: 'f'.repeat(64), etcdSnapshotSize: 4096, revision: 7, keyCount: 300, durationSecs: 2 };
  function api(podStates: (Pod | 'gone')[]) {
    const calls: string[] = [];
    let created: Pod | undefined;
    const client = {
      get: async (ref: { plural: string }, _ns: string, name: string) => {
        calls.push(`get ${ref.plural}/${name}`);
        if (ref.plural === 'metadatabackuprecords') return { ...record, metadata: { ...record.metadata, uid: 'from-the-api' } };
        const next = podStates.shift() ?? podStates.at(-1);
        if (next === 'gone' || next === undefined) throw new ApiError(404, 'NotFound', 'pods not found', 'GET', '/x');
        return next;
      },
      create: async (_ref: unknown, _ns: string, pod: Pod) => {
        calls.push(`create ${pod.metadata.name}`);
        created = pod;
        return pod;
      },
      delete: async (ref: { plural: string }, _ns: string, name: string) => void calls.push(`delete ${ref.plural}/${name}`),
    } as unknown as KubeClient;
    const pods = new VerificationPods({ client, log: createLogger({ level: 'error' }), image: 'i', deadlineSeconds: 600, startTimeoutMs: 60_000, pollMs: 1 });
    return { pods, calls, created: () => created };
  }
  const fresh = { ...record, metadata: { name: 'mbr-abcdef12', namespace: 'kubedr-system' } };

  test('a record just made (no uid here): its uid is read from the API for the pod\'s owner; the answer read, the pod deleted', async () => {
    const t = api([pod({ exitCode: 0, message: JSON.stringify({ ok: true, ...result }) }, 'Succeeded')]);
    expect(await t.pods.verify(location, fresh, new AbortController().signal)).toEqual(result);
    expect(t.created()?.metadata.ownerReferences?.[0]?.uid).toBe('from-the-api');
    expect(t.calls).toEqual(['get metadatabackuprecords/mbr-abcdef12', 'delete pods/kubedr-verify-mbr-abcdef12', 'create kubedr-verify-mbr-abcdef12',
      'get pods/kubedr-verify-mbr-abcdef12', 'delete pods/kubedr-verify-mbr-abcdef12']);
  });

  test('the pod deleted before it answered (with its record): cancelled, not taken for damaged data', async () => {
    const t = api(['gone']);
    const err = await t.pods.verify(location, record, new AbortController().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).kind).toBe('Cancelled');
  });
});

describe('the chain verification pod', () => {
  const policy = { metadata: { name: 'etcd', namespace: 'kubedr-system', uid: 'p-1' }, spec: { destination: 'loc', schedule: '@hourly' } };
  const p = chainVerificationPod({ policy, location, revision: 4242, compactRevision: 4000, sizeBytes: 1209 * 1024 * 1024, image: 'localhost/kubedr:0.1.0', deadlineSeconds: 1800 });
  const c = p.spec!.containers[0]!;

  test('runs kubedr verify --continuous of the policy at the revision (compacted as the live etcd is) under the shared lock, belongs to the policy, and carries no secret value', () => {
    expect(p.metadata.name).toBe('kubedr-verify-chain-etcd');
    expect(c.args).toEqual(['verify', '--continuous', '--policy', 'etcd', '--revision', '4242', '--lock', '--compact-revision', '4000', '--url', 'https://s3.example.com', '--bucket', 'backups',
      '--termination-log', '/dev/termination-log']);
    expect(p.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'MetadataBackupPolicy', name: 'etcd', uid: 'p-1' });
    // A live etcd that never compacted says -1: no flag then.
    expect(chainVerificationPod({ policy, location, revision: 42, compactRevision: -1, image: 'i', deadlineSeconds: 60 }).spec!.containers[0]!.args)
      .not.toContain('--compact-revision');
    expect(c.env?.filter((e) => e.value !== undefined).map((e) => e.name)).toEqual(['RESTIC_PASSWORD_FILE', 'TMPDIR']);
    expect(p.spec?.activeDeadlineSeconds).toBe(1800);
  });

  test('has room for the replay: more memory and scratch space than a verification of the full backup alone', () => {
    const full = verificationPod({ record, location, image: 'i', deadlineSeconds: 1800 });
    const mem = (x: Pod) => Number.parseInt(String(x.spec!.containers[0]!.resources?.limits?.memory), 10);
    const scratch = (x: Pod) => Number.parseInt(String(x.spec!.volumes![0]!.emptyDir?.sizeLimit), 10);
    expect(mem(p)).toBeGreaterThan(mem(full));
    expect(scratch(p)).toBeGreaterThan(scratch(full));
  });
});
