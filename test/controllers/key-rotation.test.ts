/**
 * Key rotation's decisions, and the location reconciler taking a rotation through its steps against a stand-in
 * repository (passwords → key ids; the e2e test runs real restic). Each step is checked from what a user reads: status,
 * events, which password opens the repository, and that no password value shows in any of them.
 */
import { describe, expect, test } from 'bun:test';
import { KEY_ADDED, KEY_REMOVED, KEY_ROTATION_FAILED, KEY_SWITCHED } from '../../src/api/events.ts';
import type { BackupLocation, Secret } from '../../src/api/types.ts';
import { BackupLocationReconciler } from '../../src/controllers/backup-location.ts';
import { locationRepository, passwordInUse } from '../../src/controllers/inputs.ts';
import { type KeyRotation, decideRotation, rotationPending } from '../../src/controllers/key-rotation.ts';
import { EngineError } from '../../src/engine/errors.ts';
import type { Repository, Restic, RunOptions } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { createMetrics } from '../../src/metrics/registry.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

const OLD = 'old-password-1';
const NEW = 'new-password-2';
const switched: KeyRotation = { phase: 'Switched', oldKeyId: 'k-old', newKeyId: 'k-new' };

describe('decideRotation', () => {
  const keys = (current: string, ...others: string[]) => [{ id: current, current: true }, ...others.map((id) => ({ id, current: false }))];

  test('a new password that opens nothing is added; once it opens, the controller switches to it', () => {
    expect(decideRotation({ password: OLD, newPassword: NEW }, keys('k-old'), undefined)).toEqual({ kind: 'add' });
    expect(decideRotation({ password: OLD, newPassword: NEW }, keys('k-old', 'k-new'), 'k-new'))
      .toEqual({ kind: 'switch', oldKeyId: 'k-old', newKeyId: 'k-new' });
  });

  test('after a crash between key add and the status write, the added key is found, not added twice', () => {
    // No rotation in status, but the new password already opens: switch, no add.
    expect(decideRotation({ password: OLD, newPassword: NEW }, keys('k-old', 'k-new'), 'k-new').kind).toBe('switch');
  });

  test('restic_repo_password replaced by the new value and the new key gone from the Secret: the old key is removed', () => {
    expect(decideRotation({ password: NEW, rotation: switched }, keys('k-new', 'k-old'), undefined))
      .toEqual({ kind: 'removeOld', keyId: 'k-old', present: true });
    // Removed already (crash before the status write): nothing to run, only to record.
    expect(decideRotation({ password: NEW, rotation: switched }, keys('k-new'), undefined))
      .toEqual({ kind: 'removeOld', keyId: 'k-old', present: false });
  });

  test('restic_repo_new_password removed while restic_repo_password is still the old one: cancelled, the new key goes', () => {
    expect(decideRotation({ password: OLD, rotation: switched }, keys('k-old', 'k-new'), undefined))
      .toEqual({ kind: 'cancel', keyId: 'k-new', present: true });
  });

  test('a password that is neither key of the rotation is not guessed at: the user is told what to put where', () => {
    const step = decideRotation({ password: 'third', rotation: switched }, keys('k-3', 'k-old', 'k-new'), undefined);
    expect(step.kind).toBe('stuck');
    expect(step.kind === 'stuck' && step.message).toContain('restic_repo_password');
  });

  test('a failed removal keeps its key ids and is taken up again; a finished rotation is left alone', () => {
    const failed: KeyRotation = { ...switched, phase: 'Failed' };
    expect(rotationPending({ password: NEW, rotation: failed })).toBe(true);
    expect(decideRotation({ password: NEW, rotation: failed }, keys('k-new', 'k-old'), undefined).kind).toBe('removeOld');
    expect(rotationPending({ password: NEW, rotation: { ...switched, phase: 'Completed' } })).toBe(false);
    expect(rotationPending({ password: NEW, rotation: { phase: 'Failed', oldKeyId: '', newKeyId: '' } })).toBe(false);
    expect(decideRotation({ password: NEW, rotation: { ...switched, phase: 'Completed' } }, keys('k-new'), undefined)).toEqual({ kind: 'none' });
  });

  test('pending: a new password not yet in use, or a switched rotation whose Secret moved on; the same value twice is no rotation', () => {
    expect(rotationPending({ password: OLD, newPassword: NEW })).toBe(true);
    expect(rotationPending({ password: OLD, newPassword: NEW, rotation: switched })).toBe(false);
    expect(rotationPending({ password: NEW, rotation: switched })).toBe(true);
    expect(rotationPending({ password: NEW, newPassword: NEW, rotation: switched })).toBe(true);
    expect(rotationPending({ password: OLD })).toBe(false);
  });

  test('the controller uses the new password only once the rotation has switched to it', () => {
    expect(passwordInUse({ password: OLD, newPassword: NEW })).toBe(OLD);
    expect(passwordInUse({ password: OLD, newPassword: NEW, rotation: switched })).toBe(NEW);
    expect(passwordInUse({ password: NEW, rotation: switched })).toBe(NEW);
  });
});

