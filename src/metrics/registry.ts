/**
 * @module Every Prometheus metric the controller exposes. KubeDR's five keep their names, types and `policyName` label;
 * the rest are ours and say so in their help text.
 */
import { Counter, Gauge, Histogram, Registry, registerProcessMetrics } from './prom.ts';
import type { PolicyGauges } from './policy-gauges.ts';

const MINUTE = 60;
const HOUR = 3600;

/** KubeDR's buckets (15 s … 10 h), with finer ones below 15 s because a small etcd backs up in seconds. */
export const BACKUP_DURATION_BUCKETS = [1, 2.5, 5, 10, 15, 30, MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 5 * HOUR, 6 * HOUR, 7 * HOUR, 8 * HOUR, 9 * HOUR, 10 * HOUR];

/** Where the per-policy gauges come from at scrape time (the controller's caches); none until it is set. */
export type PolicyStateSource = () => PolicyGauges[];
/** The locations and whether each is ready, at scrape time (the controller's cache). */
export type LocationStateSource = () => { name: string; ready: boolean; protected?: boolean }[];

export function createMetrics() {
  const registry = new Registry();
  registerProcessMetrics(registry);
  const policy = ['policyName'] as const;
  const location = ['location'] as const;
  let source: PolicyStateSource = () => [];
  let locations: LocationStateSource = () => [];
  /** Policies whose series exist: each per-policy counter has one at 0 from the moment its policy is seen. */
  let known = new Set<string>();
  /** Policies with a series in the duration histogram: `zero()` would reset one that has observations. */
  const inHistogram = new Set<string>();

  /**
   * Before each scrape: every policy in the cache has a series in each per-policy counter and histogram (at 0 until it
   * counts something, so `increase()` sees a policy's first failure), and deleted policies' series go.
   */
  const trackPolicies = (counters: Counter<'policyName'>[], histogram: Histogram<'policyName'>) => {
    const current = new Set(source().map((g) => g.policyName));
    for (const name of current) {
      for (const c of counters) c.inc({ policyName: name }, 0);
      if (!inHistogram.has(name)) histogram.zero({ policyName: name });
      inHistogram.add(name);
    }
    for (const name of known) {
      if (current.has(name)) continue;
      for (const c of counters) c.remove({ policyName: name });
      histogram.remove({ policyName: name });
      inHistogram.delete(name);
    }
    known = current;
  };

  /** A gauge whose samples are computed from the policy state on every scrape. */
  const derived = (name: string, help: string, pick: (g: PolicyGauges) => number | undefined) => new Gauge({
    name, help, labelNames: policy, registers: [registry],
    collect() {
      this.reset();
      for (const g of source()) {
        const v = pick(g);
        if (v !== undefined) this.set({ policyName: g.policyName }, v);
      }
    },
  });

  // Registered first, because the registry reads metrics in registration order: its collect brings the per-policy
  // series in line with the policies before any of them is read.
  new Gauge({
    name: 'kubedr_policies', help: 'MetadataBackupPolicies this controller sees.', registers: [registry],
    collect() {
      trackPolicies([numBackups, numSuccessful, numFailed, skipped, verificationFailures], backupDuration);
      this.set(known.size);
    },
  });
  const numBackups = new Counter({ name: 'kubedr_num_backups', help: 'Total number of backups (every attempt).', labelNames: policy, registers: [registry] });
  const numSuccessful = new Counter({ name: 'kubedr_num_successful_backups', help: 'Total number of successful backups.', labelNames: policy, registers: [registry] });
  const numFailed = new Counter({ name: 'kubedr_num_failed_backups', help: 'Total number of failed backups.', labelNames: policy, registers: [registry] });
  const backupDuration = new Histogram({
    name: 'kubedr_backup_duration_seconds', help: 'Time (seconds) taken for the backup.', labelNames: policy,
    buckets: BACKUP_DURATION_BUCKETS, registers: [registry],
  });
  const verificationFailures = new Counter({
    name: 'kubedr_backup_verification_failures_total', help: 'Verifications that found a backup that does not restore.',
    labelNames: policy, registers: [registry],
  });
  const skipped = new Counter({
    name: 'kubedr_backups_skipped_total', help: 'Due backups skipped because the previous backup of the policy was still running.',
    labelNames: policy, registers: [registry],
  });

  return {
    registry,
    setPolicySource: (s: PolicyStateSource) => {
      source = s;
    },
    setLocationSource: (s: LocationStateSource) => {
      locations = s;
    },
    // KubeDR's metrics (monitoring.rst)
    backupSize: derived('kubedr_backup_size_bytes', 'Size of the backup in bytes (bytes the newest successful backup read).', (g) => g.backupSize),
    numBackups, numSuccessful, numFailed,
    backupDuration: {
      observe(labels: { policyName: string }, seconds: number): void {
        inHistogram.add(labels.policyName);
        backupDuration.observe(labels, seconds);
      },
    },
    // Ours: per policy, derived from status and records so nothing resets on restart
    lastSuccess: derived('kubedr_backup_last_success_timestamp_seconds', 'Unix time of the last successful backup.', (g) => g.lastSuccess),
    lastStatus: derived('kubedr_backup_last_status', 'Outcome of the most recent finished backup: 1 success, 0 failure.', (g) => g.lastStatus),
    nextRun: derived('kubedr_backup_next_run_timestamp_seconds', 'Unix time the schedule fires next (absent while suspended).', (g) => g.nextRun),
    previousRun: derived('kubedr_backup_previous_run_timestamp_seconds',
      'Unix time of the most recent scheduled run time at or before now (absent while suspended or before the first).', (g) => g.previousRun),
    retained: derived('kubedr_backups_retained', 'Successful backups kept (MetadataBackupRecords).', (g) => g.retained),
    damaged: derived('kubedr_backups_damaged', 'Kept backups that a repository check found damaged beyond repair: they do not restore.', (g) => g.damaged),
    etcdSnapshotSize: derived('kubedr_etcd_snapshot_size_bytes', 'Size of the newest backup\'s etcd snapshot in bytes.', (g) => g.etcdSnapshotSize),
    verificationDue: derived('kubedr_backup_verification_due_timestamp_seconds',
      'Unix time by which the newest verification was due (the latest backup run, or the latest verification slot); absent when verification is off.',
      (g) => g.verificationDue),
    lastVerified: derived('kubedr_backup_last_verified_timestamp_seconds',
      'Unix time a backup of the policy was last proven to restore (read back, restored into a throwaway etcd, checked).', (g) => g.lastVerified),
    lastVerificationStatus: derived('kubedr_backup_last_verification_status',
      'Outcome of the most recent verification of a backup of the policy: 1 it restored, 0 it did not; absent before the first and when verification is off.',
      (g) => g.lastVerificationStatus),
    verificationFailures,
    // One series per certificate file of the policy's newest backup: its earliest expiry.
    certificateExpiry: new Gauge({
      name: 'kubedr_certificate_expiry_timestamp_seconds',
      help: 'Unix time the earliest certificate in a file of the newest backup expires (label certificate: the file, relative to certsDir).',
      labelNames: [...policy, 'certificate'], registers: [registry],
      collect() {
        this.reset();
        for (const g of source()) {
          for (const c of g.certificates ?? []) this.set({ policyName: g.policyName, certificate: c.file }, c.notAfter);
        }
      },
    }),
    suspended: derived('kubedr_backup_policy_suspended', 'Whether the policy is suspended (1) or not (0).', (g) => (g.suspended ? 1 : 0)),
    skipped,
    // Ours: continuous backup (set by the recorder as it works; absent for policies without it)
    continuousLastStored: new Gauge({ name: 'kubedr_continuous_last_stored_timestamp_seconds',
      help: 'Unix time the newest stored change was received: the newest time a restore can reach.', labelNames: policy, registers: [registry] }),
    continuousLastStoredRevision: new Gauge({ name: 'kubedr_continuous_last_stored_revision',
      help: 'The newest etcd revision stored by continuous backup.', labelNames: policy, registers: [registry] }),
    continuousLastReceived: new Gauge({ name: 'kubedr_continuous_last_received_timestamp_seconds',
      help: 'Unix time the newest change was received from etcd\'s watch.', labelNames: policy, registers: [registry] }),
    continuousFlushInterval: new Gauge({ name: 'kubedr_continuous_flush_interval_seconds',
      help: 'The policy\'s flushInterval: a received change is stored within it.', labelNames: policy, registers: [registry] }),
    continuousGaps: new Counter({ name: 'kubedr_continuous_gaps_total',
      help: 'Gaps in continuous backup: changes etcd compacted before they were stored.', labelNames: policy, registers: [registry] }),
    continuousLastVerification: new Gauge({ name: 'kubedr_continuous_last_verification_status',
      help: 'Outcome of the newest proof of the policy\'s continuous backup: 1 the rebuilt revision had etcd\'s history, 0 it did not.', labelNames: policy, registers: [registry] }),
    continuousFailures: new Counter({ name: 'kubedr_continuous_failures_total',
      help: 'Failed watches of etcd and failed stores of change sets (each retried).', labelNames: [...policy, 'what'], registers: [registry] }),
    // Ours: backup locations
    // From the locations' status at scrape time: every location has its series after a restart, on every replica.
    locationReady: new Gauge({
      name: 'kubedr_backup_location_ready', help: 'Whether the BackupLocation\'s repository is initialised and opens (1) or not (0).',
      labelNames: location, registers: [registry],
      collect() {
        this.reset();
        for (const l of locations()) this.set({ location: l.name }, l.ready ? 1 : 0);
      },
    }),
    // No series for a location without spec.protection, or whose bucket settings the controller may not read.
    locationProtected: new Gauge({
      name: 'kubedr_backup_location_protected',
      help: 'Whether the bucket of a BackupLocation declaring spec.protection provides it (1: Protected condition True) or not (0: False).',
      labelNames: location, registers: [registry],
      collect() {
        this.reset();
        for (const l of locations()) if (l.protected !== undefined) this.set({ location: l.name }, l.protected ? 1 : 0);
      },
    }),
    locationInitFailures: new Counter({
      name: 'kubedr_backup_location_init_failures_total', help: 'Failed initialisations of a BackupLocation\'s repository.',
      labelNames: [...location, 'reason'], registers: [registry],
    }),
    pruneFailures: new Counter({
      name: 'kubedr_backup_location_prune_failures_total', help: 'Failed prunes of a BackupLocation\'s repository (forgotten snapshots keep their space; retried).',
      labelNames: location, registers: [registry],
    }),
    // Ours: restores (one-shot objects, so no per-object label)
    numRestores: new Counter({ name: 'kubedr_num_restores', help: 'Total number of finished MetadataRestores (every outcome).', registers: [registry] }),
    numFailedRestores: new Counter({ name: 'kubedr_num_failed_restores', help: 'Total number of failed MetadataRestores.', registers: [registry] }),
    // Ours: controller health
    reconciles: new Counter({
      name: 'kubedr_reconcile_total', help: 'Reconciles by controller and outcome.', labelNames: ['controller', 'result'], registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
