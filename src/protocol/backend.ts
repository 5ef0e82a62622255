/**
 * Messages a server sends: the ones Airlock writes itself, and the fields it
 * reads from the upstream's.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** Backend message type bytes Airlock looks at. */
export const BACKEND = {
  authentication: 0x52, // 'R'
  backendKeyData: 0x4b, // 'K'
  bindComplete: 0x32, // '2'
  closeComplete: 0x33, // '3'
  commandComplete: 0x43, // 'C'
  copyInResponse: 0x47, // 'G'
  copyOutResponse: 0x48, // 'H'
  copyBothResponse: 0x57, // 'W'
  dataRow: 0x44, // 'D'
  emptyQueryResponse: 0x49, // 'I'
  errorResponse: 0x45, // 'E'
  negotiateProtocolVersion: 0x76, // 'v'
  noData: 0x6e, // 'n'
  noticeResponse: 0x4e, // 'N'
  notificationResponse: 0x41, // 'A'
  parameterDescription: 0x74, // 't'
  parameterStatus: 0x53, // 'S'
  parseComplete: 0x31, // '1'
  portalSuspended: 0x73, // 's'
  readyForQuery: 0x5a, // 'Z'
  rowDescription: 0x54, // 'T'
} as const;

/** Authentication request codes (the Int32 after 'R'). */
export const AUTH = {
  ok: 0,
  cleartextPassword: 3,
  md5Password: 5,
  sasl: 10,
  saslContinue: 11,
  saslFinal: 12,
} as const;

function message(type: number, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type;
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}

function cstring(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

export function authenticationOk(): Buffer {
  return message(BACKEND.authentication, int32(AUTH.ok));
}

/** AuthenticationSASL: the mechanisms offered, each a String, then a zero byte. */
export function authenticationSasl(mechanisms: string[]): Buffer {
  return message(BACKEND.authentication, Buffer.concat([int32(AUTH.sasl), ...mechanisms.map(cstring), Buffer.from([0])]));
}

export function authenticationSaslContinue(data: Buffer): Buffer {
  return message(BACKEND.authentication, Buffer.concat([int32(AUTH.saslContinue), data]));
}

export function authenticationSaslFinal(data: Buffer): Buffer {
  return message(BACKEND.authentication, Buffer.concat([int32(AUTH.saslFinal), data]));
}

export function parameterStatus(name: string, value: string): Buffer {
  return message(BACKEND.parameterStatus, Buffer.concat([cstring(name), cstring(value)]));
}

export function backendKeyData(processId: number, secretKey: Buffer): Buffer {
  return message(BACKEND.backendKeyData, Buffer.concat([int32(processId), secretKey]));
}

/** Transaction status in ReadyForQuery: idle, in a transaction block, in a failed transaction block. */
export const TRANSACTION_STATUSES = ['I', 'T', 'E'] as const;
export type TransactionStatus = (typeof TRANSACTION_STATUSES)[number];

export function readyForQuery(status: TransactionStatus): Buffer {
  return message(BACKEND.readyForQuery, Buffer.from(status, 'latin1'));
}

/** NegotiateProtocolVersion: the newest minor version we support and the protocol options we did not recognise. */
export function negotiateProtocolVersion(newestMinor: number, unrecognised: string[]): Buffer {
  return message(
    BACKEND.negotiateProtocolVersion,
    Buffer.concat([int32(newestMinor), int32(unrecognised.length), ...unrecognised.map(cstring)]),
  );
}

/**
 * The fields of an ErrorResponse or NoticeResponse, by their one-letter codes.
 * https://www.postgresql.org/docs/current/protocol-error-fields.html
 */
export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'WARNING' | 'NOTICE';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: number;
}

function noticeBody(fields: ErrorFields): Buffer {
  const parts = [`S${fields.severity}`, `V${fields.severity}`, `C${fields.code}`, `M${fields.message}`];
  if (fields.detail !== undefined) parts.push(`D${fields.detail}`);
  if (fields.hint !== undefined) parts.push(`H${fields.hint}`);
  if (fields.position !== undefined) parts.push(`P${fields.position}`);
  return Buffer.from(parts.join('\0') + '\0\0', 'utf8');
}

export function errorResponse(fields: ErrorFields): Buffer {
  return message(BACKEND.errorResponse, noticeBody(fields));
}

export function noticeResponse(fields: ErrorFields): Buffer {
  return message(BACKEND.noticeResponse, noticeBody(fields));
}

/** Reads the fields of an ErrorResponse or NoticeResponse body into a map keyed by field code. */
export function parseErrorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const code = String.fromCharCode(body[at]!);
    const end = body.indexOf(0, at + 1);
    if (end < 0) break;
    fields.set(code, body.toString('utf8', at + 1, end));
    at = end + 1;
  }
  return fields;
}

/** Reads a ParameterStatus body: String name, String value. */
export function parseParameterStatus(body: Buffer): { name: string; value: string } {
  const nameEnd = body.indexOf(0);
  const valueEnd = body.indexOf(0, nameEnd + 1);
  return { name: body.toString('utf8', 0, nameEnd), value: body.toString('utf8', nameEnd + 1, valueEnd < 0 ? body.length : valueEnd) };
}

/**
 * The row count in a CommandComplete tag ('SELECT 5', 'INSERT 0 1', 'UPDATE 3'),
 * or null for tags without one ('BEGIN', 'SET').
 */
export function commandTagRows(body: Buffer): number | null {
  // The tag is a String; its last word is the row count when there is one.
  let end = body.length;
  if (end > 0 && body[end - 1] === 0) end--;
  let start = end;
  while (start > 0 && body[start - 1]! >= 0x30 && body[start - 1]! <= 0x39) start--;
  if (start === end || start === 0 || body[start - 1] !== 0x20) return null;
  return Number(body.toString('latin1', start, end));
}

/** DataRow: Int16 column count, then per column Int32 length (-1 for NULL) and that many bytes; as text. */
export function parseDataRow(body: Buffer): (string | null)[] {
  const count = body.readInt16BE(0);
  const out: (string | null)[] = [];
  let at = 2;
  for (let i = 0; i < count; i++) {
    const length = body.readInt32BE(at);
    at += 4;
    if (length < 0) {
      out.push(null);
      continue;
    }
    out.push(body.toString('utf8', at, at + length));
    at += length;
  }
  return out;
}
