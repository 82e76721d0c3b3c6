/**
 * The day-2 command line end to end: `kubedr backup --wait` and `kubedr status` as a user runs them (output piped, so
 * not a terminal), against a real controller process, location and policies, and the compiled binary as a kubectl plugin.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump, load } from 'js-yaml';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { kubeconfigYaml } from '../../scripts/cluster/pki.ts';
import type { StatusReport } from '../../src/cli/status-report.ts';
import type { MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import {
  ControllerProcess, type Run, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, freePort,
  getJson, locationInit, locationSecretYaml, locationYaml, policyYaml, repoRoot, uniqueBucket,
} from '../support/e2e.ts';

let ns: string;
let controller: ControllerProcess;
let work: string;

const policy = (name: string) => getJson<MetadataBackupPolicy>(['mbp', name, '-n', ns]);

/** `kubedr ARGS` from source, as a user runs it, output piped. */
async function kubedr(args: string[], kubeconfig = cluster().kubeconfig): Promise<Run> {
  const proc = Bun.spawn([process.execPath, join(repoRoot, 'src/main.ts'), ...args, '--kubeconfig', kubeconfig],
    { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('cli');
  work = mkdtempSync(join(tmpdir(), 'cli-e2e-'));
  apply(locationSecretYaml(ns, { name: 's3-creds', password: `pw-${crypto.randomUUID()}` }));
  apply(etcdSecretYaml(ns, 'etcd-creds', null));
  apply(locationYaml(ns, 'loc', { bucketName: uniqueBucket('cli'), credentials: 's3-creds' }));
  apply(policyYaml(ns, 'nightly'));
  // Nothing listens on a port just found free: the etcd snapshot fails at once with connection refused.
  apply(policyYaml(ns, 'broken', { etcdEndpoint: `https://127.0.0.1:${await freePort()}` }));
  controller = await ControllerProcess.start(ns, ['--location-wait', '3s', '--progress-interval', '300ms']);
  await locationInit(ns, 'loc', 'Completed');
});
afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
  rmSync(work, { recursive: true, force: true });
});

describe('kubedr backup', () => {
  test('--wait prints the snapshot of the backup it started, the one its new record carries, and exits 0', async () => {
    const earlier = (await backupNow(ns, 'nightly')).status?.snapshotId;
    expect(earlier).toMatch(/^[0-9a-f]{8}$/);
    const r = await kubedr(['backup', 'nightly', '-n', ns, '--wait', '--timeout', '120s']);
    expect(r).toMatchObject({ code: EXIT.ok });
    const m = /^Backup completed: snapshot ([0-9a-f]{8}), record (mbr-[0-9a-f]{8}) \(policy [^)]*\)\n$/.exec(r.stdout);
    if (!m) throw new Error(`unexpected output:\n${r.stdout}\n${r.stderr}`);
    const [, snapshotId, recordName] = m;
    expect(snapshotId).not.toBe(earlier);
    const record = getJson<MetadataBackupRecord>(['mbr', recordName!, '-n', ns]);
    expect(record.spec).toMatchObject({ snapshotId, policy: 'nightly' });
    expect(policy('nightly').status).toMatchObject({ snapshotId, mbrName: recordName, backupStatus: 'Completed' });
    // Piped, not a terminal: plain progress lines, one per change, and no escape codes anywhere.
    expect(r.stderr + r.stdout).not.toContain('\u001b');
    expect(r.stderr).not.toContain('\r');
    const lines = r.stderr.trimEnd().split('\n');
    // The first line depends on how fast the controller picks the request up: the request itself, or its first phase.
    expect(lines[0]).toMatch(/^nightly: (requested; waiting for the controller to start the backup|Queued|Snapshot|Upload|Running)/);
    for (const l of lines) expect(l).toStartWith('nightly: ');
    expect(new Set(lines).size).toBe(lines.length);
  }, 180_000);

  test('a backup that fails exits 8 with the controller\'s message', async () => {
    const r = await kubedr(['backup', 'broken', '-n', ns, '--wait', '--timeout', '120s']);
    expect(r.code).toBe(EXIT.backupFailed);
    const st = policy('broken').status;
    expect(st?.backupStatus).toBe('Failed');
    expect(st?.backupErrorMessage).toContain('unreachable');
    expect(r.stderr).toContain(`kubedr backup: the backup of ${ns}/broken failed: ${st?.backupErrorMessage}`);
    expect(r.stdout).toBe('');
  }, 180_000);

  test('a policy that does not exist exits 4, naming it and the namespace', async () => {
    const r = await kubedr(['backup', 'no-such-policy', '-n', ns, '--wait']);
    expect(r.code).toBe(EXIT.notFound);
    expect(r.stderr).toContain(`MetadataBackupPolicy "no-such-policy" not found in namespace "${ns}"`);
  });
});

