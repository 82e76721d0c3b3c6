/**
 * Control-plane certificates and extra host paths end to end on the real node: a policy whose certsDir (a copy of the
 * node's PKI) holds a certificate the test CA issued for 10 days shows it in the record's status and in /metrics, and
 * the chart's alert fires on the scraped value (promtool); a policy with extraPaths (an
 * EncryptionConfiguration's directory and a single file) gets them back with `kubedr restore`, under data/extra/, and
 * `kubedr etcd-restore` warns only when the API server's encryption config is missing from the backup.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import type { MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import {
  ControllerProcess, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, eventually,
  freePort, getJson, kubectl, locationSecretYaml, locationYaml, metricValue, repoRoot, uniqueBucket, locationInit
} from '../support/e2e.ts';
import { render } from '../support/helm.ts';

let ns: string;
let work: string;
let controller: ControllerProcess;
let credentialsFile: string;
const bucket = uniqueBucket('certs');
const password = `certs-pw-${crypto.randomUUID()}`;

/** A policy like the support's policyYaml, with any spec fields (extraPaths among them). */
const policyYaml = (name: string, spec: Record<string, unknown>) => `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata: { name: ${name}, namespace: ${ns} }
spec: ${JSON.stringify({ destination: 'loc', certsDir: cluster().pki, etcdEndpoint: cluster().etcdEndpoint, etcdCreds: 'etcd-creds',
  schedule: '0 0 1 1 *', ...spec })}
`;

const record = (p: MetadataBackupPolicy) => getJson<MetadataBackupRecord>(['mbr', p.status!.mbrName!, '-n', ns]);

function openssl(args: string[]): string {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** The kubedr command line as an operator runs it. */
function kubedr(args: string[]) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('certs');
  work = mkdtempSync(join(tmpdir(), 'certs-e2e-'));
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  controller = await ControllerProcess.start(ns);
  await locationInit(ns, 'loc', 'Completed');
  credentialsFile = join(work, 's3-creds.yaml');
  writeFileSync(credentialsFile, kubectl(['get', 'secret', 's3-creds', '-n', ns, '-o', 'yaml']).stdout, { mode: 0o600 });
});
afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
  rmSync(work, { recursive: true, force: true });
});

