/**
 * @module Secrets encrypted at rest in a backup, and the EncryptionConfiguration that opens them. The API server stores
 * an encrypted value as `k8s:enc:<provider>:v1:<key name>:<ciphertext>`; without a config holding that key it answers
 * every read of a Secret with an internal error. So a browse looks at one stored Secret first and refuses, in words,
 * a backup whose key it was not given, rather than serving an API whose Secrets all fail.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EngineError } from '../errors.ts';
import { etcdctl } from '../throwaway-etcd.ts';

/** How the backup's Secrets are stored: in the clear, or encrypted by a provider with a named key. */
export type SecretStorage = { encrypted: false } | { encrypted: true; provider: string; key: string };

/** Reads the storage of a stored value: `k8s:enc:aescbc:v1:key1:…` → aescbc, key1. */
export function storageOf(value: Buffer): SecretStorage {
  const head = value.subarray(0, 200).toString('latin1');
  const m = /^k8s:enc:([a-z]+):v1:([^:]*):/.exec(head);
  if (!m) return { encrypted: false };
  return { encrypted: true, provider: m[1]!, key: m[2]! };
}

/** The storage of the first Secret in the throwaway etcd (all Secrets are written by one config at a time). */
export async function secretStorage(etcdEndpoint: string, prefix = '/registry', signal?: AbortSignal): Promise<SecretStorage> {
  const out = await etcdctl(etcdEndpoint, ['get', `${prefix}/secrets/`, '--prefix', '--limit=1', '-w', 'json'], signal);
  const kv = (JSON.parse(out) as { kvs?: { value: string }[] }).kvs?.[0];
  return kv ? storageOf(Buffer.from(kv.value, 'base64')) : { encrypted: false };
}

interface EncryptionConfiguration {
  kind?: string;
  resources?: { resources?: string[]; providers?: Record<string, { keys?: { name?: string }[] } | null>[] }[];
}

function parseConfig(text: string, file: string): EncryptionConfiguration {
  try {
    return Bun.YAML.parse(text) as EncryptionConfiguration;
  } catch (err) {
    throw new EngineError('InvalidInput', `${file} is not valid YAML: ${(err as Error).message}`);
  }
}

/** EncryptionConfiguration files among a restored backup's files (a policy's extraPaths hold it when asked to). */
export function findEncryptionConfigs(dir: string): string[] {
  const found: string[] = [];
  const walk = (d: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      const st = statSync(p, { throwIfNoEntry: false });
      if (st?.isDirectory() && depth < 8) walk(p, depth + 1);
      else if (st?.isFile() && st.size < 1 << 20 && /\.(ya?ml|json)$/.test(n) && /kind:\s*["']?EncryptionConfiguration/.test(readFileSync(p, 'utf8'))) found.push(p);
    }
  };
  walk(dir, 0);
  return found.sort();
}

/**
 * Whether `file` can open Secrets stored as `need`: it must be an EncryptionConfiguration for secrets naming that
 * provider and key. KMS providers are refused: their key lives in a service outside the backup, which a browse of a
 * backup cannot (and should not) reach.
 */
export function checkEncryptionConfig(file: string, need: SecretStorage): void {
  const cfg = parseConfig(readFileSync(file, 'utf8'), file);
  if (cfg.kind !== 'EncryptionConfiguration') throw new EngineError('InvalidInput', `${file} is not an EncryptionConfiguration (kind: ${cfg.kind ?? 'none'})`);
  const forSecrets = (cfg.resources ?? []).filter((r) => (r.resources ?? []).some((x) => x === 'secrets' || x === '*.*' || x === '*.'));
  const providers = forSecrets.flatMap((r) => r.providers ?? []);
  if (providers.some((p) => 'kms' in p)) {
    throw new EngineError('InvalidInput', `${file} uses a KMS provider: its keys are held by a KMS plugin outside the backup, ` +
      'which kubedr browse does not call; Secrets encrypted with it cannot be read from a backup');
  }
  if (!need.encrypted) return;
  const keys = providers.flatMap((p) => (p[need.provider]?.keys ?? []).map((k) => k.name));
  if (!keys.includes(need.key)) {
    throw new EngineError('InvalidInput', `the backup's Secrets are encrypted with ${need.provider} key "${need.key}", which ${file} does not hold` +
      (keys.length ? ` (its ${need.provider} keys: ${keys.join(', ')})` : ''));
  }
}

/** The config to serve Secrets with: the one given, else the one the backup holds; refuses when none fits. */
export function chooseEncryptionConfig(need: SecretStorage, given: string | undefined, restoredDir: string | undefined): string | undefined {
  if (given) {
    checkEncryptionConfig(given, need);
    return given;
  }
  const found = restoredDir ? findEncryptionConfigs(restoredDir) : [];
  const fits = found.filter((f) => {
    try {
      checkEncryptionConfig(f, need);
      return true;
    } catch {
      return false;
    }
  });
  if (!need.encrypted) return undefined;
  if (fits[0]) return fits[0];
  throw new EngineError('InvalidInput', `the backup's Secrets are encrypted at rest with ${need.provider} key "${need.key}" and ` +
    `${found.length ? `no EncryptionConfiguration in the backup holds it (${found.join(', ')})` : 'the backup holds no EncryptionConfiguration'}: ` +
    'give the API server\'s config with --encryption-config FILE (add its path to the policy\'s extraPaths to keep it with every backup)');
}
