import { describe, expect, it } from 'vitest';
import { ProtocolViolation, StartupPacketReader } from './message-reader.js';
import { encodeCancelRequest, encodeSslRequest, encodeStartupMessage, parseStartupPacket } from './startup.js';

function body(packet: Buffer): Buffer {
  return packet.subarray(4);
}

describe('parseStartupPacket', () => {
  it('reads a StartupMessage with its parameters', () => {
    const p = parseStartupPacket(body(encodeStartupMessage({ user: 'claude', database: 'app' })));
    expect(p).toEqual({ kind: 'startup', major: 3, minor: 0, params: new Map([['user', 'claude'], ['database', 'app']]) });
  });

  it('reads SSLRequest and CancelRequest', () => {
    expect(parseStartupPacket(body(encodeSslRequest()))).toEqual({ kind: 'ssl-request' });
    const cancel = parseStartupPacket(body(encodeCancelRequest(42, Buffer.from([1, 2, 3, 4]))));
    expect(cancel).toEqual({ kind: 'cancel', processId: 42, secretKey: Buffer.from([1, 2, 3, 4]) });
  });

  it.each([
    ['an unterminated list', Buffer.from([0, 3, 0, 0, 0x75, 0x73, 0x65, 0x72, 0])],
    ['a protocol 2 request', Buffer.from([0, 2, 0, 0, 0])],
    ['a repeated parameter', body(Buffer.concat([encodeStartupMessage({ user: 'a' }).subarray(0, -1), Buffer.from('user\0b\0\0')]))],
    ['trailing bytes', Buffer.concat([body(encodeStartupMessage({ user: 'a' })), Buffer.from('xx')])],
  ])('refuses %s', (_name, packet) => {
    expect(() => parseStartupPacket(packet)).toThrow(ProtocolViolation);
  });
});

describe('StartupPacketReader', () => {
  it('waits for a whole packet and returns what follows it', () => {
    const reader = new StartupPacketReader();
    const packet = encodeStartupMessage({ user: 'claude' });
    expect(reader.push(packet.subarray(0, 3))).toBeNull();
    const got = reader.push(Buffer.concat([packet.subarray(3), Buffer.from('extra')]));
    expect(got?.rest.toString()).toBe('extra');
    expect(parseStartupPacket(got!.body).kind).toBe('startup');
  });

  it('refuses absurd lengths', () => {
    const reader = new StartupPacketReader();
    expect(() => reader.push(Buffer.from([0x7f, 0, 0, 0, 1, 2, 3, 4]))).toThrow(ProtocolViolation);
  });
});
