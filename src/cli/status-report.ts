/**
 * @module What `kubedr status` shows, built from the objects as listed (pure): the locations, the policies with their
 * last backup and verification, and the failures a cluster operator should look at. The same report prints as
 * columns or as one JSON document.
 */
import { LAST_BACKUP_SUCCEEDED, READY, SNAPSHOT_AVAILABLE } from '../api/conditions.ts';
import { BACKUP_VERIFICATION_FAILED, INIT_FAILED, SNAPSHOT_MISSING } from '../api/events.ts';
import { GROUP } from '../api/group.ts';
import type { BackupLocation, KubeEvent, MetadataBackupPolicy, MetadataBackupRecord } from '../api/types.ts';
import { plainText } from '../util/text.ts';

export interface LocationRow {
  namespace: string;
  name: string;
  ready: boolean;
  /** status.initStatus, or "Pending" before the controller looked at it. */
  status: string;
  url: string;
  bucket: string;
  message: string;
}

export interface PolicyRow {
  namespace: string;
  name: string;
  destination: string;
  schedule: string;
  suspended: boolean;
  nextBackupTime: string | null;
  /** Running, Completed or Failed: the most recent backup; null before the first. */
  lastBackupStatus: string | null;
  lastBackupTime: string | null;
  lastSnapshotId: string | null;
  lastSuccessfulBackupTime: string | null;
  lastVerifiedTime: string | null;
  lastVerifiedSnapshotId: string | null;
  /** Upload or snapshot percent of a running backup. */
  runningPercent: number | null;
  /** MetadataBackupRecords of the policy, that is the backups retained. */
  records: number;
  /**
   * Continuous backup, when the policy has it: its state and the window a restore can reach, from the oldest retained
   * backup (changes are kept back to it) to the newest stored change; the newest gap in it, when one was recorded.
   */
  continuous: {
    state: string; restorableFrom: string | null; lastStoredTime: string | null; gaps: number; lastGapTime: string | null; message: string;
  } | null;
}

export interface Failure {
  time: string | null;
  namespace: string;
  /** Kind/name of the object concerned. */
  object: string;
  reason: string;
  message: string;
  /** `status`: how the object is now; `event`: a Warning Event of the last 24 hours. */
  source: 'status' | 'event';
  count: number;
}

export interface StatusReport {
  /** The namespace shown, or null for all namespaces. */
  namespace: string | null;
  time: string;
  locations: LocationRow[];
  policies: PolicyRow[];
  /** Newest first. */
  failures: Failure[];
}

export interface StatusInput {
  namespace: string | null;
  now: Date;
  locations: BackupLocation[];
  policies: MetadataBackupPolicy[];
  records: MetadataBackupRecord[];
  events: KubeEvent[];
}

/** How far back Warning events count as recent (the API server keeps Events one hour by default, often longer). */
export const EVENT_WINDOW_MS = 24 * 3600_000;

const ns = (o: { metadata: { namespace?: string } }) => o.metadata.namespace ?? '';
const byName = <T extends { metadata: { name: string; namespace?: string } }>(a: T, b: T) =>
  ns(a).localeCompare(ns(b)) || a.metadata.name.localeCompare(b.metadata.name);

function locationRow(l: BackupLocation): LocationRow {
  const st = l.status;
  const ready = st?.conditions?.find((c) => c.type === READY);
  return {
    namespace: ns(l), name: l.metadata.name, ready: st?.initStatus === 'Completed', status: st?.initStatus ?? 'Pending',
    url: l.spec.url, bucket: l.spec.bucketName, message: st?.initErrorMessage || (ready?.status === 'True' ? '' : ready?.message ?? ''),
  };
}

/** The time at the start of `status.continuous.lastGap` ("TIME: what happened"), if it has one. */
function gapTime(lastGap: string | undefined): string | null {
  const t = /^(\d{4}-\d\d-\d\dT[\d:.]+Z)/.exec(lastGap ?? '')?.[1];
  return t && !Number.isNaN(Date.parse(t)) ? t : null;
}

