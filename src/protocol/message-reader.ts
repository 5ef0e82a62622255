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
  /**
   * Set when the message was larger than its type's limit (see
   * MessageReader's `limitFor`): its body's bytes, which were read and
   * dropped as they came. `body` then holds only its first byte, and `raw`
   * its header; such a message is never forwarded.
   */
  dropped?: number;
}

export class ProtocolViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

/**
 * Accumulates chunks and yields whole messages. Messages that arrive whole in
 * one chunk are handed out as views of that chunk; a message that spans
 * chunks is gathered in a buffer that grows geometrically up to its size,
 * so a large message sent in small pieces costs what its bytes cost (not the
 * square of it), and an unfinished one holds only what arrived.
 */
export class MessageReader {
  /** The message being completed: its header (5 bytes) until the length is known, then the whole message. */
  private partial: Buffer | null = null;
  private filled = 0;
  /** The pending message's whole size, once its header is in. */
  private total = 0;
  /** While a message over its type's limit is read and dropped: its header and first body byte. */
  private dropping: Buffer | null = null;

  /**
   * `limitFor` gives, for a type byte, the largest length (the Int32 length
   * word) of a message of that type worth keeping: a larger one (up to maxMessageBytes) is read and dropped as it
   * arrives, and handed out with `dropped` set, so that a statement too long
   * to judge costs no memory however slowly it comes.
   */
  constructor(
    private readonly maxMessageBytes: number,
    private readonly limitFor: (type: number) => number = () => maxMessageBytes,
  ) {}

  /** Feeds a chunk and returns the whole messages it completes. Throws ProtocolViolation on a bad length. */
  push(chunk: Buffer): Message[] {
    const out: Message[] = [];
    let at = 0;
    if (this.partial !== null) {
      at = this.fill(chunk, 0, out);
      if (this.partial !== null) return out;
    }
    while (chunk.length - at >= 5) {
      const length = this.lengthAt(chunk, at);
      if (length > this.limitFor(chunk[at]!)) {
        this.partial = Buffer.allocUnsafe(5);
        chunk.copy(this.partial, 0, at, at + 5);
        this.filled = 5;
        this.total = length + 1;
        this.dropping = Buffer.alloc(6);
        at = this.fill(chunk, at + 5, out);
        if (this.partial !== null) return out;
        continue;
      }
      const end = at + 1 + length;
      if (end > chunk.length) break;
      out.push({ type: chunk[at]!, body: chunk.subarray(at + 5, end), raw: chunk.subarray(at, end) });
      at = end;
    }
    if (at < chunk.length) {
      this.partial = Buffer.allocUnsafe(5);
      this.filled = 0;
      this.fill(chunk, at, out);
    }
    return out;
  }

  /** Copies what the pending message still lacks from `chunk` (from `at`); returns where its use of the chunk ended. */
  private fill(chunk: Buffer, at: number, out: Message[]): number {
    let partial = this.partial!;
    if (this.filled < 5) {
      const n = Math.min(5 - this.filled, chunk.length - at);
      chunk.copy(partial, this.filled, at, at + n);
      this.filled += n;
      at += n;
      if (this.filled < 5) return at;
      this.total = 1 + this.lengthAt(partial, 0);
      if (this.total - 1 > this.limitFor(partial[0]!)) this.dropping = Buffer.alloc(6);
    }
    if (this.dropping !== null) return this.drop(chunk, at, out);
    const n = Math.min(this.total - this.filled, chunk.length - at);
    if (this.filled + n > partial.length) {
      // Grown geometrically, never past the message's size: memory follows
      // the bytes that really arrived, and each byte is copied O(1) times.
      const grown = Buffer.allocUnsafe(Math.min(this.total, Math.max(this.filled + n, partial.length * 2, 64 * 1024)));
      partial.copy(grown, 0, 0, this.filled);
      this.partial = partial = grown;
    }
    chunk.copy(partial, this.filled, at, at + n);
    this.filled += n;
    at += n;
    if (this.filled === this.total) {
      const whole = partial.length === this.total ? partial : partial.subarray(0, this.total);
      out.push({ type: whole[0]!, body: whole.subarray(5), raw: whole });
      this.partial = null;
      this.filled = 0;
    }
    return at;
  }

  /** Reads past the body of a message over its type's limit, keeping only its first byte. */
  private drop(chunk: Buffer, at: number, out: Message[]): number {
    const dropping = this.dropping!;
    if (this.filled === 5) this.partial!.copy(dropping, 0, 0, 5);
    const n = Math.min(this.total - this.filled, chunk.length - at);
    if (this.filled === 5 && n > 0) dropping[5] = chunk[at]!;
    this.filled += n;
    at += n;
    if (this.filled === this.total) {
      const keep = this.total > 5 ? 6 : 5;
      out.push({ type: dropping[0]!, body: dropping.subarray(5, keep), raw: dropping.subarray(0, 5), dropped: this.total - 5 });
      this.partial = null;
      this.dropping = null;
      this.filled = 0;
    }
    return at;
  }

  /** The Int32 length of the message starting at `at`, checked. */
  private lengthAt(buf: Buffer, at: number): number {
    const length = buf.readUInt32BE(at + 1);
    if (length < 4) throw new ProtocolViolation(`invalid message length ${length}`);
    if (length > this.maxMessageBytes) {
      throw new ProtocolViolation(`message of ${length} bytes is larger than the limit of ${this.maxMessageBytes} bytes (limits.max_message_bytes)`);
    }
    return length;
  }

  /** Hands over the bytes received but not yet part of a whole message, and forgets them. */
  takeBuffered(): Buffer {
    if (this.dropping !== null) throw new ProtocolViolation('a message over its size limit was being read');
    const rest = this.partial === null ? Buffer.alloc(0) : Buffer.from(this.partial.subarray(0, this.filled));
    this.partial = null;
    this.filled = 0;
    return rest;
  }

  /** Bytes received but not yet part of a whole message. */
  get buffered(): number {
    return this.partial === null || this.dropping !== null ? 0 : this.filled;
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
