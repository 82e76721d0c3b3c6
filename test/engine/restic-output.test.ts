import { describe, expect, test } from 'bun:test';
import { classifyResticError, errorDetail, isAlreadyInitialized } from '../../src/engine/restic-output.ts';

// stderr captured from restic 0.14.0 against s3rver over HTTPS.
const samples = {
  refused: 'Fatal: unable to open config file: Stat: Get "https://127.0.0.1:1/xyzbucket/?location=": dial tcp 127.0.0.1:1: connect: connection refused\nIs there a repository at the following location?\ns3:https://127.0.0.1:1/xyzbucket\n',
  wrongPassword: 'Fatal: wrong password or no key found\n',
  noBucket: 'Fatal: unable to open config file: Stat: The specified bucket does not exist\nIs there a repository at the following location?\ns3:https://127.0.0.1:44595/nobucket\n',
  x509: 'Fatal: unable to open config file: Stat: Get "https://127.0.0.1:44595/newbucket/?location=": x509: certificate signed by unknown authority\nIs there a repository at the following location?\ns3:https://127.0.0.1:44595/newbucket\n',
  accessKey: 'Fatal: unable to open config file: Stat: The AWS Access Key Id you provided does not exist in our records.\nIs there a repository at the following location?\ns3:https://127.0.0.1:44595/newbucket\n',
  alreadyInit: 'Fatal: create key in repository at s3:https://127.0.0.1:44595/newbucket failed: repository master key and config already initialized\n',
  badBucket: 'Fatal: create repository at s3:https://127.0.0.1:44595/Bad_Bucket failed: client.MakeBucket: Bucket name contains invalid characters\n',
  locked: 'unable to create lock in backend: repository is already locked by PID 1234 on host by root (UID 0, GID 0)\nlock was created at 2026-11-25 04:00:00 (1m ago)\nstorage ID 0a1b2c3d\nthe `unlock` command can be used to remove stale locks\n',
};

describe('classifyResticError', () => {
  test.each([
    ['refused', 'Unreachable', 'S3 endpoint unreachable'],
    ['wrongPassword', 'WrongPassword', 'wrong repository password'],
    ['noBucket', 'NoRepository', 'no restic repository'],
    ['x509', 'TlsError', 'TLS certificate'],
    ['accessKey', 'AccessDenied', 'refused the credentials'],
    ['badBucket', 'InvalidInput', 'invalid bucket name'],
    ['locked', 'Locked', 'locked'],
  ] as const)('%s → %s', (name, kind, text) => {
    const c = classifyResticError(samples[name]);
    expect(c.kind).toBe(kind);
    expect(c.message).toContain(text);
  });

  test('an unknown error keeps restic\'s own words', () => {
    expect(classifyResticError('Fatal: something new happened\n')).toEqual({ kind: 'Failed', message: 'something new happened' });
  });

  test('an empty stderr still gives a message', () => {
    expect(classifyResticError('').message).toBe('restic failed without a message');
  });
});

describe('errorDetail', () => {
  test('drops restic\'s "Is there a repository" boilerplate and the Fatal: prefix', () => {
    expect(errorDetail(samples.noBucket)).toBe('unable to open config file: Stat: The specified bucket does not exist');
  });
  test('without Fatal: lines, keeps the last three lines', () => {
    expect(errorDetail('a\nb\nc\nd\n')).toBe('b; c; d');
  });
});

test('isAlreadyInitialized recognises restic init on an existing repository', () => {
  expect(isAlreadyInitialized(samples.alreadyInit)).toBe(true);
  expect(isAlreadyInitialized(samples.wrongPassword)).toBe(false);
});
