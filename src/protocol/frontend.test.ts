import { describe, expect, it } from 'vitest';
import {
  FRONTEND,
  encodeParse,
  encodeQuery,
  encodeSaslInitialResponse,
  parseBind,
  parseExecute,
  parseParse,
  parseQuery,
  parseSaslInitialResponse,
  parseTarget,
  renameBind,
} from './frontend.js';
import { MessageReader, ProtocolViolation } from './message-reader.js';

const int16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n, 0);
  return b;
};
const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
};
const cstr = (s: string): Buffer => Buffer.from(s + '\0', 'utf8');

type Param = Buffer | null;

/** A Bind body, built field by field as the protocol lays it out. */
function bindBody(opts: { portal?: string; statement?: string; formats?: number[]; params?: Param[]; results?: number[] }): Buffer {
  const { portal = '', statement = '', formats = [], params = [], results = [] } = opts;
  return Buffer.concat([
    cstr(portal),
    cstr(statement),
    int16(formats.length),
    ...formats.map(int16),
    int16(params.length),
    ...params.flatMap((p) => (p === null ? [int32(-1)] : [int32(p.length), p])),
    int16(results.length),
    ...results.map(int16),
  ]);
}

function unframe(bytes: Buffer): { type: number; body: Buffer } {
  const [m] = new MessageReader(1 << 20).push(bytes);
  return m!;
}

