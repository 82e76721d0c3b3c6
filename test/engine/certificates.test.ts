/**
 * Reading certificate expiries from a directory like /etc/kubernetes/pki, with certificates openssl issues in the test:
 * one file each, a bundle of two, keys, a CSR, a non-PEM file and a damaged block beside a good one.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { earliestExpiry, earliestNotAfter, expiringCertificates, readCertificateExpiries } from '../../src/engine/certificates.ts';
import { issueCertificate as issue } from '../fixtures/certificates.ts';

let pki: string;
let soon: string;
let later: string;
let nested: string;

beforeAll(() => {
  pki = mkdtempSync(join(tmpdir(), 'certs-test-'));
  mkdirSync(join(pki, 'etcd'));
  soon = issue(pki, 'apiserver', 10);
  later = issue(pki, 'ca', 400);
  nested = issue(join(pki, 'etcd'), 'server', 20);
  // A bundle: the long-lived certificate first, so the earliest is not simply the first.
  writeFileSync(join(pki, 'bundle.pem'), readFileSync(join(pki, 'ca.crt'), 'utf8') + readFileSync(join(pki, 'apiserver.crt'), 'utf8'));
  // Key and certificate in one file, as some tools write them.
  writeFileSync(join(pki, 'combined.pem'), readFileSync(join(pki, 'apiserver.key'), 'utf8') + readFileSync(join(pki, 'ca.crt'), 'utf8'));
  spawnSync('openssl', ['req', '-new', '-key', join(pki, 'ca.key'), '-subj', '/CN=csr', '-out', join(pki, 'ca.csr')]);
  writeFileSync(join(pki, 'sa.pub'), 'not PEM at all\n');
  writeFileSync(join(pki, 'damaged.crt'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n' +
    readFileSync(join(pki, 'etcd/server.crt'), 'utf8'));
});
afterAll(() => rmSync(pki, { recursive: true, force: true }));

describe('readCertificateExpiries', () => {
  test('each file holding a certificate, recursively, with the earliest notAfter in it; keys, CSRs and other files left out', async () => {
    expect(await readCertificateExpiries(pki)).toEqual([
      { file: 'apiserver.crt', notAfter: soon },
      { file: 'bundle.pem', notAfter: soon },
      { file: 'ca.crt', notAfter: later },
      { file: 'combined.pem', notAfter: later },
      { file: 'damaged.crt', notAfter: nested },
      { file: 'etcd/server.crt', notAfter: nested },
    ]);
  });

  test('the expiries are those openssl reports, about 10 and 400 days away', () => {
    const days = (iso: string) => (Date.parse(iso) - Date.now()) / 86_400_000;
    expect(days(soon)).toBeGreaterThan(9.9);
    expect(days(soon)).toBeLessThan(10.1);
    expect(days(later)).toBeGreaterThan(399.9);
  });

  test('a directory without certificates gives none', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'certs-empty-'));
    writeFileSync(join(empty, 'sa.key'), readFileSync(join(pki, 'ca.key')));
    try {
      expect(await readCertificateExpiries(empty)).toEqual([]);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('earliestNotAfter, earliestExpiry, expiringCertificates', () => {
  test('text without a certificate block has no expiry', () => {
    expect(earliestNotAfter('-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n')).toBeUndefined();
    expect(earliestNotAfter('')).toBeUndefined();
  });

  test('the earliest of several files, and none of none', () => {
    expect(earliestExpiry([{ file: 'a', notAfter: later }, { file: 'b', notAfter: soon }, { file: 'c', notAfter: nested }])).toBe(soon);
    expect(earliestExpiry([])).toBeUndefined();
  });

  test('expired and expiring within the window, soonest first', () => {
    const now = new Date('2030-01-10T00:00:00Z');
    const certs = [
      { file: 'later', notAfter: '2030-02-01T00:00:00.000Z' },
      { file: 'in-3-days', notAfter: '2030-01-13T00:00:00.000Z' },
      { file: 'expired', notAfter: '2030-01-01T00:00:00.000Z' },
    ];
    expect(expiringCertificates(certs, now, 7 * 86_400_000).map((c) => c.file)).toEqual(['expired', 'in-3-days']);
  });
});
