/**
 * A raw PostgreSQL wire-protocol client for tests that need to send what no
 * well-behaved driver sends (garbage, malformed messages, messages in orders
 * no driver uses, a CancelRequest) and to see every message the server
 * answers, byte for byte. Messages Airlock itself encodes come from
 * `src/protocol`; this module adds only the ones it has no use for, and
 * `frontendMessage` for anything deliberately malformed.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import net from 'node:net';
import { ScramClientExchange } from '../../src/protocol/auth/scram-client.js';
import { AUTH, parseDataRow, parseErrorFields, parseParameterStatus } from '../../src/protocol/backend.js';
import { FRONTEND, encodeQuery, encodeSaslInitialResponse, encodeSaslResponse, encodeTerminate } from '../../src/protocol/frontend.js';
import { MessageReader } from '../../src/protocol/message-reader.js';
import { PROTOCOL_3_0, encodeCancelRequest, encodeStartupMessage } from '../../src/protocol/startup.js';

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

/** Whom to log in as: `TestAirlock.clientConfig()` fits, and so does `WireLogin`. */
export interface WireCredentials {
  user: string;
  password: string;
  database: string;
}

/** Where and as whom to log in: what `TestAirlock.clientConfig()` gives. */
export interface WireLogin extends WireCredentials {
  port: number;
  host?: string;
}

export interface LoginOptions {
  /** More StartupMessage parameters, sent as given; `user` and `database` here replace the credentials'. */
  params?: Record<string, string>;
  /** Ask for protocol 3.`minor` (the server answers a minor above 0 with NegotiateProtocolVersion). */
  minor?: number;
  /** Bytes sent with the SASLResponse, before the server has said the login succeeded. */
  pipelined?: Buffer;
  timeoutMs?: number;
}

