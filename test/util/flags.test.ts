import { describe, expect, test } from 'bun:test';
import { MAX_DURATION_MS, UsageError, helpText, parseDuration, parseFlags } from '../../src/util/flags.ts';

describe('parseDuration', () => {
  test.each([['500ms', 500], ['15s', 15_000], ['2m', 120_000], ['1h30m', 5_400_000], ['10', 10_000]])('%s', (s, ms) => {
    expect(parseDuration(s)).toBe(ms);
  });
  test.each(['', '5x', '1m junk', 'm'])('rejects "%s"', (s) => {
    expect(() => parseDuration(s)).toThrow(UsageError);
  });
  // Node timers turn a delay past 2^31-1 ms into 1 ms: a longer interval would be a busy loop, not a long wait.
  test('accepts up to 2^31-1 ms and refuses longer, saying what the limit is', () => {
    expect(parseDuration('596h31m23.647s')).toBe(MAX_DURATION_MS);
    expect(parseDuration('596h')).toBe(596 * 3_600_000);
    for (const s of ['596h31m24s', '600h', '2147484']) {
      expect(() => parseDuration(s)).toThrow(`duration "${s}" is too long: the longest is 596h31m23s (about 24.8 days)`);
    }
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

  test('a bad or too long duration names its flag, from the command line or the environment', () => {
    expect(() => parseFlags(specs, ['--wait', 'soon'], {})).toThrow('--wait: invalid duration "soon" (e.g. 500ms, 15s, 2m, 1h)');
    expect(() => parseFlags(specs, ['--wait=1000h'], {})).toThrow('--wait: duration "1000h" is too long: the longest is 596h31m23s (about 24.8 days)');
    const fromEnv = { ...specs, wait: { ...specs.wait, env: 'TEST_WAIT' } };
    expect(() => parseFlags(fromEnv, [], { TEST_WAIT: '30d' })).toThrow('--wait: invalid duration "30d"');
  });

  test('a one-letter alias takes its value like the long flag; an unknown one is a usage error', () => {
    const withShort = { ...specs, namespace: { type: 'string', help: 'namespace', short: 'n' }, all: { type: 'boolean', help: 'all', short: 'A', default: false } } as const;
    expect(parseFlags(withShort, ['x', '-n', 'prod', '-A'], {})).toMatchObject({ flags: { namespace: 'prod', all: true }, args: ['x'] });
    expect(() => parseFlags(withShort, ['-q'], {})).toThrow('unknown flag -q');
    expect(helpText('t', 's', withShort)).toContain('  -n, --namespace <string>');
  });

  test('help lists every flag with its default and variable', () => {
    const text = helpText('t [flags]', 'summary', specs);
    for (const name of Object.keys(specs)) expect(text).toContain(`--${name}`);
    expect(text).toContain('env TEST_COUNT');
  });
});
