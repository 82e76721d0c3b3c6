/** The generated parts of docs/ say what the code says: the controller's flags, every command's help, every metric. */
import { expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { CONTROLLER_DOC, flagsTable, generated } from '../../scripts/gen-docs.ts';
import { controllerFlags } from '../../src/config.ts';

test('docs/controller.md\'s flag table, docs/cli-reference.md and docs/metrics-reference.md are what the code generates (run `bun scripts/gen-docs.ts`)', async () => {
  for (const { file, text } of await generated()) expect({ file, text: readFileSync(file, 'utf8') }).toEqual({ file, text });
}, 30_000);

test('the flag table has one row per flag, with its default and environment variable', () => {
  const table = flagsTable(controllerFlags);
  expect(table.split('\n').length).toBe(2 + Object.keys(controllerFlags).length);
  expect(table).toContain('| `--http-port` | int | `9473` | `KUBEDR_HTTP_PORT` |');
  // A changed default changes the table, so the check above would fail on it.
  const changed = { ...controllerFlags, 'http-port': { ...controllerFlags['http-port'], default: 8080 } };
  expect(flagsTable(changed)).not.toBe(table);
  expect(readFileSync(CONTROLLER_DOC, 'utf8')).toContain(table);
});

test('the references hold every command and every kubedr metric', async () => {
  const [, cli, metrics] = await generated();
  for (const c of ['controller', 'backup', 'status', 'snapshots', 'restore', 'etcd-restore', 'verify', 'version']) expect(cli!.text).toContain(`## kubedr ${c}\n`);
  expect(cli!.text).toContain('--cluster');
  for (const m of ['kubedr_num_backups', 'kubedr_backup_location_init_failures_total', 'kubedr_backup_verification_failures_total']) expect(metrics!.text).toContain(`\`${m}\``);
}, 30_000);
