/**
 * @module What `kubedr etcd-restore` reads on the node before and after a restore: this host's name and address, the
 * manifests, the membership the backup recorded, what the restored backup holds beside the snapshot, and what in it
 * will stop the control plane. The writes (data directory, manifests moved or repointed) are the engine's
 * (engine/etcd-restore.ts, engine/kubeadm-manifests.ts); the decisions are etcd-restore-plan.ts's.
 */
import { existsSync, readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { CERTS_DIR, EXTRA_DIR, extraPathIn, MEMBERS_FILE } from '../engine/backup-layout.ts';
import { readCertificateExpiries } from '../engine/certificates.ts';
import { readEncryptionConfigPath } from '../engine/encryption-config.ts';
import { type EtcdMember, type Member, restoredMembers } from '../engine/etcd-members.ts';
import { readEtcdManifest } from '../engine/etcd-restore.ts';
import { EngineError } from '../engine/errors.ts';
import { etcdDataHostPath } from '../engine/kubeadm-manifests.ts';
import type { HostFacts, MemberManifest } from './etcd-restore-plan.ts';
import { certificateWarning, encryptionConfigWarning } from './restored-warnings.ts';

function firstIPv4(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    const a = addrs?.find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  return '127.0.0.1';
}

/** This host's name (kubeadm names the member after it) and its first IPv4 address (the default peer URL's). */
export function thisHost(): HostFacts {
  return { hostname: hostname(), ipv4: firstIPv4() };
}

/** The manifests `--member-manifests` names (comma-separated), each as read; an unreadable one reads as empty. */
export function readMemberManifests(list: string): MemberManifest[] {
  return list.split(',').map((file) => ({ file, manifest: readEtcdManifest(file.trim()) }));
}

/** The members the backup was taken from: etcd-members.json beside the snapshot (backups taken before it was recorded have none). */
export function readBackupMembers(snapshot: string): Member[] | undefined {
  const file = join(dirname(snapshot), MEMBERS_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return restoredMembers(JSON.parse(readFileSync(file, 'utf8')) as EtcdMember[]);
  } catch (err) {
    throw new EngineError('InvalidInput', `${file} cannot be read (${(err as Error).message}): it is the backup's record of its etcd members`);
  }
}

/**
 * Where the node's etcd reads its data: the manifest's etcd-data hostPath, which is what the host sees (the container's
 * --data-dir is a path inside the pod: after an earlier --kubeadm restore they differ). Undefined without a manifest.
 */
export function manifestDataHostPath(path: string): string | undefined {
  return existsSync(path) ? etcdDataHostPath(readFileSync(path, 'utf8'), path) : undefined;
}

/** kubeadm's etcd manifest, which --kubeadm edits: it must be there. */
export function readManifestText(path: string): string {
  if (!existsSync(path)) throw new EngineError('NotFound', `${path} not found: --kubeadm needs kubeadm's etcd manifest (see --etcd-manifest)`);
  return readFileSync(path, 'utf8');
}

/** The directories a restored backup (its `data/` directory) holds beside the snapshot, where it holds them. */
export function restoredParts(data: string): { certificates?: string; extra?: string } {
  const certs = join(data, CERTS_DIR);
  const extra = join(data, EXTRA_DIR);
  return { certificates: existsSync(certs) ? certs : undefined, extra: existsSync(extra) ? extra : undefined };
}

/** What a restored backup (its `data/` directory) lacks or holds that will stop the control plane; warnings only. */
export async function restoredWarnings(data: string, apiserverManifest: string, now = new Date()): Promise<string[]> {
  const certs = join(data, CERTS_DIR);
  const expiries = existsSync(certs) ? await readCertificateExpiries(certs).catch(() => []) : [];
  const configPath = readEncryptionConfigPath(apiserverManifest);
  const expectedAt = configPath && join(data, extraPathIn(configPath));
  return [
    certificateWarning(expiries, certs, now),
    encryptionConfigWarning({
      manifest: apiserverManifest, configPath, expectedAt,
      held: !!expectedAt && existsSync(expectedAt), onNode: !!configPath && existsSync(configPath),
    }),
  ].filter((w): w is string => w !== undefined);
}
