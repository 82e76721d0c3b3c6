import { afterAll, describe, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkEncryptionConfig, chooseEncryptionConfig, findEncryptionConfigs, storageOf } from '../../../src/engine/browse/encryption.ts';

const dir = mkdtempSync(join(tmpdir(), 'enc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = (providers: string) => `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
${providers}`;
const aescbc = config('      - aescbc:\n          keys:\n            - name: key1\n              secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/Cg==\n      - identity: {}\n');
const kms = config('      - kms:\n          name: vault\n          endpoint: unix:///kms.sock\n      - identity: {}\n');

describe('how Secrets are stored', () => {
  test('an encrypted value names its provider and key; anything else is in the clear', () => {
    expect(storageOf(Buffer.from('k8s:enc:aescbc:v1:key1:\x00\x01binary'))).toEqual({ encrypted: true, provider: 'aescbc', key: 'key1' });
    expect(storageOf(Buffer.from('k8s:enc:secretbox:v1:k2:xyz'))).toEqual({ encrypted: true, provider: 'secretbox', key: 'k2' });
    expect(storageOf(Buffer.from('k8s\x00\n\x0c\n\x02v1\x12\x06Secret'))).toEqual({ encrypted: false });
  });
});

describe('the EncryptionConfiguration that opens them', () => {
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, text);
    return p;
  };
  const good = file('extra/etc/kubernetes/enc/config.yaml', aescbc);
  const kmsFile = file('kms.yaml', kms);
  file('extra/etc/other.yaml', 'kind: ConfigMap\n');

  test('the config holding the key is accepted; one without it is refused, naming the keys it has', () => {
    expect(() => checkEncryptionConfig(good, { encrypted: true, provider: 'aescbc', key: 'key1' })).not.toThrow();
    expect(() => checkEncryptionConfig(good, { encrypted: true, provider: 'aescbc', key: 'key2' }))
      .toThrow('encrypted with aescbc key "key2", which ' + good + ' does not hold (its aescbc keys: key1)');
  });

  test('a KMS provider is refused: its keys are outside the backup', () => {
    expect(() => checkEncryptionConfig(kmsFile, { encrypted: false })).toThrow('uses a KMS provider');
  });

  test('the backup\'s own config is found in its extra paths; none is needed for Secrets in the clear', () => {
    expect(findEncryptionConfigs(join(dir, 'extra'))).toEqual([good]);
    expect(chooseEncryptionConfig({ encrypted: true, provider: 'aescbc', key: 'key1' }, undefined, join(dir, 'extra'))).toBe(good);
    expect(chooseEncryptionConfig({ encrypted: false }, undefined, join(dir, 'extra'))).toBeUndefined();
  });

  test('encrypted Secrets and no config that opens them: refused, saying what to give', () => {
    expect(() => chooseEncryptionConfig({ encrypted: true, provider: 'aesgcm', key: 'k9' }, undefined, join(dir, 'nothing')))
      .toThrow('the backup holds no EncryptionConfiguration: give the API server\'s config with --encryption-config FILE');
    expect(() => chooseEncryptionConfig({ encrypted: true, provider: 'aesgcm', key: 'k9' }, undefined, join(dir, 'extra')))
      .toThrow(`no EncryptionConfiguration in the backup holds it (${good})`);
  });
});
