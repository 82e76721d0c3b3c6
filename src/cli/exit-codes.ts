/** @module Exit codes of the kubedr commands, one per cause a script may want to act on. Listed in every command's help. */
import { EngineError, type EngineErrorKind } from '../engine/errors.ts';
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
} as const;

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
  return err instanceof EngineError ? byKind[err.kind] ?? EXIT.failed : EXIT.failed;
}

export const exitCodesHelp = `Exit codes:
  0 success   1 other failure   2 usage or invalid input   3 wrong password or S3 keys refused
  4 snapshot or repository not found   5 S3 endpoint unreachable or untrusted, or timed out
  6 etcd snapshot failed its integrity check   7 destination not empty (see --force)
`;
