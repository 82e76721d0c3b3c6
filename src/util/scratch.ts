/**
 * @module Temporary files. Each process keeps its own under one root, `<tmp>/kubedr-<owner>-XXXXXX`, removed when it
 * exits. A process that was killed cannot clean up, so the next one removes every kubedr directory whose owner no
 * longer runs. The owner is the pid together with the process's start time and the machine's boot: a pid alone does
 * not tell, because a controller restarted in its container is PID 1 again, with the same /tmp (an emptyDir outlives
 * its containers), and each crash mid-backup would otherwise leave a whole etcd snapshot behind.
 *
 * Processes that share a scratch directory must share a pid namespace (true of one container's /tmp, and of a host's).
 *
 * A stable directory (`claimStableDir`) has the same path each time for one name, whichever process claims it, so that
 * restic finds the previous backup of a policy as its parent. It records its owner in a file, and only one process
 * holds it at a time.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAlive } from './process.ts';

/** Who made a directory: a pid, and `<start ticks>-<boot id>` where /proc tells (Linux). */
export interface Owner {
  pid: number;
  start?: string;
}

const OWNER_FILE = 'owner';
const STABLE_PREFIX = 'kubedr-stage-';

let root: string | undefined;
/** Stable directories this process holds now. */
const claimed = new Set<string>();

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').replace(/-/g, '').slice(0, 8);
  } catch {
    return undefined;
  }
}

/**
 * `<start ticks>-<boot id>` of a running process, or undefined (no /proc, or no such process). The start time in clock
 * ticks since boot is fixed for a process's life and differs between two processes that had the same pid; the boot id
 * tells a process before a reboot from one after it.
 */
export function processStart(pid: number | 'self'): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing parenthesis.
    const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    const boot = bootId();
    return ticks && boot ? `${ticks}-${boot}` : undefined;
  } catch {
    return undefined;
  }
}

let self: Owner | undefined;
function thisProcess(): Owner {
  self ??= { pid: process.pid, start: processStart('self') };
  return self;
}

const ownerTag = (o: Owner): string => (o.start ? `${o.pid}-${o.start}` : String(o.pid));

/** `kubedr-<pid>[-<ticks>-<boot>]-XXXXXX`: this version's roots and those of versions before it (pid only). */
function parseRootName(name: string): Owner | undefined {
  const m = /^kubedr-(\d+)(?:-(\d+-[0-9a-f]{8}))?-[A-Za-z0-9]{6}$/.exec(name);
  return m ? { pid: Number(m[1]), start: m[2] } : undefined;
}

function readOwnerFile(dir: string): Owner | undefined {
  try {
    const m = /^(\d+)(?:-(\d+-[0-9a-f]{8}))?$/.exec(readFileSync(join(dir, OWNER_FILE), 'utf8').trim());
    return m ? { pid: Number(m[1]), start: m[2] } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the owner still runs. A directory with this process's pid is from an earlier process that had the same pid
 * (PID 1 in a restarted container), unless its start time is this process's; another pid counts as running while it
 * is alive and, where both start times are known, started when the owner did.
 */
export function ownerRuns(owner: Owner, me: Owner = thisProcess()): boolean {
  if (owner.pid === me.pid) return owner.start !== undefined && owner.start === me.start;
  if (!isAlive(owner.pid)) return false;
  const now = processStart(owner.pid);
  return owner.start === undefined || now === undefined || now === owner.start;
}

/** Removes the kubedr scratch directories in `base` whose owner no longer runs; returns their names. */
export function sweepStale(base = tmpdir(), me: Owner = thisProcess()): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(base)) {
    const path = join(base, name);
    if (path === root || claimed.has(path)) continue;
    const stable = name.startsWith(STABLE_PREFIX);
    const owner = stable ? readOwnerFile(path) : parseRootName(name);
    // A stable directory always has its owner file (it is complete before it is renamed into place).
    if (!stable && !owner) continue;
    if (owner && ownerRuns(owner, me)) continue;
    try {
      rmSync(path, { recursive: true, force: true });
      removed.push(name);
    } catch {
      // Another user's, in a shared /tmp: theirs to remove; it must not stop this process.
    }
  }
  return removed;
}

function processRoot(): string {
  if (root && existsSync(root)) return root;
  if (!root) {
    sweepStale();
    process.on('exit', removeScratchRoot);
  }
  root = mkdtempSync(join(tmpdir(), `kubedr-${ownerTag(thisProcess())}-`));
  return root;
}

/** Removes this process's scratch root (on exit; and by tests, whose runner does not run exit handlers). */
export function removeScratchRoot(): void {
  if (root) rmSync(root, { recursive: true, force: true });
}

/** A new private (0700) directory for one operation; the caller removes it, and process exit removes what is left. */
export function scratchDir(prefix: string): Promise<string> {
  return mkdtemp(join(processRoot(), `${prefix}-`));
}

/** A stable directory held by this process until `release`, which removes it. */
export interface StableDir {
  path: string;
  release(): Promise<void>;
}

/** `kubedr-stage-<readable part of name>-<hash of name>`: a valid file name for any name, and distinct per name. */
export function stableDirName(name: string): string {
  const readable = name.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[.-]+|-+$/g, '').slice(0, 60);
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${STABLE_PREFIX}${readable ? `${readable}-` : ''}${hash}`;
}

/**
 * Claims the empty directory `<base>/kubedr-stage-…` of `name`: the same path every time, in this process or the next.
 * Undefined when it is held already, by this process or another that still runs; the caller then uses a scratchDir. One
 * left behind by a process that no longer runs is removed and claimed.
 */
export async function claimStableDir(name: string, base = tmpdir()): Promise<StableDir | undefined> {
  const path = join(base, stableDirName(name));
  if (claimed.has(path)) return undefined;
  processRoot();
  for (let attempt = 0; attempt < 2; attempt++) {
    // Built complete, owner file included, under a name the sweep understands, then renamed into place: whoever sees
    // the stable directory sees its owner.
    const draft = await mkdtemp(join(base, `kubedr-${ownerTag(thisProcess())}-`));
    try {
      await writeFile(join(draft, OWNER_FILE), ownerTag(thisProcess()), { mode: 0o600 });
      await rename(draft, path);
      claimed.add(path);
      return {
        path,
        release: async () => {
          try {
            await rm(path, { recursive: true, force: true });
          } finally {
            claimed.delete(path);
          }
        },
      };
    } catch (err) {
      await rm(draft, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
    const owner = readOwnerFile(path);
    if (claimed.has(path) || (owner && ownerRuns(owner))) return undefined;
    await rm(path, { recursive: true, force: true });
  }
  return undefined;
}
