/** @module Pure interpretation of restic's output: error text to a kind and a readable message. */
import { plainText } from '../util/text.ts';
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
  { kind: 'NotFound', test: /no matching ID found/i, explain: 'no such snapshot' },
  // What restic says when the data it reads is damaged (a bad disk or a bug in the store; see engine/repository-damage.ts).
  { kind: 'IntegrityError', test: /ciphertext verification failed|not found in index|unexpected pack id|hash does not match|is not known; the repository could be damaged/i,
    explain: 'the repository\'s data is damaged' },
  { kind: 'InvalidInput', test: /Bucket name (contains invalid|cannot be|must)|invalid bucket name/i, explain: 'invalid bucket name' },
  { kind: 'NoRepository', test: /unable to open config file[^\n]*(does not exist|NoSuchKey|NoSuchBucket|not found)/i,
    explain: 'no restic repository at this location' },
];

/**
 * The lines that carry the cause: restic's `Fatal:` lines, else the last non-empty lines, without restic's boilerplate
 * and without the terminal escapes restic writes even when its stderr is a pipe (`\u001b[2K` clears a progress line).
 */
export function errorDetail(stderr: string): string {
  const lines = plainText(stderr).split('\n').map((l) => withoutScratch(jsonMessage(l.trim()))).filter(Boolean)
    .filter((l) => !/^Is there a repository at the following location\?$/.test(l) && !/^s3:\S+$/.test(l));
  const fatal = lines.filter((l) => l.startsWith('Fatal:')).map((l) => l.replace(/^Fatal:\s*/, ''));
  // "There were 3 errors" names no cause: the first errors before it do ("… ciphertext verification failed").
  const vague = fatal.length > 0 && fatal.every((l) => /^There were \d+ errors?$|^repository contains errors$/i.test(l));
  const picked = vague ? [...lines.filter((l) => !l.startsWith('Fatal:') && /error|fail/i.test(l)).slice(0, 2), ...fatal] : fatal.length > 0 ? fatal : lines.slice(-3);
  return picked.map(withoutRequest).join('; ').slice(0, 800);
}

/**
 * restic --json's error lines, as their words: `{"message_type":"error","error":{"message":"…"},"item":"…"}` and
 * `{"message_type":"exit_error","code":3,"message":"…"}`; any other line as it is.
 */
function jsonMessage(line: string): string {
  if (!line.startsWith('{')) return line;
  try {
    const m = JSON.parse(line) as { message_type?: string; message?: string; error?: { message?: string } };
    if (m.message_type === 'error') return m.error?.message ?? m.message ?? line;
    if (m.message_type === 'exit_error') return m.message ?? line;
  } catch {
    // not JSON after all
  }
  return line;
}

/**
 * Paths in this process's scratch space (`/tmp/kubedr-stage-<policy>-<hash>/data/certificates`) as the backup's own
 * (`data/certificates`): the temporary part says nothing to a person, and differs from run to run (events would not
 * aggregate).
 */
