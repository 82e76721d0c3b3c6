/**
 * @module The stored form of etcd's changes between full backups: a change set is a text file of JSON lines, one per
 * etcd revision, written while the changes arrive and stored as one restic snapshot (encrypted and deduplicated like
 * the full backups; `restic dump` reads it back). Format `kubedr-changes/1`, documented in docs/continuous-backup.md:
 *
 *   {"format":"kubedr-changes/1"}
 *   {"r":1042,"t":1764936207123,"c":[["p","<key b64>","<value b64>","<lease>"],["d","<key b64>"]]}
 *
 * `r` is the revision, `t` the time (ms since the epoch) the controller received it from etcd's watch, `c` its changes
 * in etcd's order: "p" a put (the lease, decimal, only when the key had one), "d" a delete. Keys and values are base64:
 * Kubernetes stores protobuf, not text. Plain JSON lines rather than a binary format: readable with restic and `jq`
 * alone, and restic's compression takes back most of what base64 adds.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Change } from '../etcd-client.ts';
import { EngineError } from '../errors.ts';

export const CHANGES_FORMAT = 'kubedr-changes/1';

/** The changes of one revision, and when they were received. */
export interface RevisionChanges {
  revision: number;
  /** Milliseconds since the epoch. */
  receivedAt: number;
  changes: Change[];
}

type Line = { r: number; t: number; c: (['p', string, string] | ['p', string, string, string] | ['d', string])[] };

export function encodeRevision(rev: RevisionChanges): string {
  const c: Line['c'] = rev.changes.map((ch) => ch.type === 'delete'
    ? ['d', ch.key.toString('base64')]
    : ch.lease ? ['p', ch.key.toString('base64'), (ch.value ?? Buffer.alloc(0)).toString('base64'), ch.lease]
      : ['p', ch.key.toString('base64'), (ch.value ?? Buffer.alloc(0)).toString('base64')]);
  return `${JSON.stringify({ r: rev.revision, t: rev.receivedAt, c } satisfies Line)}\n`;
}

export function decodeRevision(text: string): RevisionChanges {
  let line: Line;
  try {
    line = JSON.parse(text) as Line;
  } catch {
    throw new EngineError('IntegrityError', `a change set holds a line that is not JSON: ${text.slice(0, 80)}`);
  }
  if (typeof line.r !== 'number' || typeof line.t !== 'number' || !Array.isArray(line.c)) {
    throw new EngineError('IntegrityError', `a change set holds a line that is not a revision: ${text.slice(0, 80)}`);
  }
  const changes = line.c.map((c): Change => c[0] === 'd'
    ? { type: 'delete', key: Buffer.from(c[1], 'base64'), revision: line.r }
    : { type: 'put', key: Buffer.from(c[1], 'base64'), value: Buffer.from(c[2], 'base64'), revision: line.r, ...(c[3] ? { lease: c[3] } : {}) });
  return { revision: line.r, receivedAt: line.t, changes };
}

/**
 * Groups watched changes by revision: a watch response may carry several revisions, and a revision's changes all come
 * in one response (fragments joined by the client).
 */
export function byRevision(changes: readonly Change[], receivedAt: number): RevisionChanges[] {
  const out: RevisionChanges[] = [];
  for (const ch of changes) {
    const last = out.at(-1);
    if (last && last.revision === ch.revision) last.changes.push(ch);
    else out.push({ revision: ch.revision, receivedAt, changes: [ch] });
  }
  return out;
}

/** A change set being written: appended to a file as revisions arrive, so memory does not grow with the backlog. */
export class ChangeSetFile {
  private fd: number;
  first?: RevisionChanges['revision'];
  last?: RevisionChanges['revision'];
  firstAt?: number;
  lastAt?: number;
  changes = 0;
  bytes = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w', 0o600);
    this.write(`${JSON.stringify({ format: CHANGES_FORMAT })}\n`);
  }

  append(rev: RevisionChanges): void {
    this.write(encodeRevision(rev));
    this.first ??= rev.revision;
    this.firstAt ??= rev.receivedAt;
    this.last = rev.revision;
    this.lastAt = rev.receivedAt;
    this.changes += rev.changes.length;
  }

  get empty(): boolean {
    return this.last === undefined;
  }

  close(): void {
    closeSync(this.fd);
  }

  private write(text: string): void {
    const buf = Buffer.from(text);
    for (let done = 0; done < buf.length;) done += writeSync(this.fd, buf, done);
    this.bytes += buf.length;
  }
}

/** Reads a change set's revisions from a stream of its text (e.g. `restic dump`'s stdout), checking the format line. */
export async function* readRevisions(text: AsyncIterable<Uint8Array>): AsyncGenerator<RevisionChanges> {
  const decoder = new TextDecoder();
  let pending = '';
  let header = true;
  const take = function* (line: string): Generator<RevisionChanges> {
    if (!line) return;
    if (header) {
      header = false;
      let format: unknown;
      try {
        format = (JSON.parse(line) as { format?: unknown }).format;
      } catch { /* reported below */ }
      if (format !== CHANGES_FORMAT) throw new EngineError('IntegrityError', `not a change set of format ${CHANGES_FORMAT}: ${line.slice(0, 80)}`);
      return;
    }
    yield decodeRevision(line);
  };
  for await (const chunk of text) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      yield* take(line);
    }
  }
  pending += decoder.decode();
  yield* take(pending);
}
