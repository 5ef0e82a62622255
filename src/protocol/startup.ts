/**
 * The first packet a client sends: a StartupMessage, or one of the special
 * request codes (SSLRequest, GSSENCRequest, CancelRequest).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { ProtocolViolation } from './message-reader.js';

/** Int32 80877103: the SSLRequest code. */
export const SSL_REQUEST_CODE = 80877103;
/** Int32 80877104: the GSSENCRequest code. */
export const GSSENC_REQUEST_CODE = 80877104;
/** Int32 80877102: the CancelRequest code. */
export const CANCEL_REQUEST_CODE = 80877102;
/** Int32 196608: protocol version 3.0. */
export const PROTOCOL_3_0 = 196608;

export type StartupPacket =
  | { kind: 'ssl-request' }
  | { kind: 'gssenc-request' }
  | { kind: 'cancel'; processId: number; secretKey: Buffer }
  | { kind: 'startup'; major: number; minor: number; params: Map<string, string> };

/** Decodes the body of a start-up packet (the bytes after its length word). */
export function parseStartupPacket(body: Buffer): StartupPacket {
  if (body.length < 4) throw new ProtocolViolation('start-up packet too short');
  const code = body.readUInt32BE(0);
  if (code === SSL_REQUEST_CODE) return { kind: 'ssl-request' };
  if (code === GSSENC_REQUEST_CODE) return { kind: 'gssenc-request' };
  if (code === CANCEL_REQUEST_CODE) {
    // Int32 process ID, then the secret key (4 bytes in protocol 3.0, up to 256 in 3.2).
    if (body.length < 12) throw new ProtocolViolation('CancelRequest too short');
    return { kind: 'cancel', processId: body.readUInt32BE(4), secretKey: Buffer.from(body.subarray(8)) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) throw new ProtocolViolation(`unsupported frontend protocol ${major}.${minor}: Airlock speaks 3.0`);
  // Pairs of String name, String value, ended by a zero byte.
  const params = new Map<string, string>();
  let at = 4;
  for (;;) {
    if (at >= body.length) throw new ProtocolViolation('StartupMessage is not terminated');
    if (body[at] === 0) break;
    const nameEnd = body.indexOf(0, at);
    if (nameEnd < 0) throw new ProtocolViolation('StartupMessage parameter name is not terminated');
    const valueEnd = body.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) throw new ProtocolViolation('StartupMessage parameter value is not terminated');
    const name = body.toString('utf8', at, nameEnd);
    if (params.has(name)) throw new ProtocolViolation(`StartupMessage repeats parameter "${name}"`);
    params.set(name, body.toString('utf8', nameEnd + 1, valueEnd));
    at = valueEnd + 1;
  }
  if (at !== body.length - 1) throw new ProtocolViolation('StartupMessage has bytes after its terminator');
  return { kind: 'startup', major, minor, params };
}

/** Encodes a StartupMessage for protocol 3.0. */
export function encodeStartupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(params)) {
    parts.push(Buffer.from(name + '\0' + value + '\0', 'utf8'));
  }
  parts.push(Buffer.from([0]));
  const payload = Buffer.concat(parts);
  const out = Buffer.alloc(8 + payload.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(PROTOCOL_3_0, 4);
  payload.copy(out, 8);
  return out;
}

/** Encodes an SSLRequest. */
export function encodeSslRequest(): Buffer {
  const out = Buffer.alloc(8);
  out.writeUInt32BE(8, 0);
  out.writeUInt32BE(SSL_REQUEST_CODE, 4);
  return out;
}

/** Encodes a CancelRequest (protocol 3.0: a 4-byte secret key). */
export function encodeCancelRequest(processId: number, secretKey: Buffer): Buffer {
  const out = Buffer.alloc(12 + secretKey.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeUInt32BE(processId, 8);
  secretKey.copy(out, 12);
  return out;
}
