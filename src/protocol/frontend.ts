/**
 * Messages a client sends, decoded as far as Airlock needs to judge them, and
 * the few Airlock itself sends as a client to the upstream.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { ProtocolViolation } from './message-reader.js';

/** Frontend message type bytes. */
export const FRONTEND = {
  bind: 0x42, // 'B'
  close: 0x43, // 'C'
  copyData: 0x64, // 'd'
  copyDone: 0x63, // 'c'
  copyFail: 0x66, // 'f'
  describe: 0x44, // 'D'
  execute: 0x45, // 'E'
  flush: 0x48, // 'H'
  functionCall: 0x46, // 'F'
  parse: 0x50, // 'P'
  password: 0x70, // 'p': PasswordMessage, SASLInitialResponse and SASLResponse share it
  query: 0x51, // 'Q'
  sync: 0x53, // 'S'
  terminate: 0x58, // 'X'
} as const;

/** A cursor over a message body that refuses to read past its end. */
class BodyReader {
  at = 0;
  constructor(private readonly body: Buffer, private readonly what: string) {}

  cstring(): Buffer {
    const end = this.body.indexOf(0, this.at);
    if (end < 0) throw new ProtocolViolation(`${this.what}: string is not terminated`);
    const s = this.body.subarray(this.at, end);
    this.at = end + 1;
    return s;
  }

  /** A C string decoded as UTF-8, with no intermediate view (the empty name, the most common, costs nothing). */
  text(): string {
    const end = this.body.indexOf(0, this.at);
    if (end < 0) throw new ProtocolViolation(`${this.what}: string is not terminated`);
    const s = end === this.at ? '' : this.body.toString('utf8', this.at, end);
    this.at = end + 1;
    return s;
  }

  /** `n` bytes decoded as UTF-8 (or written as '\x' hex), with no intermediate view. */
  textOf(n: number, hex: boolean): string {
    if (n < 0 || this.at + n > this.body.length) throw new ProtocolViolation(`${this.what}: message too short`);
    const v = hex ? '\\x' + this.body.toString('hex', this.at, this.at + n) : this.body.toString('utf8', this.at, this.at + n);
    this.at += n;
    return v;
  }

  byte(): number {
    if (this.at + 1 > this.body.length) throw new ProtocolViolation(`${this.what}: message too short`);
    return this.body[this.at++]!;
  }

  int16(): number {
    if (this.at + 2 > this.body.length) throw new ProtocolViolation(`${this.what}: message too short`);
    const v = this.body.readInt16BE(this.at);
    this.at += 2;
    return v;
  }

  int32(): number {
    if (this.at + 4 > this.body.length) throw new ProtocolViolation(`${this.what}: message too short`);
    const v = this.body.readInt32BE(this.at);
    this.at += 4;
    return v;
  }

  bytes(n: number): Buffer {
    if (n < 0 || this.at + n > this.body.length) throw new ProtocolViolation(`${this.what}: message too short`);
    const v = this.body.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }

  end(): void {
    if (this.at !== this.body.length) throw new ProtocolViolation(`${this.what}: unexpected bytes at the end of the message`);
  }
}

/**
 * Query: String query. The server reads the text as a C string and then
 * insists the message ends there, so the text is exactly these bytes.
 */
export function parseQuery(body: Buffer): Buffer {
  const r = new BodyReader(body, 'Query');
  const text = r.cstring();
  r.end();
  return text;
}

export interface ParseMessage {
  /** Prepared statement name; '' is the unnamed statement. */
  name: string;
  /** The query text's bytes, as the server will read them. */
  query: Buffer;
  /** Int32 OIDs of the parameter types the client specified (0 = unspecified). */
  paramTypes: number[];
}

/** Parse: String name, String query, Int16 number of parameter types, Int32[] their OIDs. */
export function parseParse(body: Buffer): ParseMessage {
  const r = new BodyReader(body, 'Parse');
  const name = r.text();
  const query = r.cstring();
  const count = r.int16();
  if (count < 0) throw new ProtocolViolation('Parse: negative parameter count');
  const paramTypes: number[] = [];
  for (let i = 0; i < count; i++) paramTypes.push(r.int32());
  r.end();
  return { name, query, paramTypes };
}

