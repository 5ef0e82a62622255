import { beforeAll, describe, expect, it } from 'vitest';
import { classify, loadParser } from '../sql/classify.js';
import type { StatementFacts } from '../sql/facts.js';
import { unrecoverableDenial } from './write-denials.js';

const WHO = { agent: 'claude', profile: 'read-write' };

function factsOf(sql: string): StatementFacts {
  const c = classify(sql);
  if (!c.ok) throw new Error(c.error);
  return c.statements[0]!;
}

beforeAll(async () => {
  await loadParser();
});

describe('unrecoverableDenial', () => {
  it.each([
    ['DROP SCHEMA s', 'DROP SCHEMA'],
    ['DROP SCHEMA s CASCADE', 'DROP SCHEMA'],
    ['DROP TABLE t CASCADE', 'DROP TABLE … CASCADE'],
    ['ALTER TABLE t DROP COLUMN c CASCADE', 'ALTER TABLE … CASCADE'],
    ['DROP VIEW v CASCADE', 'DROP VIEW … CASCADE'],
  ])('refuses %s (%s) unless a rule allows it as unrecoverable', (sql, what) => {
    const d = unrecoverableDenial(WHO, factsOf(sql), false);
    expect(d).toMatchObject({ kind: 'deny', rule: 'unrecoverable', sqlstate: '0A000' });
    expect(d?.message).toContain(`may not run ${what}`);
    expect(d?.hint).toMatch(/allow_unrecoverable: true/);
    expect(unrecoverableDenial(WHO, factsOf(sql), true)).toBeNull();
  });

  it.each(['DROP TABLE t', 'DROP TABLE IF EXISTS a, s.b', 'ALTER TABLE t DROP COLUMN c', 'TRUNCATE t', 'DELETE FROM t', 'DROP INDEX i'])(
    'leaves %s to the write path (made recoverable, or not destructive of data)',
    (sql) => {
      expect(unrecoverableDenial(WHO, factsOf(sql), false)).toBeNull();
    },
  );
});

describe('the columns an ALTER TABLE drops', () => {
  it('lists each DROP COLUMN, IF EXISTS included, and nothing else', () => {
    const f = factsOf('ALTER TABLE IF EXISTS s.t DROP COLUMN a, DROP COLUMN IF EXISTS "B", ADD COLUMN z int, DROP CONSTRAINT k');
    expect(f.droppedColumns).toEqual(['a', 'B']);
    expect(f.writes).toEqual([{ schema: 's', name: 't' }]);
    expect(factsOf('ALTER TABLE t ADD COLUMN z int').droppedColumns).toBeUndefined();
  });
});
