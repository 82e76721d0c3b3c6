/**
 * @module Rotation of a location's repository password without downtime (docs/key-rotation.md).
 *
 * The user puts the new password into the credentials Secret as `restic_repo_new_password`. The controller adds it as
 * a restic key, proves that it opens the repository, and uses it from then on (phase Switched). Both keys open the
 * repository in between, so every backup, restore pod and `kubedr` command that still reads `restic_repo_password`
 * keeps working. When the user has replaced `restic_repo_password` with the new value and removed
 * `restic_repo_new_password`, the controller removes the old key (phase Completed): only then, because removing it
 * earlier would lock out whatever still reads the old value.
 *
 * Each step is decided from what the repository says (which keys exist, which one a password opens), not from status
 * alone, so a controller that crashed between a restic command and its status write takes the same step again or
 * finds it done: `key add` is skipped when the new password already opens the repository, `key remove` when the key is
 * already gone.
 */
import { LOCATION_SECRET_KEYS as K } from '../api/group.ts';
import type { BackupLocationStatus } from '../api/types.ts';
import { type RepoKey, addKey, keyOf, listKeys, removeKey } from '../engine/keys.ts';
import { type Repository, type Restic, type RunOptions, passwordFitsFile } from '../engine/restic.ts';
import { InputError, type LocationPasswords } from './inputs.ts';

export type KeyRotation = NonNullable<BackupLocationStatus['keyRotation']>;

/** What the Secret and the location's status say about a rotation, before any restic run. */
export type RotationInputs = LocationPasswords;

/**
 * Whether the location needs a rotation step although its status already describes these inputs: a new password that
 * is not in use yet, a finished or withdrawn rotation whose leftover key is still to go, or a step that failed.
 */
export function rotationPending(inputs: RotationInputs): boolean {
  const requested = inputs.newPassword !== undefined && inputs.newPassword !== inputs.password;
  const r = inputs.rotation;
  if (requested) return r?.phase !== 'Switched';
  // A removal that failed is still to do: a failure keeps the ids of the keys it was removing.
  return r?.phase === 'Switched' || (r?.phase === 'Failed' && !!r.oldKeyId && !!r.newKeyId);
}

/** Why this new password cannot be used, or undefined. The message names keys, never values. */
export function newPasswordProblem(newPassword: string): string | undefined {
  if (!passwordFitsFile(newPassword)) {
    return `${K.newRepoPassword} begins or ends with white space (a newline left by \`kubectl create secret --from-file\`?); ` +
      'restic trims passwords it reads from a file, so put the password without it';
  }
  return undefined;
}

/** The next step of a rotation, decided from the inputs and from what the repository says. */
export type RotationStep =
  | { kind: 'none' }
  /** The new password opens nothing yet: `key add` it. */
  | { kind: 'add' }
  /** The new password opens the repository (as `newKeyId`): record it and use it. */
  | { kind: 'switch'; oldKeyId: string; newKeyId: string }
  /** `restic_repo_password` now is the new password: remove the old key (gone already: just record). */
  | { kind: 'removeOld'; keyId: string; present: boolean }
  /** `restic_repo_new_password` went away before `restic_repo_password` changed: remove the unused new key. */
  | { kind: 'cancel'; keyId: string; present: boolean }
  /** Nothing safe to do; the message tells the user what to change. */
  | { kind: 'stuck'; message: string };

/**
 * Decides the next step. `keys` are the repository's keys as `restic_repo_password` sees them (its own is `current`);
 * `newKeyId` is the key the new password opens, undefined when it opens none (or when there is no new password).
 */
