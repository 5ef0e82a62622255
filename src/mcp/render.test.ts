import { describe, expect, it } from 'vitest';
import { GateError } from './gate-client.js';
import { MAX_CELL_CHARS, renderError, renderRows, renderValue } from './render.js';
import { splitTableName } from './tools.js';

describe('renderValue', () => {
  it.each([
    [null, 25, 'null'],
    ['NULL', 25, '"NULL"'],
    ['12345678901234567890.5', 1700, '12345678901234567890.5'],
    ['NaN', 701, '"NaN"'],
    ['-Infinity', 700, '"-Infinity"'],
    ['1e+21', 701, '1e+21'],
    ['t', 16, 'true'],
    ['f', 16, 'false'],
    ['{"a": 1}', 3802, '{"a": 1}'],
    ['{\n "a": 1}', 114, '"{\\n \\"a\\": 1}"'],
    ['2026-11-26 16:20:00+00', 1184, '"2026-11-26 16:20:00+00"'],
    ['{1,2}', 1007, '"{1,2}"'],
    ['007', 25, '"007"'],
  ])('%j of type %i is %s', (value, oid, expected) => {
    expect(renderValue(value, oid)).toBe(expected);
  });

  it('cuts a long value and says how much', () => {
    const out = JSON.parse(renderValue('x'.repeat(MAX_CELL_CHARS + 5), 25)) as string;
    expect(out).toBe(`${'x'.repeat(MAX_CELL_CHARS)}… [cut: 5 more characters]`);
  });
});

describe('renderRows', () => {
  const columns = [{ name: 'id', typeOid: 23, typeName: 'integer' }];
  it('says when rows were left out', () => {
    const text = renderRows({ columns, rows: [['1'], ['2']], truncated: true, command: 'SELECT', rowCount: null }, { maxRows: 2, moreHint: 'Narrow it.' });
    expect(text).toBe('columns: id (integer)\n[1]\n[2]\nTRUNCATED: showing the first 2 rows only (the result has more than 2 rows; the rest were not fetched). Narrow it.');
  });
  it('counts rows otherwise', () => {
    expect(renderRows({ columns, rows: [], truncated: false, command: 'SELECT', rowCount: 0 }, { maxRows: 2, moreHint: '' })).toBe('columns: id (integer)\n(0 rows)');
  });
});

describe('renderError', () => {
  it('shows the fields as psql does, with the SQLSTATE', () => {
    const e = new GateError({ code: '42501', message: 'airlock: no', detail: 'Rule: write. Not sent.', hint: 'Ask a human.' });
    expect(renderError(e)).toBe('ERROR:  airlock: no\nDETAIL:  Rule: write. Not sent.\nHINT:  Ask a human.\nSQLSTATE: 42501');
  });
});

describe('splitTableName', () => {
  it.each([
    ['tasks', { schema: 'public', name: 'tasks' }],
    ['App.Tasks', { schema: 'app', name: 'tasks' }],
    ['"My Schema"."Odd ""name"""', { schema: 'My Schema', name: 'Odd "name"' }],
    ['a.b.c', null],
    ['', null],
  ])('%s', (input, expected) => {
    expect(splitTableName(input)).toEqual(expected);
  });
});
