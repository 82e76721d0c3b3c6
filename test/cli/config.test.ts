import { describe, expect, test } from 'bun:test';
import { CONTROL_PLANE_TOLERATIONS } from '../../src/api/placement.ts';
import { type Config, controllerFlags, loadConfig, parseNodeSelector, parseTolerations } from '../../src/config.ts';
import { UsageError } from '../../src/util/flags.ts';

describe('controller config', () => {
  test('defaults suit a Deployment in kubedr-system', () => {
    const c = loadConfig([], {});
    if (c === 'help') throw new Error('unexpected help');
    expect(c.namespace).toBe('kubedr-system');
    // Not 8080: with hostNetwork on a control-plane node that port is often taken.
    expect(c.httpPort).toBe(9473);
    expect(c.leaderElection).toMatchObject({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 });
  });
  test('inconsistent leader-election timings are refused', () => {
    expect(() => loadConfig(['--leader-elect-renew-deadline', '20s'], {})).toThrow('shorter than --leader-elect-lease-duration');
  });
  test('every duration flag is bounded, so no interval becomes a 1 ms loop', () => {
    const durations = Object.entries(controllerFlags).filter(([, s]) => s.type === 'duration').map(([name]) => name);
    expect(durations).toContain('resync-period');
    for (const name of durations) expect(() => loadConfig([`--${name}=600h`], {})).toThrow(`--${name}: duration "600h" is too long`);
  });
  test('backups are staged by default; streamed on request; anything else is refused', () => {
    expect((loadConfig([], {}) as Config).backupLayout).toBe('staged');
    expect((loadConfig(['--backup-layout', 'streamed'], {}) as Config).backupLayout).toBe('streamed');
    expect(() => loadConfig(['--backup-layout', 'tar'], {})).toThrow('--backup-layout must be streamed or staged, not "tar"');
  });
  test('a bad log level is refused', () => {
    expect(() => loadConfig(['--log-level', 'chatty'], {})).toThrow('--log-level');
  });
});

describe('restore pod flags', () => {
  const config = (argv: string[]): Config => {
    const c = loadConfig(argv, {});
    if (c === 'help') throw new Error('unexpected help');
    return c;
  };

  test('defaults: any node, the control-plane taints tolerated, the image\'s user 65532', () => {
    const c = config([]);
    expect(c.restoreNodeSelector).toEqual({});
    expect(c.restoreTolerations).toEqual([...CONTROL_PLANE_TOLERATIONS]);
    expect(c.restoreRunAsUser).toBe(65532);
  });

  test('the flags as the Helm chart renders them', () => {
    const c = config(['--restore-node-selector=kubernetes.io/os=linux,node-role.kubernetes.io/control-plane=',
      '--restore-tolerations=[{"effect":"NoExecute","key":"dedicated","operator":"Equal","value":"restore","tolerationSeconds":30},{"operator":"Exists"}]',
      '--restore-run-as-user=0']);
    expect(c.restoreNodeSelector).toEqual({ 'kubernetes.io/os': 'linux', 'node-role.kubernetes.io/control-plane': '' });
    expect(c.restoreTolerations).toEqual([
      { key: 'dedicated', operator: 'Equal', value: 'restore', effect: 'NoExecute', tolerationSeconds: 30 }, { operator: 'Exists' },
    ]);
    expect(c.restoreRunAsUser).toBe(0);
    expect(config(['--restore-tolerations', '[]']).restoreTolerations).toEqual([]);
  });

  test('a node selector is key=value pairs of valid labels', () => {
    expect(parseNodeSelector('')).toEqual({});
    expect(parseNodeSelector(' disk=ssd , zone=eu-1a ')).toEqual({ disk: 'ssd', zone: 'eu-1a' });
    expect(() => parseNodeSelector('disk')).toThrow('--restore-node-selector: "disk" is not key=value; give comma-separated node labels');
    expect(() => parseNodeSelector('disk=ssd,')).toThrow('"" is not key=value');
    expect(() => parseNodeSelector('=ssd')).toThrow('"" is not a label key');
    expect(() => parseNodeSelector('a/b/c=x')).toThrow('"a/b/c" is not a label key');
    expect(() => parseNodeSelector('Example.COM/disk=x')).toThrow('"Example.COM/disk" is not a label key');
    expect(() => parseNodeSelector('zone=eu 1a')).toThrow('"eu 1a" (of zone) is not a label value');
    expect(() => parseNodeSelector(`zone=${'a'.repeat(64)}`)).toThrow('is not a label value');
    expect(() => parseNodeSelector('disk=ssd,disk=hdd')).toThrow('disk is given twice');
    expect(() => loadConfig(['--restore-node-selector', 'disk'], {})).toThrow(UsageError);
  });

  test('tolerations are a JSON array checked as the API server checks them', () => {
    const bad: [string, string][] = [
      ['{"key":"x"', '--restore-tolerations is not JSON'],
      ['{"key":"x","operator":"Exists"}', '--restore-tolerations must be a JSON array of tolerations ([] for none)'],
      ['["x"]', '--restore-tolerations: toleration 1 is not an object'],
      ['[{"operator":"Exists"},{"key":"x","operater":"Exists"}]', 'toleration 2 has an unknown field "operater"'],
      ['[{"key":"x","operator":"exists"}]', 'toleration 1: operator must be Exists or Equal, not "exists"'],
      ['[{"key":"x","operator":"Exists","effect":"NoShedule"}]', 'effect must be NoSchedule, PreferNoSchedule or NoExecute, not "NoShedule"'],
      ['[{"key":"x","operator":"Exists","value":"y"}]', 'operator Exists takes no value'],
      ['[{"value":"y"}]', 'without a key the operator must be Exists'],
      ['[{"key":"bad key","operator":"Exists"}]', '"bad key" is not a taint key'],
      ['[{"key":"x","value":7}]', 'value must be a string'],
      ['[{"key":"x","operator":"Exists","effect":"NoSchedule","tolerationSeconds":30}]', 'tolerationSeconds needs effect NoExecute'],
      ['[{"key":"x","operator":"Exists","effect":"NoExecute","tolerationSeconds":"30"}]', 'tolerationSeconds must be a whole number'],
    ];
    for (const [text, message] of bad) expect(() => parseTolerations(text)).toThrow(message);
    expect(() => loadConfig(['--restore-tolerations', 'control-plane'], {})).toThrow(UsageError);
    expect(parseTolerations('[{"key":"x","operator":"","value":"","effect":""}]')).toEqual([{ key: 'x' }]);
  });

  test('the user is a uid; 0 is root', () => {
    expect(() => loadConfig(['--restore-run-as-user', '-1'], {})).toThrow('--restore-run-as-user must be a uid from 0 (root) to 2147483647, not -1');
    expect(() => loadConfig(['--restore-run-as-user', 'root'], {})).toThrow('--restore-run-as-user takes a whole number');
  });
});