describe('a certificate that expires in 10 days', () => {
  let pki: string;
  let notAfter: string;
  let expiry: number;

  beforeAll(() => {
    // A copy of the node's PKI (its certificates last 30 days) plus one the cluster CA issues for 10.
    pki = join(work, 'pki');
    cpSync(cluster().pki, pki, { recursive: true });
    const [key, csr, crt] = ['front-proxy-client.key', 'front-proxy-client.csr', 'front-proxy-client.crt'].map((f) => join(pki, f));
    openssl(['genrsa', '-out', key!, '2048']);
    openssl(['req', '-new', '-key', key!, '-subj', '/CN=front-proxy-client', '-out', csr!]);
    openssl(['x509', '-req', '-in', csr!, '-CA', join(pki, 'ca.crt'), '-CAkey', join(pki, 'ca.key'), '-CAcreateserial', '-days', '10',
      '-sha256', '-out', crt!]);
    rmSync(csr!);
    notAfter = new Date(openssl(['x509', '-noout', '-enddate', '-in', crt!]).trim().replace(/^notAfter=/, '')).toISOString();
    expiry = Date.parse(notAfter) / 1000;
  });

  test('the record lists every certificate file with its expiry, and the 10-day one as the earliest', async () => {
    apply(policyYaml('expiring', { certsDir: pki }));
    const p = await backupNow(ns, 'expiring');
    expect(p.status?.backupStatus).toBe('Completed');
    const st = record(p).status!;
    const crts = readdirSync(pki, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.crt') && statSync(join(pki, f)).isFile()).sort();
    expect(st.certificates?.map((c) => c.file)).toEqual(crts);
    expect(st.certificates?.find((c) => c.file === 'front-proxy-client.crt')?.notAfter).toBe(notAfter);
    expect(st.earliestCertificateExpiry).toBe(notAfter);
    // The node's own certificates were issued for 30 days: all later than the new one.
    for (const c of st.certificates!) expect(Date.parse(c.notAfter)).toBeGreaterThanOrEqual(Date.parse(notAfter));
  });

  test('/metrics has one series per certificate file of the newest backup', async () => {
    const m = await controller.metrics();
    expect(metricValue(m, 'kubedr_certificate_expiry_timestamp_seconds', { policyName: 'expiring', certificate: 'front-proxy-client.crt' }))
      .toBe(expiry);
    const series = m.split('\n').filter((l) => l.startsWith('kubedr_certificate_expiry_timestamp_seconds{policyName="expiring"'));
    expect(series.length).toBe(record(getJson<MetadataBackupPolicy>(['mbp', 'expiring', '-n', ns])).status!.certificates!.length);
  });

  test('the chart\'s alert fires on the scraped value (promtool, with the clock moved to its test time)', async () => {
    const value = metricValue(await controller.metrics(), 'kubedr_certificate_expiry_timestamp_seconds',
      { policyName: 'expiring', certificate: 'front-proxy-client.crt' })!;
    const dir = mkdtempSync(join(work, 'promtool-'));
    const rule = render(['--name', 'kubedr', '--namespace', 'kubedr-system', '--api-versions', 'monitoring.coreos.com/v1']).one('PrometheusRule');
    writeFileSync(join(dir, 'rules.yaml'), dump({ groups: rule.spec.groups }));
    // promtool's clock starts at 0. The rule compares the value with time(), so both move by the same amount: the value
    // as it stands now becomes the value at test time 10m (stepping promtool's clock through to now would take hours).
    const testTime = 600;
    const shift = Math.floor(Date.now() / 1000) - testTime;
    // The expiry as the alert's description shows it (humanizeTimestamp), at test time.
    const at = new Date((value - shift) * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' +0000 UTC');
    const series = (certificate: string, v: number) => ({
      series: `kubedr_certificate_expiry_timestamp_seconds{namespace="kubedr-system", policyName="expiring", certificate="${certificate}", pod="a"}`,
      values: `${v - shift}x20`,
    });
    writeFileSync(join(dir, 'test.yaml'), dump({
      rule_files: ['rules.yaml'],
      evaluation_interval: '1m',
      tests: [{
        interval: '1m',
        // Beside it, a certificate with a year left, which must not fire.
        input_series: [series('front-proxy-client.crt', value), series('renewed.crt', Date.now() / 1000 + 365 * 86400)],
        alert_rule_test: [{
          eval_time: `${testTime}s`,
          alertname: 'KubeDRControlPlaneCertificateExpiring',
          exp_alerts: [{
            exp_labels: { severity: 'warning', namespace: 'kubedr-system', policyName: 'expiring', certificate: 'front-proxy-client.crt' },
            exp_annotations: {
              summary: 'Control-plane certificate front-proxy-client.crt of KubeDR policy kubedr-system/expiring expires within 30 days',
              description: 'The newest backup of MetadataBackupPolicy expiring in kubedr-system holds front-proxy-client.crt (relative to ' +
                `certsDir), whose earliest certificate expires at ${at}: less than 30 days away, or past. Renew it on the control-plane ` +
                'nodes, then take a backup. See the record\'s status.certificates.',
              runbook_url: 'docs/runbooks.md#kubedrcontrolplanecertificateexpiring',
            },
          }],
        }],
      }],
    }));
    const r = spawnSync('promtool', ['test', 'rules', 'test.yaml'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) console.error(r.stdout + r.stderr);
    expect(r.stdout).toContain('SUCCESS');
  });
});

describe('extraPaths', () => {
  let enc: string;
  let single: string;
  let target: string;

  beforeAll(() => {
    // An API server's encryption-at-rest config in a directory of its own, and a file elsewhere.
    enc = join(work, 'host/etc/kubernetes/enc');
    mkdirSync(enc, { recursive: true });
    writeFileSync(join(enc, 'enc.yaml'), 'apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n');
    single = join(work, 'host/etc/kubernetes/audit-policy.yaml');
    writeFileSync(single, 'apiVersion: audit.k8s.io/v1\nkind: Policy\n');
    target = join(work, 'restored');
  });

  test('a policy with extraPaths backs them up, and kubedr restore brings them back under data/extra/<path>', async () => {
    apply(policyYaml('extras', { extraPaths: [enc, single] }));
    const p = await backupNow(ns, 'extras');
    expect(p.status?.backupErrorMessage).toBe('');
    expect(p.status?.backupStatus).toBe('Completed');
    const r = kubedr(['restore', 'latest', '--policy', 'extras', '--target', target, '--url', cluster().s3Url, '--bucket', bucket,
      '--credentials', credentialsFile]);
    expect(r.stderr).not.toContain('failed');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`  extra paths:   ${target}/data/extra/`);
    expect(readFileSync(join(target, 'data/extra', enc, 'enc.yaml'), 'utf8')).toBe(readFileSync(join(enc, 'enc.yaml'), 'utf8'));
    expect(readFileSync(join(target, 'data/extra', single), 'utf8')).toBe(readFileSync(single, 'utf8'));
    expect(readdirSync(join(target, 'data')).sort()).toEqual(['certificates', 'etcd-members.json', 'etcd-snapshot.db', 'extra']);
    // The membership of the etcd it came from, as etcd itself reported it: the node's one member.
    const members = JSON.parse(readFileSync(join(target, 'data/etcd-members.json'), 'utf8')) as { name: string; peerUrls: string[]; isLearner: boolean }[];
    expect(members.map((m) => [m.name, m.isLearner])).toEqual([['etcd', false]]);
    expect(members[0]!.peerUrls).toEqual([expect.stringMatching(/^https:\/\/[\d.]+:2380$/)]);
  });

  test('a missing extra path fails the backup, naming it', async () => {
    const missing = join(work, 'host/etc/kubernetes/not-there');
    apply(policyYaml('missing-extra', { extraPaths: [missing] }));
    const p = await backupNow(ns, 'missing-extra');
    expect(p.status?.backupStatus).toBe('Failed');
    expect(p.status?.backupErrorMessage).toContain(`extraPaths: ${missing} does not exist`);
  });

  test('kubedr etcd-restore warns when the API server\'s encryption config is not in the backup, and not when it is', async () => {
    const manifest = (config: string) => {
      const file = join(work, `kube-apiserver-${crypto.randomUUID()}.yaml`);
      writeFileSync(file, `spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --encryption-provider-config=${config}\n`);
      return file;
    };
    const run = async (apiserverManifest: string) => kubedr(['etcd-restore', '--snapshot', join(target, 'data/etcd-snapshot.db'),
      '--data-dir', join(work, `etcd-${crypto.randomUUID()}`), '--name', 'restored',
      '--initial-advertise-peer-urls', `http://127.0.0.1:${await freePort()}`, '--etcd-manifest', join(work, 'no-manifest'),
      '--apiserver-manifest', apiserverManifest]);

    const held = await run(manifest(join(enc, 'enc.yaml')));
    expect(held.code).toBe(0);
    expect(held.stderr).not.toContain('encryption-provider-config');
    expect(held.stdout).toContain(`Host paths stored with the backup (extraPaths) are under ${target}/data/extra/`);

    const other = join(work, 'host/etc/kubernetes/other-enc/enc.yaml');
    const missing = await run(manifest(other));
    expect(missing.code).toBe(0);
    expect(missing.stderr).toContain(`sets --encryption-provider-config=${other}, but the restored backup does not hold it ` +
      `(no ${target}/data/extra${other}), and this node has no such file either.`);
  });
});
