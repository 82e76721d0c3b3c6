/**
 * @module Every Prometheus metric the controller exposes. KubeDR's five keep their names, types and `policyName` label;
 * the rest are ours and say so in their help text.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const MINUTE = 60;
const HOUR = 3600;

/** KubeDR's buckets (15 s … 10 h), with finer ones below 15 s because a small etcd backs up in seconds. */
export const BACKUP_DURATION_BUCKETS = [1, 2.5, 5, 10, 15, 30, MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 5 * HOUR, 6 * HOUR, 7 * HOUR, 8 * HOUR, 9 * HOUR, 10 * HOUR];

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const policy = ['policyName'] as const;
  const location = ['location'] as const;
  return {
    registry,
    // KubeDR's metrics (monitoring.rst)
    backupSize: new Gauge({ name: 'kubedr_backup_size_bytes', help: 'Size of the backup in bytes.', labelNames: policy, registers: [registry] }),
    numBackups: new Counter({ name: 'kubedr_num_backups', help: 'Total number of backups (every attempt).', labelNames: policy, registers: [registry] }),
    numSuccessful: new Counter({ name: 'kubedr_num_successful_backups', help: 'Total number of successful backups.', labelNames: policy, registers: [registry] }),
    numFailed: new Counter({ name: 'kubedr_num_failed_backups', help: 'Total number of failed backups.', labelNames: policy, registers: [registry] }),
    backupDuration: new Histogram({
      name: 'kubedr_backup_duration_seconds', help: 'Time (seconds) taken for the backup.', labelNames: policy,
      buckets: BACKUP_DURATION_BUCKETS, registers: [registry],
    }),
    // Ours: backup locations
    locationReady: new Gauge({
      name: 'kubedr_backup_location_ready', help: 'Whether the BackupLocation\'s repository is initialised and opens (1) or not (0).',
      labelNames: location, registers: [registry],
    }),
    locationInitFailures: new Counter({
      name: 'kubedr_backup_location_init_failures_total', help: 'Failed initialisations of a BackupLocation\'s repository.',
      labelNames: [...location, 'reason'], registers: [registry],
    }),
    // Ours: controller health
    reconciles: new Counter({
      name: 'kubedr_reconcile_total', help: 'Reconciles by controller and outcome.', labelNames: ['controller', 'result'], registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
