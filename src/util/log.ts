/** @module Structured logs: one JSON object a line on stderr, every string field redacted. */
import { redactDeep } from './redact.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  write?: (line: string) => void;
}

export function isLogLevel(s: string): s is LogLevel {
  return s in order;
}

function errorFields(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return cause ? { message: err.message, cause } : err.message;
}

export function createLogger(opts: LoggerOptions = {}, base: Fields = {}): Logger {
  const min = order[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const emit = (level: LogLevel, msg: string, fields?: Fields) => {
    if (order[level] < min) return;
    const entry: Fields = { ts: new Date().toISOString(), level, msg, ...base };
    for (const [k, v] of Object.entries(fields ?? {})) entry[k] = k === 'err' ? errorFields(v) : v;
    // Redacted before serialising: JSON escaping would hide a secret with quotes in it.
    write(JSON.stringify(redactDeep(entry)));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(opts, { ...base, ...fields }),
  };
}
