/**
 * @module A small flag parser shared by every subcommand and the controller's config: `--name value`, `--name=value`,
 * booleans, durations (`500ms`, `15s`, `2m`, `1h`), an environment variable per flag, and generated `--help` text.
 */

export type FlagType = 'string' | 'boolean' | 'duration' | 'int';

export interface FlagSpec {
  type: FlagType;
  help: string;
  default?: string | boolean | number;
  /** Environment variable read when the flag is not given. */
  env?: string;
  /** One-letter alias, as kubectl's `-n`: `-n value`. */
  short?: string;
}

type ValueOf<T extends FlagType> = T extends 'boolean' ? boolean : T extends 'string' ? string : number;
export type Parsed<S extends Record<string, FlagSpec>> = { [K in keyof S]: ValueOf<S[K]['type']> | (S[K] extends { default: unknown } ? never : undefined) };

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * The longest duration a flag takes: 2^31-1 ms (596h31m23.647s, about 24.8 days). setTimeout and setInterval treat a
 * longer delay as 1 ms, so a longer interval would turn into a busy loop instead of a long wait.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** Milliseconds in a duration such as `90s`, `1m30s`, `500ms`, `2h`; a plain number is seconds. At most MAX_DURATION_MS. */
export function parseDuration(s: string): number {
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(s)) ms = Number(s) * 1000;
  else if (parts.length > 0 && parts.map((p) => p[0]).join('') === s) ms = parts.reduce((sum, p) => sum + Number(p[1]) * (unit[p[2]!] ?? 0), 0);
  else throw new UsageError(`invalid duration "${s}" (e.g. 500ms, 15s, 2m, 1h)`);
  if (ms > MAX_DURATION_MS) throw new UsageError(`duration "${s}" is too long: the longest is 596h31m23s (about 24.8 days)`);
  return ms;
}

function convert(name: string, spec: FlagSpec, raw: string): string | boolean | number {
  switch (spec.type) {
    case 'boolean':
      if (['true', '1', 'yes', ''].includes(raw)) return true;
      if (['false', '0', 'no'].includes(raw)) return false;
      throw new UsageError(`--${name} takes true or false, not "${raw}"`);
    case 'duration':
      try {
        return parseDuration(raw);
      } catch (err) {
        throw err instanceof UsageError ? new UsageError(`--${name}: ${err.message}`) : err;
      }
    case 'int': {
      const n = Number(raw);
      if (!Number.isInteger(n)) throw new UsageError(`--${name} takes a whole number, not "${raw}"`);
      return n;
    }
    default:
      return raw;
  }
}

export interface ParseResult<S extends Record<string, FlagSpec>> {
  flags: Parsed<S>;
  args: string[];
  help: boolean;
}

export function parseFlags<S extends Record<string, FlagSpec>>(specs: S, argv: string[], env: Record<string, string | undefined> = process.env): ParseResult<S> {
  const out: Record<string, unknown> = {};
  const args: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      help = true;
      continue;
    }
    if (a === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    let flag = a;
    if (/^-[a-zA-Z]$/.test(a)) {
      const long = Object.keys(specs).find((n) => specs[n]!.short === a[1]);
      if (!long) throw new UsageError(`unknown flag ${a}`);
      flag = `--${long}`;
    } else if (!a.startsWith('--')) {
      args.push(a);
      continue;
    }
    const eq = flag.indexOf('=');
    let name = eq >= 0 ? flag.slice(2, eq) : flag.slice(2);
    let raw = eq >= 0 ? flag.slice(eq + 1) : undefined;
    let spec = specs[name];
    if (!spec && name.startsWith('no-') && specs[name.slice(3)]?.type === 'boolean') {
      name = name.slice(3);
      spec = specs[name];
      raw = 'false';
    }
    if (!spec) throw new UsageError(`unknown flag --${name}`);
    if (raw === undefined) {
      if (spec.type === 'boolean') raw = '';
      else if (i + 1 < argv.length) raw = argv[++i]!;
      else throw new UsageError(`--${name} needs a value`);
    }
    out[name] = convert(name, spec, raw);
  }
  for (const [name, spec] of Object.entries(specs)) {
    if (name in out) continue;
    const fromEnv = spec.env ? env[spec.env] : undefined;
    if (fromEnv !== undefined && fromEnv !== '') out[name] = convert(name, spec, fromEnv);
    else if (spec.default !== undefined) out[name] = typeof spec.default === 'string' ? convert(name, spec, spec.default) : spec.default;
  }
  return { flags: out as Parsed<S>, args, help };
}

export function helpText(usage: string, summary: string, specs: Record<string, FlagSpec>): string {
  const rows = Object.entries(specs).map(([name, s]) => {
    const left = `  ${s.short ? `-${s.short}, ` : ''}--${name}${s.type === 'boolean' ? '' : ` <${s.type}>`}`;
    const extra = [s.default !== undefined && s.default !== '' ? `default ${String(s.default)}` : '', s.env ? `env ${s.env}` : '']
      .filter(Boolean).join(', ');
    return `${left.padEnd(38)} ${s.help}${extra ? ` (${extra})` : ''}`;
  });
  return `Usage: ${usage}\n\n${summary}\n\nFlags:\n${rows.join('\n')}\n  --help                                 show this help\n`;
}