export interface BindMessage {
  portal: string;
  statement: string;
  /** Parameter values: text values as strings, binary values as '\x…' hex, NULL as null. */
  params: (string | null)[];
}

/**
 * Bind: String portal, String statement, Int16 + Int16[] parameter format
 * codes, Int16 + (Int32 length + bytes)[] values, Int16 + Int16[] result
 * format codes.
 */
const NO_FORMATS: number[] = [];

export function parseBind(body: Buffer): BindMessage {
  const r = new BodyReader(body, 'Bind');
  const portal = r.text();
  const statement = r.text();
  const formatCount = r.int16();
  const formats: number[] = formatCount === 0 ? NO_FORMATS : [];
  for (let i = 0; i < formatCount; i++) formats.push(r.int16());
  const paramCount = r.int16();
  if (formatCount < 0 || paramCount < 0) throw new ProtocolViolation('Bind: negative count');
  if (formatCount > 1 && formatCount !== paramCount) {
    throw new ProtocolViolation(`Bind: ${formatCount} parameter formats for ${paramCount} parameters`);
  }
  const params: (string | null)[] = [];
  for (let i = 0; i < paramCount; i++) {
    const length = r.int32();
    if (length === -1) {
      params.push(null);
      continue;
    }
    const format = formatCount === 0 ? 0 : formatCount === 1 ? formats[0] : formats[i];
    params.push(r.textOf(length, format === 1));
  }
  const resultCount = r.int16();
  for (let i = 0; i < resultCount; i++) r.int16();
  r.end();
  return { portal, statement, params };
}

/** Execute: String portal, Int32 maximum rows. */
export function parseExecute(body: Buffer): { portal: string; maxRows: number } {
  const r = new BodyReader(body, 'Execute');
  const portal = r.text();
  const maxRows = r.int32();
  r.end();
  return { portal, maxRows };
}

/** Close and Describe: Byte1 'S' (statement) or 'P' (portal), String name. */
export function parseTarget(body: Buffer, what: 'Close' | 'Describe'): { target: 'statement' | 'portal'; name: string } {
  const r = new BodyReader(body, what);
  const kind = r.byte();
  if (kind !== 0x53 && kind !== 0x50) throw new ProtocolViolation(`${what}: unknown target type`);
  const name = r.text();
  r.end();
  return { target: kind === 0x53 ? 'statement' : 'portal', name };
}

