/**
 * @module A container's memory as its cgroup counts it (what its limit and the OOM killer act on), read from the test
 * node's cgroup v1 memory hierarchy under `kdr-<node>` (the kubelet's cgroupfs layout), and the peaks of a series of
 * readings. A pod's cgroup goes with the pod, so a short-lived pod is read by sampling while it lives.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Pod } from '../src/api/types.ts';
import type { TestEnv } from './cluster/node.ts';
import { cgroupHierarchies } from './cluster/host.ts';
import { memoryMb } from './measure.ts';

// MiB, as the pods' limits (`1778Mi`) and /proc's VmHWM (memoryMb) count.
const MIB = 1024 * 1024;

/** One reading of a container's memory cgroup, in MiB (oomKills and failcnt are counts). */
export interface CgroupMemory {
  /** memory.usage_in_bytes: everything charged to the container, page cache included. */
  usage: number;
  /** memory.max_usage_in_bytes: the kernel's own peak of `usage` (since the container started or resetPeak). */
  peak: number;
  /** `usage` less the inactive file cache: the working set, as the kubelet and metrics-server count it. */
  workingSet: number;
  /** Anonymous memory plus mapped files (rss + mapped_file of memory.stat): what the processes hold resident. */
  resident: number;
  /** The largest VmHWM (peak RSS) of the container's processes now alive. */
  processPeak: number;
  limit: number;
  /** memory.failcnt: how often usage reached the limit (and the kernel reclaimed). */
  failcnt: number;
  /** oom_kill of memory.oom_control: processes the OOM killer killed in this cgroup. */
  oomKills: number;
}

/** The memory cgroup directory of `container` in `pod`, from the pod's uid, QoS class and container id. */
export function containerCgroup(env: TestEnv, pod: Pod, container: string): string | undefined {
  const id = pod.status?.containerStatuses?.find((c) => c.name === container)?.containerID?.replace(/^\w+:\/\//, '');
  const memory = cgroupHierarchies().find((h) => h.endsWith('/memory'));
  if (!id || !memory || !pod.metadata?.uid) return undefined;
  // cgroupfs driver: Guaranteed pods sit directly under kubepods, the others under their class's directory.
  const qos = pod.status?.qosClass === 'Guaranteed' ? '' : (pod.status?.qosClass ?? 'burstable').toLowerCase();
  return join(memory, `kdr-${env.node}`, 'kubepods', qos, `pod${pod.metadata.uid}`, id);
}

/** The cgroup's memory now; undefined once it is gone. */
export function readCgroupMemory(dir: string): CgroupMemory | undefined {
  try {
    const num = (file: string) => Number(readFileSync(join(dir, file), 'utf8').trim());
    const stat = new Map(readFileSync(join(dir, 'memory.stat'), 'utf8').trim().split('\n').map((l) => l.split(' ') as [string, string]));
    const field = (name: string) => Number(stat.get(name) ?? 0);
    const oom = /oom_kill (\d+)/.exec(readFileSync(join(dir, 'memory.oom_control'), 'utf8'))?.[1];
    const pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim().split('\n').filter(Boolean).map(Number);
    const usage = num('memory.usage_in_bytes');
    return {
      usage: usage / MIB, peak: num('memory.max_usage_in_bytes') / MIB, workingSet: Math.max(0, usage - field('total_inactive_file')) / MIB,
      resident: (field('total_rss') + field('total_mapped_file')) / MIB, processPeak: Math.max(0, ...pids.map((p) => memoryMb(p).hwm)),
      limit: num('memory.limit_in_bytes') / MIB, failcnt: num('memory.failcnt'), oomKills: Number(oom ?? 0),
    };
  } catch {
    return undefined;
  }
}

/** Restarts the kernel's peak (memory.max_usage_in_bytes) from the usage now, so it covers only what follows. */
export function resetPeak(dir: string): void {
  writeFileSync(join(dir, 'memory.max_usage_in_bytes'), '0');
}

/** The largest of each figure over a series of readings. */
export class MemoryPeaks {
  readonly max: CgroupMemory = { usage: 0, peak: 0, workingSet: 0, resident: 0, processPeak: 0, limit: 0, failcnt: 0, oomKills: 0 };
  samples = 0;

  add(m: CgroupMemory | undefined): void {
    if (!m) return;
    this.samples++;
    for (const k of Object.keys(this.max) as (keyof CgroupMemory)[]) this.max[k] = Math.max(this.max[k], m[k]);
  }
}