/** Backend messages gathered up to some point, and why the gathering stopped short if it did. */
export interface Collected {
  messages: WireMessage[];
  /** The connection was closed when the gathering ended. */
  closed: boolean;
  /** The deadline passed before the gathering was done. */
  timedOut: boolean;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** Far above any backend message these tests provoke; a larger length word is a framing error. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

// ---- frontend messages --------------------------------------------------------

export function cstring(value: string | Buffer): Buffer {
  return Buffer.concat([typeof value === 'string' ? Buffer.from(value, 'utf8') : value, Buffer.from([0])]);
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

/**
 * Any frontend message: Byte1 type (a letter or a `FRONTEND` code), Int32
 * length (counting itself), then the parts as given. For the messages
 * `src/protocol` does not encode, and for malformed ones.
 */
export function frontendMessage(type: string | number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(5 + body.length);
  if (typeof type === 'number') out[0] = type;
  else out.write(type, 0, 'latin1');
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** Parameter or argument values: text (format 0) as a string, binary (format 1) as a Buffer, NULL as null. */
export type WireValue = string | Buffer | null;

/** Int16 number of format codes, Int16[] the codes; Int16 number of values, (Int32 length or -1, bytes)[]. */
function formatsAndValues(list: WireValue[]): Buffer {
  const formats = list.map((v) => (Buffer.isBuffer(v) ? 1 : 0));
  const parts: Buffer[] = [int16(formats.length), ...formats.map(int16), int16(list.length)];
  for (const v of list) {
    if (v === null) {
      parts.push(int32(-1));
      continue;
    }
    const bytes = Buffer.isBuffer(v) ? v : Buffer.from(v, 'utf8');
    parts.push(int32(bytes.length), bytes);
  }
  return Buffer.concat(parts);
}

/** Bind: String portal, String statement, parameter formats and values, Int16 + Int16[] result formats (none: all text). */
export function encodeBind(portal: string, statement: string, params: WireValue[] = [], resultFormats: number[] = []): Buffer {
  return frontendMessage(FRONTEND.bind, cstring(portal), cstring(statement), formatsAndValues(params), int16(resultFormats.length), ...resultFormats.map(int16));
}

/** Execute: String portal, Int32 maximum rows (0: all). */
export function encodeExecute(portal = '', maxRows = 0): Buffer {
  return frontendMessage(FRONTEND.execute, cstring(portal), int32(maxRows));
}

/** Describe: Byte1 'S' (statement) or 'P' (portal), String name. */
export function encodeDescribe(target: 'S' | 'P', name = ''): Buffer {
  return frontendMessage(FRONTEND.describe, Buffer.from(target, 'latin1'), cstring(name));
}

/** Close: Byte1 'S' (statement) or 'P' (portal), String name. */
export function encodeClose(target: 'S' | 'P', name = ''): Buffer {
  return frontendMessage(FRONTEND.close, Buffer.from(target, 'latin1'), cstring(name));
}

export function encodeFlush(): Buffer {
  return frontendMessage(FRONTEND.flush);
}

/**
 * FunctionCall: Int32 function OID, argument formats and values, Int16 result format (text).
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-FUNCTION-CALL
 */
export function encodeFunctionCall(oid: number, args: WireValue[] = []): Buffer {
  return frontendMessage(FRONTEND.functionCall, int32(oid), formatsAndValues(args), int16(0));
}

// ---- backend messages ---------------------------------------------------------

/** The ErrorResponse messages among `messages`, as field maps ('C' is the SQLSTATE). */
export function errorsIn(messages: WireMessage[]): Map<string, string>[] {
  return messages.filter((m) => m.type === 'E').map((m) => parseErrorFields(m.body));
}

/** A short description for failure messages: the types in order, errors with their SQLSTATE and message. */
export function describeMessages(messages: WireMessage[]): string {
  if (messages.length === 0) return 'no messages';
  return messages
    .map((m) => {
      if (m.type !== 'E') return m.type;
      const fields = parseErrorFields(m.body);
      return `E(${fields.get('C') ?? '?'} ${fields.get('M') ?? ''})`;
    })
    .join(' ');
}

// ---- the client ---------------------------------------------------------------

/** Sends a CancelRequest on a connection of its own, as the protocol asks, and waits for the server to close it. */
export async function sendCancel(port: number, processId: number, secretKey: Buffer, host = '127.0.0.1'): Promise<void> {
  const socket = net.connect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => socket.write(encodeCancelRequest(processId, secretKey)));
    socket.once('close', () => resolve());
  });
}

/** A StartupMessage for protocol 3.`minor`: `src/protocol` encodes 3.0, the only version Airlock speaks. */
function startupMessage(params: Record<string, string>, minor: number): Buffer {
  const packet = encodeStartupMessage(params);
  // Int32 length, then Int32 protocol version: major in the high 16 bits, minor in the low.
  packet.writeUInt32BE(PROTOCOL_3_0 + minor, 4);
  return packet;
}

/**
 * A socket that collects everything the server sends and hands it out as
 * whole messages (or, for the answer to an SSLRequest, one byte).
 */
