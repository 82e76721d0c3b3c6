#!/usr/bin/env bun
/** @module The `kubedr` binary: dispatches subcommands. */
import { runBackup } from './cli/backup.ts';
import { runBackupArchive } from './cli/backup-archive.ts';
import { runBrowse } from './cli/browse.ts';
import { runController } from './cli/controller.ts';
import { runDiff } from './cli/diff.ts';
import { runEtcdRestore } from './cli/etcd-restore.ts';
import { exitCodeFor } from './cli/exit-codes.ts';
import { forProgram, programName } from './cli/program.ts';
import { runReleaseRecords } from './cli/release-records.ts';
import { runRepository } from './cli/repository-recover.ts';
import { runRestore } from './cli/restore.ts';
import { runRestoreObjects } from './cli/restore-objects.ts';
import { runRotateKey } from './cli/rotate-key.ts';
import { runSnapshots } from './cli/snapshots.ts';
import { runStatus } from './cli/status.ts';
import { runVerify } from './cli/verify.ts';
import { runVersion } from './cli/version.ts';
import { UsageError } from './util/flags.ts';
import { createLogger } from './util/log.ts';
import { redact } from './util/redact.ts';

const usage = `Usage: kubedr <command> [flags]

Backup and disaster recovery for a Kubernetes cluster's etcd and control-plane certificates.

Commands:
  controller     run the operator (BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, MetadataRestore)
  version        print version information

Day 2 (on the cluster's KubeDR objects; also as a kubectl plugin, 'kubectl kubedr', when on PATH as kubectl-kubedr):
  backup         start a policy's backup now; --wait follows it and prints the new snapshot ID
  status         locations, policies (last backup, next run, verification) and recent failures on one screen
  release-records  uninstalling: take the forget finalizer off a namespace's records, keeping the snapshots in S3

Disaster recovery (no cluster needed):
  snapshots      list the backups at a location
  restore        restore a backup from S3 and verify its etcd snapshot
  etcd-restore   build a new etcd data directory from a restored etcd snapshot
  verify         prove a backup restores: read back, restored into a throwaway etcd, checked
  rotate-key     add a new repository password as a key; --remove-old removes the old one
  repository     recover: rebuild a repository from its bucket's object versions as of a time (after an attack)

Bring back one thing (a backup served read-only for kubectl, compared, and chosen objects re-created):
  browse         serve a backup as a read-only Kubernetes API on 127.0.0.1 and print a kubeconfig for it
  diff           objects deleted, added and changed between a backup and the live cluster
  restore-objects  re-create a backup's namespace, named objects or CRD with its objects in the live cluster

Run by the controller's backups, not by hand:
  backup-archive   write one backup as a tar archive for restic while etcd sends it

Run 'kubedr <command> --help' for a command's flags.
`;

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  controller: runController,
  version: runVersion,
  backup: runBackup,
  status: runStatus,
  'release-records': runReleaseRecords,
  snapshots: runSnapshots,
  restore: runRestore,
  'etcd-restore': runEtcdRestore,
  verify: runVerify,
  'rotate-key': runRotateKey,
  repository: runRepository,
  browse: runBrowse,
  diff: runDiff,
  'restore-objects': runRestoreObjects,
  'backup-archive': runBackupArchive,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const prog = programName();
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(forProgram(usage));
    return cmd ? 0 : 2;
  }
  const run = commands[cmd];
  if (!run) {
    process.stderr.write(`${prog}: unknown command "${cmd}"\n\n${forProgram(usage)}`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${prog} ${cmd}: ${err.message}\nRun '${prog} ${cmd} --help' for usage.\n`);
      return exitCodeFor(err);
    }
    process.stderr.write(`${prog} ${cmd}: ${redact(err instanceof Error ? err.message : String(err))}\n`);
    return exitCodeFor(err);
  }
}

process.on('unhandledRejection', (err) => {
  createLogger().error('unhandled rejection', { err });
  process.exit(1);
});

process.exit(await main(process.argv.slice(2)));
