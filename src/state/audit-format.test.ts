import { describe, it, expect } from 'vitest';
import { GENESIS_HASH } from './audit-log.js';
import type { AuditRecord } from './audit-log.js';
import { formatAuditRecord, singleLine } from './audit-format.js';

function record(fields: Partial<AuditRecord>): AuditRecord {
  return { seq: 42, at: '2026-11-26T14:50:01.123Z', prev: GENESIS_HASH, hash: 'f'.repeat(64), event: 'statement', agent: 'claude', session: 's1', client: '10.0.0.7:5555', ...fields };
}

describe('formatAuditRecord', () => {
  it.each([
    [
      'an allowed read',
      record({ text: 'SELECT *\n  FROM companies\n\tWHERE id = $1', decision: 'allow', rule: 'reads', rows: 3, durationMs: 1.234 }),
      '2026-11-26 14:50:01.123Z #42 claude allow [reads] 3 rows 1.23 ms: SELECT * FROM companies WHERE id = $1',
    ],
    [
      'a refusal',
      record({ text: 'DELETE FROM executives', decision: 'deny', rule: 'no-writes', sqlstate: '25006', reason: 'Writes are refused for agent claude.' }),
      '2026-11-26 14:50:01.123Z #42 claude deny [no-writes] 25006: DELETE FROM executives (Writes are refused for agent claude.)',
    ],
    ['one row, a slow statement', record({ text: 'SELECT 1', decision: 'allow', rows: 1, durationMs: 1234.5 }), '2026-11-26 14:50:01.123Z #42 claude allow 1 row 1235 ms: SELECT 1'],
    ['a connection', record({ event: 'connect' }), '2026-11-26 14:50:01.123Z #42 connect claude 10.0.0.7:5555'],
    [
      'a failed login without an agent',
      record({ event: 'auth-failed', agent: null, reason: 'Password authentication failed.' }),
      '2026-11-26 14:50:01.123Z #42 auth-failed - 10.0.0.7:5555 (Password authentication failed.)',
    ],
    ['a startup', record({ event: 'startup', agent: null, client: null }), '2026-11-26 14:50:01.123Z #42 startup -'],
  ])('formats %s', (_name, r, expected) => {
    expect(formatAuditRecord(r)).toBe(expected);
  });

  it('cuts long statements to maxText characters', () => {
    const line = formatAuditRecord(record({ text: 'SELECT ' + 'x, '.repeat(200) + 'y' }), { maxText: 20 });
    expect(line.endsWith(': SELECT x, x, x, x, …')).toBe(true);
    expect(line.length).toBe('2026-11-26 14:50:01.123Z #42 claude: '.length + 20);
  });

  it('escapes terminal escapes and text-reordering characters an agent put in its statement or name', () => {
    const line = formatAuditRecord(record({ agent: 'ev\u001b[2Jil', text: "SELECT '\u001b]0;owned\u0007' /* \u202e */ \u0085", decision: 'allow' }));
    expect(line).toBe("2026-11-26 14:50:01.123Z #42 ev\\x1b[2Jil allow: SELECT '\\x1b]0;owned\\x07' /* \\u202e */ \\x85");
    // eslint-disable-next-line no-control-regex -- asserting that no control character is left
    expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
  });
});

describe('singleLine', () => {
  it('never splits a surrogate pair when it cuts', () => {
    expect(singleLine('ab\u{1F600}\u{1F600}cd', 4)).toBe('ab\u{1F600}…');
    expect(singleLine('  a \r\n\u2028 b  ', 10)).toBe('a b');
  });
});
