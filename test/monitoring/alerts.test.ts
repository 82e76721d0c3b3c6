/**
 * The chart's alerting rules with promtool (Debian's prometheus package): the rule groups of the rendered
 * PrometheusRule, written as a plain rules file, must pass `promtool check rules` and the unit tests in
 * *.promtest.yaml (each alert firing and staying quiet where it should, the schedule-aware one for several schedules,
 * and every alert across the scrape gap of a rollout).
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { render } from '../support/helm.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kubedr-alerts-'));
  const rule = render(['--name', 'kubedr', '--namespace', 'kubedr-system', '--api-versions', 'monitoring.coreos.com/v1']).one('PrometheusRule');
  writeFileSync(join(dir, 'rules.yaml'), dump({ groups: rule.spec.groups }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const promtool = (args: string[]) => spawnSync('promtool', args, { cwd: dir, encoding: 'utf8' });

test('the rendered rules pass promtool check rules', () => {
  const r = promtool(['check', 'rules', 'rules.yaml']);
  expect(r.stderr + r.stdout).toContain('SUCCESS: 11 rules found');
  expect(r.status).toBe(0);
});

const cases = readdirSync(import.meta.dir).filter((f) => f.endsWith('.promtest.yaml'));
test.each(cases)('promtool test rules %s', (file) => {
  copyFileSync(join(import.meta.dir, file), join(dir, file));
  const r = promtool(['test', 'rules', file]);
  if (r.status !== 0) console.error(r.stdout + r.stderr);
  expect(r.stdout).toContain('SUCCESS');
  expect(r.status).toBe(0);
  // promtool evaluates every rule at every minute of each case: the missed-backup cases span two days, about 5 s alone
  // on an idle machine of 2 cores.
}, 30_000);

test('every alert is unit-tested', () => {
  const rule = render(['--name', 'kubedr', '--namespace', 'kubedr-system', '--api-versions', 'monitoring.coreos.com/v1']).one('PrometheusRule');
  const names: string[] = rule.spec.groups.flatMap((g: { rules: { alert: string }[] }) => g.rules.map((r) => r.alert));
  const texts = cases.map((f) => readFileSync(join(import.meta.dir, f), 'utf8'));
  expect(names.length).toBe(11);
  for (const n of names) expect(texts.some((t) => t.includes(`alertname: ${n}`))).toBe(true);
});
