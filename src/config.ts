/** @module The controller's configuration: the only reader of its flags and environment; returns a typed, frozen Config. */
import { hostname } from 'node:os';
import { DEFAULT_NAMESPACE, RESTORE_UID } from './api/group.ts';
import { CONTROL_PLANE_TOLERATIONS } from './api/placement.ts';
import type { Toleration } from './api/types.ts';
import { type FlagSpec, UsageError, parseFlags } from './util/flags.ts';
import { type LogLevel, isLogLevel } from './util/log.ts';

const MAX_UID = 2_147_483_647;

export const controllerFlags = {
  // No `env: 'KUBECONFIG'`: $KUBECONFIG is kubectl's list of files to merge, which kube/kubeconfig.ts reads as such.
  kubeconfig: { type: 'string', help: 'kubeconfig file; default: the files in $KUBECONFIG (merged as kubectl does), ~/.kube/config, then the in-cluster ServiceAccount' },
  context: { type: 'string', help: 'kubeconfig context to use' },
  namespace: { type: 'string', help: 'namespace whose KubeDR objects this controller serves', env: 'POD_NAMESPACE', default: DEFAULT_NAMESPACE },
  'http-address': { type: 'string', help: 'address for /metrics, /healthz and /readyz', default: '0.0.0.0' },
  'http-port': { type: 'int', help: 'port for /metrics, /healthz and /readyz (0: any free port)', env: 'KUBEDR_HTTP_PORT', default: 9473 },
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
  'cluster-id': {
    type: 'string', env: 'KUBEDR_CLUSTER_ID',
    help: 'identity of this cluster, recorded with every backup: in a bucket shared by several clusters, only snapshots with this id (and this namespace) are adopted, expired or restored as "latest" (default: the UID of the kube-system namespace; give another cluster\'s id only to take over its backups)',
  },
  'cluster-name': { type: 'string', env: 'KUBEDR_CLUSTER_NAME', help: 'readable name of this cluster, recorded with every backup and shown by kubedr snapshots (default: cluster-<first 8 characters of the cluster id>)' },
  'adopt-unmarked-snapshots': {
    type: 'boolean', default: false,
    help: 'also adopt snapshots without a cluster identity (taken before kubedr recorded one, by KubeDR or by hand) whose policy name is one of this namespace\'s; only when no other cluster or install writes such snapshots to the bucket',
  },
  'lock-wait': { type: 'duration', default: '2m', help: 'how long a repository write waits for another writer\'s lock (another cluster sharing the bucket) before it fails; locks are never removed unless restic calls them stale' },
  'progress-interval': { type: 'duration', help: 'least time between progress updates in a running backup\'s status', default: '3s' },
  'backup-stall-timeout': { type: 'duration', help: 'fail a backup whose upload makes no progress for this long (S3 gone mid-upload)', default: '5m' },
  'backup-layout': { type: 'string', default: 'staged', env: 'KUBEDR_BACKUP_LAYOUT', help: 'how a backup reaches restic: staged (the etcd snapshot written to /tmp, then stored) or streamed (restic stores it while etcd sends it, as one archive: nothing of it on the node\'s disk, but on 2 cores no faster, and its restore from S3 is slower: 15.3 s against 11.6 s at 1.1 GB, docs/performance.md; needs restic ≥ 0.17, else staged). Restores read both' },
  'location-wait': { type: 'duration', help: 'how long a backup waits for a missing or initialising BackupLocation', default: '2m' },
  'prune-interval': { type: 'duration', help: 'longest time between two prunes of a location whose snapshots were forgotten (prune removes their data; it runs apart from backups)', default: '24h' },
  'continuous-verify-interval': { type: 'duration', help: 'time between proofs of each continuous policy\'s chain (the newest stored revision rebuilt from S3 and compared with etcd); 0 turns them off', default: '6h' },
  'check-interval': { type: 'duration', help: 'time between scheduled checks of each location\'s data (restic check --read-data-subset; damage found is repaired, off the backup path); 0 turns them off', default: '24h' },
  'check-read-data-subset': { type: 'string', help: 'part of the repository\'s data each scheduled check reads, as restic\'s --read-data-subset takes it (5%, 1/10, 500M)', default: '5%' },
  'repair-damage': { type: 'boolean', help: 'repair a repository found damaged (restic repair packs: damaged packs removed after salvaging their intact data), mark the backups that lost data and back up again; false: only report it (forensics, or a bucket whose objects may not be deleted)', default: true },
  'prune-after-forgets': { type: 'int', help: 'prune a location sooner once this many of its snapshots were forgotten', default: 50 },
  'sync-period': { type: 'duration', help: 'interval between repository syncs: snapshots without a record get one (adopted), records without a snapshot are flagged', default: '10m' },
  'forget-retry': { type: 'duration', help: 'retry interval for forgetting the snapshot of a deleted record while its repository is unreachable', default: '1m' },
  'location-retry-base': { type: 'duration', help: 'first retry delay of a location whose endpoint failed; doubles up to 5m', default: '10s' },
  'restore-image': { type: 'string', help: 'image of MetadataRestore pods: this controller\'s own (the Helm chart sets it); without it restores fail', env: 'KUBEDR_RESTORE_IMAGE' },
  'object-restore-service-account': { type: 'string', help: 'service account of the pods of MetadataRestores with spec.objects: they create objects in the live cluster, so they need a ClusterRole that may (the Helm chart\'s objectRestore.enabled makes both); without it such restores fail' },
  'kube-apiserver-image': { type: 'string', help: 'image of the kube-apiserver that serves a backup in an objects restore\'s pod, of the backed-up cluster\'s version (default: the image of the cluster\'s own kube-apiserver static pod, read from kube-system)' },
  'verify-in-pod': { type: 'boolean', help: 'run each verification in a pod of its own, sized from the backup (needs --restore-image; without one, verifications run in this process and need its memory: about the etcd snapshot\'s size)', default: true },
  'restore-start-timeout': { type: 'duration', help: 'fail a restore whose pod has not started after this long (unschedulable, image pull failure)', default: '5m' },
  'restore-timeout': { type: 'duration', help: 'time limit of a running restore pod (its activeDeadlineSeconds)', default: '2h' },
  'restore-node-selector': { type: 'string', help: 'node labels a restore pod\'s node must have: comma-separated key=value pairs, e.g. kubernetes.io/os=linux (default: any node)' },
  'restore-tolerations': {
    type: 'string', help: 'tolerations of restore pods: a JSON array of Kubernetes tolerations, [] for none (the default tolerates kubeadm\'s control-plane taints)',
    default: JSON.stringify(CONTROL_PLANE_TOLERATIONS),
  },
  'restore-run-as-user': {
    type: 'int', default: RESTORE_UID,
    help: 'uid and gid of restore pods (the default is the image\'s user); 0 runs them as root, for hostPath and local volumes, which ignore fsGroup, whose directory only root may write',
  },
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
  /** Given by flag; else read from the cluster at start. */
  clusterId?: string;
  clusterName?: string;
  adoptUnmarkedSnapshots: boolean;
  lockWaitMs: number;
  progressIntervalMs: number;
  backupStallTimeoutMs: number;
  backupLayout: BackupLayout;
  locationWaitMs: number;
  forgetRetryMs: number;
  syncPeriodMs: number;
  pruneIntervalMs: number;
  /** 0: no scheduled checks. */
  checkIntervalMs: number;
  continuousVerifyIntervalMs: number;
  checkReadDataSubset: string;
  repairDamage: boolean;
  verifyInPod: boolean;
  pruneAfterForgets: number;
  restoreImage?: string;
  /** Service account of objects-restore pods; without it, MetadataRestores with spec.objects fail. */
  objectRestoreServiceAccount?: string;
  /** The kube-apiserver image an objects restore serves the backup with; default: the cluster's own. */
  kubeApiserverImage?: string;
  restoreStartTimeoutMs: number;
  restoreTimeoutMs: number;
  restoreNodeSelector: Record<string, string>;
  restoreTolerations: Toleration[];
  /** 0: root, without fsGroup. */
  restoreRunAsUser: number;
}