describe('parseBind', () => {
  it('reads text parameters with no format codes (all text)', () => {
    const b = parseBind(bindBody({ portal: 'p1', statement: 's1', params: [Buffer.from('42'), Buffer.from('héllo')] }));
    expect(b).toEqual({ portal: 'p1', statement: 's1', params: ['42', 'héllo'] });
  });

  it('reads NULL parameters as null', () => {
    expect(parseBind(bindBody({ params: [null, Buffer.from('x'), null] })).params).toEqual([null, 'x', null]);
  });

  it('applies a single format code to every parameter', () => {
    const b = parseBind(bindBody({ formats: [1], params: [Buffer.from([0, 0, 0, 7]), Buffer.from([0xff])] }));
    expect(b.params).toEqual(['\\x00000007', '\\xff']);
  });

  it('applies one format code per parameter when there are as many', () => {
    const b = parseBind(bindBody({ formats: [0, 1, 0], params: [Buffer.from('a'), Buffer.from([1, 2]), null] }));
    expect(b.params).toEqual(['a', '\\x0102', null]);
  });

  it('reads an empty value apart from NULL', () => {
    expect(parseBind(bindBody({ params: [Buffer.alloc(0)] })).params).toEqual(['']);
  });

  it('skips the result format codes', () => {
    expect(parseBind(bindBody({ params: [Buffer.from('1')], results: [1, 0] })).params).toEqual(['1']);
  });

  it('refuses a format count that is neither 0, 1 nor the parameter count', () => {
    expect(() => parseBind(bindBody({ formats: [0, 1], params: [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')] }))).toThrow(
      /2 parameter formats for 3 parameters/,
    );
  });

  const overruns: [string, Buffer][] = [
    ['a value length past the end', Buffer.concat([cstr(''), cstr(''), int16(0), int16(1), int32(100), Buffer.from('short'), int16(0)])],
    ['a negative value length other than -1', Buffer.concat([cstr(''), cstr(''), int16(0), int16(1), int32(-2), int16(0)])],
    ['more parameters than values', Buffer.concat([cstr(''), cstr(''), int16(0), int16(2), int32(1), Buffer.from('a'), int16(0)])],
    ['format codes past the end', Buffer.concat([cstr(''), cstr(''), int16(5), int16(0)])],
    ['a missing result format count', Buffer.concat([cstr(''), cstr(''), int16(0), int16(0)])],
    ['result format codes past the end', Buffer.concat([cstr(''), cstr(''), int16(0), int16(0), int16(3), int16(0)])],
    ['an unterminated portal name', Buffer.from('portal')],
    ['an unterminated statement name', Buffer.concat([cstr(''), Buffer.from('stmt')])],
    ['a negative parameter count', Buffer.concat([cstr(''), cstr(''), int16(0), int16(-1), int16(0)])],
    ['bytes after the result formats', Buffer.concat([bindBody({ params: [Buffer.from('1')] }), Buffer.from([0])])],
  ];
  it.each(overruns)('refuses %s with a ProtocolViolation', (_name, body) => {
    expect(() => parseBind(body)).toThrow(ProtocolViolation);
  });
});

describe('parseParse', () => {
  it('reads the name, the query bytes and the parameter types', () => {
    const body = Buffer.concat([cstr('s1'), cstr('SELECT $1::int, $2'), int16(2), int32(23), int32(0)]);
    const p = parseParse(body);
    expect(p.name).toBe('s1');
    expect(p.query.toString('utf8')).toBe('SELECT $1::int, $2');
    expect(p.paramTypes).toEqual([23, 0]);
  });

  it('reads what encodeParse writes', () => {
    const { type, body } = unframe(encodeParse('', 'SELECT 1'));
    expect(type).toBe(FRONTEND.parse);
    expect(parseParse(body)).toEqual({ name: '', query: Buffer.from('SELECT 1'), paramTypes: [] });
  });

  it.each([
    ['a missing parameter count', Buffer.concat([cstr(''), cstr('SELECT 1')])],
    ['fewer type OIDs than the count', Buffer.concat([cstr(''), cstr('SELECT 1'), int16(2), int32(23)])],
    ['a negative count', Buffer.concat([cstr(''), cstr('SELECT 1'), int16(-1)])],
    ['an unterminated query', Buffer.concat([cstr(''), Buffer.from('SELECT 1')])],
    ['trailing bytes', Buffer.concat([cstr(''), cstr('SELECT 1'), int16(0), Buffer.from('DELETE')])],
  ])('refuses %s', (_name, body) => {
    expect(() => parseParse(body)).toThrow(ProtocolViolation);
  });
});

describe('parseQuery', () => {
  it('returns exactly the bytes up to the terminator', () => {
    const text = parseQuery(cstr('SELECT 1; SELECT 2'));
    expect(text.toString('utf8')).toBe('SELECT 1; SELECT 2');
  });

  it('reads what encodeQuery writes', () => {
    const { type, body } = unframe(encodeQuery('SELECT ü'));
    expect(type).toBe(FRONTEND.query);
    expect(parseQuery(body).toString('utf8')).toBe('SELECT ü');
  });

  it('refuses bytes after the terminator (text the judge would not see)', () => {
    const body = Buffer.concat([cstr('SELECT 1'), Buffer.from('; DELETE FROM executives\0')]);
    expect(() => parseQuery(body)).toThrow(ProtocolViolation);
    expect(() => parseQuery(body)).toThrow(/unexpected bytes at the end/);
  });

  it('refuses a query without a terminator', () => {
    expect(() => parseQuery(Buffer.from('SELECT 1'))).toThrow(/not terminated/);
  });
});

describe('parseExecute', () => {
  it('reads the portal and the row limit', () => {
    expect(parseExecute(Buffer.concat([cstr('p1'), int32(0)]))).toEqual({ portal: 'p1', maxRows: 0 });
    expect(parseExecute(Buffer.concat([cstr(''), int32(50)]))).toEqual({ portal: '', maxRows: 50 });
  });

  it.each([
    ['a missing row limit', cstr('p1')],
    ['a short row limit', Buffer.concat([cstr('p1'), int16(1)])],
    ['trailing bytes', Buffer.concat([cstr('p1'), int32(0), Buffer.from([1])])],
  ])('refuses %s', (_name, body) => {
    expect(() => parseExecute(body)).toThrow(ProtocolViolation);
  });
});

describe('parseTarget', () => {
  it('reads a statement or portal target of Close and Describe', () => {
    expect(parseTarget(Buffer.concat([Buffer.from('S'), cstr('s1')]), 'Close')).toEqual({ target: 'statement', name: 's1' });
    expect(parseTarget(Buffer.concat([Buffer.from('P'), cstr('')]), 'Describe')).toEqual({ target: 'portal', name: '' });
  });

  it.each([
    ['an unknown target type', Buffer.concat([Buffer.from('X'), cstr('s1')])],
    ['an empty body', Buffer.alloc(0)],
    ['an unterminated name', Buffer.from('Ss1')],
    ['trailing bytes', Buffer.concat([Buffer.from('S'), cstr('s1'), Buffer.from([0])])],
  ])('refuses %s', (_name, body) => {
    expect(() => parseTarget(body, 'Describe')).toThrow(ProtocolViolation);
  });

  it('names the message in its violations', () => {
    expect(() => parseTarget(Buffer.from('X\0'), 'Close')).toThrow(/^Close: /);
  });
});

describe('SASLInitialResponse', () => {
  it('round-trips mechanism and data', () => {
    const data = Buffer.from('n,,n=,r=abc');
    const { type, body } = unframe(encodeSaslInitialResponse('SCRAM-SHA-256', data));
    expect(type).toBe(FRONTEND.password);
    const got = parseSaslInitialResponse(body);
    expect(got.mechanism).toBe('SCRAM-SHA-256');
    expect(got.data.equals(data)).toBe(true);
  });

  it('refuses a data length past the end', () => {
    expect(() => parseSaslInitialResponse(Buffer.concat([cstr('SCRAM-SHA-256'), int32(50), Buffer.from('x')]))).toThrow(ProtocolViolation);
  });
});

describe('renameBind', () => {
  it('gives the Bind other names and keeps formats, values and result formats byte for byte', () => {
    const body = bindBody({ portal: 'p', statement: 'stmt', formats: [0, 1], params: [Buffer.from('héllo'), Buffer.from([0, 0xff])], results: [1] });
    const renamed = unframe(renameBind(body, '_airlock_portal_é', '_airlock_s1'));
    expect(renamed.type).toBe(FRONTEND.bind);
    expect(renamed.body).toEqual(bindBody({ portal: '_airlock_portal_é', statement: '_airlock_s1', formats: [0, 1], params: [Buffer.from('héllo'), Buffer.from([0, 0xff])], results: [1] }));
    expect(parseBind(renamed.body)).toEqual({ portal: '_airlock_portal_é', statement: '_airlock_s1', params: ['héllo', '\\x00ff'] });
    expect(unframe(renameBind(bindBody({}), '', '')).body).toEqual(bindBody({}));
  });
});
