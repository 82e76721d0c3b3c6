/** Every relative link in README.md and docs/ leads somewhere: the file exists, and a #fragment names one of its headings. */
import { describe, expect, test } from 'bun:test';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dir, '../..');
const pages = [join(root, 'README.md'), ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join(root, 'docs', f))];

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes. */
export function anchorOf(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}

/** The anchors of a Markdown file's headings (fenced code left out; repeated headings get -1, -2, … as GitHub does). */
function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fence = false;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('```')) fence = !fence;
    const m = !fence && /^#{1,6} (.+)$/.exec(line);
    if (!m) continue;
    const base = anchorOf(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative links of a Markdown file outside code: [text](target). */
function links(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^[a-z]+:/i.test(t));
}

test('the anchor rule matches GitHub on our headings', () => {
  expect(anchorOf('The test cluster: a real single node (`scripts/cluster/`)')).toBe('the-test-cluster-a-real-single-node-scriptscluster');
  expect(anchorOf('Metrics (`:9473/metrics`)')).toBe('metrics-9473metrics');
});

describe.each(pages.map((p) => relative(root, p)))('%s', (page) => {
  test('every relative link resolves', () => {
    const file = join(root, page);
    const broken: string[] = [];
    for (const link of links(file)) {
      const [path, fragment] = link.split('#') as [string, string | undefined];
      const target = path ? resolve(dirname(file), path) : file;
      if (!existsSync(target)) {
        broken.push(`${link}: no such file`);
        continue;
      }
      if (fragment && statSync(target).isFile() && target.endsWith('.md') && !anchors(target).has(fragment)) broken.push(`${link}: no such heading`);
    }
    expect(broken).toEqual([]);
  });
});

test('every page of docs/ is reachable from README.md, directly or through another page', () => {
  const reached = new Set([join(root, 'README.md')]);
  const queue = [join(root, 'README.md')];
  while (queue.length) {
    const file = queue.shift()!;
    for (const link of links(file)) {
      const path = link.split('#')[0];
      if (!path) continue;
      const target = resolve(dirname(file), path);
      if (target.endsWith('.md') && existsSync(target) && !reached.has(target)) {
        reached.add(target);
        queue.push(target);
      }
    }
  }
  expect(pages.filter((p) => !reached.has(p)).map((p) => relative(root, p))).toEqual([]);
});