/** How a backup reaches restic (engine/backup.ts). */
export type BackupLayout = 'streamed' | 'staged';

function backupLayout(value: string): BackupLayout {
  if (value === 'streamed' || value === 'staged') return value;
  throw new UsageError(`--backup-layout must be streamed or staged, not "${value}"`);
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
  if (f['prune-after-forgets'] < 1) throw new UsageError('--prune-after-forgets must be at least 1');
  if (le.retryPeriodMs >= le.renewDeadlineMs) throw new UsageError('--leader-elect-retry-period must be shorter than --leader-elect-renew-deadline');
  const runAsUser = f['restore-run-as-user'];
  if (runAsUser < 0 || runAsUser > MAX_UID) throw new UsageError(`--restore-run-as-user must be a uid from 0 (root) to ${MAX_UID}, not ${runAsUser}`);
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
    clusterId: f['cluster-id'] || undefined,
    clusterName: f['cluster-name'] || undefined,
    adoptUnmarkedSnapshots: f['adopt-unmarked-snapshots'],
    lockWaitMs: f['lock-wait'],
    progressIntervalMs: f['progress-interval'],
    backupStallTimeoutMs: f['backup-stall-timeout'],
    backupLayout: backupLayout(f['backup-layout']),
    locationWaitMs: f['location-wait'],
    forgetRetryMs: f['forget-retry'],
    syncPeriodMs: f['sync-period'],
    pruneIntervalMs: f['prune-interval'],
    checkIntervalMs: f['check-interval'],
    continuousVerifyIntervalMs: f['continuous-verify-interval'],
    checkReadDataSubset: f['check-read-data-subset'],
    repairDamage: f['repair-damage'],
    verifyInPod: f['verify-in-pod'],
    pruneAfterForgets: f['prune-after-forgets'],
    restoreImage: f['restore-image'],
    objectRestoreServiceAccount: f['object-restore-service-account'] || undefined,
    kubeApiserverImage: f['kube-apiserver-image'] || undefined,
    restoreStartTimeoutMs: f['restore-start-timeout'],
    restoreTimeoutMs: f['restore-timeout'],
    restoreNodeSelector: parseNodeSelector(f['restore-node-selector'] ?? ''),
    restoreTolerations: parseTolerations(f['restore-tolerations']),
    restoreRunAsUser: runAsUser,
  });
}

