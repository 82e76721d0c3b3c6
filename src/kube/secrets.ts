/** @module Reading values out of Secrets. Every credential read here is registered for redaction before it is returned. */
import type { Secret } from '../api/types.ts';
import { registerSecret } from '../util/redact.ts';

export class SecretKeyMissingError extends Error {
  constructor(readonly secret: string, readonly keys: string[]) {
    super(`Secret "${secret}" lacks key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}`);
    this.name = 'SecretKeyMissingError';
  }
}

/**
 * Returns the decoded values of `required` (all must be present and non-empty) and of `optional` keys that are set.
 * `public` names keys whose values are not credentials (a CA certificate) and so are not redacted.
 */
export function secretValues<R extends string, O extends string = never>(
  secret: Secret, required: readonly R[], optional: readonly O[] = [], isPublic: readonly string[] = [],
): Record<R, string> & Partial<Record<O, string>> {
  const data = secret.data ?? {};
  const decode = (k: string) => (data[k] ? Buffer.from(data[k], 'base64').toString('utf8') : '');
  const missing = required.filter((k) => decode(k).trim() === '');
  if (missing.length > 0) throw new SecretKeyMissingError(secret.metadata.name, missing);
  const out: Record<string, string> = {};
  for (const k of [...required, ...optional]) {
    const v = decode(k);
    if (!v) continue;
    if (!isPublic.includes(k)) registerSecret(v);
    out[k] = v;
  }
  return out as Record<R, string> & Partial<Record<O, string>>;
}
