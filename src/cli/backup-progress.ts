/**
 * @module What `kubedr backup --wait` makes of the policy it polls: whether the backup it requested has been picked
 * up, runs, or ended and how (never an earlier or a later backup's outcome), and the progress line it shows.
 */
import { READY } from '../api/conditions.ts';
import type { MetadataBackupPolicy, MetadataBackupPolicyStatus } from '../api/types.ts';
import { plainText } from '../util/text.ts';
import { humanBytes } from './snapshots.ts';

export type Observation =
  /** The controller has not served the request's backup-now value yet. */
  | { state: 'pending' }
  | { state: 'running'; progress: NonNullable<MetadataBackupPolicyStatus['progress']> | undefined }
  | { state: 'succeeded'; status: MetadataBackupPolicyStatus; snapshotId: string; mbrName: string }
  | { state: 'failed'; message: string }
  /** Served without running: a backup of the policy was still running in the controller when it saw the request. */
  | { state: 'skipped' }
  /** The policy was deleted. */
  | { state: 'gone' };

/**
 * Follows the backup that one backup-now value requested, from the policy as read after the request. The request was
 * written only while no backup of the policy ran (a resourceVersion precondition proves it), and the controller
 * writes `backupNowServed` in the same status patch as `backupStatus: Running` when it starts that backup. The result
 * fields (`backupTime`, `snapshotId`, `mbrName`, `backupErrorMessage`) are written only when a backup ends, so the
 * first `backupTime` after `backupTimeBefore` is this backup's: a later backup that starts before the next poll
 * changes `backupStatus` back to Running but leaves them.
 */
export class BackupFollower {
  private picked = false;

  constructor(private readonly request: { value: string; backupTimeBefore: string | undefined }) {}

  next(policy: MetadataBackupPolicy | undefined): Observation {
    if (!policy) return { state: 'gone' };
    const st = policy.status ?? {};
    // Once served, another user's newer value may replace ours in backupNowServed: keep following the started backup.
    this.picked ||= st.backupNowServed === this.request.value;
    if (!this.picked) return { state: 'pending' };
    if (st.backupTime && st.backupTime !== this.request.backupTimeBefore) {
      if (st.snapshotId && !st.backupErrorMessage) return { state: 'succeeded', status: st, snapshotId: st.snapshotId, mbrName: st.mbrName ?? `mbr-${st.snapshotId}` };
      return { state: 'failed', message: st.backupErrorMessage || 'the controller reported the backup failed without a message' };
    }
    if (st.backupStatus === 'Running') return { state: 'running', progress: st.progress ?? undefined };
    return { state: 'skipped' };
  }
}

/** Why the controller will not run a backup of this policy now, if it will not. */
export function unrunnable(policy: MetadataBackupPolicy): string | undefined {
  if (policy.metadata.deletionTimestamp) return 'it is being deleted';
  const ready = policy.status?.conditions?.find((c) => c.type === READY);
  // The controller stops at an invalid schedule before it looks at backup-now (controllers/backup-policy.ts, step 2).
  if (ready?.status === 'False' && ready.reason === 'InvalidSchedule' && ready.observedGeneration === policy.metadata.generation) {
    return `its schedule is invalid (${ready.message}); fix spec.schedule first`;
  }
  return undefined;
}

/** The line shown while the backup runs: phase, percent and bytes as far as the controller reported them. */
export function progressLine(policyName: string, o: Extract<Observation, { state: 'pending' | 'running' }>): string {
  if (o.state === 'pending') return `${policyName}: requested; waiting for the controller to start the backup`;
  const p = o.progress;
  if (!p?.phase) return `${policyName}: running`;
  if (p.waitingFor) return `${policyName}: ${p.phase}: waiting for ${p.waitingFor.replace(/^repository is locked by/, 'the repository lock of')}`;
  if (p.phase === 'Queued') return `${policyName}: Queued (waiting for the BackupLocation or a free backup slot)`;
  const parts = [`${policyName}: ${p.phase === 'Snapshot' ? 'Snapshot (etcd)' : 'Upload'}`];
  if (typeof p.percent === 'number') parts.push(`${p.percent}%`);
  if (typeof p.bytesDone === 'number') parts.push(typeof p.totalBytes === 'number' ? `${humanBytes(p.bytesDone)} of ${humanBytes(p.totalBytes)}` : humanBytes(p.bytesDone));
  return parts.join('  ');
}

/** The closing line of a successful backup, on stdout: the snapshot and its record first, for people and scripts. */
export function successLine(namespace: string, policyName: string, o: Extract<Observation, { state: 'succeeded' }>): string {
  const st = o.status;
  const figures = [
    typeof st.totalBytesProcessed === 'number' ? `${humanBytes(st.totalBytesProcessed)} read` : '',
    typeof st.dataAdded === 'number' ? `${humanBytes(st.dataAdded)} added` : '',
    st.totalDurationSecs ? `${Number(st.totalDurationSecs).toFixed(1)} s` : '',
  ].filter(Boolean).join(', ');
  return `Backup completed: snapshot ${o.snapshotId}, record ${o.mbrName} (policy ${namespace}/${policyName}${figures ? `; ${figures}` : ''})\n`;
}

export interface Terminal {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const CLEAR_LINE = '\r\u001b[2K';

/**
 * A status line: redrawn in place on a terminal, else written as a plain line each time it changes (for logs and CI,
 * where escapes would be noise). Text from the cluster passes plainText: an object must not drive the terminal.
 */
export class StatusLine {
  private shown = '';

  constructor(private readonly out: Terminal) {}

  update(line: string): void {
    const text = plainText(line).replace(/\n/g, ' ');
    if (text === this.shown) return;
    this.shown = text;
    if (!this.out.isTTY) {
      this.out.write(`${text}\n`);
      return;
    }
    // A line wider than the terminal wraps, and \r would then redraw only its last row.
    // A terminal that reports no size (0, as under `script` or a serial console) gets 80 columns.
    const width = Math.max((this.out.columns || 80) - 1, 10);
    this.out.write(CLEAR_LINE + (text.length > width ? `${text.slice(0, width - 1)}…` : text));
  }

  /** A line that stays (a hint), printed above the status line. */
  note(line: string): void {
    const text = plainText(line);
    if (!this.out.isTTY) {
      this.out.write(`${text}\n`);
      return;
    }
    this.out.write(`${CLEAR_LINE}${text}\n`);
    const shown = this.shown;
    this.shown = '';
    if (shown) this.update(shown);
  }

  /** Removes the status line from a terminal, so what follows starts at the left margin. */
  clear(): void {
    if (this.out.isTTY && this.shown) this.out.write(CLEAR_LINE);
    this.shown = '';
  }
}
