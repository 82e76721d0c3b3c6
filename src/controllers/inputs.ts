/**
 * @module Turning objects into engine inputs: a BackupLocation and its Secret into a restic Repository, a policy's
 * etcdCreds Secret into an etcd connection. Throws InputError with a message a user can act on.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { ETCD_SECRET_KEYS as E, LOCATION_SECRET_KEYS as K } from '../api/group.ts';
import type { BackupLocation, Secret } from '../api/types.ts';
import type { EtcdConnection } from '../engine/etcd-snapshot.ts';
import { repositoryAddress } from '../engine/repository.ts';
import type { Repository } from '../engine/restic.ts';
import { SecretKeyMissingError, secretValues } from '../kube/secrets.ts';
import type { Informer } from '../runtime/informer.ts';

/** Bad or missing input; `reason` becomes the condition reason. */
export class InputError extends Error {
  constructor(readonly reason: string, message: string) {
    super(message);
    this.name = 'InputError';
  }
}

function values<R extends string, O extends string>(secret: Secret, what: string, required: readonly R[], optional: readonly O[], publicKeys: string[]) {
  try {
    return secretValues(secret, required, optional, publicKeys);
  } catch (err) {
    if (err instanceof SecretKeyMissingError) throw new InputError('CredentialsInvalid', `${what} ${err.message}`);
    throw err;
  }
}

/** A location's repository passwords and its key rotation, as the Secret and the status say. */
export interface LocationPasswords {
  /** `restic_repo_password`. */
  password: string;
  /** `restic_repo_new_password`, when the user asks for a key rotation. */
  newPassword?: string;
  rotation?: NonNullable<BackupLocation['status']>['keyRotation'];
}

/**
 * The password the controller's own restic runs use: the new one once a key rotation has proved it and switched to it
 * (key-rotation.ts). Both open the repository until the old key is removed, which waits until restic_repo_password holds
 * the new value; so whichever a run reads, it opens.
 */
export function passwordInUse(p: LocationPasswords): string {
  const requested = p.newPassword !== undefined && p.newPassword !== p.password;
  return requested && p.rotation?.phase === 'Switched' ? p.newPassword! : p.password;
}

/**
 * The location's repository with its credentials, read from the Secret at each call: S3 keys or a password changed
 * there are used by the next operation, without a restart. Throws EngineError (bad URL/bucket) or InputError (Secret).
 */
export function locationRepository(loc: BackupLocation, secrets: Informer<Secret>): Repository {
  const { repo, passwords } = locationInputs(loc, secrets);
  return { ...repo, password: passwordInUse(passwords) };
}

/** locationRepository, and the passwords behind its choice of password. */
export function locationInputs(loc: BackupLocation, secrets: Informer<Secret>): { repo: Repository; passwords: LocationPasswords } {
  const address = repositoryAddress(loc.spec.url, loc.spec.bucketName);
  const secret = secrets.get(`${loc.metadata.namespace}/${loc.spec.credentials}`);
  if (!secret) throw new InputError('CredentialsNotFound', `credentials Secret "${loc.spec.credentials}" not found`);
  const v = values(secret, 'credentials', [K.accessKey, K.secretKey, K.repoPassword], [K.caCert, K.newRepoPassword], [K.caCert]);
  // An empty new password is no request (a key left in place with its value cleared).
  const newPassword = v[K.newRepoPassword] ? v[K.newRepoPassword] : undefined;
  const passwords = { password: v[K.repoPassword], newPassword, rotation: loc.status?.keyRotation };
  return { repo: { address, accessKey: v[K.accessKey], secretKey: v[K.secretKey], password: v[K.repoPassword], caCert: v[K.caCert] }, passwords };
}

/** A usable location: exists and its repository initialised. */
export function readyLocation(namespace: string, name: string, locations: Informer<BackupLocation>): BackupLocation {
  return checkLocationReady(name, locations.get(`${namespace}/${name}`));
}

/** The location named `name`, as read (undefined: not found), if it is usable; else an InputError saying why not. */
export function checkLocationReady(name: string, loc: BackupLocation | undefined): BackupLocation {
  if (!loc) throw new InputError('LocationNotFound', `BackupLocation "${name}" not found`);
  if (loc.status?.initStatus !== 'Completed') {
    const why = loc.status?.initErrorMessage ? `: ${loc.status.initErrorMessage}` : ` (status ${loc.status?.initStatus ?? 'unknown'})`;
    throw new InputError('LocationNotReady', `BackupLocation "${name}" is not ready${why}`);
  }
  return loc;
}

/**
 * Why a client certificate and key cannot be used together, or undefined when they can. Checked here, where the Secret's
 * name is known, because the TLS library says only `error:0b000074:…:KEY_VALUES_MISMATCH`.
 */
export function clientPairProblem(cert: string, key: string): string | undefined {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch {
    return `${E.cert} is not a PEM certificate`;
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    return `${E.key} is not an unencrypted PEM private key`;
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    return `${E.key} is not the private key of ${E.cert}; put the key issued with that certificate in ${E.key} ` +
      '(kubeadm: apiserver-etcd-client.key goes with apiserver-etcd-client.crt)';
  }
  return undefined;
}

/** etcd endpoint and mTLS material from the policy's etcdCreds Secret (`ca.crt`, `client.crt`, `client.key`). */
export function etcdConnection(namespace: string, endpoint: string, secretName: string, secrets: Informer<Secret>): EtcdConnection {
  if (endpoint.startsWith('http://')) return { endpoint };
  const secret = secrets.get(`${namespace}/${secretName}`);
  if (!secret) throw new InputError('CredentialsNotFound', `etcd credentials Secret "${secretName}" not found`);
  const v = values(secret, 'etcd credentials', [E.ca, E.cert, E.key], [], [E.ca, E.cert]);
  const problem = clientPairProblem(v[E.cert], v[E.key]);
  if (problem) throw new InputError('CredentialsInvalid', `etcd credentials Secret "${secretName}": ${problem}`);
  return { endpoint, ca: v[E.ca], cert: v[E.cert], key: v[E.key] };
}
