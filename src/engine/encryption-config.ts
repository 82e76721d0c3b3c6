/**
 * @module The API server's encryption-at-rest config and a restored backup. An etcd snapshot of an API server that
 * encrypts Secrets is unreadable without the EncryptionConfiguration holding its keys, so a restore must say when the
 * node's kube-apiserver names one that the backup does not hold (stored with the policy's extraPaths).
 */
import { readFileSync } from 'node:fs';

/** The path a kube-apiserver static pod manifest gives in `--encryption-provider-config`, or undefined. */
export function encryptionConfigOf(manifestYaml: string): string | undefined {
  // `--encryption-provider-config=PATH`, or the flag and PATH as two list items; not `…-config-automatic-reload`.
  const m = /--encryption-provider-config(?:=|["']?\s*\n\s*-\s+)["']?([^\s"']+)/.exec(manifestYaml);
  return m?.[1];
}

/** Reads the manifest if it is there; a missing or unreadable one names no config (not every node has one). */
export function readEncryptionConfigPath(manifestPath: string): string | undefined {
  try {
    return encryptionConfigOf(readFileSync(manifestPath, 'utf8'));
  } catch {
    return undefined;
  }
}
