import { describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { setCondition } from '../../src/api/conditions.ts';
import { renderCrds } from '../../scripts/gen-crds.ts';

test('crds/ is what src/api/schema.ts generates (run `bun scripts/gen-crds.ts` after changing the schema)', () => {
  const rendered = renderCrds();
  expect(rendered.size).toBe(4);
  for (const [file, text] of rendered) expect(readFileSync(file, 'utf8')).toBe(text);
});

describe('setCondition', () => {
  const t1 = new Date('2026-01-01T00:00:00Z');
  const t2 = new Date('2026-01-01T01:00:00Z');
  const ready = (status: 'True' | 'False') => ({ type: 'Ready', status, reason: 'R', message: 'm' });

  test('moves lastTransitionTime only when the status changes', () => {
    const a = setCondition(undefined, ready('False'), t1);
    const b = setCondition(a, { ...ready('False'), message: 'other' }, t2);
    expect(b[0]!.lastTransitionTime).toBe(t1.toISOString());
    expect(b[0]!.message).toBe('other');
    const c = setCondition(b, ready('True'), t2);
    expect(c[0]!.lastTransitionTime).toBe(t2.toISOString());
  });

  test('keeps other condition types', () => {
    const a = setCondition([{ type: 'Other', status: 'True', reason: 'x', message: '', lastTransitionTime: 't' }], ready('True'), t1);
    expect(a.map((c) => c.type).sort()).toEqual(['Other', 'Ready']);
  });
});
