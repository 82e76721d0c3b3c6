/**
 * @module The steps of an etcd restore on a kubeadm control-plane node that a tool can take without risk: move the
 * kube-apiserver static pod manifest out of the kubelet's sight and back, and point the `etcd-data` hostPath volume of
 * etcd's manifest at a new data directory, keeping a copy of the original. Nothing here deletes or overwrites a data
 * directory. Copies and moved manifests go beside the manifests directory, never into it: the kubelet runs every file
 * there as a static pod.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EngineError } from './errors.ts';

export const ETCD_MANIFEST = 'etcd.yaml';
export const APISERVER_MANIFEST = 'kube-apiserver.yaml';
/** Where a stopped kube-apiserver manifest waits, beside the manifests directory (kubeadm: /etc/kubernetes). */
export const STOPPED_DIR = 'manifests-stopped-by-kubedr';

interface PodManifest {
  spec?: { volumes?: { name?: string; hostPath?: { path?: string } }[] };
}

function parsePod(text: string, path: string): PodManifest {
  try {
    return Bun.YAML.parse(text) as PodManifest;
  } catch (err) {
    throw new EngineError('InvalidInput', `${path} is not valid YAML: ${(err as Error).message}`);
  }
}

/** The host directory of the `etcd-data` volume: where etcd's data really lives on the node. */
export function etcdDataHostPath(text: string, path = ETCD_MANIFEST): string {
  const volume = parsePod(text, path).spec?.volumes?.find((v) => v.name === 'etcd-data');
  if (!volume?.hostPath?.path) throw new EngineError('InvalidInput', `${path} has no hostPath volume named etcd-data (is it kubeadm's etcd manifest?)`);
  return volume.hostPath.path;
}

/**
 * The manifest with the `etcd-data` hostPath pointing at `newPath` and nothing else changed. The container keeps its
 * mount path and --data-dir, so only the host side moves: changing one without the other is the step users miss
 * (kubernetes/website#47167). Edited as text, to keep the file as kubeadm wrote it, then checked as YAML.
 */
export function repointEtcdData(text: string, newPath: string, path = ETCD_MANIFEST): string {
  const old = etcdDataHostPath(text, path);
  const lines = text.split('\n');
  // The list item of the etcd-data volume: from the "- " line before its "name: etcd-data" to the next item.
  const nameAt = lines.findIndex((l, i) => /^\s*(- )?name:\s*["']?etcd-data["']?\s*$/.test(l) && isUnderVolumes(lines, i));
  const cannotEdit = () => new EngineError('InvalidInput', `cannot edit the etcd-data hostPath of ${path} safely (unexpected layout); set it to ${newPath} by hand`);
  if (nameAt < 0) throw cannotEdit();
  let start = nameAt;
  while (start > 0 && !/^\s*- /.test(lines[start]!)) start--;
  const indent = /^(\s*)- /.exec(lines[start]!)?.[1] ?? '';
  let end = nameAt + 1;
  while (end < lines.length && (lines[end]!.startsWith(`${indent}  `) || lines[end]!.trim() === '')) end++;
  let replaced = 0;
  for (let i = start; i < end; i++) {
    const m = /^(\s*(- )?path:\s*)(["']?)(.*?)\3\s*$/.exec(lines[i]!);
    if (m && m[4] === old) {
      lines[i] = `${m[1]}${newPath}`;
      replaced++;
    }
  }
  const result = lines.join('\n');
  if (replaced !== 1 || etcdDataHostPath(result, path) !== newPath || !sameExceptDataPath(text, result, path)) {
    throw cannotEdit();
  }
  return result;
}

/** Whether the key on line `at` belongs to the pod's `volumes:` list (and not, say, to a container's volumeMounts). */
function isUnderVolumes(lines: string[], at: number): boolean {
  const column = /^[\s-]*/.exec(lines[at]!)![0].length;
  for (let i = at - 1; i >= 0; i--) {
    const m = /^(\s*)([A-Za-z]+):\s*$/.exec(lines[i]!);
    if (m && m[1]!.length < column) return m[2] === 'volumes';
  }
  return false;
}

function sameExceptDataPath(before: string, after: string, path: string): boolean {
  const a = parsePod(before, path);
  const b = parsePod(after, path);
  for (const v of [...(a.spec?.volumes ?? []), ...(b.spec?.volumes ?? [])]) if (v.name === 'etcd-data' && v.hostPath) v.hostPath.path = '';
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Writes the repointed etcd manifest, after copying the original beside the manifests directory. Returns the copy. */
export function repointEtcdManifest(manifestsDir: string, newDataDir: string, now = new Date()): { copy: string; previousDataDir: string } {
  const file = join(manifestsDir, ETCD_MANIFEST);
  const text = readFileSync(file, 'utf8');
  const previousDataDir = etcdDataHostPath(text, file);
  const updated = repointEtcdData(text, newDataDir, file);
  const copy = join(dirname(manifestsDir), `${ETCD_MANIFEST}.before-restore-${stamp(now)}`);
  copyFileSync(file, copy);
  // Written beside and renamed: the kubelet must never read half a manifest.
  const tmp = join(dirname(manifestsDir), `.${ETCD_MANIFEST}.kubedr-tmp`);
  writeFileSync(tmp, updated, { mode: 0o600 });
  renameSync(tmp, file);
  return { copy, previousDataDir };
}

/** 20261130T211502Z: sortable, and safe in file names. */
export function stamp(now: Date): string {
  return now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export type MoveResult = 'moved' | 'already';

/** Moves the kube-apiserver manifest out of the kubelet's sight, which stops the static pod. */
export function stopApiserver(manifestsDir: string): { result: MoveResult; to: string } {
  const from = join(manifestsDir, APISERVER_MANIFEST);
  const to = join(dirname(manifestsDir), STOPPED_DIR, APISERVER_MANIFEST);
  if (!existsSync(from)) {
    if (existsSync(to)) return { result: 'already', to };
    throw new EngineError('NotFound', `${from} not found, and no stopped manifest at ${to}: is ${manifestsDir} kubeadm's manifests directory?`);
  }
  if (existsSync(to)) throw new EngineError('Exists', `${to} exists already: compare it with ${from} and remove the one that is stale`);
  mkdirSync(dirname(to), { recursive: true, mode: 0o700 });
  renameSync(from, to);
  return { result: 'moved', to };
}

/** Puts the kube-apiserver manifest back, which starts the static pod again. */
export function startApiserver(manifestsDir: string): { result: MoveResult; from: string } {
  const to = join(manifestsDir, APISERVER_MANIFEST);
  const from = join(dirname(manifestsDir), STOPPED_DIR, APISERVER_MANIFEST);
  if (!existsSync(from)) {
    if (existsSync(to)) return { result: 'already', from };
    throw new EngineError('NotFound', `no stopped kube-apiserver manifest at ${from}`);
  }
  if (existsSync(to)) throw new EngineError('Exists', `${to} exists already: compare it with ${from} and remove the one that is stale`);
  renameSync(from, to);
  return { result: 'moved', from };
}
