import { describe, expect, it } from 'vitest';
import { MessageReader, ProtocolViolation, StartupPacketReader } from './message-reader.js';

/** Byte1 type, Int32 length (counting itself), body. */
function frame(type: string, body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeUInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

const QUERY = frame('Q', 'SELECT 1\0');
const SYNC = frame('S', Buffer.alloc(0));
const PARSE = frame('P', Buffer.concat([Buffer.from('s1\0SELECT $1\0'), Buffer.from([0, 0])]));
const STREAM = Buffer.concat([QUERY, SYNC, PARSE]);

function summary(messages: { type: number; body: Buffer; raw: Buffer }[]) {
  return messages.map((m) => ({ type: String.fromCharCode(m.type), body: m.body.toString('hex'), raw: m.raw.toString('hex') }));
}

const EXPECTED = summary([
  { type: 0x51, body: QUERY.subarray(5), raw: QUERY },
  { type: 0x53, body: Buffer.alloc(0), raw: SYNC },
  { type: 0x50, body: PARSE.subarray(5), raw: PARSE },
]);

describe('MessageReader', () => {
  it('yields several messages from one chunk, in order, with body and raw bytes', () => {
    const reader = new MessageReader(1024);
    const out = reader.push(STREAM);
    expect(summary(out)).toEqual(EXPECTED);
    expect(out[0]!.body.toString('utf8')).toBe('SELECT 1\0');
    expect(reader.buffered).toBe(0);
  });

  it.each(Array.from({ length: STREAM.length - 1 }, (_, i) => i + 1))(
    'reassembles the stream split at byte %i',
    (cut) => {
      const reader = new MessageReader(1024);
      const out = [...reader.push(STREAM.subarray(0, cut)), ...reader.push(STREAM.subarray(cut))];
      expect(summary(out)).toEqual(EXPECTED);
      expect(reader.buffered).toBe(0);
    },
  );

  it('reassembles the stream fed one byte at a time', () => {
    const reader = new MessageReader(1024);
    const out = [];
    const ends = [QUERY.length, QUERY.length + SYNC.length, STREAM.length];
    for (let i = 0; i < STREAM.length; i++) {
      out.push(...reader.push(STREAM.subarray(i, i + 1)));
      const lastEnd = Math.max(0, ...ends.filter((e) => e <= i + 1));
      expect(reader.buffered).toBe(i + 1 - lastEnd);
    }
    expect(summary(out)).toEqual(EXPECTED);
  });

  it('hands out a message that arrived whole as a view, not a copy', () => {
    const chunk = Buffer.from(QUERY);
    const [m] = new MessageReader(1024).push(chunk);
    chunk[5] = 0x73; // 's'
    expect(m!.body[0]).toBe(0x73);
  });

  it('keeps a message that spans chunks intact when the first chunk is reused', () => {
    const reader = new MessageReader(1024);
    const first = Buffer.from(QUERY.subarray(0, 7));
    reader.push(first);
    first.fill(0);
    const [m] = reader.push(QUERY.subarray(7));
    expect(m!.raw.equals(QUERY)).toBe(true);
  });

  it.each([0, 1, 2, 3])('refuses a length of %i', (length) => {
    const bad = Buffer.from([0x51, 0, 0, 0, length]);
    expect(() => new MessageReader(1024).push(bad)).toThrow(ProtocolViolation);
    expect(() => new MessageReader(1024).push(bad)).toThrow(`invalid message length ${length}`);
  });

  it('refuses a length over the limit as soon as the header arrives, naming the limit', () => {
    const reader = new MessageReader(100);
    const header = Buffer.from([0x51, 0, 0, 0, 0]);
    header.writeUInt32BE(101, 1);
    expect(() => reader.push(header)).toThrow(ProtocolViolation);
    expect(() => new MessageReader(100).push(header)).toThrow(/101 bytes is larger than the limit of 100 bytes/);
  });

  it('accepts a message of exactly the limit', () => {
    const body = Buffer.alloc(96, 0x61);
    const m = frame('d', body);
    expect(m.readUInt32BE(1)).toBe(100);
    const out = new MessageReader(100).push(m);
    expect(out).toHaveLength(1);
    expect(out[0]!.body.equals(body)).toBe(true);
  });

  it('refuses a bad length that follows good messages in the same chunk', () => {
    const reader = new MessageReader(1024);
    expect(() => reader.push(Buffer.concat([QUERY, Buffer.from([0x51, 0, 0, 0, 2])]))).toThrow(ProtocolViolation);
  });

  it('waits for a header split before its length is whole', () => {
    const reader = new MessageReader(1024);
    expect(reader.push(QUERY.subarray(0, 3))).toEqual([]);
    expect(reader.buffered).toBe(3);
    expect(summary(reader.push(QUERY.subarray(3)))).toEqual(EXPECTED.slice(0, 1));
  });

  it('assembles a large message sent in 8 KB pieces into one buffer of its size, counting what it holds', () => {
    const body = Buffer.alloc(4 * 1024 * 1024, 0x61);
    const message = Buffer.concat([Buffer.from([0x51, 0, 0, 0, 0]), body]);
    message.writeUInt32BE(4 + body.length, 1);
    const reader = new MessageReader(8 * 1024 * 1024);
    const got = [];
    for (let at = 0; at < message.length; at += 8192) {
      got.push(...reader.push(message.subarray(at, at + 8192)));
      if (at + 8192 < message.length) expect(reader.buffered).toBe(Math.min(at + 8192, message.length));
    }
    expect(got).toHaveLength(1);
    expect(got[0]!.type).toBe(0x51);
    expect(got[0]!.body.equals(body)).toBe(true);
    expect(reader.buffered).toBe(0);
  });

  it('takeBuffered hands over the partial message and forgets it', () => {
    const reader = new MessageReader(1024);
    const out = reader.push(Buffer.concat([QUERY, SYNC.subarray(0, 3)]));
    expect(out).toHaveLength(1);
    expect(reader.buffered).toBe(3);
    expect(reader.takeBuffered().equals(SYNC.subarray(0, 3))).toBe(true);
    expect(reader.buffered).toBe(0);
    expect(reader.takeBuffered()).toHaveLength(0);
    // What follows starts afresh, not after the bytes handed over.
    expect(summary(reader.push(PARSE))).toEqual(EXPECTED.slice(2));
  });
});

describe('MessageReader, messages over their type\'s limit', () => {
  const BIG = frame('Q', 'SELECT ' + 'x'.repeat(500) + '\0');
  const limitFor = (type: number): number => (type === 0x51 ? 100 : 1024);
  const expected = [
    { type: 'Q', dropped: BIG.length - 5, first: 'S', raw: BIG.subarray(0, 5).toString('hex') },
    { type: 'S', dropped: undefined, first: undefined, raw: SYNC.toString('hex') },
  ];
  const seen = (out: { type: number; body: Buffer; raw: Buffer; dropped?: number }[]) =>
    out.map((m) => ({ type: String.fromCharCode(m.type), dropped: m.dropped, first: m.body.length > 0 ? String.fromCharCode(m.body[0]!) : undefined, raw: m.raw.toString('hex') }));

  it.each([1, 3, 5, 6, 7, 50, 200, BIG.length - 1, BIG.length, BIG.length + 2])('drops the body and keeps its first byte, split at byte %i', (cut) => {
    const stream = Buffer.concat([BIG, SYNC]);
    const reader = new MessageReader(1024, limitFor);
    const out = [...reader.push(stream.subarray(0, cut)), ...reader.push(stream.subarray(cut))];
    expect(seen(out)).toEqual(expected);
    expect(reader.buffered).toBe(0);
  });

  it('holds none of the body while it arrives, one byte at a time', () => {
    const reader = new MessageReader(1024, limitFor);
    const out = [];
    for (let i = 0; i < BIG.length; i++) {
      out.push(...reader.push(BIG.subarray(i, i + 1)));
      expect(reader.buffered).toBeLessThan(5); // at most the header, while it is still coming
    }
    out.push(...reader.push(SYNC));
    expect(seen(out)).toEqual(expected);
  });

  it('still refuses a length over maxMessageBytes', () => {
    const reader = new MessageReader(200, limitFor);
    expect(() => reader.push(BIG)).toThrow(ProtocolViolation);
  });

  it('keeps messages of other types whole', () => {
    const out = new MessageReader(1024, limitFor).push(Buffer.concat([PARSE, SYNC]));
    expect(out.map((m) => m.dropped)).toEqual([undefined, undefined]);
    expect(out[0]!.raw.equals(PARSE)).toBe(true);
  });
});

describe('StartupPacketReader', () => {
  function startup(body: Buffer): Buffer {
    const out = Buffer.alloc(4 + body.length);
    out.writeUInt32BE(4 + body.length, 0);
    body.copy(out, 4);
    return out;
  }
  const BODY = Buffer.concat([Buffer.from([0, 3, 0, 0]), Buffer.from('user\0claude\0\0')]);

  it('returns the first packet and what followed it, across chunks', () => {
    const packet = startup(BODY);
    const reader = new StartupPacketReader();
    expect(reader.push(packet.subarray(0, 2))).toBeNull();
    expect(reader.push(packet.subarray(2, 9))).toBeNull();
    const got = reader.push(Buffer.concat([packet.subarray(9), QUERY]));
    expect(got!.body.equals(BODY)).toBe(true);
    expect(got!.rest.equals(QUERY)).toBe(true);
  });

  it.each([0, 7, 10_001])('refuses a packet length of %i', (length) => {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(length, 0);
    expect(() => new StartupPacketReader().push(b)).toThrow(ProtocolViolation);
  });
});
