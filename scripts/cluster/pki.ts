/**
 * @module The test node's certificates, in kubeadm's layout (a cluster CA and a separate etcd CA under pki/etcd), one
 * client certificate and kubeconfig per component, and the admin kubeconfigs tests use.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './procs.ts';

export const ADMIN_TOKEN = 'kubedr-testenv-admin-token';

/** One CA-signed certificate; `sans` like `IP:127.0.0.1,DNS:localhost` (server and client), none for client only. */
function issue(pki: string, caName: string, name: string, subject: string, sans?: string): void {
  const key = join(pki, `${name}.key`);
  const csr = join(pki, `${name}.csr`);
  const ext = join(pki, `${name}.ext`);
  run('openssl', ['genrsa', '-out', key, '2048']);
  run('openssl', ['req', '-new', '-key', key, '-subj', subject, '-out', csr]);
  const lines = ['basicConstraints=CA:FALSE', 'keyUsage=digitalSignature,keyEncipherment',
    `extendedKeyUsage=${sans ? 'serverAuth,clientAuth' : 'clientAuth'}`];
  if (sans) lines.push(`subjectAltName=${sans}`);
  writeFileSync(ext, lines.join('\n') + '\n');
  run('openssl', ['x509', '-req', '-in', csr, '-CA', join(pki, `${caName}.crt`), '-CAkey', join(pki, `${caName}.key`),
    '-CAcreateserial', '-days', '30', '-sha256', '-extfile', ext, '-out', join(pki, `${name}.crt`)]);
  rmSync(csr);
  rmSync(ext);
}

function makeCa(pki: string, name: string, cn: string): void {
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', `/CN=${cn}`,
    '-keyout', join(pki, `${name}.key`), '-out', join(pki, `${name}.crt`),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

/** The node's components that talk to the API server with a client certificate of their own. */
export const COMPONENTS = {
  admin: '/O=system:masters/CN=kubernetes-admin',
  'controller-manager': '/CN=system:kube-controller-manager',
  scheduler: '/CN=system:kube-scheduler',
  kubelet: (node: string) => `/O=system:nodes/CN=system:node:${node}`,
  'kube-proxy': '/CN=system:kube-proxy',
} as const;

/** Certificates for a node named `node` at `nodeIp`; servers answer on loopback and on the node IP. */
export function makePki(pki: string, node: string, nodeIp: string, serviceIp: string): void {
  mkdirSync(join(pki, 'etcd'), { recursive: true });
  const serverSans = `IP:127.0.0.1,IP:${nodeIp},DNS:localhost,DNS:${node}`;
  makeCa(pki, 'ca', 'kubernetes');
  makeCa(pki, 'etcd/ca', 'etcd-ca');
  issue(pki, 'etcd/ca', 'etcd/server', `/CN=${node}`, serverSans);
  issue(pki, 'etcd/ca', 'etcd/peer', `/CN=${node}`, serverSans);
  issue(pki, 'etcd/ca', 'etcd/healthcheck-client', '/O=system:masters/CN=kube-etcd-healthcheck-client');
  issue(pki, 'etcd/ca', 'apiserver-etcd-client', '/O=system:masters/CN=kube-apiserver-etcd-client');
  issue(pki, 'ca', 'apiserver', '/CN=kube-apiserver', `${serverSans},IP:${serviceIp},DNS:kubernetes,DNS:kubernetes.default,` +
    'DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local');
  issue(pki, 'ca', 'apiserver-kubelet-client', '/O=system:masters/CN=kube-apiserver-kubelet-client');
  issue(pki, 'ca', 'kubelet-server', `/CN=${node}`, serverSans);
  for (const [name, subject] of Object.entries(COMPONENTS)) {
    issue(pki, 'ca', name, typeof subject === 'function' ? subject(node) : subject);
  }
  issue(pki, 'ca', 's3', '/CN=s3', serverSans);
  run('openssl', ['genrsa', '-out', join(pki, 'sa.key'), '2048']);
  run('openssl', ['rsa', '-in', join(pki, 'sa.key'), '-pubout', '-out', join(pki, 'sa.pub')]);
}

const b64 = (file: string) => readFileSync(file).toString('base64');

/** A kubeconfig for `server` whose user is `user` (a token, or client-certificate-data and client-key-data). */
export function kubeconfigYaml(server: string, caFile: string, user: Record<string, string>): string {
  const userLines = Object.entries(user).map(([k, v]) => `    ${k}: ${v}`).join('\n');
  return `apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: ${server}
    certificate-authority-data: ${b64(caFile)}
users:
- name: admin
  user:
${userLines}
contexts:
- name: testenv
  context: { cluster: testenv, user: admin }
current-context: testenv
`;
}

/** Writes `<dir>/<component>.kubeconfig` for every component, with its own client certificate. */
export function writeComponentKubeconfigs(dir: string, pki: string, server: string): void {
  for (const name of Object.keys(COMPONENTS)) {
    writeFileSync(join(dir, `${name}.kubeconfig`), kubeconfigYaml(server, join(pki, 'ca.crt'), {
      'client-certificate-data': b64(join(pki, `${name}.crt`)),
      'client-key-data': b64(join(pki, `${name}.key`)),
    }), { mode: 0o600 });
  }
}
