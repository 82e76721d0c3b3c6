/** @module `kubedr controller`: the composition root of the operator. Builds every collaborator and runs them. */
import { BACKUP_LOCATION, COMPONENT, SECRET } from '../api/group.ts';
import type { BackupLocation, Secret } from '../api/types.ts';
import { type Config, controllerFlags, loadConfig } from '../config.ts';
import { BackupLocationReconciler } from '../controllers/backup-location.ts';
import { Restic } from '../engine/restic.ts';
import { KubeClient } from '../kube/client.ts';
import { createMetrics } from '../metrics/registry.ts';
import { HttpServer } from '../metrics/server.ts';
import { Controller } from '../runtime/controller.ts';
import { Informer, listWatch, objectKey } from '../runtime/informer.ts';
import { LeaderElector } from '../runtime/leader.ts';
import { Manager } from '../runtime/manager.ts';
import { specOrMetadataChanged } from '../runtime/predicates.ts';
import { ApiEventRecorder } from '../runtime/recorder.ts';
import { type Logger, createLogger } from '../util/log.ts';
import { helpText } from './flags.ts';

export const controllerHelp = helpText('kubedr controller [flags]',
  'Runs the operator: initialises BackupLocations and reports through status, events and /metrics.', controllerFlags);

function build(config: Config, log: Logger) {
  const client = KubeClient.load({ kubeconfig: config.kubeconfig, context: config.context, fieldManager: COMPONENT });
  const metrics = createMetrics();
  const restic = new Restic({ timeoutMs: config.resticTimeoutMs, cacheDir: config.resticCacheDir });
  const ns = config.namespace;
  const locations = new Informer<BackupLocation>({
    name: BACKUP_LOCATION.plural, source: listWatch(client, BACKUP_LOCATION, ns), log, resyncMs: config.resyncMs,
  });
  // Secrets need no resync: a location's own resync re-reads its Secret from this cache.
  const secrets = new Informer<Secret>({ name: SECRET.plural, source: listWatch(client, SECRET, ns), log });
  const recorder = new ApiEventRecorder(client, log, config.identity);

  const locationController = new Controller({
    name: 'backuplocation',
    log,
    reconciler: new BackupLocationReconciler({
      client, locations, secrets, recorder, metrics, restic, log, retryBaseMs: config.locationRetryBaseMs,
    }),
    onResult: (result) => metrics.reconciles.inc({ controller: 'backuplocation', result }),
  });
  locations.addHandlers({
    onAdd: (o) => locationController.enqueue(objectKey(o)),
    onUpdate: (old, o) => specOrMetadataChanged(old, o) && locationController.enqueue(objectKey(o)),
    onDelete: (o) => locationController.enqueue(objectKey(o)),
  });
  // A changed credentials Secret re-runs initialisation of every location that uses it.
  const secretChanged = (s: Secret) => {
    for (const loc of locations.list()) {
      if (loc.spec.credentials === s.metadata.name && loc.metadata.namespace === s.metadata.namespace) {
        locationController.enqueue(objectKey(loc));
      }
    }
  };
  secrets.addHandlers({ onAdd: secretChanged, onUpdate: (_old, s) => secretChanged(s), onDelete: secretChanged });

  const informers = [locations, secrets];
  const http = new HttpServer({
    host: config.httpAddress, port: config.httpPort, registry: metrics.registry, log,
    ready: () => informers.every((i) => i.hasSynced()),
  });
  const elector = config.leaderElection
    ? new LeaderElector({ client, namespace: ns, identity: config.identity, log, ...config.leaderElection })
    : undefined;
  return new Manager({
    always: [...informers, http],
    leaderOnly: [locationController],
    cachesSynced: () => Promise.all(informers.map((i) => i.waitForSync())).then(() => undefined),
    elector,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    log,
  });
}

/** Runs the controller until SIGTERM/SIGINT; a second signal exits at once. Returns the exit code. */
export async function runController(argv: string[]): Promise<number> {
  const config = loadConfig(argv);
  if (config === 'help') {
    process.stdout.write(controllerHelp);
    return 0;
  }
  const log = createLogger({ level: config.logLevel });
  log.info('starting', { namespace: config.namespace, identity: config.identity, leaderElection: config.leaderElection !== false });
  const manager = build(config, log);
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (sig: string) => {
    signals += 1;
    if (signals > 1) {
      log.warn('second signal: exiting now', { signal: sig });
      process.exit(1);
    }
    log.info('shutting down', { signal: sig });
    stop.abort();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  try {
    await manager.run(stop.signal);
    log.info('stopped');
    return 0;
  } catch (err) {
    log.error('controller failed', { err });
    return 1;
  }
}
