/** @module `kubedr status`: the state of backups on one screen, or as one JSON document, for a cluster operator. */
import { BACKUP_LOCATION, BACKUP_POLICY, BACKUP_RECORD, EVENT } from '../api/group.ts';
import type { BackupLocation, KubeEvent, MetadataBackupPolicy, MetadataBackupRecord } from '../api/types.ts';
import { type FlagSpec, UsageError, helpText, parseFlags } from '../util/flags.ts';
import { clientFromFlags, clusterFlags, explainApiError } from './cluster-flags.ts';
import { statusExitCodesHelp } from './exit-codes.ts';
import { forProgram } from './program.ts';
import { buildReport, formatReport } from './status-report.ts';

const flags = {
  ...clusterFlags,
  'all-namespaces': { type: 'boolean', short: 'A', default: false, help: 'the KubeDR objects of every namespace' },
  json: { type: 'boolean', default: false, help: 'print the report as one JSON document (every failure, messages whole)' },
} satisfies Record<string, FlagSpec>;

export const statusHelp = helpText('kubedr status [-n NAMESPACE | -A] [--json] [flags]',
  'Shows BackupLocations (ready or not, and why), MetadataBackupPolicies (schedule, next run, last backup and its result,\n' +
  'last success, last verification, records kept) and failures: what the objects show now (failed backups, locations,\n' +
  'verifications, snapshots missing from the repository) and Warning events of the last 24 hours.', flags) + `\n${statusExitCodesHelp}`;

export async function runStatus(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(statusHelp));
    return 0;
  }
  if (parsed.args.length > 0) throw new UsageError(`unexpected argument "${parsed.args[0]}"`);
  const f = parsed.flags;
  const client = clientFromFlags(f);
  const namespace = f['all-namespaces'] ? undefined : f.namespace;
  try {
    const [locations, policies, records, events] = await Promise.all([
      client.list<BackupLocation>(BACKUP_LOCATION, namespace),
      client.list<MetadataBackupPolicy>(BACKUP_POLICY, namespace),
      client.list<MetadataBackupRecord>(BACKUP_RECORD, namespace),
      client.list<KubeEvent>(EVENT, namespace, { fieldSelector: 'type=Warning' }),
    ]);
    const now = new Date();
    const report = buildReport({
      namespace: namespace ?? null, now,
      locations: locations.items, policies: policies.items, records: records.items, events: events.items,
    });
    process.stdout.write(f.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report, now));
    return 0;
  } catch (err) {
    throw explainApiError(err, client.server);
  }
}
