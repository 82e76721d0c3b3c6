/** @module Engine errors: each carries a kind that decides whether the caller retries, and a message a user can act on. */

export type EngineErrorKind =
  /** Bad input (URL, bucket name, missing key): retrying cannot help until the input changes. */
  | 'InvalidInput'
  /** The repository password does not open the repository. */
  | 'WrongPassword'
  /** The endpoint refused the access key or signature. */
  | 'AccessDenied'
  /** The endpoint's certificate did not verify against the configured CA. */
  | 'TlsError'
  /** The endpoint could not be reached (refused, DNS, timeout). */
  | 'Unreachable'
  /** No repository at the address. */
  | 'NoRepository'
  /** Another restic process holds the repository lock. */
  | 'Locked'
  /** The operation ran past its time limit. */
  | 'Timeout'
  /** Data failed its integrity check (an etcd snapshot whose SHA-256 trailer does not match). */
  | 'IntegrityError'
  /** A snapshot (or a file in it) that was asked for does not exist. */
  | 'NotFound'
  /** The destination already holds data and overwriting was not allowed. */
  | 'Exists'
  /** The operation was cancelled (shutdown). */
  | 'Cancelled'
  /** Anything else restic reported. */
  | 'Failed';

/**
 * Kinds worth retrying on their own: the cause may go away without anyone changing our inputs (an endpoint comes back,
 * its certificate or access policy is fixed on the S3 side). Bad input and a wrong password need the user to act.
 */
const transientKinds: ReadonlySet<EngineErrorKind> = new Set(['Unreachable', 'Locked', 'Timeout', 'Failed', 'TlsError', 'AccessDenied', 'IntegrityError']);

export function isTransientKind(kind: string): boolean {
  return transientKinds.has(kind as EngineErrorKind);
}

export class EngineError extends Error {
  constructor(
    readonly kind: EngineErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'EngineError';
  }

  get transient(): boolean {
    return isTransientKind(this.kind);
  }
}
