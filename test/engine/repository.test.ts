import { describe, expect, test } from 'bun:test';
import { EngineError } from '../../src/engine/errors.ts';
import { bucketNameProblem, repositoryAddress } from '../../src/engine/repository.ts';

describe('repositoryAddress', () => {
  test('builds restic\'s s3:<url>/<bucket>', () => {
    expect(repositoryAddress('http://10.96.57.3:9000', 'testbucket')).toBe('s3:http://10.96.57.3:9000/testbucket');
    expect(repositoryAddress('https://s3.example.com/', 'kubedr.backups')).toBe('s3:https://s3.example.com/kubedr.backups');
  });

  test.each([
    ['not a url', 'invalid S3 URL'],
    ['ftp://host:21', 'scheme must be http or https'],
    ['https://user:secret@host', 'credentials belong in the credentials Secret'],
    ['https://host/bucket', 'give the endpoint only'],
    ['https://host?x=1', 'give the endpoint only'],
  ])('rejects URL %s', (url, msg) => {
    let err: unknown;
    try {
      repositoryAddress(url, 'bucket');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).kind).toBe('InvalidInput');
    expect((err as EngineError).message).toContain(msg);
    expect((err as EngineError).message).not.toContain('secret@');
  });
});

describe('bucketNameProblem', () => {
  test.each(['abc', 'my-bucket', 'my.bucket.1', 'a'.repeat(63)])('accepts %s', (name) => {
    expect(bucketNameProblem(name)).toBeUndefined();
  });
  test.each([
    ['ab', '3 to 63'],
    ['a'.repeat(64), '3 to 63'],
    ['Bad_Bucket', 'lowercase'],
    ['-abc', 'begin and end'],
    ['abc-', 'begin and end'],
    ['a..b', 'adjacent dots'],
    ['192.168.1.1', 'IP address'],
  ])('rejects %s', (name, why) => {
    expect(bucketNameProblem(name)).toContain(why);
  });
});
