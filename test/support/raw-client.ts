/**
 * A minimal raw PostgreSQL client for adversarial tests: it logs in with
 * SCRAM-SHA-256 and whatever start-up parameters it is given, then sends any
 * bytes (messages no driver would send, in orders no driver would use) and
 * collects every backend message up to the ReadyForQuery that answers them.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import net from 'node:net';
import { ScramClientExchange } from '../../src/protocol/auth/scram-client.js';
import { AUTH, BACKEND, parseErrorFields } from '../../src/protocol/backend.js';
import {
  FRONTEND,
  encodeSaslInitialResponse,
  encodeSaslResponse,
  encodeSync,
  encodeTerminate,
} from '../../src/protocol/frontend.js';
import { MessageReader } from '../../src/protocol/message-reader.js';
import { encodeStartupMessage } from '../../src/protocol/startup.js';

export interface RawConnectOptions {
  host: string;
  port: number;
  /** The StartupMessage's parameters, sent exactly as given (`user` included). */
  params: Record<string, string>;
  password: string;
  timeoutMs?: number;
}

/** One backend message: its type as a character and its body. */
export interface BackendMessage {
  type: string;
  body: Buffer;
}

/** The server refused the start-up or the login: its ErrorResponse fields, or why there were none. */
export class RawLoginError extends Error {
  constructor(
    message: string,
    readonly fields: Map<string, string> | null,
  ) {
    super(message);
    this.name = 'RawLoginError';
  }
}

const DEFAULT_TIMEOUT_MS = 5_000;

export class RawClient {
  private readonly reader = new MessageReader(64 * 1024 * 1024);
  private readonly received: BackendMessage[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.on('data', (chunk: Buffer) => {
      for (const m of this.reader.push(chunk)) {
        this.received.push({ type: String.fromCharCode(m.type), body: Buffer.from(m.body) });
      }
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    // A reset by the peer shows as `closed`; the tests judge by what arrived before it.
    socket.on('error', () => {
      this.ended = true;
      this.wake();
    });
  }

  /** Connects, sends the StartupMessage, does the SCRAM exchange and waits for ReadyForQuery. */
  static async connect(options: RawConnectOptions): Promise<RawClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: options.host, port: options.port });
      s.once('connect', () => {
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', reject);
    });
    socket.setNoDelay(true);
    const client = new RawClient(socket, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    try {
      await client.login(options);
    } catch (error) {
      client.destroy();
      throw error;
    }
    return client;
  }

  private async login(options: RawConnectOptions): Promise<void> {
    this.socket.write(encodeStartupMessage(options.params));
    const scram = new ScramClientExchange(options.params['user'] ?? '', options.password);
    for (;;) {
      const m = await this.next();
      if (m.type === 'E') {
        const fields = parseErrorFields(m.body);
        throw new RawLoginError(fields.get('M') ?? 'the server refused the login', fields);
      }
      if (m.type === 'Z') return;
      if (m.type !== String.fromCharCode(BACKEND.authentication)) continue;
      const code = m.body.readInt32BE(0);
      const data = m.body.subarray(4);
      if (code === AUTH.ok) continue;
      if (code === AUTH.sasl) {
        const mechanisms = data.toString('utf8').split('\0').filter((s) => s !== '');
        const step = scram.start(mechanisms);
        if (!step.ok) throw new RawLoginError(step.error, null);
        this.socket.write(encodeSaslInitialResponse(step.mechanism, step.clientFirst));
      } else if (code === AUTH.saslContinue) {
        const step = scram.continue(data);
        if (!step.ok) throw new RawLoginError(step.error, null);
        this.socket.write(encodeSaslResponse(step.clientFinal));
      } else if (code === AUTH.saslFinal) {
        const step = scram.finish(data);
        if (!step.ok) throw new RawLoginError(step.error, null);
      } else {
        throw new RawLoginError(`The raw test client supports only SCRAM-SHA-256, not authentication request ${code}.`, null);
      }
    }
  }

