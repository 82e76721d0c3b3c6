/**
 * @module `kubedr repository recover --as-of TIME`: a repository brought back from its bucket's object versions, as it
 * was at TIME, after an attacker (or a mistake) forgot, pruned or deleted what the controller's keys could reach. Runs
 * with keys that may list object versions (the bucket owner's); deletes nothing. Then `kubedr snapshots` and `kubedr
 * restore` work on the result. See docs/immutable-backups.md.
 */
import { repositoryAddress } from '../engine/repository.ts';
import { recoverRepository } from '../engine/repository-recover.ts';
import { Restic } from '../engine/restic.ts';
import { listSnapshots } from '../engine/snapshots.ts';
import { type FlagSpec, helpText, parseFlags, UsageError } from '../util/flags.ts';
import { exitCodesHelp } from './exit-codes.ts';
import { forProgram } from './program.ts';
import { repositoryFlags, repositoryFromFlags } from './repository-flags.ts';

const flags = {
  ...repositoryFlags,
  'as-of': { type: 'string', help: 'the time to go back to, RFC 3339 (e.g. 2026-12-05T09:30:00Z): a time before the attack or mistake' },
  'target-bucket': { type: 'string', help: 'write the recovered repository into this bucket (same endpoint and keys; it must exist) instead of as new current versions in --bucket' },
  'dry-run': { type: 'boolean', help: 'only say what would be copied', default: false },
} satisfies Record<string, FlagSpec>;

export const repositoryRecoverHelp = helpText(
  'kubedr repository recover --url URL --bucket BUCKET [--credentials FILE] --as-of TIME [--target-bucket BUCKET] [--dry-run]',
  'Rebuilds the restic repository in a versioned bucket as it was at TIME, from the object versions: for each object,\n' +
  'the newest version at or before TIME (objects deleted by then stay deleted; lock files are left out). Each is copied\n' +
  'on the server, as the current version in the same bucket or into --target-bucket. Nothing is deleted; objects\n' +
  'written after TIME stay and are listed. Needs keys that may list and read object versions (the bucket owner\'s or\n' +
  'the maintenance keys, not the controller\'s). With the repository password it then lists the recovered snapshots.',
  flags) + `\n${exitCodesHelp}`;

export const repositoryHelp = `Usage: kubedr repository <subcommand> [flags]\n\nSubcommands:\n  recover   rebuild a repository from its bucket's object versions as of a time\n\n${repositoryRecoverHelp}`;

/** `kubedr repository …`: its one subcommand so far. */
export async function runRepository(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(forProgram(repositoryHelp));
    return sub ? 0 : 2;
  }
  if (sub !== 'recover') throw new UsageError(`unknown subcommand "${sub}" (known: recover)`);
  return runRepositoryRecover(rest);
}

export async function runRepositoryRecover(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(repositoryRecoverHelp));
    return 0;
  }
  if (parsed.args.length > 0) throw new UsageError(`unexpected argument "${parsed.args[0]}"`);
  const asOfText = parsed.flags['as-of'];
  if (!asOfText) throw new UsageError('--as-of is required (a time before the attack, e.g. 2026-12-05T09:30:00Z)');
  const asOf = new Date(asOfText);
  if (Number.isNaN(asOf.getTime())) throw new UsageError(`--as-of ${asOfText}: not a time; write it as RFC 3339, e.g. 2026-12-05T09:30:00Z`);
  const repo = repositoryFromFlags(parsed.flags);
  const bucket = parsed.flags.bucket!;
  const target = parsed.flags['target-bucket'] ?? bucket;
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const result = await recoverRepository({
    source: { url: parsed.flags.url!, keys: { accessKey: repo.accessKey, secretKey: repo.secretKey }, caCert: repo.caCert },
    bucket, targetBucket: target, asOf, dryRun: parsed.flags['dry-run'],
  });
  const mib = (result.restore.reduce((n, v) => n + v.size, 0) / 2 ** 20).toFixed(1);
  const where = target === bucket ? `as current versions in bucket ${bucket}` : `into bucket ${target}`;
  say(`${parsed.flags['dry-run'] ? 'Would copy' : 'Copied'} ${result.restore.length} objects (${mib} MiB) as of ${asOf.toISOString()} ${where}` +
    (result.unchanged ? `; ${result.unchanged} were already current` : '') + '.');
  if (result.laterOnly.length > 0 && target === bucket) {
    say(`${result.laterOnly.length} objects were written after ${asOf.toISOString()} and stay (nothing is deleted), e.g. ${result.laterOnly.slice(0, 3).join(', ')}.`);
  }
  if (parsed.flags['dry-run']) return 0;
  const snapshots = await listSnapshots(new Restic(), { ...repo, address: repositoryAddress(parsed.flags.url!, target) }, {}, { readOnly: true });
  say(`The recovered repository opens and holds ${snapshots.length} snapshots; list them with: kubedr snapshots --bucket ${target} …`);
  return 0;
}
