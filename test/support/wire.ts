/**
 * A raw PostgreSQL wire-protocol client for tests that need to send what no
 * well-behaved driver sends (garbage, malformed messages, a CancelRequest)
 * and to see every message the server answers, byte for byte.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import net from 'node:net';
import { ScramClientExchange } from '../../src/protocol/auth/scram-client.js';

/** One backend message: its type as a character, its body, and its whole bytes. */
export interface WireMessage {
  type: string;
  body: Buffer;
  raw: Buffer;
}

/** What `login` learned: the cancel key and the server's parameters. */
export interface WireSession {
  processId: number;
  secretKey: Buffer;
  parameters: Map<string, string>;
  /** Every message up to and including the first ReadyForQuery. */
  messages: WireMessage[];
}

/** Int32 196608: protocol 3.0. */
const PROTOCOL_3_0 = 3 << 16;
/** Int32 80877102: the CancelRequest code. */
const CANCEL_REQUEST_CODE = 80877102;
/** Int32 80877103: the SSLRequest code. */
const SSL_REQUEST_CODE = 80877103;
const DEFAULT_TIMEOUT_MS = 10_000;

/** A frontend message: Byte1 type, Int32 length (counting itself), body. */
export function frontendMessage(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, 'latin1');
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

export function cstring(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

export function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n, 0);
  return b;
}

export function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}

/** A simple-protocol Query. */
export function queryMessage(sql: string): Buffer {
  return frontendMessage('Q', cstring(sql));
}

/** A StartupMessage for protocol 3.`minor` with the given parameters. */
export function startupMessage(params: Record<string, string>, minor = 0): Buffer {
  const pairs = Object.entries(params).map(([k, v]) => Buffer.concat([cstring(k), cstring(v)]));
  const body = Buffer.concat([int32(PROTOCOL_3_0 + minor), ...pairs, Buffer.from([0])]);
  return Buffer.concat([int32(4 + body.length), body]);
}

export function sslRequest(): Buffer {
  return Buffer.concat([int32(8), int32(SSL_REQUEST_CODE)]);
}

export function cancelRequest(processId: number, secretKey: Buffer): Buffer {
  const body = Buffer.concat([int32(CANCEL_REQUEST_CODE), int32(processId), secretKey]);
  return Buffer.concat([int32(4 + body.length), body]);
}

/** The fields of an ErrorResponse or NoticeResponse body, by their one-letter codes ('C' is the SQLSTATE). */
export function errorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    if (end < 0) break;
    fields.set(String.fromCharCode(body[at]!), body.toString('utf8', at + 1, end));
    at = end + 1;
  }
  return fields;
}

/** Sends a CancelRequest on a connection of its own, as the protocol asks, and waits for the server to close it. */
export async function sendCancel(port: number, processId: number, secretKey: Buffer, host = '127.0.0.1'): Promise<void> {
  const socket = net.connect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => socket.write(cancelRequest(processId, secretKey)));
    socket.once('close', () => resolve());
  });
}

/**
 * A socket that collects everything the server sends and hands it out as
 * single bytes (the answer to an SSLRequest) or as whole messages.
 */