function withoutScratch(line: string): string {
  return line.replace(/(?:\/[^\s/"]+)*\/kubedr-[^\s/"]+\//g, '');
}

/**
 * Go's HTTP errors quote the whole request (`Get "https://s3:9000/bucket/?location=": x509: …`): the endpoint is what
 * a person needs, the method, path and query are noise that differ from call to call (and keep events from aggregating).
 */
function withoutRequest(line: string): string {
  return line.replace(/\b(?:Get|Head|Put|Post|Delete) "(https?:\/\/[^/"]+)[^"]*": /g, '$1: ')
    // minio-go names the request unquoted when the server hangs up (plain http to an HTTPS port): "Connection closed
    // by foreign host http://s3:9000/bucket/?location=. Retry again."
    .replace(/(https?:\/\/[^/\s"]+)\/[^\s"]*\?location=(?=[.\s]|$)/g, '$1');
}

export interface ClassifiedError {
  kind: EngineErrorKind;
  message: string;
}

/**
 * Who holds the lock that refused a restic run, from restic's own words ("repository is already locked exclusively by
 * PID 1234 on node-1 by root …", "lock was created at 2026-11-25 04:00:00 (1m ago)"): "PID 1234 on node-1 since
 * 2026-11-25 04:00:00 (exclusive)", or undefined when restic said something else.
 */
export function lockHolder(stderr: string): string | undefined {
  const text = plainText(stderr);
  const who = /already locked (exclusively )?by PID (\d+) on (\S+)/i.exec(text);
  if (!who) return undefined;
  const since = /lock was created at ([^(\n]+?)\s*(\(|$)/im.exec(text)?.[1];
  return `PID ${who[2]} on ${who[3]}${since ? ` since ${since}` : ''}${who[1] ? ' (exclusive)' : ''}`;
}

/** Names the cause of a failed restic run from its stderr. */
export function classifyResticError(stderr: string): ClassifiedError {
  const detail = errorDetail(stderr) || 'restic failed without a message';
  const text = plainText(stderr);
  const holder = lockHolder(stderr);
  if (holder) return { kind: 'Locked', message: `repository is locked by ${holder}` };
  for (const r of rules) {
    if (r.test.test(text)) return { kind: r.kind, message: `${r.explain}: ${detail}` };
  }
  return { kind: 'Failed', message: detail };
}

/**
 * The S3 server's refusal of the credentials in one line of restic's stderr, or undefined. restic ≥ 0.17 retries a
 * refused request like any other for up to 15 minutes, printing each retry: a refusal does not pass by itself (keys
 * revoked, a wrong secret, a policy that denies), so the first one ends the run.
 */
export function credentialsRefusal(line: string): string | undefined {
  const text = plainText(line).trim();
  const rule = rules.find((r) => r.kind === 'AccessDenied');
  return text && rule?.test.test(text) ? `${rule.explain}: ${text.replace(/^Fatal:\s*/, '').slice(0, 600)}` : undefined;
}

/** True when `restic init` failed because the repository is already there. */
export function isAlreadyInitialized(stderr: string): boolean {
  return /already initialized|config file already exists/i.test(stderr);
}

/** restic backup's closing summary (restic 0.14 `backup --json`). */
export interface BackupSummary {
  filesNew: number;
  filesChanged: number;
  filesUnmodified: number;
  dataAdded: number;
  totalFilesProcessed: number;
  totalBytesProcessed: number;
  /** restic's own duration of the upload, seconds. */
  totalDuration: number;
  /** Short snapshot ID: 8 hex digits, as record names (`mbr-<id>`) carry it, whatever restic printed. */
  snapshotId: string;
}

export type BackupMessage =
  | { type: 'status'; percentDone: number; bytesDone: number; totalBytes: number }
  | { type: 'summary'; summary: BackupSummary };

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** One line of `restic backup --json`; undefined for lines that are not status or summary messages. */
export function parseBackupLine(line: string): BackupMessage | undefined {
  if (!line.startsWith('{')) return undefined;
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (m.message_type === 'status') {
    return { type: 'status', percentDone: num(m.percent_done), bytesDone: num(m.bytes_done), totalBytes: num(m.total_bytes) };
  }
  if (m.message_type === 'summary' && typeof m.snapshot_id === 'string') {
    return {
      type: 'summary',
      summary: {
        filesNew: num(m.files_new), filesChanged: num(m.files_changed), filesUnmodified: num(m.files_unmodified),
        dataAdded: num(m.data_added), totalFilesProcessed: num(m.total_files_processed),
        totalBytesProcessed: num(m.total_bytes_processed), totalDuration: num(m.total_duration),
        // restic 0.14 printed the short ID here, 0.18 prints the full one; the short ID is its first 8 hex digits.
        snapshotId: m.snapshot_id.slice(0, 8),
      },
    };
  }
  return undefined;
}

/** One entry of `restic snapshots --json`. */
export interface SnapshotInfo {
  id: string;
  shortId: string;
  time: string;
  hostname: string;
  tags: string[];
  paths: string[];
  /**
   * Bytes the backup read, which is what a restore writes: in the snapshot itself since restic 0.17 (its `summary`);
   * absent for snapshots taken by older restic, whose size needs `restic stats`.
   */
  size?: number;
}

export function parseSnapshots(json: string): SnapshotInfo[] {
  const list = JSON.parse(json || '[]') as Record<string, unknown>[] | null;
  return (list ?? []).map((s) => ({
    id: String(s.id), shortId: String(s.short_id ?? String(s.id).slice(0, 8)), time: String(s.time),
    hostname: String(s.hostname ?? ''), tags: Array.isArray(s.tags) ? s.tags.map(String) : [],
    paths: Array.isArray(s.paths) ? s.paths.map(String) : [],
    ...summarySize(s.summary),
  }));
}

function summarySize(summary: unknown): { size?: number } {
  const bytes = summary && typeof summary === 'object' ? (summary as Record<string, unknown>).total_bytes_processed : undefined;
  return typeof bytes === 'number' ? { size: bytes } : {};
}

/** `restic stats --json` (restore-size mode): bytes and files a restore of the snapshot writes. */
export function parseStats(json: string): { totalSize: number; totalFileCount: number } {
  const m = JSON.parse(json) as Record<string, unknown>;
  return { totalSize: num(m.total_size), totalFileCount: num(m.total_file_count) };
}