  /** The next message, waiting for it. */
  private async next(): Promise<BackendMessage> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const m = this.received.shift();
      if (m !== undefined) return m;
      if (this.ended) throw new RawLoginError('The server closed the connection.', null);
      if (!(await this.wait(deadline))) throw new RawLoginError(`No answer within ${this.timeoutMs} ms.`, null);
    }
  }

  /** Resolves true when something arrived or the socket ended, false at the deadline. */
  private wait(deadline: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve(false);
      }, Math.max(0, deadline - Date.now()));
      this.waiter = () => {
        clearTimeout(timer);
        this.waiter = null;
        resolve(true);
      };
    });
  }

  private wake(): void {
    this.waiter?.();
  }

  /** True once the server closed the connection. */
  get closed(): boolean {
    return this.ended;
  }

  /** Writes the messages as one chunk, as a pipelining client would. */
  send(...messages: Buffer[]): void {
    this.socket.write(Buffer.concat(messages));
  }

  /**
   * Collects backend messages until `readyCount` ReadyForQuery messages have
   * arrived, the connection ends, or the timeout passes (then `timedOut`).
   */
  async collect(readyCount = 1): Promise<{ messages: BackendMessage[]; timedOut: boolean; closed: boolean }> {
    const deadline = Date.now() + this.timeoutMs;
    const messages: BackendMessage[] = [];
    let ready = 0;
    for (;;) {
      const m = this.received.shift();
      if (m !== undefined) {
        messages.push(m);
        if (m.type === 'Z' && ++ready >= readyCount) return { messages, timedOut: false, closed: this.ended };
        continue;
      }
      if (this.ended) return { messages, timedOut: false, closed: true };
      if (!(await this.wait(deadline))) return { messages, timedOut: true, closed: this.ended };
    }
  }

  /** Sends the messages and collects the answer up to `readyCount` ReadyForQuery messages. */
  async exchange(messages: Buffer[], readyCount = 1): Promise<{ messages: BackendMessage[]; timedOut: boolean; closed: boolean }> {
    this.send(...messages);
    return this.collect(readyCount);
  }

  /** Runs one simple query and returns its rows as text (NULL as null); throws the server's error. */
  async simpleQuery(sql: string): Promise<(string | null)[][]> {
    const { messages } = await this.exchange([rawQuery(sql)]);
    const error = messages.find((m) => m.type === 'E');
    if (error !== undefined) throw new Error(parseErrorFields(error.body).get('M') ?? 'query failed');
    return messages.filter((m) => m.type === 'D').map((m) => dataRowValues(m.body));
  }

  /** Sends Terminate and closes the socket. */
  close(): void {
    if (!this.ended) this.socket.end(encodeTerminate());
    this.destroy();
  }

  private destroy(): void {
    this.ended = true;
    this.socket.destroy();
  }
}

/** The ErrorResponse messages among `messages`, as field maps. */
export function errorsIn(messages: BackendMessage[]): Map<string, string>[] {
  return messages.filter((m) => m.type === 'E').map((m) => parseErrorFields(m.body));
}

/** DataRow: Int16 column count, then per column Int32 length (-1 for NULL) and the bytes. */
export function dataRowValues(body: Buffer): (string | null)[] {
  const count = body.readInt16BE(0);
  const values: (string | null)[] = [];
  let at = 2;
  for (let i = 0; i < count; i++) {
    const length = body.readInt32BE(at);
    at += 4;
    if (length < 0) {
      values.push(null);
      continue;
    }
    values.push(body.toString('utf8', at, at + length));
    at += length;
  }
  return values;
}

// ---- frontend message encoders ---------------------------------------------

function message(type: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(5 + body.length);
  out[0] = type;
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstring(value: string | Buffer): Buffer {
  return Buffer.concat([typeof value === 'string' ? Buffer.from(value, 'utf8') : value, Buffer.from([0])]);
}

function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n, 0);
  return b;
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}

/** Parameter or argument values: text (format 0) as a string, binary (format 1) as a Buffer, NULL as null. */
export type RawValue = string | Buffer | null;

function values(list: RawValue[]): Buffer {
  // Int16 number of format codes, Int16[] codes; Int16 number of values, (Int32 length, bytes)[].
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

/** Query: the text as a C string. A Buffer is sent byte for byte (a NUL inside it, invalid UTF-8). */
export function rawQuery(text: string | Buffer): Buffer {
  return message(FRONTEND.query, cstring(text));
}

/** Parse: String name, String query, Int16 number of parameter types, Int32[] their OIDs. */
export function rawParse(name: string, text: string | Buffer, paramTypes: number[] = []): Buffer {
  return message(FRONTEND.parse, cstring(name), cstring(text), int16(paramTypes.length), ...paramTypes.map(int32));
}

/** Bind: String portal, String statement, parameter formats and values, Int16 0 (all results as text). */
export function rawBind(portal: string, statement: string, params: RawValue[] = []): Buffer {
  return message(FRONTEND.bind, cstring(portal), cstring(statement), values(params), int16(0));
}

/** Execute: String portal, Int32 maximum rows (0: all). */
export function rawExecute(portal = '', maxRows = 0): Buffer {
  return message(FRONTEND.execute, cstring(portal), int32(maxRows));
}

/** Describe: Byte1 'S' (statement) or 'P' (portal), String name. */
export function rawDescribe(target: 'S' | 'P', name = ''): Buffer {
  return message(FRONTEND.describe, Buffer.from(target, 'latin1'), cstring(name));
}

/** Close: Byte1 'S' (statement) or 'P' (portal), String name. */
export function rawClose(target: 'S' | 'P', name = ''): Buffer {
  return message(FRONTEND.close, Buffer.from(target, 'latin1'), cstring(name));
}

/**
 * FunctionCall: Int32 function OID, argument formats and values, Int16 result format.
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-FUNCTION-CALL
 */
export function rawFunctionCall(oid: number, args: RawValue[] = []): Buffer {
  return message(FRONTEND.functionCall, int32(oid), values(args), int16(0));
}

export function rawFlush(): Buffer {
  return message(FRONTEND.flush);
}

export function rawSync(): Buffer {
  return encodeSync();
}
