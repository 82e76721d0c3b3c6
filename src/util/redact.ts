/**
 * @module Keeps credentials out of every output. Whoever reads a secret value registers it here; logs, events, status
 * messages and errors pass through `redact()` before they leave the process.
 */

const secrets = new Set<string>();

/** Values shorter than this are too likely to match ordinary words; no real credential is that short. */
const MIN_SECRET_LENGTH = 3;

export const REDACTED = '[REDACTED]';

/** Registers a credential value (and each of its lines, for multi-line values like PEM keys) to be masked everywhere. */
export function registerSecret(value: string | undefined): void {
  if (!value) return;
  const trimmed = value.trim();
  if (trimmed.length >= MIN_SECRET_LENGTH) secrets.add(trimmed);
  if (trimmed.includes('\n')) {
    for (const line of trimmed.split('\n')) {
      const l = line.trim();
      // PEM armour lines are public structure, not secret material.
      if (l.length >= 16 && !l.startsWith('-----')) secrets.add(l);
    }
  }
}

/** Masks registered secrets and any user:password in URLs. */
export function redact(text: string): string {
  let out = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+:[^/\s@]+@/gi, `$1${REDACTED}@`);
  // Longest first, so a secret that contains another is masked whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) {
    if (out.includes(s)) out = out.split(s).join(REDACTED);
  }
  return out;
}

/**
 * Every string inside a value redacted: for whole objects that leave the process, such as a log entry or a status
 * patch. Plain data only (what JSON carries).
 */
export function redactDeep<T>(value: T): T {
  if (typeof value === 'string') return redact(value) as T;
  if (Array.isArray(value)) return value.map((x) => redactDeep(x)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, redactDeep(x)])) as T;
  }
  return value;
}

/** For tests: forget every registered value. */
export function clearSecrets(): void {
  secrets.clear();
}
