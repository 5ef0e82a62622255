import { describe, expect, it } from 'vitest';
import type { Classification } from '../sql/facts.js';
import { statementSizeRefusal } from '../sql/statement-size.js';
import { judgeClassification } from './read-only.js';
import type { PolicySubject } from './read-only.js';

describe('statements not read at all', () => {
  it.each([
    ['too-large', '54000', 'statement-too-large'],
    ['too-complex', '54001', 'statement-too-complex'],
    ['too-busy', '53400', 'classifier-busy'],
    ['unavailable', '58000', 'classifier-unavailable'],
  ] as const)('%s is refused with SQLSTATE %s (rule %s)', (unjudged, sqlstate, rule) => {
    const c: Classification = { ok: false, unjudged, error: 'the reason, in a sentence' };
    const d = judgeClassification(c, {} as PolicySubject, () => undefined);
    expect(d).toMatchObject({ kind: 'deny', sqlstate, rule, message: 'airlock: the reason, in a sentence' });
    expect(d.kind === 'deny' && d.hint.length).toBeGreaterThan(20);
  });

  it('a syntax error stays 42601', () => {
    const d = judgeClassification({ ok: false, error: 'syntax error at or near "SELEC"' }, {} as PolicySubject, () => undefined);
    expect(d).toMatchObject({ kind: 'deny', sqlstate: '42601', rule: 'unparsable' });
  });

  it.each([
    [0, 1024, false],
    [1024, 1024, false],
    [1025, 1024, true],
  ])('statementSizeRefusal(%i, %i) refuses: %s', (bytes, max, refused) => {
    const r = statementSizeRefusal(bytes, max);
    expect(r !== null).toBe(refused);
    if (r !== null) expect(r).toMatchObject({ ok: false, unjudged: 'too-large' });
  });
});
