/**
 * @module Plays the kubelet's part for one pod, openly: the local cluster has an API server but no kubelet, scheduler or
 * controller-manager. What a kubelet would do is done here by hand and nothing more: resolve the container's
 * environment (plain values and secretKeyRefs, read from the API), map its volumes to local directories (each claim to
 * the directory the test names, emptyDirs to fresh temporary ones, the termination message file to a temporary file),
 * run the container's args with the `kubedr` entrypoint (`bun src/main.ts` stands in for the image's binary), and
 * write the outcome into the pod's status through the API.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { POD, SECRET } from '../../src/api/group.ts';
import type { Pod, Secret } from '../../src/api/types.ts';
import { admin, repoRoot } from './e2e.ts';

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
}
interface Container {
  name: string;
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: { name: string; mountPath: string }[];
  terminationMessagePath?: string;
}
interface Volume {
  name: string;
  persistentVolumeClaim?: { claimName: string };
  emptyDir?: object;
}

export interface KubeletRun {
  code: number;
  stdout: string;
  stderr: string;
  terminationMessage: string;
}

async function resolveEnv(ns: string, vars: EnvVar[]): Promise<Record<string, string>> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
  for (const v of vars) {
    if (v.value !== undefined) env[v.name] = v.value;
    const ref = v.valueFrom?.secretKeyRef;
    if (!ref) continue;
    const secret = await admin().get<Secret>(SECRET, ns, ref.name);
    const data = secret.data?.[ref.key];
    if (data === undefined && !ref.optional) throw new Error(`kubelet would fail: CreateContainerConfigError (no key ${ref.key} in ${ref.name})`);
    if (data !== undefined) env[v.name] = Buffer.from(data, 'base64').toString('utf8');
  }
  return env;
}

/** Runs the pod's (only) container to completion as a kubelet would, then reports it in the pod's status. */
export async function runPodAsKubelet(ns: string, podName: string, claims: Record<string, string>): Promise<KubeletRun> {
  const pod = await admin().get<Pod>(POD, ns, podName);
  const spec = pod.spec as { containers: Container[]; volumes?: Volume[] };
  const container = spec.containers[0]!;
  const scratch = mkdtempSync(join(tmpdir(), 'kubelet-'));
  try {
    const dirs = new Map<string, string>();
    for (const vol of spec.volumes ?? []) {
      if (vol.persistentVolumeClaim) {
        const dir = claims[vol.persistentVolumeClaim.claimName];
        if (!dir) throw new Error(`no directory given for claim ${vol.persistentVolumeClaim.claimName}`);
        dirs.set(vol.name, dir);
      } else if (vol.emptyDir) {
        dirs.set(vol.name, mkdtempSync(join(scratch, `${vol.name}-`)));
      }
    }
    const paths = new Map<string, string>();
    for (const m of container.volumeMounts ?? []) paths.set(m.mountPath, dirs.get(m.name)!);
    const messageFile = join(scratch, 'termination-log');
    paths.set(container.terminationMessagePath ?? '/dev/termination-log', messageFile);
    const local = (arg: string) => {
      for (const [inPod, onHost] of paths) {
        if (arg === inPod || arg.startsWith(`${inPod}/`)) return onHost + arg.slice(inPod.length);
      }
      return arg;
    };
    const env = await resolveEnv(ns, container.env ?? []);
    if (env.TMPDIR) env.TMPDIR = local(env.TMPDIR);
    const proc = Bun.spawn(['bun', join(repoRoot, 'src/main.ts'), ...(container.args ?? []).map(local)],
      { env, stdout: 'pipe', stderr: 'pipe' });
    const [stdout, stderr, code] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text(), await proc.exited];
    let terminationMessage = '';
    try {
      terminationMessage = readFileSync(messageFile, 'utf8');
    } catch {
      // FallbackToLogsOnError: the kubelet would use the end of the log.
      if (code !== 0) terminationMessage = stderr.slice(-2048);
    }
    await setPodStatus(ns, podName, {
      phase: code === 0 ? 'Succeeded' : 'Failed',
      containerStatuses: [containerStatus(container.name, {
        terminated: { exitCode: code, reason: code === 0 ? 'Completed' : 'Error', message: terminationMessage },
      })],
    });
    return { code, stdout, stderr, terminationMessage };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** A container status as the kubelet writes one. */
export function containerStatus(name: string, state: object): object {
  return { name, state, ready: false, restartCount: 0, image: 'kubedr:test', imageID: '' };
}

/** Writes a pod's status through the API, as the kubelet (or scheduler) would. */
export async function setPodStatus(ns: string, podName: string, status: object): Promise<void> {
  await admin().patchStatus(POD, ns, podName, status);
}