/** A repository as restic shows it: which password opens which key. Commands as the reconciler runs them. */
class FakeRepo {
  keys = new Map<string, string>([[OLD, 'k-old']]);
  calls: string[] = [];
  failRemove = 0;
  private n = 0;
  readonly restic = {
    lockWaitMs: 0,
    run: async (repo: Repository, args: string[], run: RunOptions = {}) => {
      this.calls.push(args.slice(0, 2).join(' '));
      if (args[0] === 'init') throw new EngineError('Failed', 'Fatal: create key in repository failed: config file already exists');
      const id = this.keys.get(repo.password);
      if (!id) throw new EngineError('WrongPassword', 'wrong repository password (restic_repo_password)');
      if (args[0] === 'cat') return { stdout: '{}', stderr: '' };
      if (args[1] === 'list') return { stdout: JSON.stringify([...this.keys.values()].map((k) => ({ id: k, current: k === id }))), stderr: '' };
      if (args[1] === 'add') {
        this.keys.set(run.newPassword!, `k-added-${++this.n}`);
        return { stdout: '', stderr: '' };
      }
      if (args[1] === 'remove') {
        if (this.failRemove-- > 0) throw new EngineError('Unreachable', 'S3 endpoint unreachable: https://s3.example.com:9000: connection refused');
        for (const [p, k] of this.keys) if (k === args[2]) this.keys.delete(p);
        return { stdout: '', stderr: '' };
      }
      throw new Error(`unexpected restic ${args.join(' ')}`);
    },
  } as unknown as Restic;

  opens(password: string): boolean {
    return this.keys.has(password);
  }
}

function harness(repo: FakeRepo) {
  const b64 = (v: string) => Buffer.from(v).toString('base64');
  const secret: Secret = { metadata: { name: 'creds', namespace: 'ns', resourceVersion: '1' },
    data: { access_key: b64('ak'), secret_key: b64('sk'), restic_repo_password: b64(OLD) } };
  const loc: BackupLocation = {
    metadata: { name: 'loc', namespace: 'ns', generation: 1 },
    spec: { url: 'https://s3.example.com:9000', bucketName: 'backups', credentials: 'creds' },
    status: { initStatus: 'Completed', observedGeneration: 1, observedCredentialsVersion: '1', conditions: [] },
  };
  const statuses: Record<string, unknown>[] = [];
  const events: { type: string; reason: string; message: string }[] = [];
  const client = {
    patchStatus: async (_r: unknown, _ns: string, _n: string, s: NonNullable<BackupLocation['status']>) => {
      statuses.push(s);
      // A merge patch, as the API server applies it.
      loc.status = { ...loc.status, ...s, keyRotation: s.keyRotation ? { ...loc.status?.keyRotation, ...s.keyRotation } : loc.status?.keyRotation };
    },
  } as unknown as KubeClient;
  const recorder: EventRecorder = { event: async (_o, type, reason, message) => void events.push({ type, reason, message }) };
  const secrets = fakeInformer([secret]);
  const r = new BackupLocationReconciler({ client, locations: fakeInformer([loc]), secrets, recorder, metrics: createMetrics(),
    restic: repo.restic, log: createLogger({ level: 'error' }), retryBaseMs: 1000 });
  let version = 1;
  const setSecret = (values: Record<string, string>) => {
    secret.data = Object.fromEntries(Object.entries({ access_key: 'ak', secret_key: 'sk', ...values }).map(([k, v]) => [k, b64(v)]));
    secret.metadata.resourceVersion = String(++version);
  };
  const reconcile = () => r.reconcile('ns/loc', new AbortController().signal);
  return { loc, statuses, events, setSecret, reconcile, repoOf: () => locationRepository(loc, secrets) };
}

