/**
 * @module Per-policy gauges derived from the world at scrape time: the policies' status and the records. They need no
 * rebuilding after a restart, and every replica reports the same values.
 */
import type { MetadataBackupPolicy, MetadataBackupRecord } from '../api/types.ts';
import { parseSchedule } from '../schedule/schedule.ts';

export interface PolicyGauges {
  policyName: string;
  /** Unix seconds of the last successful backup, if any. */
  lastSuccess?: number;
  /** 1 when the most recent finished backup succeeded, 0 when it failed; absent before the first. */
  lastStatus?: number;
  /** Unix seconds of the next scheduled run; absent when suspended or the schedule is invalid. */
  nextRun?: number;
  /**
   * Unix seconds of the most recent scheduled run time at or before now (since the policy was created); absent when
   * suspended, the schedule is invalid, or no slot has passed yet. With the last success, it tells an alert whether a
   * slot went by without a backup, for any schedule.
   */
  previousRun?: number;
  /** Successful backups kept (records). */
  retained: number;
  /** Kept backups a repository check found damaged (records with status.damage): they do not restore. */
  damaged: number;
  /** Size of the newest backup's etcd snapshot, bytes. */
  etcdSnapshotSize?: number;
  /** Bytes the newest successful backup read (KubeDR's kubedr_backup_size_bytes). */
  backupSize?: number;
  suspended: boolean;
  /** Unix seconds of the last verification that proved a backup restores; absent before the first. */
  lastVerified?: number;
  /**
   * Unix seconds by which the newest verification was due: the latest backup run time (verification after each
   * backup) or the latest verification slot (its own schedule); absent when verification is off or nothing is due yet.
   * With lastVerified, it tells an alert that no verified backup came in time, for any schedule.
   */
  verificationDue?: number;
  /**
   * 1 when the most recent verification of a backup of the policy succeeded, 0 when it failed; absent before the first
   * and when verification is off (mode Never: a failure from before it was turned off is no longer news). Derived
   * from the records' status.verification and the policy's lastVerifiedTime, so it is right after a restart and stays
   * 0 until a later verification succeeds.
   */
  lastVerificationStatus?: number;
  /**
   * Per certificate file in the newest backup (path relative to certsDir), Unix seconds of its earliest expiry. One
   * entry per file, so the series stay as few as the files in certsDir.
   */
  certificates?: { file: string; notAfter: number }[];
}

const seconds = (iso?: string): number | undefined => {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? t / 1000 : undefined;
};

export function policyGauges(policies: readonly MetadataBackupPolicy[], records: readonly MetadataBackupRecord[], now: Date): PolicyGauges[] {
  return policies.map((p) => {
    const name = p.metadata.name;
    const mine = records.filter((r) => r.metadata.namespace === p.metadata.namespace && r.spec.policy === name && !r.metadata.deletionTimestamp);
    const newest = mine.reduce<MetadataBackupRecord | undefined>((a, r) =>
      !a || (seconds(r.status?.backupTime) ?? 0) > (seconds(a.status?.backupTime) ?? 0) ? r : a, undefined);
    const st = p.status ?? {};
    const lastSuccess = seconds(st.lastSuccessfulBackupTime) ?? seconds(newest?.status?.backupTime);
    // While a backup runs, backupTime still names the previous finished one.
    const lastStatus = st.backupTime === undefined ? undefined
      : st.backupStatus === 'Completed' || (st.backupStatus === 'Running' && st.lastSuccessfulBackupTime === st.backupTime) ? 1 : 0;
    let nextRun: number | undefined;
    let previousRun: number | undefined;
    if (!p.spec.suspend) {
      try {
        const schedule = parseSchedule(p.spec.schedule, p.spec.timeZone);
        nextRun = schedule.next(now).getTime() / 1000;
        const created = new Date(Date.parse(p.metadata.creationTimestamp ?? '') || 0);
        const prev = schedule.lastAtOrBefore(now, created);
        previousRun = prev ? prev.getTime() / 1000 : undefined;
      } catch {
        nextRun = undefined;
      }
    }
    return {
      policyName: name, lastSuccess, lastStatus, nextRun, previousRun, retained: mine.length, damaged: mine.filter((r) => r.status?.damage).length, suspended: p.spec.suspend === true,
      etcdSnapshotSize: newest?.status?.etcdSnapshotSize, backupSize: newest?.status?.totalBytesProcessed,
      lastVerified: seconds(st.lastVerifiedTime),
      verificationDue: verificationDue(p, now, previousRun),
      lastVerificationStatus: lastVerificationStatus(p, mine),
      certificates: (newest?.status?.certificates ?? []).flatMap((c) => {
        const notAfter = seconds(c.notAfter);
        return notAfter === undefined ? [] : [{ file: c.file, notAfter }];
      }),
    };
  });
}

/**
 * See PolicyGauges.lastVerificationStatus. The newest failure among the records against the newest success (a record's,
 * or the policy's lastVerifiedTime, which outlives a record that retention removed). A failed record that was deleted
 * (by retention or by hand) no longer counts: its backup is no longer one to restore from.
 */
function lastVerificationStatus(p: MetadataBackupPolicy, records: readonly MetadataBackupRecord[]): number | undefined {
  if ((p.spec.verification?.mode ?? 'AfterBackup') === 'Never') return undefined;
  let failed: number | undefined;
  let succeeded = seconds(p.status?.lastVerifiedTime);
  for (const r of records) {
    const v = r.status?.verification;
    const t = seconds(v?.time);
    if (t === undefined) continue;
    if (v?.result === 'Failed') failed = Math.max(failed ?? t, t);
    else if (v?.result === 'Succeeded') succeeded = Math.max(succeeded ?? t, t);
  }
  if (failed === undefined) return succeeded === undefined ? undefined : 1;
  return succeeded !== undefined && succeeded >= failed ? 1 : 0;
}

/** See PolicyGauges.verificationDue. */
function verificationDue(p: MetadataBackupPolicy, now: Date, previousBackupRun: number | undefined): number | undefined {
  const mode = p.spec.verification?.mode ?? 'AfterBackup';
  if (mode === 'Never') return undefined;
  if (mode === 'AfterBackup') return previousBackupRun;
  try {
    const created = new Date(Date.parse(p.metadata.creationTimestamp ?? '') || 0);
    const prev = parseSchedule(p.spec.verification?.schedule ?? '', p.spec.timeZone).lastAtOrBefore(now, created);
    return prev ? prev.getTime() / 1000 : undefined;
  } catch {
    return undefined;
  }
}
