/**
 * @module Where the disaster-recovery commands find a repository and its credentials when there is no cluster to read
 * a BackupLocation from. Secret values come from the environment or a file, never from the command line: argv is
 * visible to every user of the machine (`ps`) and lands in shell history.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LOCATION_SECRET_KEYS as K } from '../api/group.ts';
import { repositoryAddress } from '../engine/repository.ts';
import type { Repository } from '../engine/restic.ts';
import { type FlagSpec, UsageError } from '../util/flags.ts';
import { registerSecret } from '../util/redact.ts';

export const repositoryFlags = {
  url: { type: 'string', help: 'S3 endpoint, as in the BackupLocation\'s spec.url', env: 'KUBEDR_S3_URL' },
  bucket: { type: 'string', help: 'bucket, as in the BackupLocation\'s spec.bucketName', env: 'KUBEDR_S3_BUCKET' },
  credentials: {
    type: 'string', env: 'KUBEDR_CREDENTIALS',
    help: 'the BackupLocation\'s Secret: a saved `kubectl get secret -o yaml|json`, a directory of files (a mounted Secret), or KEY=VALUE lines ' +
      '(keys access_key, secret_key, restic_repo_password, optional ca.crt; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, RESTIC_PASSWORD also work). ' +
      'Without a password there, RESTIC_PASSWORD_FILE names a file holding it. ' +
      'The environment variables AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, RESTIC_PASSWORD and KUBEDR_S3_CA_CERT (PEM) take precedence',
  },
  'ca-cert': { type: 'string', help: 'PEM file of the CA that signed the S3 endpoint\'s certificate' },
} satisfies Record<string, FlagSpec>;

/** Choosing among the backups of several clusters (or installs) that share a bucket. */
export const clusterFlag = {
  cluster: {
    type: 'string', env: 'KUBEDR_CLUSTER',
    help: 'only the backups of this cluster: its name, its id or an id prefix (the CLUSTER column of kubedr snapshots), optionally /NAMESPACE for one install; ' +
      '"-" for backups without a cluster identity. Needed for "latest" when several clusters share the bucket',
  },
} satisfies Record<string, FlagSpec>;

export interface RepositoryFlagValues {
  url?: string;
  bucket?: string;
  credentials?: string;
  'ca-cert'?: string;
}

type Values = Partial<Record<string, string>>;

/** Other spellings of the Secret's keys that users have in env files. */
const aliases: Record<string, string> = {
  AWS_ACCESS_KEY_ID: K.accessKey, AWS_SECRET_ACCESS_KEY: K.secretKey, RESTIC_PASSWORD: K.repoPassword, KUBEDR_S3_CA_CERT: K.caCert,
};
const canonical = (key: string) => aliases[key] ?? key;

function fromSecretObject(obj: Record<string, unknown>): Values {
  const out: Values = {};
  const data = obj.data as Record<string, unknown> | undefined;
  const stringData = obj.stringData as Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(data ?? {})) out[canonical(k)] = Buffer.from(String(v), 'base64').toString('utf8');
  for (const [k, v] of Object.entries(stringData ?? {})) out[canonical(k)] = String(v);
  return out;
}

/** The key/value pairs of a credentials file: a Secret as YAML or JSON, a flat YAML/JSON map, or KEY=VALUE lines. */
export function parseCredentials(text: string): Values {
  let doc: unknown;
  try {
    doc = Bun.YAML.parse(text);
  } catch {
    doc = undefined;
  }
  if (doc && typeof doc === 'object' && !Array.isArray(doc)) {
    const obj = doc as Record<string, unknown>;
    if (obj.kind === 'Secret' || 'data' in obj || 'stringData' in obj) return fromSecretObject(obj);
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [canonical(k), String(v)]));
  }
  const out: Values = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/^export\s+/, '');
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    out[canonical(line.slice(0, eq).trim())] = line.slice(eq + 1).trim().replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

function readCredentials(path: string): Values {
  if (!existsSync(path)) throw new UsageError(`--credentials ${path}: no such file or directory`);
  if (!statSync(path).isDirectory()) return parseCredentials(readFileSync(path, 'utf8'));
  const out: Values = {};
  for (const name of readdirSync(path)) {
    const file = join(path, name);
    // A mounted Secret holds `..data` links and dot-directories beside the key files.
    if (name.startsWith('.') || !statSync(file).isFile()) continue;
    out[canonical(name)] = readFileSync(file, 'utf8').trim();
  }
  return out;
}

/**
 * The password in RESTIC_PASSWORD_FILE (restic's own variable; restore and verification pods mount the Secret's key
 * there), as it is: restic is given it in a file of its own (engine/restic.ts), which keeps surrounding white space.
 */
function passwordFromFile(file: string | undefined): string | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8') || undefined;
  } catch (err) {
    throw new UsageError(`cannot read the repository password from RESTIC_PASSWORD_FILE ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The repository named by the flags, with credentials from the environment, else the credentials file. */
export function repositoryFromFlags(flags: RepositoryFlagValues, env: Record<string, string | undefined> = process.env): Repository {
  if (!flags.url) throw new UsageError('--url is required (the S3 endpoint, e.g. https://s3.example.com:9000)');
  if (!flags.bucket) throw new UsageError('--bucket is required');
  const file = flags.credentials ? readCredentials(flags.credentials) : {};
  const pick = (key: string, envName: string) => env[envName] || file[key] || undefined;
  const accessKey = pick(K.accessKey, 'AWS_ACCESS_KEY_ID');
  const secretKey = pick(K.secretKey, 'AWS_SECRET_ACCESS_KEY');
  const password = pick(K.repoPassword, 'RESTIC_PASSWORD') ?? passwordFromFile(env.RESTIC_PASSWORD_FILE);
  const caCert = flags['ca-cert'] ? readFileSync(flags['ca-cert'], 'utf8') : pick(K.caCert, 'KUBEDR_S3_CA_CERT');
  for (const v of [accessKey, secretKey, password]) registerSecret(v);
  const missing = [[accessKey, `${K.accessKey} (or AWS_ACCESS_KEY_ID)`], [secretKey, `${K.secretKey} (or AWS_SECRET_ACCESS_KEY)`],
    [password, `${K.repoPassword} (or RESTIC_PASSWORD)`]].filter(([v]) => !v).map(([, name]) => name);
  if (missing.length > 0) {
    throw new UsageError(`missing credentials: ${missing.join(', ')}; give --credentials FILE or set the environment variables`);
  }
  return { address: repositoryAddress(flags.url, flags.bucket), accessKey: accessKey!, secretKey: secretKey!, password: password!, caCert };
}
