/**
 * @module Which kube-apiserver may serve a backup. A kube-apiserver reads what its own version and the versions it
 * upgrades from wrote; objects written by a newer release (new fields, new storage versions of a kind, kinds it does
 * not serve) are dropped, fail to decode, or do not show at all, and an older release's data may be migrated on read.
 * So a browse is served by a kube-apiserver of the backed-up cluster's minor version, which the backup records
 * (KUBERNETES_VERSION_TAG); a different minor is refused unless the person accepts the skew. Backups taken before the
 * version was recorded cannot be checked: said, not refused.
 */
import { spawn } from 'node:child_process';
import { plainText } from '../../util/text.ts';
import { EngineError } from '../errors.ts';

/** `v1.20.2` → [1, 20]; anything else → undefined. */
export function minorOf(version: string): [number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.|$|[-+])/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** `kube-apiserver --version` prints `Kubernetes v1.20.2`: the version, or an error saying what the binary printed. */
export function parseApiserverVersion(output: string): string {
  const m = /Kubernetes (v\d+\.\d+\.\S+)/.exec(output);
  if (!m) throw new EngineError('InvalidInput', `cannot tell the kube-apiserver's version: "--version" printed "${plainText(output).slice(0, 200)}"`);
  return m[1]!;
}

export async function apiserverVersion(binary: string, signal?: AbortSignal): Promise<string> {
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(binary, ['--version'], { stdio: ['ignore', 'pipe', 'pipe'], signal });
    let text = '';
    p.stdout.on('data', (d: Buffer) => { text += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { text += d.toString(); });
    p.on('error', (err) => reject(new EngineError('InvalidInput', `cannot run kube-apiserver "${binary}": ${err.message} (give its path with --kube-apiserver)`)));
    p.on('close', () => resolve(text));
  });
  return parseApiserverVersion(out);
}

export type VersionMatch =
  | { ok: true; note?: string }
  | { ok: false; message: string };

/**
 * Whether a kube-apiserver of `server`'s version may serve a backup of a cluster at `backup` (undefined: the backup
 * does not say). Same major and minor: yes. `allowSkew`: yes, with a note of what may be missing.
 */
export function matchVersions(backup: string | undefined, server: string, allowSkew: boolean): VersionMatch {
  if (!backup) {
    return { ok: true, note: `the backup does not record its cluster's Kubernetes version (taken before kubedr recorded it); serving it with kube-apiserver ${server}` };
  }
  const [b, s] = [minorOf(backup), minorOf(server)];
  if (b && s && b[0] === s[0] && b[1] === s[1]) return { ok: true };
  const skew = `the backup is of a cluster at Kubernetes ${backup}, the kube-apiserver given is ${server}`;
  if (allowSkew) return { ok: true, note: `${skew}: objects of kinds or versions that release does not serve will be missing or fail to decode (--allow-version-skew)` };
  return {
    ok: false,
    message: `${skew}: a kube-apiserver serves what its own minor release wrote, so objects could be missing or wrong. ` +
      `Give a kube-apiserver of ${backup.replace(/^(v?\d+\.\d+).*/, '$1')}.x with --kube-apiserver (on a kubeadm node: the one in the image its ` +
      'kube-apiserver.yaml names), or accept the skew with --allow-version-skew',
  };
}