describe('the location reconciler rotates the repository key', () => {
  test('add, prove, switch; then, once the Secret holds only the new password, the old key goes and its password opens nothing', async () => {
    const repo = new FakeRepo();
    const h = harness(repo);
    h.setSecret({ restic_repo_password: OLD, restic_repo_new_password: NEW });
    await h.reconcile();
    expect(h.loc.status?.keyRotation).toMatchObject({ phase: 'Switched', oldKeyId: 'k-old', newKeyId: 'k-added-1' });
    expect(h.events.map((e) => e.reason)).toEqual([KEY_ADDED, KEY_SWITCHED]);
    expect(repo.opens(OLD) && repo.opens(NEW)).toBe(true);
    // The controller's own runs (backups) now use the new password.
    expect(h.repoOf().password).toBe(NEW);
    // The status it wrote describes these inputs: nothing more to do until the Secret changes.
    repo.calls.length = 0;
    await h.reconcile();
    expect(repo.calls).toEqual([]);

    h.events.length = 0;
    h.setSecret({ restic_repo_password: NEW });
    await h.reconcile();
    expect(h.loc.status?.keyRotation?.phase).toBe('Completed');
    expect(h.events.map((e) => e.reason)).toEqual([KEY_REMOVED]);
    expect(repo.opens(OLD)).toBe(false);
    expect(repo.opens(NEW)).toBe(true);
    expect(h.repoOf().password).toBe(NEW);
    // Never a password value in what the user reads.
    const shown = JSON.stringify([h.statuses, h.events]);
    expect(shown).not.toContain(OLD);
    expect(shown).not.toContain(NEW);
    // The location stayed ready throughout: no "Initializing" status for a backup to trip over.
    expect(h.statuses.every((s) => s.initStatus === 'Completed')).toBe(true);
  });

  test('a crash after key add (key in the repository, nothing in status) resumes without a second key', async () => {
    const repo = new FakeRepo();
    repo.keys.set(NEW, 'k-new');
    const h = harness(repo);
    h.setSecret({ restic_repo_password: OLD, restic_repo_new_password: NEW });
    await h.reconcile();
    expect(repo.calls).not.toContain('key add');
    expect(repo.keys.size).toBe(2);
    expect(h.loc.status?.keyRotation).toMatchObject({ phase: 'Switched', oldKeyId: 'k-old', newKeyId: 'k-new' });
  });

  test('a removal that fails on an S3 outage is reported, retried with backoff, and then completes', async () => {
    const repo = new FakeRepo();
    const h = harness(repo);
    h.setSecret({ restic_repo_password: OLD, restic_repo_new_password: NEW });
    await h.reconcile();
    repo.failRemove = 1;
    h.setSecret({ restic_repo_password: NEW });
    expect(await h.reconcile()).toEqual({ requeueAfter: 1000 });
    expect(h.loc.status?.keyRotation).toMatchObject({ phase: 'Failed', oldKeyId: 'k-old', newKeyId: 'k-added-1' });
    expect(h.loc.status?.keyRotation?.message).toContain('unreachable');
    expect(h.events.at(-1)).toMatchObject({ type: 'Warning', reason: KEY_ROTATION_FAILED });
    expect(repo.opens(OLD)).toBe(true);
    await h.reconcile();
    expect(h.loc.status?.keyRotation?.phase).toBe('Completed');
    expect(repo.opens(OLD)).toBe(false);
  });

  test('withdrawing the new password before restic_repo_password changed cancels: the new key is removed, the old one kept', async () => {
    const repo = new FakeRepo();
    const h = harness(repo);
    h.setSecret({ restic_repo_password: OLD, restic_repo_new_password: NEW });
    await h.reconcile();
    h.setSecret({ restic_repo_password: OLD });
    expect(h.repoOf().password).toBe(OLD);
    await h.reconcile();
    expect(h.loc.status?.keyRotation?.phase).toBe('Cancelled');
    expect(repo.opens(NEW)).toBe(false);
    expect(repo.opens(OLD)).toBe(true);
  });

  test('a new password with a trailing newline is refused with what to do, without its value, and nothing is added', async () => {
    const repo = new FakeRepo();
    const h = harness(repo);
    h.setSecret({ restic_repo_password: OLD, restic_repo_new_password: `${NEW}\n` });
    expect(await h.reconcile()).toBeUndefined();
    expect(repo.calls).not.toContain('key add');
    expect(h.loc.status?.keyRotation?.phase).toBe('Failed');
    expect(h.loc.status?.keyRotation?.message).toContain('white space');
    expect(JSON.stringify([h.statuses, h.events])).not.toContain(NEW);
    expect(h.repoOf().password).toBe(OLD);
  });
});
