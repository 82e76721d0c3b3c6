/** @module The controller's configuration: the only reader of its flags and environment; returns a typed, frozen Config. */
import { hostname } from 'node:os';
import { DEFAULT_NAMESPACE } from './api/group.ts';
import { type FlagSpec, UsageError, parseFlags } from './cli/flags.ts';
import { type LogLevel, isLogLevel } from './util/log.ts';

export const controllerFlags = {
  kubeconfig: { type: 'string', help: 'kubeconfig file; default $KUBECONFIG, ~/.kube/config, then the in-cluster ServiceAccount', env: 'KUBECONFIG' },
  context: { type: 'string', help: 'kubeconfig context to use' },
  namespace: { type: 'string', help: 'namespace whose KubeDR objects this controller serves', env: 'POD_NAMESPACE', default: DEFAULT_NAMESPACE },
  'http-address': { type: 'string', help: 'address for /metrics, /healthz and /readyz', default: '0.0.0.0' },
  'http-port': { type: 'int', help: 'port for /metrics, /healthz and /readyz (0: any free port)', env: 'KUBEDR_HTTP_PORT', default: 8080 },
  'log-level': { type: 'string', help: 'debug, info, warn or error', env: 'KUBEDR_LOG_LEVEL', default: 'info' },
  'leader-elect': { type: 'boolean', help: 'elect a leader through a Lease so only one replica acts', default: true },
  'leader-elect-lease-name': { type: 'string', help: 'name of the Lease', default: 'kubedr-controller' },
  'leader-elect-lease-duration': { type: 'duration', help: 'how long a standby waits before taking an unrenewed lease', default: '15s' },
  'leader-elect-renew-deadline': { type: 'duration', help: 'how long the leader keeps trying to renew before giving up', default: '10s' },
  'leader-elect-retry-period': { type: 'duration', help: 'interval between lease attempts', default: '2s' },
  identity: { type: 'string', help: 'this replica\'s name in the Lease', env: 'POD_NAME' },
  'resync-period': { type: 'duration', help: 'interval at which every object is reconciled again', default: '10m' },
  'shutdown-timeout': { type: 'duration', help: 'on SIGTERM, how long running work may take to finish before it is abandoned', default: '30s' },
  'restic-timeout': { type: 'duration', help: 'time limit of one repository operation (init, check)', default: '5m' },
  'restic-cache-dir': { type: 'string', help: 'restic cache directory (default: no cache)', env: 'KUBEDR_RESTIC_CACHE_DIR' },
  'max-concurrent-backups': { type: 'int', help: 'backups running at once across all policies (protects etcd)', default: 1 },
  'backup-host': { type: 'string', help: 'host name recorded in restic snapshots (default: the node name, else this host)', env: 'NODE_NAME' },
  'progress-interval': { type: 'duration', help: 'least time between progress updates in a running backup\'s status', default: '3s' },
  'backup-stall-timeout': { type: 'duration', help: 'fail a backup whose upload makes no progress for this long (S3 gone mid-upload)', default: '5m' },
  'location-wait': { type: 'duration', help: 'how long a backup waits for a missing or initialising BackupLocation', default: '2m' },
  'forget-retry': { type: 'duration', help: 'retry interval for forgetting the snapshot of a deleted record while its repository is unreachable', default: '1m' },
  'location-retry-base': { type: 'duration', help: 'first retry delay of a location whose endpoint failed; doubles up to 5m', default: '10s' },
  'restore-image': { type: 'string', help: 'image of MetadataRestore pods: this controller\'s own (the Helm chart sets it); without it restores fail', env: 'KUBEDR_RESTORE_IMAGE' },
  'restore-start-timeout': { type: 'duration', help: 'fail a restore whose pod has not started after this long (unschedulable, image pull failure)', default: '5m' },
  'restore-timeout': { type: 'duration', help: 'time limit of a running restore pod (its activeDeadlineSeconds)', default: '2h' },
} satisfies Record<string, FlagSpec>;

export interface Config {
  kubeconfig?: string;
  context?: string;
  namespace: string;
  httpAddress: string;
  httpPort: number;
  logLevel: LogLevel;
  leaderElection: false | {
    leaseName: string;
    leaseDurationMs: number;
    renewDeadlineMs: number;
    retryPeriodMs: number;
  };
  identity: string;
  resyncMs: number;
  shutdownTimeoutMs: number;
  resticTimeoutMs: number;
  resticCacheDir?: string;
  locationRetryBaseMs: number;
  maxConcurrentBackups: number;
  backupHost: string;
  progressIntervalMs: number;
  backupStallTimeoutMs: number;
  locationWaitMs: number;
  forgetRetryMs: number;
  restoreImage?: string;
  restoreStartTimeoutMs: number;
  restoreTimeoutMs: number;
}

/** Parses `kubedr controller` flags; throws UsageError with a readable message on bad values. */
export function loadConfig(argv: string[], env: Record<string, string | undefined> = process.env): Config | 'help' {
  const { flags: f, help } = parseFlags(controllerFlags, argv, env);
  if (help) return 'help';
  if (!isLogLevel(f['log-level'])) throw new UsageError(`--log-level must be debug, info, warn or error, not "${f['log-level']}"`);
  const le = {
    leaseName: f['leader-elect-lease-name'],
    leaseDurationMs: f['leader-elect-lease-duration'],
    renewDeadlineMs: f['leader-elect-renew-deadline'],
    retryPeriodMs: f['leader-elect-retry-period'],
  };
  if (le.renewDeadlineMs >= le.leaseDurationMs) throw new UsageError('--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration');
  if (f['max-concurrent-backups'] < 1) throw new UsageError('--max-concurrent-backups must be at least 1');
  if (le.retryPeriodMs >= le.renewDeadlineMs) throw new UsageError('--leader-elect-retry-period must be shorter than --leader-elect-renew-deadline');
  return Object.freeze({
    kubeconfig: f.kubeconfig,
    context: f.context,
    namespace: f.namespace,
    httpAddress: f['http-address'],
    httpPort: f['http-port'],
    logLevel: f['log-level'],
    leaderElection: f['leader-elect'] ? le : false,
    identity: f.identity ?? `${hostname()}-${crypto.randomUUID().slice(0, 8)}`,
    resyncMs: f['resync-period'],
    shutdownTimeoutMs: f['shutdown-timeout'],
    resticTimeoutMs: f['restic-timeout'],
    resticCacheDir: f['restic-cache-dir'],
    locationRetryBaseMs: f['location-retry-base'],
    maxConcurrentBackups: f['max-concurrent-backups'],
    backupHost: f['backup-host'] ?? hostname(),
    progressIntervalMs: f['progress-interval'],
    backupStallTimeoutMs: f['backup-stall-timeout'],
    locationWaitMs: f['location-wait'],
    forgetRetryMs: f['forget-retry'],
    restoreImage: f['restore-image'],
    restoreStartTimeoutMs: f['restore-start-timeout'],
    restoreTimeoutMs: f['restore-timeout'],
  });
}
