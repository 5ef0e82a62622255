import { describe, expect, it } from 'vitest';
import {
  AUTH,
  BACKEND,
  authenticationOk,
  authenticationSasl,
  backendKeyData,
  commandTagRows,
  errorResponse,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  parseErrorFields,
  parseParameterStatus,
  readyForQuery,
} from './backend.js';
import type { ErrorFields } from './backend.js';
import { MessageReader } from './message-reader.js';

/** Frames one encoded message back into type and body, checking its length word on the way. */
function unframe(bytes: Buffer): { type: number; body: Buffer } {
  const messages = new MessageReader(1 << 20).push(bytes);
  expect(messages).toHaveLength(1);
  expect(messages[0]!.raw.length).toBe(bytes.length);
  return messages[0]!;
}

describe('errorResponse and parseErrorFields', () => {
  const cases: [string, ErrorFields][] = [
    ['minimal', { severity: 'ERROR', code: '42501', message: 'airlock: agent "claude" may not DELETE on public.executives (profile read-only)' }],
    [
      'every field',
      {
        severity: 'FATAL',
        code: '28P01',
        message: 'password authentication failed for user "claude"',
        detail: 'Rule: write. The statement was not sent to the database.',
        hint: 'A human can run the statement directly.',
        position: 17,
      },
    ],
    ['non-ASCII text', { severity: 'ERROR', code: '22021', message: 'invalid byte sequence — «ü» 日本', hint: 'ünïcödé' }],
  ];

  it.each(cases)('round-trips %s', (_name, fields) => {
    const { type, body } = unframe(errorResponse(fields));
    expect(type).toBe(BACKEND.errorResponse);
    const parsed = parseErrorFields(body);
    expect(parsed.get('S')).toBe(fields.severity);
    expect(parsed.get('V')).toBe(fields.severity);
    expect(parsed.get('C')).toBe(fields.code);
    expect(parsed.get('M')).toBe(fields.message);
    expect(parsed.get('D')).toBe(fields.detail);
    expect(parsed.get('H')).toBe(fields.hint);
    expect(parsed.get('P')).toBe(fields.position === undefined ? undefined : String(fields.position));
    // The body ends with the field list's terminator right after the last field's.
    expect(body.subarray(-2).equals(Buffer.from([0, 0]))).toBe(true);
  });

  it('encodes a NoticeResponse with the same fields and its own type', () => {
    const fields: ErrorFields = { severity: 'WARNING', code: '01000', message: 'careful' };
    const { type, body } = unframe(noticeResponse(fields));
    expect(type).toBe(BACKEND.noticeResponse);
    expect(Object.fromEntries(parseErrorFields(body))).toEqual({ S: 'WARNING', V: 'WARNING', C: '01000', M: 'careful' });
  });

  it('stops at an unterminated field instead of reading past the body', () => {
    const body = Buffer.from('SERROR\0C42501\0Mno terminator', 'utf8');
    expect(Object.fromEntries(parseErrorFields(body))).toEqual({ S: 'ERROR', C: '42501' });
  });

  it('reads an empty field list', () => {
    expect(parseErrorFields(Buffer.from([0])).size).toBe(0);
    expect(parseErrorFields(Buffer.alloc(0)).size).toBe(0);
  });
});

describe('commandTagRows', () => {
  const tags: [string, number | null][] = [
    ['SELECT 5', 5],
    ['SELECT 0', 0],
    ['INSERT 0 1', 1],
    ['INSERT 0 250', 250],
    ['UPDATE 3', 3],
    ['DELETE 1206', 1206],
    ['MERGE 2', 2],
    ['COPY 10', 10],
    ['FETCH 2', 2],
    ['MOVE 1', 1],
    ['BEGIN', null],
    ['SET', null],
    ['CREATE TABLE', null],
    ['SHOW', null],
    ['', null],
    ['42', null],
  ];
  it.each(tags)('reads %j as %j', (tag, rows) => {
    expect(commandTagRows(Buffer.from(tag + '\0', 'latin1'))).toBe(rows);
  });

  it('reads a tag without its terminator too', () => {
    expect(commandTagRows(Buffer.from('SELECT 7', 'latin1'))).toBe(7);
  });
});

describe('other backend messages', () => {
  it('encodes AuthenticationOk', () => {
    const { type, body } = unframe(authenticationOk());
    expect(type).toBe(BACKEND.authentication);
    expect(body.readInt32BE(0)).toBe(AUTH.ok);
    expect(body).toHaveLength(4);
  });

  it('encodes AuthenticationSASL with its mechanisms and the closing zero byte', () => {
    const { body } = unframe(authenticationSasl(['SCRAM-SHA-256']));
    expect(body.readInt32BE(0)).toBe(AUTH.sasl);
    expect(body.subarray(4).toString('utf8')).toBe('SCRAM-SHA-256\0\0');
  });

  it('round-trips ParameterStatus', () => {
    const { type, body } = unframe(parameterStatus('client_encoding', 'UTF8'));
    expect(type).toBe(BACKEND.parameterStatus);
    expect(parseParameterStatus(body)).toEqual({ name: 'client_encoding', value: 'UTF8' });
  });

  it('encodes BackendKeyData', () => {
    const key = Buffer.from([1, 2, 3, 4]);
    const { type, body } = unframe(backendKeyData(4242, key));
    expect(type).toBe(BACKEND.backendKeyData);
    expect(body.readInt32BE(0)).toBe(4242);
    expect(body.subarray(4).equals(key)).toBe(true);
  });

  it.each(['I', 'T', 'E'] as const)('encodes ReadyForQuery %s', (status) => {
    const { type, body } = unframe(readyForQuery(status));
    expect(type).toBe(BACKEND.readyForQuery);
    expect(body.toString('latin1')).toBe(status);
  });

  it('encodes NegotiateProtocolVersion', () => {
    const { type, body } = unframe(negotiateProtocolVersion(0, ['_pq_.x']));
    expect(type).toBe(BACKEND.negotiateProtocolVersion);
    expect(body.readInt32BE(0)).toBe(0);
    expect(body.readInt32BE(4)).toBe(1);
    expect(body.subarray(8).toString('utf8')).toBe('_pq_.x\0');
  });
});