function policyRow(p: MetadataBackupPolicy, records: MetadataBackupRecord[]): PolicyRow {
  const st = p.status ?? {};
  const retained = records.filter((r) => ns(r) === ns(p) && r.spec.policy === p.metadata.name && !r.metadata.deletionTimestamp);
  const oldest = retained.map((r) => r.status?.backupTime ?? '').filter((t) => t !== '').sort()[0] ?? null;
  return {
    namespace: ns(p), name: p.metadata.name, destination: p.spec.destination, schedule: p.spec.schedule, suspended: p.spec.suspend === true,
    nextBackupTime: st.nextBackupTime || null, lastBackupStatus: st.backupStatus ?? null, lastBackupTime: st.backupTime || null,
    lastSnapshotId: st.snapshotId || null, lastSuccessfulBackupTime: st.lastSuccessfulBackupTime || null,
    lastVerifiedTime: st.lastVerifiedTime || null, lastVerifiedSnapshotId: st.lastVerifiedSnapshotId || null,
    runningPercent: st.backupStatus === 'Running' && typeof st.progress?.percent === 'number' ? st.progress.percent : null,
    records: retained.length,
    continuous: p.spec.continuous?.enabled ? {
      state: st.continuous?.state ?? 'Pending', restorableFrom: oldest, lastStoredTime: st.continuous?.lastStoredTime || null,
      gaps: st.continuous?.gaps ?? 0, lastGapTime: gapTime(st.continuous?.lastGap), message: st.continuous?.message ?? '',
    } : null,
  };
}

/** Failures the objects show now: they stay until fixed, unlike Events, which expire. */
function statusFailures(input: StatusInput): Failure[] {
  const out: Failure[] = [];
  const add = (o: { metadata: { name: string; namespace?: string } }, kind: string, f: { time?: string; reason: string; message?: string }) =>
    out.push({ time: f.time || null, namespace: ns(o), object: `${kind}/${o.metadata.name}`, reason: f.reason, message: f.message ?? '', source: 'status', count: 1 });
  for (const l of input.locations) {
    if (l.status?.initStatus === 'Failed') add(l, 'BackupLocation', { time: l.status.initTime, reason: INIT_FAILED, message: l.status.initErrorMessage });
  }
  for (const p of input.policies) {
    const st = p.status;
    if (st?.backupStatus !== 'Failed') continue;
    const why = st.conditions?.find((c) => c.type === LAST_BACKUP_SUCCEEDED && c.status === 'False')?.reason
      ?? st.conditions?.find((c) => c.type === READY && c.status === 'False')?.reason ?? 'BackupFailed';
    add(p, 'MetadataBackupPolicy', { time: st.backupTime, reason: why, message: st.backupErrorMessage });
  }
  for (const r of input.records) {
    const v = r.status?.verification;
    if (v?.result === 'Failed') add(r, 'MetadataBackupRecord', { time: v.time, reason: BACKUP_VERIFICATION_FAILED, message: v.message });
    const available = r.status?.conditions?.find((c) => c.type === SNAPSHOT_AVAILABLE);
    if (available?.status === 'False') add(r, 'MetadataBackupRecord', { time: available.lastTransitionTime, reason: SNAPSHOT_MISSING, message: available.message });
  }
  return out;
}

const eventTime = (e: KubeEvent) => e.lastTimestamp || e.eventTime || e.firstTimestamp || e.metadata.creationTimestamp || '';

function eventFailures(input: StatusInput): Failure[] {
  const since = input.now.getTime() - EVENT_WINDOW_MS;
  return input.events
    .filter((e) => e.type === 'Warning' && e.involvedObject.apiVersion?.startsWith(`${GROUP}/`) && Date.parse(eventTime(e)) >= since)
    .map((e) => ({
      time: eventTime(e), namespace: e.involvedObject.namespace ?? ns(e), object: `${e.involvedObject.kind}/${e.involvedObject.name}`,
      reason: e.reason ?? '', message: e.message ?? '', source: 'event', count: e.count ?? 1,
    }));
}

