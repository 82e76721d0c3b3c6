/** The change-set format: what is written reads back the same, and what is not a change set is refused. */
import { describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { byRevision, CHANGES_FORMAT, ChangeSetFile, readRevisions } from '../../../src/engine/continuous/change-set.ts';
import type { Change } from '../../../src/engine/etcd-client.ts';

async function* chunks(text: string, size: number): AsyncGenerator<Uint8Array> {
  const buf = Buffer.from(text);
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}
async function all<T>(gen: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of gen) out.push(x);
  return out;
}

describe('change sets', () => {
  const changes: Change[] = [
    { type: 'put', key: Buffer.from('/registry/a'), value: Buffer.from([0, 1, 2, 255]), revision: 7 },
    { type: 'put', key: Buffer.from('/registry/events/e'), value: Buffer.from('x'), revision: 7, lease: '7587879186422937345' },
    { type: 'delete', key: Buffer.from('/registry/b'), revision: 8 },
  ];

  test('grouped by revision, written, and read back byte for byte (leases kept as decimal strings: 64 bits)', async () => {
    const revs = byRevision(changes, 1234);
    expect(revs.map((r) => [r.revision, r.changes.length])).toEqual([[7, 2], [8, 1]]);
    const dir = mkdtempSync(join(tmpdir(), 'kdr-cs-'));
    try {
      const f = new ChangeSetFile(join(dir, 'c.jsonl'));
      for (const r of revs) f.append(r);
      f.close();
      expect(f.first).toBe(7);
      expect(f.last).toBe(8);
      expect(f.changes).toBe(3);
      // Read in small chunks: lines split across chunks must join.
      const back = await all(readRevisions(chunks(readFileSync(join(dir, 'c.jsonl'), 'utf8'), 7)));
      expect(back).toEqual(revs);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file of another format is refused, naming the format expected', async () => {
    await expect(all(readRevisions(chunks('{"format":"other/1"}\n{"r":1,"t":1,"c":[]}\n', 100)))).rejects.toThrow(`not a change set of format ${CHANGES_FORMAT}`);
    await expect(all(readRevisions(chunks(`{"format":"${CHANGES_FORMAT}"}\nnot json\n`, 100)))).rejects.toThrow(/not JSON/);
  });
});