export function decideRotation(inputs: RotationInputs, keys: RepoKey[], newKeyId: string | undefined): RotationStep {
  const current = keys.find((k) => k.current)?.id;
  if (!current) return { kind: 'stuck', message: 'restic key list named no key of restic_repo_password' };
  const requested = inputs.newPassword !== undefined && inputs.newPassword !== inputs.password;
  if (requested) {
    if (newKeyId === undefined) return { kind: 'add' };
    if (newKeyId === current) return { kind: 'none' };
    return { kind: 'switch', oldKeyId: current, newKeyId };
  }
  const r = inputs.rotation;
  if (r?.phase !== 'Switched' && !(r?.phase === 'Failed' && r.oldKeyId && r.newKeyId)) return { kind: 'none' };
  const has = (id: string) => keys.some((k) => k.id === id);
  if (current === r.newKeyId) return { kind: 'removeOld', keyId: r.oldKeyId ?? '', present: !!r.oldKeyId && has(r.oldKeyId) };
  if (current === r.oldKeyId) return { kind: 'cancel', keyId: r.newKeyId ?? '', present: !!r.newKeyId && has(r.newKeyId) };
  return {
    kind: 'stuck',
    message: `${K.repoPassword} opens the repository with neither the old key nor the new one of the rotation; ` +
      `put the rotation's new password in ${K.repoPassword}, or put it back in ${K.newRepoPassword}`,
  };
}

/** What one rotation step did: the status to record and the event to report. */
export interface RotationOutcome {
  rotation: KeyRotation;
  event: { type: 'Normal' | 'Warning'; reason: string; message: string }[];
}

/** The event reasons of the steps (api/events.ts); a failure is reported by the caller, which knows whether it retries. */
export interface RotationEvents {
  added: string;
  switched: string;
  removed: string;
}

/**
 * Takes the rotation as far as it can go now: add and switch in one pass (so no state exists where the new key is in
 * the repository but unrecorded, except after a crash, which the next pass finds), or remove the leftover key. Returns
 * undefined when there is nothing to do. Throws EngineError (restic) or InputError (a new password restic cannot use).
 */
export async function rotateKey(restic: Restic, repo: Repository, inputs: RotationInputs,
  reasons: RotationEvents, run: RunOptions, now: Date): Promise<RotationOutcome | undefined> {
  const base: Repository = { ...repo, password: inputs.password };
  const requested = inputs.newPassword !== undefined && inputs.newPassword !== inputs.password;
  if (requested) {
    const problem = newPasswordProblem(inputs.newPassword!);
    if (problem) throw new InputError('CredentialsInvalid', problem);
  }
  const events: RotationOutcome['event'] = [];
  const keys = await listKeys(restic, base, run);
  let newKeyId = requested ? await keyOf(restic, repo, inputs.newPassword!, run) : undefined;
  let step = decideRotation(inputs, keys, newKeyId);
  if (step.kind === 'add') {
    newKeyId = await addKey(restic, base, inputs.newPassword!, { host: 'kubedr', user: 'rotation' }, run);
    events.push({ type: 'Normal', reason: reasons.added, message: `Added the new repository password (${K.newRepoPassword}) as key ${short(newKeyId)}` });
    step = decideRotation(inputs, keys, newKeyId);
  }
  const at = now.toISOString();
  switch (step.kind) {
    case 'none':
    case 'add':
      return undefined;
    case 'switch': {
      const message = `The new key ${short(step.newKeyId)} opens the repository and is in use; the old key ${short(step.oldKeyId)} still opens it. ` +
        `Next: put the new password in ${K.repoPassword} and remove ${K.newRepoPassword}; the old key is then removed`;
      events.push({ type: 'Normal', reason: reasons.switched, message });
      return { rotation: { phase: 'Switched', message, oldKeyId: step.oldKeyId, newKeyId: step.newKeyId, time: at }, event: events };
    }
    case 'removeOld':
    case 'cancel': {
      // `key remove` takes an exclusive lock: it waits for running backups (withLockWait), like a prune.
      if (step.present) await removeKey(restic, base, step.keyId, run);
      const r = inputs.rotation!;
      const message = step.kind === 'removeOld'
        ? `Removed the old key ${short(step.keyId)}: its password no longer opens the repository`
        : `${K.newRepoPassword} was removed before ${K.repoPassword} changed: the rotation is cancelled and its new key ${short(step.keyId)} removed`;
      events.push({ type: 'Normal', reason: reasons.removed, message });
      return { rotation: { phase: step.kind === 'removeOld' ? 'Completed' : 'Cancelled', message, oldKeyId: r.oldKeyId, newKeyId: r.newKeyId, time: at }, event: events };
    }
    case 'stuck':
      throw new InputError('KeyRotationStuck', step.message);
  }
}

/** A key id as restic prints it in short form. */
const short = (id: string) => id.slice(0, 8);