function message(type: number, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type;
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

export function encodeQuery(text: string): Buffer {
  return message(FRONTEND.query, Buffer.from(text + '\0', 'utf8'));
}

/** Parse: String name, String query, Int16 number of parameter types, Int32[] their OIDs (0: unspecified). */
export function encodeParse(name: string, text: string, paramTypes: readonly number[] = []): Buffer {
  const types = Buffer.alloc(2 + 4 * paramTypes.length);
  types.writeInt16BE(paramTypes.length, 0);
  paramTypes.forEach((oid, i) => types.writeUInt32BE(oid >>> 0, 2 + 4 * i));
  return message(FRONTEND.parse, Buffer.concat([Buffer.from(name + '\0' + text + '\0', 'utf8'), types]));
}

/** Parse with the query's bytes as given (never re-encoded) and its parameter type OIDs. */
export function encodeParseMessage(parse: ParseMessage): Buffer {
  const types = Buffer.alloc(2 + 4 * parse.paramTypes.length);
  types.writeInt16BE(parse.paramTypes.length, 0);
  parse.paramTypes.forEach((oid, i) => types.writeInt32BE(oid, 2 + 4 * i));
  return message(FRONTEND.parse, Buffer.concat([Buffer.from(parse.name + '\0', 'utf8'), parse.query, Buffer.from([0]), types]));
}

/**
 * The client's Bind with other portal and statement names: the rest of the
 * body (formats, values) is copied as it is.
 */
export function renameBind(body: Buffer, portal: string, statement: string): Buffer {
  const portalEnd = body.indexOf(0);
  const statementEnd = body.indexOf(0, portalEnd + 1);
  if (portalEnd < 0 || statementEnd < 0) throw new ProtocolViolation('Bind: names are not terminated');
  // One buffer, written in place: this runs for every Bind of a named statement (prepared mode's hot path).
  const portalBytes = Buffer.byteLength(portal, 'utf8');
  const statementBytes = Buffer.byteLength(statement, 'utf8');
  const restBytes = body.length - (statementEnd + 1);
  const length = 4 + portalBytes + 1 + statementBytes + 1 + restBytes;
  const out = Buffer.allocUnsafe(1 + length);
  out[0] = FRONTEND.bind;
  out.writeUInt32BE(length, 1);
  let at = 5 + out.write(portal, 5, 'utf8');
  out[at++] = 0;
  at += out.write(statement, at, 'utf8');
  out[at++] = 0;
  body.copy(out, at, statementEnd + 1);
  return out;
}

/**
 * The client's Bind with other portal and statement names, its parameters
 * (formats, values) copied as they are, asking for every result column in
 * text: for a statement of Airlock's own that takes the client's parameters
 * and returns other columns (an EXPLAIN of it).
 */
export function rebindForTextResults(body: Buffer, portal: string, statement: string): Buffer {
  const r = new BodyReader(body, 'Bind');
  r.cstring();
  r.cstring();
  const from = r.at;
  const formatCount = r.int16();
  for (let i = 0; i < formatCount; i++) r.int16();
  const paramCount = r.int16();
  for (let i = 0; i < paramCount; i++) {
    const length = r.int32();
    if (length !== -1) r.bytes(length);
  }
  const params = body.subarray(from, r.at);
  return message(FRONTEND.bind, Buffer.concat([Buffer.from(`${portal}\0${statement}\0`, 'utf8'), params, Buffer.from([0, 0])]));
}

/** Describe: Byte1 'S' (statement) or 'P' (portal), String name. */
export function encodeDescribe(target: 'statement' | 'portal', name: string): Buffer {
  return message(FRONTEND.describe, Buffer.from((target === 'statement' ? 'S' : 'P') + name + '\0', 'utf8'));
}

/** Execute: String portal, Int32 maximum rows (0: all). */
export function encodeExecute(portal: string, maxRows: number): Buffer {
  const name = Buffer.from(portal + '\0', 'utf8');
  const out = Buffer.alloc(name.length + 4);
  name.copy(out, 0);
  out.writeInt32BE(maxRows, name.length);
  return message(FRONTEND.execute, out);
}

/** Close: Byte1 'S' (statement) or 'P' (portal), String name. */
export function encodeClose(target: 'statement' | 'portal', name: string): Buffer {
  return message(FRONTEND.close, Buffer.from((target === 'statement' ? 'S' : 'P') + name + '\0', 'utf8'));
}

export function encodeSync(): Buffer {
  return message(FRONTEND.sync, Buffer.alloc(0));
}

export function encodeTerminate(): Buffer {
  return message(FRONTEND.terminate, Buffer.alloc(0));
}

/** PasswordMessage: the password (cleartext or md5 hash) as a String. */
export function encodePassword(password: string): Buffer {
  return message(FRONTEND.password, Buffer.from(password + '\0', 'utf8'));
}

/** SASLInitialResponse: String mechanism, Int32 length of the initial response, the response. */
export function encodeSaslInitialResponse(mechanism: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeInt32BE(data.length, 0);
  return message(FRONTEND.password, Buffer.concat([Buffer.from(mechanism + '\0', 'utf8'), len, data]));
}

/** SASLResponse: the mechanism's data, as is. */
export function encodeSaslResponse(data: Buffer): Buffer {
  return message(FRONTEND.password, data);
}

/** SASLInitialResponse as a server reads it. */
export function parseSaslInitialResponse(body: Buffer): { mechanism: string; data: Buffer } {
  const r = new BodyReader(body, 'SASLInitialResponse');
  const mechanism = r.cstring().toString('utf8');
  const length = r.int32();
  const data = length === -1 ? Buffer.alloc(0) : r.bytes(length);
  r.end();
  return { mechanism, data };
}
