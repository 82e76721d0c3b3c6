/**
 * @module What `kubedr restore` and `kubedr etcd-restore` warn about in a restored backup, without stopping the
 * restore: certificates that have expired or soon will (a control plane started with them cannot talk to itself), and
 * an encryption-at-rest config the node's API server needs but the backup does not hold.
 */
import { type CertificateExpiry, expiringCertificates } from '../engine/certificates.ts';

/** Certificates expiring within this many days of the restore are named with the expired ones. */
export const CERTIFICATE_WARNING_DAYS = 7;

const DAY_MS = 24 * 3600_000;

/** RFC 3339 to the second: what `openssl x509 -enddate` and kubeadm show, without the milliseconds. */
const timeOf = (iso: string) => new Date(iso).toISOString().replace(/\.\d{3}Z$/, 'Z');

const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;

/** A duration in days and hours from two days up, else in hours, else in minutes; always rounded down. */
function span(ms: number): string {
  const minutes = Math.max(1, Math.floor(ms / 60_000));
  const hours = Math.floor(minutes / 60);
  const days = Math.floor(hours / 24);
  if (days >= 2) return plural(days, 'day') + (hours % 24 ? ` ${plural(hours % 24, 'hour')}` : '');
  return hours >= 1 ? plural(hours, 'hour') : plural(minutes, 'minute');
}

/**
 * The warning about restored certificates (paths relative to `dir`) that have expired at `now` or expire within
 * CERTIFICATE_WARNING_DAYS, one line each, soonest first; undefined when there are none.
 */
export function certificateWarning(certs: readonly CertificateExpiry[], dir: string, now: Date): string | undefined {
  const soon = expiringCertificates(certs, now, CERTIFICATE_WARNING_DAYS * DAY_MS);
  if (soon.length === 0) return undefined;
  const one = soon.length === 1;
  const lines = soon.map((c) => {
    const left = Date.parse(c.notAfter) - now.getTime();
    return left <= 0 ? `  ${c.file}: expired ${timeOf(c.notAfter)} (${span(-left)} ago)`
      : `  ${c.file}: expires ${timeOf(c.notAfter)} (in ${span(left)})`;
  });
  return [
    `warning: ${soon.length} restored certificate${one ? ' has' : 's have'} expired or expire${one ? 's' : ''} within ` +
      `${CERTIFICATE_WARNING_DAYS} days (in ${dir}). A control plane started with expired certificates cannot talk to itself: ` +
      'renew them before starting it (kubeadm: kubeadm certs renew all; an expired CA must be replaced).',
    ...lines,
  ].join('\n');
}

/**
 * The warning when the node's kube-apiserver manifest names an encryption-at-rest config (`configPath`) that the
 * restored backup does not hold at `expectedAt` (its `data/extra/<configPath>`); undefined when there is nothing to say.
 * `onNode`: whether the node still has the file itself.
 */
export function encryptionConfigWarning(o: { manifest: string; configPath?: string; expectedAt?: string; held: boolean; onNode: boolean }): string | undefined {
  if (!o.configPath || o.held) return undefined;
  return `warning: ${o.manifest} sets --encryption-provider-config=${o.configPath}, but the restored backup does not hold it ` +
    `(no ${o.expectedAt})${o.onNode ? '' : ', and this node has no such file either'}. Secrets encrypted at rest in the ` +
    'restored etcd can be read only with the keys that file held at backup time: keep the node\'s copy, or bring it back ' +
    'from elsewhere, before starting the API server. To store it with future backups, add its directory to the policy\'s extraPaths.';
}
