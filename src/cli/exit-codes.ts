/** @module Exit codes of the kubedr commands, one per cause a script may want to act on. Listed in every command's help. */
import { EngineError, type EngineErrorKind } from '../engine/errors.ts';
import { ApiError, ConnectionError } from '../kube/errors.ts';
import { UsageError } from '../util/flags.ts';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  /** Wrong repository password, or the S3 endpoint refused the keys. */
  credentials: 3,
  /** No such snapshot, no snapshots, no repository at the address. */
  notFound: 4,
  /** S3 endpoint unreachable, its certificate not trusted, or a time limit passed. */
  unreachable: 5,
  /** The etcd snapshot failed its integrity check. */
  integrity: 6,
  /** The destination holds data and overwriting was not allowed. */
  exists: 7,
  /** The backup a command started (or waited for) failed, or the controller cannot run it. */
  backupFailed: 8,
  /** --timeout passed before the backup ended; it goes on in the cluster. */
  timedOut: 9,
} as const;

/** An error whose exit code the command chose, with a message that says what to do. */
export class ExitError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
    this.name = 'ExitError';
  }
}

const byKind: Partial<Record<EngineErrorKind, number>> = {
  WrongPassword: EXIT.credentials, AccessDenied: EXIT.credentials,
  NotFound: EXIT.notFound, NoRepository: EXIT.notFound,
  Unreachable: EXIT.unreachable, TlsError: EXIT.unreachable, Timeout: EXIT.unreachable,
  IntegrityError: EXIT.integrity,
  Exists: EXIT.exists,
  InvalidInput: EXIT.usage,
};

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage;
  if (err instanceof ExitError) return err.code;
  if (err instanceof ConnectionError) return EXIT.unreachable;
  if (err instanceof ApiError) return err.status === 401 || err.status === 403 ? EXIT.credentials : err.status === 404 ? EXIT.notFound : EXIT.failed;
  return err instanceof EngineError ? byKind[err.kind] ?? EXIT.failed : EXIT.failed;
}

export const exitCodesHelp = `Exit codes:
  0 success   1 other failure   2 usage or invalid input   3 wrong password or S3 keys refused
  4 snapshot or repository not found   5 S3 endpoint unreachable or untrusted, or timed out
  6 etcd snapshot failed its integrity check   7 destination not empty (see --force)
`;

/** The exit codes of `kubedr status`, which only reads the cluster's KubeDR objects. */
export const statusExitCodesHelp = `Exit codes:
  0 success   1 other failure   2 usage or invalid input   3 the API server refused the credentials (401, 403)
  5 API server unreachable or not answering
`;

/** The exit codes of `kubedr backup`, which starts a backup in the cluster and follows it. */
export const backupExitCodesHelp = `Exit codes:
  0 success   1 other failure   2 usage or invalid input   3 the API server refused the credentials (401, 403)
  4 policy not found   5 API server unreachable or not answering   8 the backup failed or cannot run
  9 --timeout passed before the backup ended (it goes on in the cluster)
`;

/** The exit codes of `kubedr release-records`, which stops the controller and releases the records of a namespace. */
export const releaseExitCodesHelp = `Exit codes:
  0 success   1 other failure   2 usage or invalid input   3 the API server refused the credentials (401, 403)
  5 API server unreachable   9 --timeout passed (the controller still running, or the API server not answering)
`;
