/**
 * One agent session's connection to the upstream as Airlock's service
 * account, in read-write mode: the only place an agent's allowed writes run.
 * Unlike the read path it is not a stream relay: Airlock sends a round of
 * messages and reads the answers back as whole messages, up to a given number
 * of ReadyForQuery, so it can look at everything before the agent sees any of it.
 */
import type net from 'node:net';
import { BACKEND, parseErrorFields, parseParameterStatus } from '../protocol/backend.js';
import type { TransactionStatus } from '../protocol/backend.js';
import { encodeTerminate } from '../protocol/frontend.js';
import { MessageReader } from '../protocol/message-reader.js';
import type { Message } from '../protocol/message-reader.js';

/** Where the answers of one round go: each message in order; return false to stop reading early is not supported. */
export type MessageSink = (m: Message) => void;

interface Round {
  /** ReadyForQuery messages still to come. */
  cycles: number;
  sink: MessageSink;
  resolve: (status: TransactionStatus) => void;
  reject: (err: Error) => void;
}

/** The connection broke or the server said something Airlock cannot accept. */
export class WriteConnectionLost extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WriteConnectionLost';
  }
}

/** Backend messages can be as large as a value (1 GB); only framing errors are refused here. */
const MAX_BACKEND_MESSAGE = 1 << 30;

export class WriteConnection {
  private readonly reader = new MessageReader(MAX_BACKEND_MESSAGE);
  private round: Round | null = null;
  private lost: WriteConnectionLost | null = null;
  status: TransactionStatus = 'I';
  /** Told once if the connection is lost other than by close() (the server ended it: an idle-in-transaction timeout, a shutdown). */
  onLost: ((why: string) => void) | null = null;

  constructor(
    private readonly socket: net.Socket,
    /** Settings that must keep their value (client_encoding, standard_conforming_strings): a change ends the connection. */
    private readonly pinned: ReadonlyMap<string, string>,
    readonly processId: number,
    readonly secretKey: Buffer,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.fail('the connection to the database was lost'));
    socket.on('error', (err) => this.fail(`the connection to the database failed: ${err.message}`));
    socket.resume();
  }

  get broken(): boolean {
    return this.lost !== null;
  }

  /**
   * Sends `messages` and hands every answer to `sink` until `cycles`
   * ReadyForQuery have arrived; resolves with the last one's transaction status.
   */
  exchange(messages: readonly Buffer[], cycles: number, sink: MessageSink): Promise<TransactionStatus> {
    if (this.lost !== null) return Promise.reject(this.lost);
    if (this.round !== null) return Promise.reject(new Error('write connection: a round is already running'));
    return new Promise((resolve, reject) => {
      this.round = { cycles, sink, resolve, reject };
      this.socket.cork();
      for (const m of messages) this.socket.write(m);
      this.socket.uncork();
    });
  }

  /** Like exchange, collecting the answers. */
  async collect(messages: readonly Buffer[], cycles: number): Promise<Message[]> {
    const out: Message[] = [];
    await this.exchange(messages, cycles, (m) => out.push(copy(m)));
    return out;
  }

  close(): void {
    if (this.lost === null && !this.socket.destroyed) this.socket.end(encodeTerminate());
    this.lost ??= new WriteConnectionLost('the write connection was closed');
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let messages: Message[];
    try {
      messages = this.reader.push(chunk);
    } catch (err) {
      this.fail(`the database sent a malformed message: ${(err as Error).message}`);
      return;
    }
    for (const m of messages) {
      const round = this.round;
      if (m.type === BACKEND.parameterStatus) {
        const { name, value } = parseParameterStatus(m.body);
        const pinned = this.pinned.get(name);
        if (pinned !== undefined && value !== pinned) {
          this.fail(`the database reported ${name} = ${value}; Airlock requires ${pinned}`);
          return;
        }
        continue;
      }
      if (m.type === BACKEND.noticeResponse || m.type === BACKEND.notificationResponse) {
        if (round !== null && !this.deliver(round, m)) return;
        continue;
      }
      if (round === null) {
        if (m.type === BACKEND.errorResponse) {
          // The server ends the session on its own (idle_in_transaction_session_timeout, an administrator): say why.
          const fields = parseErrorFields(m.body);
          this.fail(`the database ended the write connection: ${fields.get('M') ?? 'no reason given'} (SQLSTATE ${fields.get('C') ?? '?'})`);
          return;
        }
        this.fail(`the database sent message '${String.fromCharCode(m.type)}' when nothing was asked`);
        return;
      }
      if (!this.deliver(round, m)) return;
      if (m.type === BACKEND.readyForQuery) {
        this.status = String.fromCharCode(m.body[0]!) as TransactionStatus;
        if (--round.cycles === 0) {
          this.round = null;
          round.resolve(this.status);
        }
      }
    }
  }

  /**
   * Hands a message to the round's sink. A sink that throws (its owner can
   * no longer follow the answers) ends the connection, so the server rolls
   * back whatever is open, and the round rejects with the sink's error.
   */
  private deliver(round: Round, m: Message): boolean {
    try {
      round.sink(m);
      return true;
    } catch (err) {
      this.fail(`the answers could not be followed: ${(err as Error).message}`, err instanceof Error ? err : undefined);
      return false;
    }
  }

  private fail(why: string, cause?: Error): void {
    if (this.lost !== null) return;
    this.lost = new WriteConnectionLost(why);
    this.socket.destroy();
    const round = this.round;
    this.round = null;
    if (round !== null) round.reject(cause ?? this.lost);
    else this.onLost?.(why);
  }
}

/** Messages handed to a sink are views of a chunk; keep a copy when holding on to them. */
export function copy(m: Message): Message {
  const raw = Buffer.from(m.raw);
  return { type: m.type, raw, body: raw.subarray(5) };
}
