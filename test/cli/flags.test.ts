import { describe, expect, test } from 'bun:test';
import { UsageError, helpText, parseDuration, parseFlags } from '../../src/cli/flags.ts';
import { loadConfig } from '../../src/config.ts';

describe('parseDuration', () => {
  test.each([['500ms', 500], ['15s', 15_000], ['2m', 120_000], ['1h30m', 5_400_000], ['10', 10_000]])('%s', (s, ms) => {
    expect(parseDuration(s)).toBe(ms);
  });
  test.each(['', '5x', '1m junk', 'm'])('rejects "%s"', (s) => {
    expect(() => parseDuration(s)).toThrow(UsageError);
  });
});

describe('parseFlags', () => {
  const specs = {
    name: { type: 'string', help: 'a name', default: 'x' },
    count: { type: 'int', help: 'how many', env: 'TEST_COUNT' },
    fast: { type: 'boolean', help: 'go fast', default: false },
    wait: { type: 'duration', help: 'wait', default: '2s' },
  } as const;

  test('both --flag value and --flag=value, booleans, --no-, defaults and environment', () => {
    const r = parseFlags(specs, ['--name', 'a', '--count=3', '--fast', 'pos'], {});
    expect(r.flags).toEqual({ name: 'a', count: 3, fast: true, wait: 2000 });
    expect(r.args).toEqual(['pos']);
    expect(parseFlags(specs, ['--no-fast'], { TEST_COUNT: '7' }).flags).toMatchObject({ fast: false, count: 7 });
  });

  test('unknown flags and bad values are usage errors', () => {
    expect(() => parseFlags(specs, ['--nope'], {})).toThrow('unknown flag --nope');
    expect(() => parseFlags(specs, ['--count', 'many'], {})).toThrow('whole number');
    expect(() => parseFlags(specs, ['--name'], {})).toThrow('needs a value');
  });

  test('help lists every flag with its default and variable', () => {
    const text = helpText('t [flags]', 'summary', specs);
    for (const name of Object.keys(specs)) expect(text).toContain(`--${name}`);
    expect(text).toContain('env TEST_COUNT');
  });
});

describe('controller config', () => {
  test('defaults suit a Deployment in kubedr-system', () => {
    const c = loadConfig([], {});
    if (c === 'help') throw new Error('unexpected help');
    expect(c.namespace).toBe('kubedr-system');
    expect(c.httpPort).toBe(8080);
    expect(c.leaderElection).toMatchObject({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 });
  });
  test('inconsistent leader-election timings are refused', () => {
    expect(() => loadConfig(['--leader-elect-renew-deadline', '20s'], {})).toThrow('shorter than --leader-elect-lease-duration');
  });
  test('a bad log level is refused', () => {
    expect(() => loadConfig(['--log-level', 'chatty'], {})).toThrow('--log-level');
  });
});