export class WireClient {
  private readonly reader = new MessageReader(MAX_MESSAGE_BYTES);
  private readonly received: WireMessage[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;
  /** Why the connection failed, when it did not simply close. */
  error: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      try {
        this.received.push(...this.frame(chunk));
      } catch (error) {
        // A length word no server sends: keep why, and let the tests see the connection end here.
        this.error = error instanceof Error ? error : new Error(String(error));
        socket.destroy();
      }
      this.wake();
    });
    // A reset by the peer ends the connection like a close; tests judge by what arrived before it.
    socket.on('error', (error) => {
      this.error = error;
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

  /** True once the connection closed: the server ended it, it failed, or this side destroyed it. */
  get closed(): boolean {
    return this.ended;
  }

  /** Writes the messages as one chunk, as a pipelining client would. */
  send(...messages: Buffer[]): void {
    this.socket.write(Buffer.concat(messages));
  }

  /** Sends Terminate, as a polite client does, and closes the socket. */
  close(): void {
    if (!this.ended) this.socket.end(encodeTerminate());
    this.destroy();
  }

  /** Drops the connection without a word, as a client that vanishes does. */
  destroy(): void {
    this.socket.destroy();
  }

  private frame(chunk: Buffer): WireMessage[] {
    return this.reader.push(chunk).map((m) => {
      const raw = Buffer.from(m.raw);
      return { type: String.fromCharCode(m.type), body: raw.subarray(5), raw };
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Resolves true when something arrived or the connection ended, false at the deadline. */
  private async wait(deadline: number): Promise<boolean> {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve(false);
      }, left);
      this.waiter = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  /** The next whole message; 'ended' when the connection closed first, 'timeout' at the deadline. */
  private async take(deadline: number): Promise<WireMessage | 'ended' | 'timeout'> {
    for (;;) {
      const m = this.received.shift();
      if (m !== undefined) return m;
      if (this.ended) return 'ended';
      if (!(await this.wait(deadline))) return 'timeout';
    }
  }

  /** Messages until `done` holds for one (included), the connection ends, or the deadline passes. */
  private async gather(done: (m: WireMessage) => boolean, timeoutMs: number): Promise<Collected> {
    const deadline = Date.now() + timeoutMs;
    const messages: WireMessage[] = [];
    for (;;) {
      const m = await this.take(deadline);
      if (m === 'ended' || m === 'timeout') return { messages, closed: this.ended, timedOut: m === 'timeout' };
      messages.push(m);
      if (done(m)) return { messages, closed: this.ended, timedOut: false };
    }
  }

  /**
   * The next single byte: the server's answer to an SSLRequest, which is not
   * a framed message. Null when the connection ended first.
   */
  async readByte(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.reader.buffered === 0 && this.received.length === 0) {
      if (this.ended) return null;
      if (!(await this.wait(deadline))) throw new Error(`No byte arrived within ${timeoutMs} ms.`);
    }
    if (this.received.length > 0) {
      throw new Error(`A whole message arrived where one byte was expected: ${describeMessages(this.received)}.`);
    }
    // One byte alone is too short to be framed, so the reader still holds it: take it, and frame what followed.
    const bytes = this.reader.takeBuffered();
    this.received.push(...this.frame(bytes.subarray(1)));
    return String.fromCharCode(bytes[0]!);
  }

  /**
   * Collects messages until `readyCount` ReadyForQuery messages have arrived,
   * the connection ends (`closed`) or the timeout passes (`timedOut`).
   */
  async collect(readyCount = 1, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Collected> {
    let ready = 0;
    return this.gather((m) => m.type === 'Z' && ++ready >= readyCount, timeoutMs);
  }

  /** Sends the messages as one chunk and collects the answer up to `readyCount` ReadyForQuery messages. */
  async exchange(messages: Buffer[], readyCount = 1, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Collected> {
    this.send(...messages);
    return this.collect(readyCount, timeoutMs);
  }

  /** Messages up to and including the first one of `type`; throws if the connection ends or the time runs out first. */
  async until(type: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    const r = await this.gather((m) => m.type === type, timeoutMs);
    if (r.timedOut) throw new Error(`No '${type}' message arrived within ${timeoutMs} ms; got ${describeMessages(r.messages)}.`);
    if (r.messages.at(-1)?.type !== type) {
      throw new Error(`The connection ended before a '${type}' message; got ${describeMessages(r.messages)}.`);
    }
    return r.messages;
  }

  /** Every message until the server closes the connection; throws if it is still open at the timeout. */
  async rest(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    const r = await this.gather(() => false, timeoutMs);
    if (r.timedOut) {
      throw new Error(`The connection was still open after ${timeoutMs} ms (${this.reader.buffered} bytes of a message buffered); got ${describeMessages(r.messages)}.`);
    }
    return r.messages;
  }

  /** Sends a simple Query and returns its messages through ReadyForQuery. */
  async query(sql: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    this.send(encodeQuery(sql));
    return this.until('Z', timeoutMs);
  }

  /** Runs a simple Query and returns its rows as text (NULL as null); throws the server's error. */
  async queryRows(sql: string): Promise<(string | null)[][]> {
    const messages = await this.query(sql);
    const [error] = errorsIn(messages);
    if (error !== undefined) throw new Error(`${error.get('C') ?? '?'}: ${error.get('M') ?? 'the query failed'}`);
    return messages.filter((m) => m.type === 'D').map((m) => parseDataRow(m.body));
  }

  /**
   * Sends a StartupMessage and logs in with SCRAM-SHA-256, as any agent does.
   * Resolves at the first ReadyForQuery; throws a LoginError when the login
   * gets no further.
   */
  async login(credentials: WireCredentials, options: LoginOptions = {}): Promise<WireSession> {
    const params = { user: credentials.user, database: credentials.database, ...options.params };
    this.send(startupMessage(params, options.minor ?? 0));
    const scram = new ScramClientExchange(params.user, credentials.password);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const messages: WireMessage[] = [];
    const parameters = new Map<string, string>();
    let processId = -1;
    let secretKey = Buffer.alloc(0);
    for (;;) {
      const m = await this.take(deadline);
      if (m === 'ended') throw new LoginError(`The server closed the connection during login; got ${describeMessages(messages)}.`);
      if (m === 'timeout') throw new LoginError(`The login got no further within ${timeoutMs} ms; got ${describeMessages(messages)}.`);
      messages.push(m);
      switch (m.type) {
        case 'E': {
          const fields = parseErrorFields(m.body);
          throw new LoginError(`${fields.get('S') ?? '?'} ${fields.get('C') ?? '?'}: ${fields.get('M') ?? '(no message)'}`, fields, m.raw);
        }
        case 'R': {
          const code = m.body.readInt32BE(0);
          const data = m.body.subarray(4);
          if (code === AUTH.sasl) {
            const mechanisms = data.toString('utf8').split('\0').filter((s) => s !== '');
            const step = scram.start(mechanisms);
            if (!step.ok) throw new LoginError(step.error);
            this.send(encodeSaslInitialResponse(step.mechanism, step.clientFirst));
          } else if (code === AUTH.saslContinue) {
            const step = scram.continue(data);
            if (!step.ok) throw new LoginError(step.error);
            // A pipelining client sends its first queries with its last login message.
            this.send(encodeSaslResponse(step.clientFinal), options.pipelined ?? Buffer.alloc(0));
          } else if (code === AUTH.saslFinal) {
            const step = scram.finish(data);
            if (!step.ok) throw new LoginError(step.error);
          } else if (code !== AUTH.ok) {
            throw new LoginError(`The test client speaks only SCRAM-SHA-256, not authentication request ${code}.`);
          }
          break;
        }
        case 'S': {
          const { name, value } = parseParameterStatus(m.body);
          parameters.set(name, value);
          break;
        }
        case 'K':
          // BackendKeyData: Int32 process ID, then the secret key (the rest of the message).
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

/**
 * A login that did not reach ReadyForQuery. `fields` and `raw` are the
 * server's ErrorResponse (fields and exact bytes) when it sent one; null
 * when it closed the connection, went quiet, or the SCRAM exchange failed.
 */
export class LoginError extends Error {
  constructor(
    message: string,
    readonly fields: Map<string, string> | null = null,
    readonly raw: Buffer | null = null,
  ) {
    super(message);
    this.name = 'LoginError';
  }
}

/** Connects and logs in; the caller closes or destroys the client. */
export async function loginClient(login: WireLogin, options: LoginOptions = {}): Promise<{ client: WireClient; session: WireSession }> {
  const client = await WireClient.connect(login.port, login.host);
  try {
    return { client, session: await client.login(login, options) };
  } catch (error) {
    client.destroy();
    throw error;
  }
}
