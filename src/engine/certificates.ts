/**
 * @module The X.509 certificates in a directory and when they expire: every PEM `CERTIFICATE` block in every file under
 * it (recursively), the earliest expiry per file. A control plane whose certificates have expired cannot talk to itself,
 * so a backup records when that happens and a restore warns about it.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

export interface CertificateExpiry {
  /** Path of the file relative to the directory read, with `/` separators (e.g. `etcd/server.crt`). */
  file: string;
  /** The earliest notAfter among the file's certificates, RFC 3339 (UTC). */
  notAfter: string;
}

/** Certificates, bundles and kubeconfig-style PEM files are kilobytes; a larger file is not read into memory. */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;

/** PEM certificate blocks only: keys, CSRs and anything else in the same file are not certificates. */
const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The earliest notAfter among the PEM certificates in `text`, or undefined when it holds none that parse. */
export function earliestNotAfter(text: string): Date | undefined {
  let earliest: Date | undefined;
  for (const [block] of text.matchAll(CERTIFICATE_BLOCK)) {
    let notAfter: Date;
    try {
      notAfter = new X509Certificate(block).validToDate;
    } catch {
      // A damaged block is not a certificate we can date; the backup still stores the file as it is.
      continue;
    }
    if (!earliest || notAfter < earliest) earliest = notAfter;
  }
  return earliest;
}

/**
 * Each file under `dir` that holds at least one certificate, with its earliest expiry, sorted by path. Files that hold
 * none (keys, `sa.pub`, serial files) are left out; so are files that cannot be read, since the caller reads a copy it
 * has just made and a certificate it cannot date must not fail a backup.
 */
export async function readCertificateExpiries(dir: string): Promise<CertificateExpiry[]> {
  const found: CertificateExpiry[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    let text: string;
    try {
      if ((await stat(path)).size > MAX_FILE_BYTES) continue;
      text = await readFile(path, 'latin1');
    } catch {
      continue;
    }
    const expiry = certificateExpiry(relative(dir, path).split(sep).join('/'), text);
    if (expiry) found.push(expiry);
  }
  return sortByFile(found);
}

/** One file's expiry (`text` read as latin1), or undefined when it holds no certificate that parses. */
export function certificateExpiry(file: string, text: string): CertificateExpiry | undefined {
  const notAfter = text.includes('-----BEGIN CERTIFICATE-----') ? earliestNotAfter(text) : undefined;
  return notAfter && { file, notAfter: notAfter.toISOString() };
}

/** `certs` sorted by path, in place. */
export function sortByFile(certs: CertificateExpiry[]): CertificateExpiry[] {
  return certs.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
}

/** The earliest expiry among `certs`, RFC 3339, or undefined when there are none. */
export function earliestExpiry(certs: readonly CertificateExpiry[]): string | undefined {
  return certs.reduce<string | undefined>((a, c) => (!a || Date.parse(c.notAfter) < Date.parse(a) ? c.notAfter : a), undefined);
}

/** Certificates expired by `now` or expiring within `withinMs` of it, soonest first. */
export function expiringCertificates(certs: readonly CertificateExpiry[], now: Date, withinMs: number): CertificateExpiry[] {
  return certs.filter((c) => Date.parse(c.notAfter) < now.getTime() + withinMs)
    .sort((a, b) => Date.parse(a.notAfter) - Date.parse(b.notAfter));
}
