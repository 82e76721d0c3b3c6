import { afterEach, describe, expect, test } from 'bun:test';
import { clearSecrets, redact, registerSecret, REDACTED } from '../../src/util/redact.ts';
import { createLogger } from '../../src/util/log.ts';

afterEach(clearSecrets);

describe('redact', () => {
  test('masks registered values wherever they appear', () => {
    registerSecret('hunter2-password');
    expect(redact('restic said: wrong key hunter2-password!')).toBe(`restic said: wrong key ${REDACTED}!`);
  });

  test('masks user:password in URLs even when never registered', () => {
    expect(redact('GET https://admin:s3cr3t@host:9000/bucket failed')).toBe(`GET https://${REDACTED}@host:9000/bucket failed`);
  });

  test('masks each line of a multi-line secret such as a PEM key', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----';
    registerSecret(pem);
    expect(redact('line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC')).toBe(`line: ${REDACTED}`);
  });

  test('masks the longer of two overlapping secrets whole', () => {
    registerSecret('abcd');
    registerSecret('abcdefgh');
    expect(redact('x abcdefgh y')).toBe(`x ${REDACTED} y`);
  });

  test('leaves text without secrets unchanged', () => {
    registerSecret('topsecret');
    expect(redact('nothing to see')).toBe('nothing to see');
  });
});

describe('logger', () => {
  test('never writes a registered secret, even one JSON would escape', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', write: (l) => lines.push(l) });
    const tricky = 'pa"ss\\word';
    registerSecret(tricky);
    log.info('failed', { err: new Error(`bad password ${tricky}`), detail: { nested: [tricky] } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain('pa\\"ss');
    expect(JSON.parse(lines[0]!).err).toBe(`bad password ${REDACTED}`);
  });

  test('drops lines below the level', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warn', write: (l) => lines.push(l) });
    log.info('quiet');
    log.warn('loud');
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['loud']);
  });
});
