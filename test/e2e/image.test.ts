/**
 * The OCI image: built by the real scripts/build-image.sh into dist/kubedr-image.tar, its layers and config read from
 * that archive, and its programs run with buildah's chroot isolation. The image running as pods on the node's kubelet
 * is tested in controller-pod.test.ts (the controller) and restore.test.ts (restore pods).
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import pkg from '../../package.json' with { type: 'json' };
import { kubedrImage, repoRoot } from '../support/e2e.ts';

const archive = join(repoRoot, 'dist/kubedr-image.tar');
const container = `kubedr-image-test-${process.pid}`;
let imageId = '';

function buildah(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('buildah', ['--storage-driver', 'vfs', ...args], { encoding: 'utf8', maxBuffer: 16 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function mustBuildah(args: string[]): string {
  const r = buildah(args);
  if (r.code !== 0) throw new Error(`buildah ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Runs a command in the image as its configured user (65532). */
const run = (cmd: string[]) => buildah(['run', '--isolation', 'chroot', container, '--', ...cmd]);

/** A JSON blob of the OCI archive by digest, read without unpacking the layer. */
function blob<T>(digest: string): T {
  const r = spawnSync('tar', ['-xOf', archive, `blobs/sha256/${digest.replace('sha256:', '')}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`reading ${digest} from ${archive}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** The image's manifest, from the archive's index. */
function manifest(): { config: { digest: string }; layers: { digest: string }[] } {
  const index = JSON.parse(spawnSync('tar', ['-xOf', archive, 'index.json'], { encoding: 'utf8' }).stdout) as {
    manifests: { digest: string }[];
  };
  return blob(index.manifests[0]!.digest);
}

const layers = new Map<string, Buffer>();
/** One layer's gzipped tar, read from the archive once. */
function layer(digest: string): Buffer {
  const known = layers.get(digest);
  if (known) return known;
  const r = spawnSync('tar', ['-xOf', archive, `blobs/sha256/${digest.replace('sha256:', '')}`], { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`reading layer ${digest}: ${r.stderr}`);
  layers.set(digest, r.stdout);
  return r.stdout;
}

/** `tar -tvz` lines of every layer: the image's filesystem as shipped, not a container's after it ran. */
function layerListing(): string[] {
  return manifest().layers.flatMap((l) => {
    const r = spawnSync('tar', ['-tvz'], { input: layer(l.digest), encoding: 'utf8', maxBuffer: 16 << 20 });
    if (r.status !== 0) throw new Error(`listing layer ${l.digest}: ${r.stderr}`);
    return r.stdout.trim().split('\n');
  });
}

/** One file's content from the layers. */
function layerFile(path: string): string {
  for (const l of manifest().layers) {
    const r = spawnSync('tar', ['-xzO', path], { input: layer(l.digest), encoding: 'utf8', maxBuffer: 16 << 20 });
    if (r.status === 0) return r.stdout;
  }
  throw new Error(`${path} is in no layer`);
}

beforeAll(() => {
  kubedrImage();
  buildah(['rm', container]);
  mustBuildah(['from', '-q', '--name', container, `oci-archive:${archive}`]);
  imageId = JSON.parse(mustBuildah(['inspect', '--type', 'container', container])).FromImageID as string;
});

afterAll(() => {
  buildah(['rm', container]);
  // The image copied into local storage by `buildah from`: vfs keeps a full copy of it.
  if (imageId) buildah(['rmi', imageId]);
});

test('kubedr version in the image reports its version, commit, Bun and the restic in the image', () => {
  const r = run(['kubedr', 'version']);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(`kubedr ${pkg.version}\n`);
  expect(r.stdout).toMatch(/^commit: [0-9a-f]{7,}(-dirty)?$/m);
  expect(r.stdout).toMatch(/^bun: \d+\.\d+\.\d+$/m);
  expect(r.stdout).toMatch(/^restic: restic \d+\.\d+\.\d+ /m);
});

test('restic 0.18 runs in the image', () => {
  const r = run(['restic', 'version']);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^restic 0\.18\.\d+ compiled with go/);
});

test('etcd, etcdctl and etcdutl 3.5 run in the image (verification restores each backup into a throwaway etcd)', () => {
  expect(run(['etcd', '--version']).stdout).toMatch(/^etcd Version: 3\.5\.\d+/m);
  expect(run(['etcdctl', 'version']).stdout).toMatch(/^etcdctl version: 3\.5\.\d+/m);
  expect(run(['etcdutl', 'version']).stdout).toMatch(/^etcdutl version: 3\.5\.\d+/m);
});

test('the image holds kubedr, restic, their libraries and a few config files: no shell, no package manager', () => {
  // "-rwxr-xr-x 0/0 123 2026-01-01 00:00 usr/bin/restic" → path, type+mode, owner.
  const entries = layerListing().map((l) => {
    const f = l.split(/\s+/);
    return { mode: f[0]!, owner: f[1]!, path: f.slice(5).join(' ').replace(/^\.\//, '') };
  });
  const files = entries.filter((e) => !e.mode.startsWith('d')).map((e) => e.path).sort();
  for (const p of ['bin/sh', 'bin/bash', 'bin/dash', 'bin/busybox', 'usr/bin/sh', 'usr/bin/apt', 'usr/bin/apt-get', 'usr/bin/dpkg']) {
    expect(files).not.toContain(p);
  }
  // The full list of files (symlinks included), so anything added later, a shell under another name or a tool, shows up here.
  expect(files).toEqual([
    'etc/group', 'etc/nsswitch.conf', 'etc/passwd', 'etc/ssl/certs/ca-certificates.crt',
    'lib/x86_64-linux-gnu/libc.so.6', 'lib/x86_64-linux-gnu/libdl.so.2', 'lib/x86_64-linux-gnu/libm.so.6',
    'lib/x86_64-linux-gnu/libpthread.so.0', 'lib64/ld-linux-x86-64.so.2', 'usr/bin/etcd', 'usr/bin/etcdctl', 'usr/bin/etcdutl', 'usr/bin/restic',
    'usr/local/bin/kubedr',
  ]);
  expect(run(['/bin/sh', '-c', 'true']).code).not.toBe(0);

  expect(entries.find((e) => e.path === 'tmp/')?.mode).toBe('drwxrwxrwt');
  expect(entries.find((e) => e.path === 'home/kubedr/')?.owner).toBe('65532/65532');
  const passwd = layerFile('etc/passwd');
  expect(passwd).toMatch(/^root:x:0:0:/m);
  expect(passwd).toMatch(/^kubedr:x:65532:65532:/m);
  expect(passwd).toMatch(/^nobody:x:65534:65534:/m);
  expect(layerFile('etc/group')).toMatch(/^kubedr:x:65532:$/m);
});

test('image config: entrypoint kubedr, command controller, user 65532, OCI labels', () => {
  const index = JSON.parse(spawnSync('tar', ['-xOf', archive, 'index.json'], { encoding: 'utf8' }).stdout) as {
    manifests: { annotations?: Record<string, string> }[];
  };
  expect(index.manifests).toHaveLength(1);
  expect(index.manifests[0]!.annotations?.['org.opencontainers.image.ref.name']).toBe(`localhost/kubedr:${pkg.version}`);
  const { config, os, architecture } = blob<{ os: string; architecture: string; config: {
    User: string; Entrypoint: string[]; Cmd: string[]; Labels: Record<string, string>;
  } }>(manifest().config.digest);
  expect([os, architecture]).toEqual(['linux', 'amd64']);
  expect(config.User.split(':')[0]).toBe('65532');
  expect(config.Entrypoint).toEqual(['/usr/local/bin/kubedr']);
  expect(config.Cmd).toEqual(['controller']);
  expect(config.Labels['org.opencontainers.image.title']).toBe('kubedr');
  expect(config.Labels['org.opencontainers.image.version']).toBe(pkg.version);
  const commit = /^commit: (\S+)$/m.exec(run(['kubedr', 'version']).stdout)?.[1];
  expect(config.Labels['org.opencontainers.image.revision']).toBe(commit!);
});
