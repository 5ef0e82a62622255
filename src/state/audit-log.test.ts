import { describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import {
  AUDIT_RECORD_KEYS,
  AUDIT_TEXT_MAX_CHARS,
  GENESIS_HASH,
  auditEntryProblem,
  auditRecordHead,
  binaryParamText,
  parseAuditLine,
  sealAuditRecord,
  withBoundedText,
} from './audit-log.js';
import type { AuditEntry } from './audit-log.js';

const AT = '2026-11-26T14:50:01.123Z';

function line(entry: AuditEntry, seq = 1, prev = GENESIS_HASH): string {
  return sealAuditRecord(auditRecordHead(entry, seq, AT), prev).line;
}

describe('canonical form', () => {
  it('writes keys in canonical order, hash last, and hashes prev + newline + the line without hash', () => {
    const entry: AuditEntry = {
      detail: { b: 1, a: { d: 2, c: 3 } },
      rows: 3,
      durationMs: 1.5,
      text: 'SELECT 1',
      decision: 'allow',
      rule: 'reads',
      client: '127.0.0.1:5000',
      session: 's1',
      agent: 'claude',
      event: 'statement',
    };
    const prev = 'ab'.repeat(32);
    const { line: text, hash } = sealAuditRecord(auditRecordHead(entry, 7, AT), prev);
    expect(text.endsWith('\n')).toBe(true);
    const keys = Object.keys(JSON.parse(text) as object);
    const order = keys.map((k) => AUDIT_RECORD_KEYS.indexOf(k as (typeof AUDIT_RECORD_KEYS)[number]));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(keys.at(-1)).toBe('hash');
    expect(text).toContain('"detail":{"a":{"c":3,"d":2},"b":1}');
    const body = text.trimEnd().replace(/,"hash":"[0-9a-f]{64}"\}$/, '}');
    expect(hash).toBe(createHash('sha256').update(prev + '\n' + body).digest('hex'));
  });

  it('gives the same text for the same content, whatever the key order of the entry', () => {
    const a: AuditEntry = { event: 'connect', agent: 'x', session: null, client: null, detail: { z: [1, { q: 1, p: 2 }], y: 'é' } };
    const b: AuditEntry = { detail: { y: 'é', z: [1, { p: 2, q: 1 }] }, client: null, session: null, agent: 'x', event: 'connect' };
    expect(line(a)).toBe(line(b));
  });

  it('parses its own lines back to the same record', () => {
    const entry: AuditEntry = {
      event: 'statement',
      agent: 'a "quoted"\nagent',
      session: 's',
      client: '[::1]:5432',
      text: 'SELECT $1, \u{1F600}, \ud800',
      params: ['1', null, '\\x00ff'],
      fingerprint: 'abc',
      decision: 'deny',
      rule: 'no-writes',
      reason: 'Writes are refused.',
      sqlstate: '25006',
      durationMs: 0.25,
      rows: null,
      detail: { n: -0, when: new Date(0) },
    };
    const text = line(entry, 3, 'cd'.repeat(32));
    const parsed = parseAuditLine(text.trimEnd());
    if (!parsed.ok) throw new Error(parsed.problem);
    expect(parsed.record).toMatchObject({ ...entry, detail: { n: 0, when: '1970-01-01T00:00:00.000Z' }, seq: 3, at: AT, prev: 'cd'.repeat(32) });
    expect(line(parsed.record, 3, 'cd'.repeat(32))).toBe(text);
  });

  it.each([
    ['missing hash', (l: string) => l.replace(/,"hash":"[0-9a-f]{64}"\}$/, '}'), /hash/],
    ['extra whitespace', (l: string) => l.replace('"seq":1,', '"seq": 1,'), /canonical/],
    ['reordered keys', (l: string) => l.replace('"seq":1,"at":"' + AT + '"', '"at":"' + AT + '","seq":1'), /canonical/],
    ['duplicated key', (l: string) => l.replace('"agent":"a",', '"agent":"a","agent":"a",'), /canonical/],
    ['unknown key', (l: string) => l.replace('"agent":"a",', '"agent":"a","extra":1,'), /unknown member "extra"/],
    ['bad seq', (l: string) => l.replace('"seq":1,', '"seq":0,'), /seq/],
    ['bad prev', (l: string) => l.replace(GENESIS_HASH, 'x'.repeat(64)), /prev/],
    ['bad event', (l: string) => l.replace('"statement"', '"party"'), /event/],
    ['not JSON', (l: string) => l.replace('{"seq"', '{seq'), /JSON/],
  ])('rejects a line with %s', (_name, edit, problem) => {
    const original = line({ event: 'statement', agent: 'a', session: null, client: null }).trimEnd();
    expect(parseAuditLine(original).ok).toBe(true);
    const edited = edit(original);
    expect(edited).not.toBe(original);
    const parsed = parseAuditLine(edited);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problem).toMatch(problem);
  });
});

describe('auditEntryProblem', () => {
  const base = { event: 'statement', agent: null, session: null, client: null };
  it.each([
    [{ event: undefined }, /event/],
    [{ event: 'nope' }, /event/],
    [{ agent: 1 }, /agent/],
    [{ session: undefined }, /session/],
    [{ text: 5 }, /text/],
    [{ params: ['a', 1] }, /params/],
    [{ decision: 'maybe' }, /decision/],
    [{ durationMs: Number.NaN }, /durationMs/],
    [{ rows: Infinity }, /rows/],
    [{ detail: [] }, /detail/],
    [{ detail: null }, /detail/],
  ])('finds the problem in %o', (change, problem) => {
    expect(auditEntryProblem({ ...base, ...change })).toMatch(problem);
  });

  it('accepts a full entry', () => {
    expect(auditEntryProblem({ ...base, params: [null, 'x'], rows: null, durationMs: 1, decision: 'allow', detail: {} })).toBeNull();
  });
});

describe('binaryParamText', () => {
  it('writes bytes as bytea hex', () => {
    expect(binaryParamText(new Uint8Array([0, 0xff, 0x10]))).toBe('\\x00ff10');
    const view = new Uint8Array([9, 1, 2, 9]).subarray(1, 3);
    expect(binaryParamText(view)).toBe('\\x0102');
  });
});

describe('withBoundedText', () => {
  it('keeps a text or parameter up to the bound as it is', () => {
    const entry: AuditEntry = { event: 'statement', agent: 'a', session: 's', client: null, text: 'x'.repeat(AUDIT_TEXT_MAX_CHARS), params: ['y'] };
    expect(withBoundedText(entry)).toBe(entry);
  });

  it('cuts a longer text or parameter to its beginning, with its length and the sha256 of the whole', () => {
    const text = `SELECT ${'('.repeat(100_000)}1${')'.repeat(100_000)}`;
    const param = 'p'.repeat(AUDIT_TEXT_MAX_CHARS + 1);
    const bounded = withBoundedText({ event: 'statement', agent: 'a', session: 's', client: null, text, params: ['short', param], detail: { kept: true } });
    expect(bounded.text).toBe(text.slice(0, AUDIT_TEXT_MAX_CHARS));
    expect(bounded.params).toEqual(['short', param.slice(0, AUDIT_TEXT_MAX_CHARS)]);
    expect(bounded.detail).toEqual({
      kept: true,
      cut: {
        text: { chars: text.length, sha256: createHash('sha256').update(text).digest('hex') },
        'params[1]': { chars: param.length, sha256: createHash('sha256').update(param).digest('hex') },
      },
    });
  });
});
