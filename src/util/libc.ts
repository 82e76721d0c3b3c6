/**
 * @module Three Linux calls with no Node or Bun API, made in libc through bun:ffi; where that fails (no glibc, another
 * system, a descriptor they do not apply to), each says so and its caller takes the slower way.
 *
 * - A pipe's capacity (`fcntl(F_SETPIPE_SZ)`). Linux gives a pipe 64 KiB; a backup stream that passes a gigabyte through
 *   one between two busy processes (our archive writer and restic) then hands over every 64 KiB, each a wake-up of the
 *   other side, and on a small machine that ping-pong, not the work, set the pace.
 * - A copy of part of one file into another inside the kernel (`copy_file_range`), as a restore takes the etcd
 *   snapshot out of a backup's archive: no gigabyte through this process. (Bun.write of a BunFile slice uses the same
 *   call but ignores the slice's offset: measured with Bun 1.4.5, it copied the whole file.)
 * - Cutting the start off a file in place (`fallocate(FALLOC_FL_COLLAPSE_RANGE)`), as a restore turns a streamed
 *   backup's archive into the etcd snapshot it ends with: no copy at all, and no second gigabyte of scratch space.
 */
import { FFIType, dlopen, ptr } from 'bun:ffi';

const F_SETPIPE_SZ = 1031;
const FALLOC_FL_COLLAPSE_RANGE = 0x08;

/** Asks for a capacity of `bytes` (an unprivileged process may have up to /proc/sys/fs/pipe-max-size, 1 MiB by default); the capacity got, or undefined. */
export function enlargePipe(fd: number, bytes: number): number | undefined {
  const fcntl = libc()?.symbols.fcntl;
  if (!fcntl) return undefined;
  const got = fcntl(fd, F_SETPIPE_SZ, bytes);
  return got > 0 ? got : undefined;
}

const symbols = {
  fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  copy_file_range: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.u32], returns: FFIType.i64 },
  fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 },
} as const;

let opened: ReturnType<typeof dlopen<typeof symbols>> | null | undefined;
/** libc, opened once (it is the one this process already runs on), or null where it cannot be. */
function libc(): ReturnType<typeof dlopen<typeof symbols>> | null {
  if (opened === undefined) {
    try {
      opened = dlopen('libc.so.6', symbols);
    } catch {
      opened = null;
    }
  }
  return opened;
}

/**
 * Copies `length` bytes from `from` at `offset` to the end of what was written to `to` (its current position), in the
 * kernel. Returns how many it copied: fewer (0 at worst) when the call is not available or refused, and the caller
 * copies the rest itself.
 */
export function copyFileRange(from: number, offset: number, to: number, length: number): number {
  const call = libc()?.symbols.copy_file_range;
  if (!call) return 0;
  const at = new BigInt64Array([BigInt(offset)]);
  let done = 0;
  while (done < length) {
    const n = Number(call(from, ptr(at), to, null, Math.min(length - done, 1 << 30), 0));
    if (n <= 0) break;
    done += n;
  }
  return done;
}

/**
 * Removes `length` bytes at the start of the file open as `fd` (read-write), moving the rest down, in the file system's
 * metadata. Only where the file system supports it (ext4, XFS; not tmpfs or overlay on some kernels) and `length` is
 * a multiple of its block size, and not reaching the end of the file; false otherwise, the file unchanged.
 */
export function collapseStart(fd: number, length: number): boolean {
  const call = libc()?.symbols.fallocate;
  return !!call && length > 0 && call(fd, FALLOC_FL_COLLAPSE_RANGE, 0, length) === 0;
}

/** The most an unprivileged process may ask for, or 1 MiB when it cannot be read. */
export async function pipeMaxSize(): Promise<number> {
  try {
    return Number((await Bun.file('/proc/sys/fs/pipe-max-size').text()).trim()) || 1 << 20;
  } catch {
    return 1 << 20;
  }
}