export class WireClient {
  private buffered = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  /** True once the server closed the connection (or it failed). */
  ended = false;
  /** The socket error, if the connection failed rather than closed. */
  error: Error | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.wake();
    });
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.setNoDelay(true);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new WireClient(socket));
      });
    });
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Waits until `ready()` holds or the connection ends; false on a timeout. */
  private async waitFor(ready: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      if (this.ended) return ready();
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return true;
  }

  /** The next single byte (the server's answer to an SSLRequest); null when the connection ended first. */
  async readByte(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string | null> {
    if (!(await this.waitFor(() => this.buffered.length >= 1, timeoutMs))) {
      if (this.ended) return null;
      throw new Error(`No byte arrived within ${timeoutMs} ms.`);
    }
    const b = String.fromCharCode(this.buffered[0]!);
    this.buffered = this.buffered.subarray(1);
    return b;
  }

  /** The next whole backend message; null when the connection ended first. Throws on a timeout. */
  async next(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage | null> {
    const whole = (): boolean => this.buffered.length >= 5 && this.buffered.length >= 1 + this.buffered.readUInt32BE(1);
    if (!(await this.waitFor(whole, timeoutMs))) {
      if (this.ended) return null;
      throw new Error(`No whole message arrived within ${timeoutMs} ms (${this.buffered.length} bytes buffered).`);
    }
    const end = 1 + this.buffered.readUInt32BE(1);
    const raw = Buffer.from(this.buffered.subarray(0, end));
    this.buffered = this.buffered.subarray(end);
    return { type: String.fromCharCode(raw[0]!), body: raw.subarray(5), raw };
  }

  /** Messages up to and including the first one of `type`; throws if the connection ends before it. */
  async until(type: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    const out: WireMessage[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (m === null) {
        throw new Error(`The connection ended before a '${type}' message; got ${describeMessages(out)}.`);
      }
      out.push(m);
      if (m.type === type) return out;
    }
  }

  /** Every message until the server closes the connection. */
  async rest(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    const out: WireMessage[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (m === null) return out;
      out.push(m);
    }
  }

  /** Sends a Query and returns its messages through ReadyForQuery. */
  async query(sql: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    this.write(queryMessage(sql));
    return this.until('Z', timeoutMs);
  }

  /**
   * Sends a StartupMessage and logs in with SCRAM-SHA-256, as any agent does.
   * Resolves at the first ReadyForQuery; throws with the server's error when
   * the login is refused. `pipelined` bytes go out with the SASLResponse,
   * before the server has said the login succeeded.
   */
  async login(
    params: { user: string; password: string; database: string } & Record<string, string>,
    options: { minor?: number; pipelined?: Buffer } = {},
  ): Promise<WireSession> {
    const { password, ...startup } = params;
    this.write(startupMessage(startup, options.minor ?? 0));
    const scram = new ScramClientExchange(params.user, password);
    const messages: WireMessage[] = [];
    const parameters = new Map<string, string>();
    let processId = -1;
    let secretKey = Buffer.alloc(0);
    for (;;) {
      const m = await this.next();
      if (m === null) throw new Error(`The server closed the connection during login; got ${describeMessages(messages)}.`);
      messages.push(m);
      switch (m.type) {
        case 'E':
          throw new WireError(errorFields(m.body), m.raw);
        case 'R': {
          const code = m.body.readInt32BE(0);
          if (code === 10) {
            const mechanisms = m.body.subarray(4).toString('utf8').split('\0').filter((s) => s !== '');
            const step = scram.start(mechanisms);
            if (!step.ok) throw new Error(step.error);
            const mech = cstring(step.mechanism);
            this.write(frontendMessage('p', Buffer.concat([mech, int32(step.clientFirst.length), step.clientFirst])));
          } else if (code === 11) {
            const step = scram.continue(m.body.subarray(4));
            if (!step.ok) throw new Error(step.error);
            // A pipelining client sends its first queries with its last login message.
            this.write(Buffer.concat([frontendMessage('p', step.clientFinal), options.pipelined ?? Buffer.alloc(0)]));
          } else if (code === 12) {
            const step = scram.finish(m.body.subarray(4));
            if (!step.ok) throw new Error(step.error);
          } else if (code !== 0) {
            throw new Error(`Unexpected authentication request ${code}.`);
          }
          break;
        }
        case 'S': {
          const [name = '', value = ''] = m.body.toString('utf8').split('\0');
          parameters.set(name, value);
          break;
        }
        case 'K':
          processId = m.body.readInt32BE(0);
          secretKey = Buffer.from(m.body.subarray(4));
          break;
        case 'Z':
          return { processId, secretKey, parameters, messages };
        default:
          break;
      }
    }
  }
}

/** A login the server refused: its ErrorResponse fields and exact bytes. */
export class WireError extends Error {
  constructor(
    readonly fields: Map<string, string>,
    readonly raw: Buffer,
  ) {
    super(`${fields.get('S') ?? '?'} ${fields.get('C') ?? '?'}: ${fields.get('M') ?? '(no message)'}`);
    this.name = 'WireError';
  }
}

/** Connects and logs in; the caller destroys the client. */
export async function loginClient(
  port: number,
  params: { user: string; password: string; database: string } & Record<string, string>,
): Promise<{ client: WireClient; session: WireSession }> {
  const client = await WireClient.connect(port);
  try {
    return { client, session: await client.login(params) };
  } catch (error) {
    client.destroy();
    throw error;
  }
}

/** The first ErrorResponse among `messages`, as fields; undefined when there is none. */
export function firstError(messages: WireMessage[]): Map<string, string> | undefined {
  const e = messages.find((m) => m.type === 'E');
  return e === undefined ? undefined : errorFields(e.body);
}

/** A short description for failure messages: the types in order, errors with their SQLSTATE. */
export function describeMessages(messages: WireMessage[]): string {
  if (messages.length === 0) return 'no messages';
  return messages
    .map((m) => (m.type === 'E' ? `E(${errorFields(m.body).get('C') ?? '?'} ${errorFields(m.body).get('M') ?? ''})` : m.type))
    .join(' ');
}
