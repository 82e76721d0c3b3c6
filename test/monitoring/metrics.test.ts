/** Metrics that stay true: series exist for what exists (at 0 from the start), and go with what is deleted. */
import { expect, test } from 'bun:test';
import { createMetrics } from '../../src/metrics/registry.ts';
import type { PolicyGauges } from '../../src/metrics/policy-gauges.ts';

const gauges = (...names: string[]): PolicyGauges[] => names.map((policyName) => ({ policyName, retained: 0, damaged: 0, suspended: false }));
const lines = async (m: ReturnType<typeof createMetrics>, prefix: string) =>
  (await m.registry.metrics()).split('\n').filter((l) => l.startsWith(prefix));

test('every per-policy counter has a series at 0 from the first scrape, before anything happened', async () => {
  const m = createMetrics();
  m.setPolicySource(() => gauges('a', 'b'));
  expect(await lines(m, 'kubedr_num_failed_backups{')).toEqual(['kubedr_num_failed_backups{policyName="a"} 0', 'kubedr_num_failed_backups{policyName="b"} 0']);
  expect(await lines(m, 'kubedr_num_backups{')).toHaveLength(2);
  expect(await lines(m, 'kubedr_backups_skipped_total{')).toHaveLength(2);
  expect(await lines(m, 'kubedr_backup_duration_seconds_count{')).toEqual(['kubedr_backup_duration_seconds_count{policyName="a"} 0',
    'kubedr_backup_duration_seconds_count{policyName="b"} 0']);
});

test('observations made before the first scrape are kept (not zeroed by it)', async () => {
  const m = createMetrics();
  m.setPolicySource(() => gauges('a'));
  m.numBackups.inc({ policyName: 'a' });
  m.backupDuration.observe({ policyName: 'a' }, 2);
  expect(await lines(m, 'kubedr_backup_duration_seconds_count{')).toEqual(['kubedr_backup_duration_seconds_count{policyName="a"} 1']);
  expect(await lines(m, 'kubedr_num_backups{')).toEqual(['kubedr_num_backups{policyName="a"} 1']);
});

test('counts survive scrapes, and a deleted policy\'s series go', async () => {
  const m = createMetrics();
  let names = ['a', 'b'];
  m.setPolicySource(() => gauges(...names));
  await m.registry.metrics();
  m.numFailed.inc({ policyName: 'a' });
  m.backupDuration.observe({ policyName: 'a' }, 3);
  expect(await lines(m, 'kubedr_num_failed_backups{')).toContain('kubedr_num_failed_backups{policyName="a"} 1');
  names = ['a'];
  expect(await lines(m, 'kubedr_num_failed_backups{')).toEqual(['kubedr_num_failed_backups{policyName="a"} 1']);
  expect(await lines(m, 'kubedr_backup_duration_seconds_count{')).toEqual(['kubedr_backup_duration_seconds_count{policyName="a"} 1']);
});

test('kubedr_backup_location_ready exists for every location from its status, ready or not, and goes with it', async () => {
  const m = createMetrics();
  let locs = [{ name: 'ok', ready: true }, { name: 'broken', ready: false }];
  m.setLocationSource(() => locs);
  expect(await lines(m, 'kubedr_backup_location_ready{')).toEqual(['kubedr_backup_location_ready{location="ok"} 1',
    'kubedr_backup_location_ready{location="broken"} 0']);
  locs = [{ name: 'ok', ready: true }];
  expect(await lines(m, 'kubedr_backup_location_ready{')).toEqual(['kubedr_backup_location_ready{location="ok"} 1']);
});

test('kubedr_backup_location_protected: 1 or 0 for locations whose protection is known, no series for the others', async () => {
  const m = createMetrics();
  m.setLocationSource(() => [{ name: 'locked', ready: true, protected: true }, { name: 'plain', ready: true, protected: false },
    { name: 'undeclared', ready: true }]);
  expect(await lines(m, 'kubedr_backup_location_protected{')).toEqual(['kubedr_backup_location_protected{location="locked"} 1',
    'kubedr_backup_location_protected{location="plain"} 0']);
});

test('the process metrics every Prometheus client exports are there, with this process\'s own figures; no nodejs_* ones', async () => {
  const m = createMetrics();
  const value = async (name: string) => Number((await lines(m, `${name} `))[0]?.split(' ')[1]);
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(await Bun.file('/proc/self/status').text())![1]) * 1024;
  expect(Math.abs(await value('process_resident_memory_bytes') - rss)).toBeLessThan(rss / 2);
  // Whole seconds, rounded; this test process started at most minutes ago.
  const started = await value('process_start_time_seconds');
  expect(started).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
  expect(started).toBeGreaterThan(Date.now() / 1000 - 3600);
  expect(await value('process_open_fds')).toBeGreaterThan(0);
  expect(await value('process_cpu_seconds_total')).toBeGreaterThan(0);
  expect(await lines(m, 'nodejs_')).toEqual([]);
});