export function buildReport(input: StatusInput): StatusReport {
  // A failed backup is in both the policy's status and a BackupFailed event: show it once, as the object shows it now.
  const seen = new Set<string>();
  const failures = [...statusFailures(input), ...eventFailures(input)].filter((f) => {
    const key = `${f.namespace}\u0000${f.object}\u0000${f.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  }).sort((a, b) => (Date.parse(b.time ?? '') || 0) - (Date.parse(a.time ?? '') || 0));
  return {
    namespace: input.namespace, time: input.now.toISOString(),
    locations: [...input.locations].sort(byName).map(locationRow),
    policies: [...input.policies].sort(byName).map((p) => policyRow(p, input.records)),
    failures,
  };
}

/** 90 s → "1m", 5 h → "5h", as kubectl prints ages. */
export function shortDuration(ms: number): string {
  const s = Math.floor(Math.abs(ms) / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** "3m ago", "in 5h", or "-" for no time. */
export function relative(time: string | null, now: Date): string {
  const t = Date.parse(time ?? '');
  if (Number.isNaN(t)) return '-';
  const d = t - now.getTime();
  return d > 0 ? `in ${shortDuration(d)}` : `${shortDuration(d)} ago`;
}

/** Columns two spaces apart, the last one not padded. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** Longest message shown in a column; `--json` has them whole. */
const MESSAGE_WIDTH = 100;
const FAILURES_SHOWN = 10;

function clip(text: string, width = MESSAGE_WIDTH): string {
  const one = plainText(text).replace(/\s+/g, ' ').trim();
  return one.length > width ? `${one.slice(0, width - 1)}…` : one || '-';
}

function result(p: PolicyRow): string {
  if (!p.lastBackupStatus) return 'none yet';
  return p.lastBackupStatus === 'Running' && p.runningPercent !== null ? `Running ${p.runningPercent}%` : p.lastBackupStatus;
}

/** The report as plain text columns (no colour, no escapes): one section each for locations, policies and failures. */
export function formatReport(r: StatusReport, now: Date): string {
  const all = r.namespace === null;
  const nsCol = (row: { namespace: string }) => (all ? [row.namespace] : []);
  const nsHead = all ? ['NAMESPACE'] : [];
  const where = all ? 'in any namespace' : `in namespace ${r.namespace}`;
  const out: string[] = [];

  out.push('BACKUP LOCATIONS');
  out.push(r.locations.length === 0 ? `  none ${where}` : table([
    [...nsHead, 'NAME', 'READY', 'STATUS', 'BUCKET', 'MESSAGE'],
    ...r.locations.map((l) => [...nsCol(l), l.name, l.ready ? 'yes' : 'no', l.status, l.bucket, clip(l.message)]),
  ]));

  out.push('', 'BACKUP POLICIES');
  out.push(r.policies.length === 0 ? `  none ${where}` : table([
    [...nsHead, 'NAME', 'LOCATION', 'SCHEDULE', 'NEXT RUN', 'LAST BACKUP', 'RESULT', 'SNAPSHOT', 'LAST SUCCESS', 'VERIFIED', 'RECORDS'],
    ...r.policies.map((p) => [...nsCol(p), p.name, p.destination, p.schedule, p.suspended ? 'suspended' : relative(p.nextBackupTime, now),
      relative(p.lastBackupTime, now), result(p), p.lastSnapshotId ?? '-', relative(p.lastSuccessfulBackupTime, now),
      relative(p.lastVerifiedTime, now), String(p.records)]),
  ]));

  const continuous = r.policies.filter((p) => p.continuous);
  if (continuous.length > 0) {
    out.push('', 'CONTINUOUS BACKUP (restorable from the oldest retained backup to the last stored change, except in gaps: kubedr snapshots lists them)');
    out.push(table([
      [...nsHead, 'POLICY', 'STATE', 'RESTORABLE FROM', 'LAST STORED CHANGE', 'GAPS', 'LAST GAP', 'MESSAGE'],
      ...continuous.map((p) => {
        const c = p.continuous!;
        return [...nsCol(p), p.name, c.state, relative(c.restorableFrom, now), relative(c.lastStoredTime, now), String(c.gaps),
          c.gaps > 0 ? relative(c.lastGapTime, now) : '-', clip(c.message)];
      }),
    ]));
  }

  out.push('', 'FAILURES (as the objects show them now, and Warning events of the last 24 h)');
  if (r.failures.length === 0) out.push(`  none ${where}`);
  else {
    out.push(table([
      ['WHEN', ...nsHead, 'OBJECT', 'REASON', 'MESSAGE'],
      ...r.failures.slice(0, FAILURES_SHOWN).map((f) => [relative(f.time, now), ...nsCol(f), f.object, f.reason,
        clip(f.count > 1 ? `(${f.count}x) ${f.message}` : f.message)]),
    ]));
    if (r.failures.length > FAILURES_SHOWN) out.push(`  … and ${r.failures.length - FAILURES_SHOWN} more (--json lists them all)`);
  }
  return `${out.join('\n')}\n`;
}
