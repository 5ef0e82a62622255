/**
 * Frames the byte stream of a PostgreSQL connection into messages.
 *
 * Every message after start-up is: Byte1 type, Int32 length (counting itself,
 * not the type byte), then the body.
 * https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
 */

export interface Message {
  /** The type byte, as a char code ('Q' is 0x51). */
  type: number;
  /** The body: the bytes after the length word. A view, not a copy, where possible. */
  body: Buffer;
  /** The whole message, header included: what a relay forwards as it is. */
  raw: Buffer;
}

export class ProtocolViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

/**
 * Accumulates chunks and yields whole messages. Messages that arrive whole in
 * one chunk are handed out as views of that chunk; only a message that spans
 * chunks is copied.
 */
export class MessageReader {
  private pending: Buffer | null = null;

  constructor(private readonly maxMessageBytes: number) {}

  /** Feeds a chunk and returns the whole messages it completes. Throws ProtocolViolation on a bad length. */
  push(chunk: Buffer): Message[] {
    let buf = chunk;
    if (this.pending !== null) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    const out: Message[] = [];
    let at = 0;
    while (buf.length - at >= 5) {
      const length = buf.readUInt32BE(at + 1);
      if (length < 4) throw new ProtocolViolation(`invalid message length ${length}`);
      if (length > this.maxMessageBytes) {
        throw new ProtocolViolation(
          `message of ${length} bytes is larger than the limit of ${this.maxMessageBytes} bytes (limits.max_message_bytes)`,
        );
      }
      const end = at + 1 + length;
      if (end > buf.length) break;
      out.push({ type: buf[at]!, body: buf.subarray(at + 5, end), raw: buf.subarray(at, end) });
      at = end;
    }
    if (at < buf.length) this.pending = Buffer.from(buf.subarray(at));
    return out;
  }

  /** Hands over the bytes received but not yet part of a whole message, and forgets them. */
  takeBuffered(): Buffer {
    const rest = this.pending ?? Buffer.alloc(0);
    this.pending = null;
    return rest;
  }

  /** Bytes received but not yet part of a whole message. */
  get buffered(): number {
    return this.pending?.length ?? 0;
  }
}

/**
 * Frames the start-up phase: packets with no type byte, just Int32 length
 * (counting itself) and a body.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-STARTUPMESSAGE
 */
export class StartupPacketReader {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly maxPacketBytes = 10_000) {}

  /** Feeds a chunk; returns the first whole packet's body and what followed it, or null when more bytes are needed. */
  push(chunk: Buffer): { body: Buffer; rest: Buffer } | null {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.pending.length < 4) return null;
    const length = this.pending.readUInt32BE(0);
    if (length < 8 || length > this.maxPacketBytes) {
      throw new ProtocolViolation(`invalid start-up packet length ${length}`);
    }
    if (this.pending.length < length) return null;
    const body = this.pending.subarray(4, length);
    const rest = this.pending.subarray(length);
    this.pending = Buffer.alloc(0);
    return { body, rest };
  }
}