describe('kubedr status', () => {
  test('--json: the location ready, each policy\'s last backup and records, and the failed backup', async () => {
    const r = await kubedr(['status', '-n', ns, '--json']);
    expect(r.code).toBe(EXIT.ok);
    const report = JSON.parse(r.stdout) as StatusReport;
    expect(report.namespace).toBe(ns);
    expect(report.locations).toEqual([expect.objectContaining({ name: 'loc', ready: true, status: 'Completed' })]);
    const nightly = policy('nightly').status!;
    const records = getJson<{ items: MetadataBackupRecord[] }>(['mbr', '-n', ns]).items.filter((x) => x.spec.policy === 'nightly');
    expect(records.length).toBe(2);
    expect(report.policies.find((p) => p.name === 'nightly')).toMatchObject({
      lastBackupStatus: 'Completed', lastBackupTime: nightly.backupTime, lastSnapshotId: nightly.snapshotId, records: 2,
    });
    expect(report.policies.find((p) => p.name === 'broken')).toMatchObject({ lastBackupStatus: 'Failed', lastSnapshotId: null, records: 0 });
    expect(report.failures).toContainEqual(expect.objectContaining({
      object: 'MetadataBackupPolicy/broken', reason: 'BackupFailed', message: policy('broken').status?.backupErrorMessage,
    }));
  });

  test('--help lists the exit codes status has, and status keeps to them: 3 for refused credentials, 5 for no API server', async () => {
    const help = await kubedr(['status', '--help']);
    expect(help.code).toBe(EXIT.ok);
    const codes = help.stdout.slice(help.stdout.indexOf('Exit codes:'));
    expect(codes).toContain('3 the API server refused the credentials');
    expect(codes).toContain('5 API server unreachable');
    // Codes of other commands (a backup's failure, a snapshot's integrity) are not status's to give.
    expect(codes).not.toMatch(/\b[4678] /);

    const refused = join(work, 'refused.kubeconfig');
    writeFileSync(refused, kubeconfigYaml(cluster().apiserverUrl, join(cluster().pki, 'ca.crt'), { token: 'not-a-token-of-this-cluster' }), { mode: 0o600 });
    const r = await kubedr(['status', '-n', ns], refused);
    expect(r.code).toBe(EXIT.credentials);
    expect(r.stderr).toMatch(/401|Unauthorized|credentials/i);

    const nobody = join(work, 'nobody.kubeconfig');
    writeFileSync(nobody, kubeconfigYaml(`https://127.0.0.1:${await freePort()}`, join(cluster().pki, 'ca.crt'), { token: 'x' }), { mode: 0o600 });
    const u = await kubedr(['status', '-n', ns], nobody);
    expect(u.code).toBe(EXIT.unreachable);
  });

  test('as text: plain columns without escapes', async () => {
    const r = await kubedr(['status', '-n', ns]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).not.toContain('\u001b');
    const row = r.stdout.split('\n').find((l) => l.startsWith('nightly '));
    expect(row?.split(/\s{2,}/)).toEqual(['nightly', 'loc', '0 0 1 1 *', expect.stringMatching(/^in \d+[dh]$/), expect.stringMatching(/ago$/),
      'Completed', policy('nightly').status?.snapshotId, expect.stringMatching(/ago$/), expect.any(String), '2']);
  });
});

test('the compiled binary on PATH as kubectl-kubedr is a kubectl plugin that calls itself kubectl kubedr', () => {
  const build = spawnSync(join(repoRoot, 'scripts/build-binary.sh'), { encoding: 'utf8' });
  expect(build.status).toBe(0);
  const bin = join(work, 'bin');
  spawnSync('mkdir', ['-p', bin]);
  symlinkSync(join(repoRoot, 'dist/kubedr'), join(bin, 'kubectl-kubedr'));
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, KUBECONFIG: cluster().kubeconfig };
  const kubectl = (args: string[]) => spawnSync('kubectl', ['kubedr', ...args], { encoding: 'utf8', env });
  const help = kubectl(['backup', '--help']);
  expect(help.status).toBe(0);
  expect(help.stdout).toStartWith('Usage: kubectl kubedr backup POLICY');
  const status = kubectl(['status', '-n', ns]);
  expect(status.status).toBe(0);
  expect(status.stdout).toContain(`\nnightly `);
  expect(kubectl(['no-such-command']).stderr).toStartWith('kubectl kubedr: unknown command "no-such-command"');
}, 120_000);

test('$KUBECONFIG as kubectl reads it: a list of files merged, a missing one skipped', async () => {
  // The suite's kubeconfig split in two: the context in one file, the cluster and the credentials in another.
  const full = load(readFileSync(cluster().kubeconfig, 'utf8')) as Record<string, unknown>;
  const contextFile = join(work, 'context.yaml');
  const accessFile = join(work, 'access.yaml');
  writeFileSync(contextFile, dump({ apiVersion: 'v1', kind: 'Config', 'current-context': full['current-context'], contexts: full.contexts }));
  writeFileSync(accessFile, dump({ apiVersion: 'v1', kind: 'Config', clusters: full.clusters, users: full.users }));
  const list = [join(work, 'missing.yaml'), contextFile, accessFile].join(':');
  const run = (cmd: string[]) => spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', env: { ...process.env, KUBECONFIG: list } });
  // kubectl answers with this list; so must kubedr, with no --kubeconfig.
  expect(run(['kubectl', 'get', 'mbp', 'nightly', '-n', ns, '-o', 'name']).stdout.trim()).toBe('metadatabackuppolicy.kubedr.catalogicsoftware.com/nightly');
  const status = run([process.execPath, join(repoRoot, 'src/main.ts'), 'status', '-n', ns, '--json']);
  expect(status.stderr).toBe('');
  expect(status.status).toBe(0);
  expect((JSON.parse(status.stdout) as StatusReport).policies.map((p) => p.name)).toEqual(['broken', 'nightly']);
});
