/** @module Pure interpretation of restic's output: error text to a kind and a readable message. */
import type { EngineErrorKind } from './errors.ts';

interface Rule {
  kind: EngineErrorKind;
  test: RegExp;
  explain: string;
}

// Order matters: a connection failure also mentions "unable to open config file", so it is matched first.
const rules: Rule[] = [
  { kind: 'TlsError', test: /x509:|certificate (is not|signed by|has expired)|tls: /i, explain: 'TLS certificate of the S3 endpoint not trusted' },
  { kind: 'Unreachable', test: /connection refused|no such host|i\/o timeout|network is unreachable|connection reset|no route to host|dial tcp/i,
    explain: 'S3 endpoint unreachable' },
  { kind: 'AccessDenied', test: /access key id you provided does not exist|SignatureDoesNotMatch|signature we calculated does not match|Access Denied|AccessDenied|InvalidAccessKeyId/i,
    explain: 'S3 endpoint refused the credentials' },
  { kind: 'WrongPassword', test: /wrong password or no key found/i, explain: 'wrong repository password (restic_repo_password)' },
  { kind: 'Locked', test: /repository is already locked/i, explain: 'repository is locked by another restic process' },
  { kind: 'InvalidInput', test: /Bucket name (contains invalid|cannot be|must)|invalid bucket name/i, explain: 'invalid bucket name' },
  { kind: 'NoRepository', test: /unable to open config file[^\n]*(does not exist|NoSuchKey|NoSuchBucket|not found)/i,
    explain: 'no restic repository at this location' },
];

/** The lines that carry the cause: restic's `Fatal:` lines, else the last non-empty lines, without restic's boilerplate. */
export function errorDetail(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean)
    .filter((l) => !/^Is there a repository at the following location\?$/.test(l) && !/^s3:\S+$/.test(l));
  const fatal = lines.filter((l) => l.startsWith('Fatal:')).map((l) => l.replace(/^Fatal:\s*/, ''));
  const picked = fatal.length > 0 ? fatal : lines.slice(-3);
  return picked.join('; ').slice(0, 800);
}

export interface ClassifiedError {
  kind: EngineErrorKind;
  message: string;
}

/** Names the cause of a failed restic run from its stderr. */
export function classifyResticError(stderr: string): ClassifiedError {
  const detail = errorDetail(stderr) || 'restic failed without a message';
  for (const r of rules) {
    if (r.test.test(stderr)) return { kind: r.kind, message: `${r.explain}: ${detail}` };
  }
  return { kind: 'Failed', message: detail };
}

/** True when `restic init` failed because the repository is already there. */
export function isAlreadyInitialized(stderr: string): boolean {
  return /already initialized|config file already exists/i.test(stderr);
}
