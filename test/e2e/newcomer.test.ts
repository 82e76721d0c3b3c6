/**
 * What a newcomer gets from the documented commands, in a shell that has only the system's PATH (no project Bun, no
 * Debian 13 tools): `npm run cluster -- exec …` on a running node (the suite's own, via KUBEDR_TESTENV_DIR) finds the
 * project's Bun and runs the etcd 3.5 and restic 0.18 the docs promise, not the machine's Debian 12 etcd 3.4 and
 * restic 0.14; and every `npm run` script the README and docs name exists.
 */
import { describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pkg from '../../package.json' with { type: 'json' };
import { cluster, repoRoot } from '../support/e2e.ts';

const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `npm run --silent cluster -- exec CMD…` as typed in a fresh login shell. */
function clusterExec(cmd: string[]) {
  const r = spawnSync('npm', ['run', '--silent', 'cluster', '--', 'exec', ...cmd], {
    cwd: repoRoot, encoding: 'utf8', env: { PATH: SYSTEM_PATH, HOME: process.env.HOME ?? '/root', KUBEDR_TESTENV_DIR: cluster().dir },
  });
  // stderr also carries the install step's lines (npm run cluster installs what is missing first).
  return { code: r.status ?? -1, out: r.stdout ?? '', err: r.stderr ?? '' };
}

describe('a newcomer\'s shell', () => {
  test('npm run cluster runs the project\'s Bun and Debian 13\'s etcd 3.5 and restic 0.18, whatever the machine has', () => {
    const etcd = clusterExec(['etcd', '--version']);
    expect(etcd.code).toBe(0);
    expect(etcd.out + etcd.err).toMatch(/etcd Version: 3\.5\./);
    const restic = clusterExec(['restic', 'version']);
    expect(restic.code).toBe(0);
    expect(restic.out).toMatch(/restic 0\.18\./);
    const bun = clusterExec(['bun', '--version']);
    expect(bun.code).toBe(0);
    expect(bun.out.trim()).toBe(pkg.devDependencies.bun);
    // And the cluster itself answers there.
    const nodes = clusterExec(['kubectl', 'get', 'nodes', '-o', 'name']);
    expect(nodes.code).toBe(0);
    expect(nodes.out).toContain('node/');
  }, 60_000);

  test('every `npm run` script the README and docs name exists in package.json', () => {
    const files = ['README.md', ...readdirSync(join(repoRoot, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
    const named = new Set<string>();
    for (const f of files) for (const m of readFileSync(join(repoRoot, f), 'utf8').matchAll(/npm run ([a-z][\w:-]*)/g)) named.add(m[1]!);
    expect(named.size).toBeGreaterThan(5);
    expect([...named].filter((s) => !(s in pkg.scripts))).toEqual([]);
  });
});
