/**
 * samples/ applies as the documentation (README.md and docs/) says: every file is applied by a documented command, its
 * `${…}` placeholders are exactly the variables the documentation sets, and once filled the way it fills them
 * (envsubst) each object is valid against our CRD schemas (or, for the Secret, holds the keys a BackupLocation needs).
 */
import { describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { API_VERSION, LOCATION_SECRET_KEYS } from '../../src/api/group.ts';
import { kinds } from '../../src/api/schema.ts';
import { repoRoot } from '../support/helm.ts';
import { violations } from '../support/schema.ts';

const dir = join(repoRoot, 'samples');
/** README.md and every page of docs/, as one text: a command may stand in either. */
const readme = [join(repoRoot, 'README.md'), ...readdirSync(join(repoRoot, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join(repoRoot, 'docs', f))]
  .map((f) => readFileSync(f, 'utf8')).join('\n');
const samples = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
const placeholders = (text: string) => [...new Set([...text.matchAll(/\$\{(\w+)\}/g)].map((m) => m[1]!))].sort();

/** Values a user might give; none of them may end up changing the YAML's structure. */
const userValues: Record<string, string> = {
  S3_URL: 'https://s3.example.com:9000', S3_ACCESS_KEY: 'AKIAIOSFODNN7EXAMPLE', S3_SECRET_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  RESTIC_REPO_PASSWORD: '3f1c0a9e5b7d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e', MBR_NAME: 'mbr-4c1d2a3b',
};

/** The sample as README's command leaves it: through envsubst (the real one), or as it is for `kubectl apply -f`. */
function filled(file: string): string {
  const text = readFileSync(join(dir, file), 'utf8');
  if (!readme.includes(`envsubst < samples/${file} | kubectl apply -f -`)) return text;
  const r = spawnSync('envsubst', { input: text, encoding: 'utf8', env: { PATH: process.env.PATH, ...userValues } });
  if (r.status !== 0) throw new Error(`envsubst: ${r.stderr}`);
  return r.stdout;
}

describe.each(samples)('samples/%s', (file) => {
  const text = readFileSync(join(dir, file), 'utf8');

  test('README.md applies it, and sets every placeholder it has', () => {
    const byEnvsubst = readme.includes(`envsubst < samples/${file} | kubectl apply -f -`);
    expect(byEnvsubst || readme.includes(`kubectl apply -f samples/${file}`)).toBe(true);
    if (!byEnvsubst) expect(placeholders(text)).toEqual([]);
    // Set by `export NAME=`, `NAME=… envsubst`, or read from the terminal (`read -rsp '…' NAME`).
    for (const name of placeholders(text)) expect(readme).toMatch(new RegExp(`\\b${name}=|\\bread -r\\w* '[^']*' ${name}\\b`));
  });

  test('filled, it holds no placeholder and is a valid object', () => {
    const out = filled(file);
    expect(out).not.toContain('${');
    const doc = load(out) as { apiVersion: string; kind: string; metadata: { name: string }; spec?: unknown; stringData?: Record<string, string> };
    expect(doc.metadata.name).toBeTruthy();
    if (doc.kind === 'Secret') {
      expect(doc.apiVersion).toBe('v1');
      const required = [LOCATION_SECRET_KEYS.accessKey, LOCATION_SECRET_KEYS.secretKey, LOCATION_SECRET_KEYS.repoPassword];
      for (const k of required) expect(doc.stringData?.[k]).toBeTruthy();
      expect(doc.stringData?.[LOCATION_SECRET_KEYS.secretKey]).toBe(userValues.S3_SECRET_KEY);
      return;
    }
    expect(doc.apiVersion).toBe(API_VERSION);
    const def = kinds.find((k) => k.kind === doc.kind);
    if (!def || def.schema.type !== 'object') throw new Error(`${doc.kind} is none of our kinds`);
    expect(violations(def.schema, { spec: doc.spec })).toEqual([]);
  });
});

test('the schema check refuses what the API server would (so the checks above can fail)', () => {
  const policy = kinds.find((k) => k.kind === 'MetadataBackupPolicy')!.schema;
  expect(violations(policy, { spec: { destination: 'x', schedule: '@daily', retainNumBackups: 0, sheduel: 'x' } }))
    .toEqual(['.spec.retainNumBackups: below 1', '.spec.sheduel: unknown field']);
  expect(violations(policy, { spec: { destination: '' } })).toEqual(['.spec.schedule: required', '.spec.destination: shorter than 1']);
});