// Label keys, label values and taint keys are checked as the API server checks them: a restore pod the API server
// refuses would fail every restore, and only after the controller started it.
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A qualified name: `name` or `prefix/name`, the prefix a DNS subdomain. */
function isLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return false;
  return name.length <= 63 && LABEL_NAME.test(name);
}

const isLabelValue = (value: string): boolean => value === '' || (value.length <= 63 && LABEL_NAME.test(value));

/** `--restore-node-selector`: `key=value[,key=value]`, an empty value allowed (`node-role.kubernetes.io/control-plane=`). */
export function parseNodeSelector(text: string): Record<string, string> {
  const selector: Record<string, string> = {};
  if (text.trim() === '') return selector;
  for (const pair of text.split(',')) {
    const eq = pair.indexOf('=');
    if (eq < 0) {
      throw new UsageError(`--restore-node-selector: "${pair.trim()}" is not key=value; give comma-separated node labels, e.g. kubernetes.io/os=linux,disk=ssd`);
    }
    const key = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (!isLabelKey(key)) throw new UsageError(`--restore-node-selector: "${key}" is not a label key (name or prefix/name: letters, digits, '-', '_', '.')`);
    if (!isLabelValue(value)) throw new UsageError(`--restore-node-selector: "${value}" (of ${key}) is not a label value (up to 63 letters, digits, '-', '_', '.')`);
    if (key in selector) throw new UsageError(`--restore-node-selector: ${key} is given twice`);
    selector[key] = value;
  }
  return selector;
}

const TOLERATION_FIELDS = ['key', 'operator', 'value', 'effect', 'tolerationSeconds'];

/** `--restore-tolerations`: a JSON array of tolerations, checked field by field with the API server's rules. */
export function parseTolerations(text: string): Toleration[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--restore-tolerations is not JSON (${err instanceof Error ? err.message : String(err)}); ` +
      'give an array such as [{"key":"dedicated","operator":"Equal","value":"restore","effect":"NoSchedule"}]');
  }
  if (!Array.isArray(doc)) throw new UsageError('--restore-tolerations must be a JSON array of tolerations ([] for none)');
  return doc.map((t, i) => toleration(t, `--restore-tolerations: toleration ${i + 1}`));
}

function toleration(doc: unknown, where: string): Toleration {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new UsageError(`${where} is not an object`);
  const o = doc as Record<string, unknown>;
  const extra = Object.keys(o).find((k) => !TOLERATION_FIELDS.includes(k));
  if (extra) throw new UsageError(`${where} has an unknown field "${extra}" (known: ${TOLERATION_FIELDS.join(', ')})`);
  const str = (field: string): string | undefined => {
    const v = o[field] ?? '';
    if (typeof v !== 'string') throw new UsageError(`${where}: ${field} must be a string`);
    return v === '' ? undefined : v;
  };
  const oneOf = <T extends string>(field: string, allowed: readonly T[]): T | undefined => {
    const v = str(field);
    const found = allowed.find((a) => a === v);
    if (v !== undefined && !found) throw new UsageError(`${where}: ${field} must be ${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}, not "${v}"`);
    return found;
  };
  const key = str('key');
  const value = str('value');
  const operator = oneOf('operator', ['Exists', 'Equal'] as const);
  const effect = oneOf('effect', ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const);
  const seconds = o.tolerationSeconds;
  if (key !== undefined && !isLabelKey(key)) throw new UsageError(`${where}: "${key}" is not a taint key (name or prefix/name)`);
  if (value !== undefined && !isLabelValue(value)) throw new UsageError(`${where}: "${value}" is not a taint value`);
  if (operator === 'Exists' && value !== undefined) throw new UsageError(`${where}: operator Exists takes no value`);
  if (key === undefined && operator !== 'Exists') throw new UsageError(`${where}: without a key the operator must be Exists (which tolerates every taint)`);
  if (seconds !== undefined && !Number.isInteger(seconds)) throw new UsageError(`${where}: tolerationSeconds must be a whole number`);
  if (seconds !== undefined && effect !== 'NoExecute') throw new UsageError(`${where}: tolerationSeconds needs effect NoExecute`);
  return {
    ...(key !== undefined ? { key } : {}),
    ...(operator ? { operator } : {}),
    ...(value !== undefined ? { value } : {}),
    ...(effect ? { effect } : {}),
    ...(typeof seconds === 'number' ? { tolerationSeconds: seconds } : {}),
  };
}
