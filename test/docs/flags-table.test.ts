import { expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { README, flagsTable, withFlagsTable } from '../../scripts/gen-docs.ts';
import { controllerFlags } from '../../src/config.ts';

test('README.md\'s controller flag table is the one src/config.ts generates (run `bun scripts/gen-docs.ts` after changing a flag)', () => {
  const readme = readFileSync(README, 'utf8');
  expect(withFlagsTable(readme)).toBe(readme);
});

test('the table has one row per flag, with its default and environment variable', () => {
  const table = flagsTable(controllerFlags);
  expect(table.split('\n').length).toBe(2 + Object.keys(controllerFlags).length);
  expect(table).toContain('| `--http-port` | int | `9473` | `KUBEDR_HTTP_PORT` |');
  // A changed default changes the table, so the check above would fail on it.
  const changed = { ...controllerFlags, 'http-port': { ...controllerFlags['http-port'], default: 8080 } };
  expect(flagsTable(changed)).not.toBe(table);
});
