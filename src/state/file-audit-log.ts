/**
 * The embedded audit log: `<stateDir>/audit/audit.jsonl`, one canonical JSON
 * record a line (see audit-log.ts), appended in group commits.
 *
 * `append` only serialises the entry and queues it, so the read path pays a
 * few microseconds. Every `flushMs` (or as soon as `maxBatch` entries wait,
 * or a durable entry arrives) the queue is hashed into the chain, written
 * with one write per chunk and made durable with one fdatasync. A failed write
 * makes the log unhealthy for good: Airlock must then refuse statements
 * rather than serve them unrecorded (DESIGN.md, "Everything is on the record").
 */
import { constants } from 'node:fs';
import { chmod, mkdir, open, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { hash as digest } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AuditUnavailableError,
  GENESIS_HASH,
  auditEntryProblem,
  auditRecordHash,
  auditRecordHead,
  withBoundedText,
  parseAuditLine,
  sealAuditRecord,
} from './audit-log.js';
import type { AuditEntry, AuditLog, AuditRecord } from './audit-log.js';

/** The folder of the embedded audit log. */
export function auditDir(stateDir: string): string {
  return join(stateDir, 'audit');
}

/** The embedded audit log's file. */
export function auditLogPath(stateDir: string): string {
  return join(auditDir(stateDir), 'audit.jsonl');
}

/** Where the log's bytes go. The seam lets tests count writes or make them fail. */
export interface AuditFileWriter {
  /** Writes all of `data` at the end of the file. */
  write(data: Uint8Array): Promise<void>;
  /** Makes everything written so far durable (fdatasync). */
  sync(): Promise<void>;
  /** Releases the file. */
  close(): Promise<void>;
}

/**
 * What to do when the file ends in a torn line (bytes after the last newline,
 * as a crash in the middle of a write leaves): `repair` cuts them off, saves
 * them beside the log and puts a 'startup' record saying so on the chain;
 * `refuse` will not open the log.
 */
export const TORN_TAIL_POLICIES = ['repair', 'refuse'] as const;
export type TornTailPolicy = (typeof TORN_TAIL_POLICIES)[number];

export interface FileAuditLogOptions {
  /** Longest wait before queued entries are written, in milliseconds (default 5). */
  flushMs?: number;
  /**
   * Longest time a written record may wait for fdatasync, in milliseconds
   * (default 1000). Durable entries and flush() sync at once.
   */
  syncMs?: number;
  /** Queue length that starts a write at once; also the most records hashed per write (default 1024). */
  maxBatch?: number;
  /** Queue length past which `append` refuses (AuditUnavailableError), so a stalled disk cannot exhaust memory (default 250 000). */
  maxPending?: number;
  /** Called once, when a write fails and the log becomes unhealthy. */
  onFailure?: (err: AuditUnavailableError) => void;
  /** Default 'repair'. */
  tornTail?: TornTailPolicy;
  /** Clock for `at`, in milliseconds since the epoch (tests). */
  now?: () => number;
  /** Wraps the file writer (tests: count writes, fail them). */
  wrapWriter?: (writer: AuditFileWriter) => AuditFileWriter;
}

/** The audit log on disk cannot be continued or read as it is. */
export class AuditLogCorruptError extends Error {
  override readonly name = 'AuditLogCorruptError';
  readonly hint =
    'Run `airlock audit verify` to see where the log stops being a valid chain. Keep a copy of the file before changing anything: it is evidence.';
}

interface Pending {
  seq: number;
  head: string;
  durable?: { resolve: (record: AuditRecord) => void; reject: (err: Error) => void };
  /** The written line, kept only for durable entries (their promise resolves with the record). */
  line?: string;
}

/** The size of the buffer a batch is written from; grown for a larger batch, and shrunk back after it. */
const SCRATCH_BYTES = 256 * 1024;

interface FlushWaiter {
  seq: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class FileAuditLog implements AuditLog {
  readonly path: string;
  readonly #writer: AuditFileWriter;
  readonly #flushMs: number;
  readonly #maxBatch: number;
  readonly #maxPending: number;
  readonly #onFailure: ((err: AuditUnavailableError) => void) | undefined;
  readonly #now: () => number;
  #lastMs = Number.NaN;
  #lastAt = '';

  #nextSeq: number;
  #prev: string;
  #syncedSeq: number;
  /** The last seq written to the file (durable or not), and its hash. */
  #writtenSeq: number;
  #writtenHash: string;
  /** The hash of the last durable record. */
  #syncedHash: string;
  readonly #syncMs: number;
  #lastSync = 0;
  #syncTimer: ReturnType<typeof setTimeout> | null = null;
  #buffer: Pending[] = [];
  #waiters: FlushWaiter[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #kickQueued = false;
  /** A durable entry, a flush() or a full batch waits: write without waiting for flushMs. */
  #urgent = false;
  /** Where a batch's lines are put before they are written (#put). */
  #scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  #draining = false;
  #drained: Promise<void> = Promise.resolve();
  #failure: AuditUnavailableError | null = null;
  #closed = false;
  #closing: Promise<void> | null = null;

  private constructor(path: string, writer: AuditFileWriter, lastSeq: number, lastHash: string, options: FileAuditLogOptions) {
    this.path = path;
    this.#writer = writer;
    this.#flushMs = options.flushMs ?? 5;
    this.#maxBatch = options.maxBatch ?? 1024;
    this.#maxPending = options.maxPending ?? 250_000;
    this.#onFailure = options.onFailure;
    this.#now = options.now ?? Date.now;
    this.#nextSeq = lastSeq + 1;
    this.#prev = lastHash;
    this.#syncedSeq = lastSeq;
    this.#writtenSeq = lastSeq;
    this.#writtenHash = lastHash;
    this.#syncedHash = lastHash;
    this.#syncMs = options.syncMs ?? 1000;
  }

  /**
   * Opens (creating if need be) the log under `stateDir` and continues its
   * chain from the last record. Only the file's tail is read. Throws
   * AuditLogCorruptError when the last record is not a valid record.
   */
  static async open(stateDir: string, options: FileAuditLogOptions = {}): Promise<FileAuditLog> {
    const dir = auditDir(stateDir);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // mkdir's mode is filtered by the umask and leaves an existing folder as it was.
    await chmod(dir, 0o700);
    const path = auditLogPath(stateDir);
    // O_NOFOLLOW: the log is a regular file of ours, never a link to somewhere else.
    const fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o600);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new AuditLogCorruptError(`The audit log ${path} is not a regular file.`);
      if ((st.mode & 0o777) !== 0o600) await fh.chmod(0o600);
      const tail = await readTail(fh, st.size, 1);

      let startup: AuditEntry | null = null;
      if (tail.fragment.length > 0) {
        const offset = tail.completeEnd;
        if ((options.tornTail ?? 'repair') === 'refuse') {
          throw new AuditLogCorruptError(
            `The audit log ${path} ends with a torn record: ${tail.fragment.length} bytes after the last complete line (from byte ${offset}), as a crash in the middle of a write leaves. Airlock will not chain new records past it; open it with the torn-tail policy 'repair' to cut those bytes off (they are saved beside the log).`,
          );
        }
        const savedTo = `${path}.torn-${offset}-${Date.now()}`;
        await writeFile(savedTo, tail.fragment, { mode: 0o600, flag: 'wx' });
        await fh.truncate(offset);
        await fh.datasync();
        startup = {
          event: 'startup',
          agent: null,
          session: null,
          client: null,
          reason: `The audit log ended with a torn record (${tail.fragment.length} bytes after the last complete line, as a crash in the middle of a write leaves); Airlock cut them off and saved them to ${savedTo}.`,
          detail: { tornTail: { offset, bytes: tail.fragment.length, sha256: digest('sha256', tail.fragment, 'hex'), savedTo } },
        };
      }

      let lastSeq = 0;
      let lastHash = GENESIS_HASH;
      const last = tail.lines.at(-1);
      if (last !== undefined) {
        const where = `the last record of the audit log ${path} (ending at byte ${tail.completeEnd})`;
        const parsed = parseAuditLine(last.toString('utf8'));
        if (!parsed.ok) {
          throw new AuditLogCorruptError(`Airlock cannot continue the audit chain: ${where} is unreadable, since ${parsed.problem}.`);
        }
        if (auditRecordHash(parsed.record.prev, parsed.body) !== parsed.record.hash) {
          throw new AuditLogCorruptError(`Airlock cannot continue the audit chain: the hash of ${where} does not match its content, so it was changed after it was written.`);
        }
        lastSeq = parsed.record.seq;
        lastHash = parsed.record.hash;
      } else {
        // A new (or emptied) file: make its directory entry durable, or a crash could lose the whole log.
        const dh = await open(dir, 'r');
        try {
          await dh.sync();
        } finally {
          await dh.close();
        }
      }

      const writer = fileWriter(fh);
      const log = new FileAuditLog(path, options.wrapWriter?.(writer) ?? writer, lastSeq, lastHash, options);
      if (startup !== null) await log.appendDurable(startup);
      return log;
    } catch (err) {
      // Opening failed: release the file before reporting why.
      await fh.close();
      throw err;
    }
  }

  /** The last record known to be on disk (seq 0 and 64 zeros for an empty log): what a checkpoint vouches for. */
  get syncedHead(): { seq: number; hash: string } {
    return { seq: this.#syncedSeq, hash: this.#syncedHash };
  }

  get healthy(): boolean {
    return this.#failure === null && !this.#closed;
  }

  /** Why the log became unhealthy, or null. */
  get failure(): AuditUnavailableError | null {
    return this.#failure;
  }

  append(entry: AuditEntry): void {
    this.#enqueue(entry, undefined);
  }

  appendDurable(entry: AuditEntry): Promise<AuditRecord> {
    return new Promise((resolve, reject) => this.#enqueue(entry, { resolve, reject }));
  }

  flush(): Promise<void> {
    if (this.#failure !== null) return Promise.reject(this.#unavailable());
    const seq = this.#nextSeq - 1;
    if (seq <= this.#syncedSeq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#waiters.push({ seq, resolve, reject });
      this.#urgent = true;
      this.#kickSoon();
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    let flushError: unknown = null;
    if (this.#failure === null) {
      try {
        await this.flush();
      } catch (err) {
        // Reported after the file is released.
        flushError = err;
      }
    }
    await this.#drained;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#syncTimer !== null) clearTimeout(this.#syncTimer);
    await this.#writer.close();
    if (flushError !== null) throw flushError;
  }

  #unavailable(): AuditUnavailableError {
    if (this.#failure !== null) return new AuditUnavailableError(this.#failure.message, { cause: this.#failure.cause });
    return new AuditUnavailableError(`The audit log ${this.path} is closed, so nothing more can be recorded.`);
  }

  #enqueue(entry: AuditEntry, durable: Pending['durable']): void {
    if (this.#failure !== null || this.#closed) throw this.#unavailable();
    if (this.#buffer.length >= this.#maxPending) {
      throw new AuditUnavailableError(
        `The audit log ${this.path} is falling behind: ${this.#buffer.length} entries are waiting to be written, so Airlock refuses more until the disk catches up.`,
      );
    }
    const problem = auditEntryProblem(entry);
    if (problem !== null) throw new TypeError(problem);
    const seq = this.#nextSeq;
    // Serialising now both snapshots the entry (the caller may reuse its objects) and fails its caller if it cannot be serialised.
    const head = auditRecordHead(withBoundedText(entry), seq, this.#at());
    this.#nextSeq = seq + 1;
    this.#buffer.push(durable === undefined ? { seq, head } : { seq, head, durable });
    if (durable !== undefined || this.#buffer.length >= this.#maxBatch) {
      this.#urgent = true;
      this.#kickSoon();
    } else if (this.#timer === null && !this.#draining) this.#timer = setTimeout(this.#onTimer, this.#flushMs);
  }

  /** ISO time of now; formatted once per millisecond, since appends come many to a millisecond. */
  #at(): string {
    const ms = this.#now();
    if (ms !== this.#lastMs) {
      this.#lastMs = ms;
      this.#lastAt = new Date(ms).toISOString();
    }
    return this.#lastAt;
  }

  readonly #onTimer = (): void => {
    this.#timer = null;
    this.#kick();
  };

  /** Starts a write once the caller's synchronous work is done, so that `append` never hashes or writes itself. */
  #kickSoon(): void {
    if (this.#kickQueued) return;
    this.#kickQueued = true;
    queueMicrotask(() => {
      this.#kickQueued = false;
      this.#kick();
    });
  }

  /** Writes `line` into the scratch buffer at `at` (growing it when need be); returns where it ends. */
  #put(line: string, at: number): number {
    // UTF-8 takes at most three bytes for each UTF-16 unit.
    if (at + line.length * 3 > this.#scratch.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.#scratch.length * 2, at + line.length * 3));
      this.#scratch.copy(grown, 0, 0, at);
      this.#scratch = grown;
    }
    return at + this.#scratch.write(line, at, 'utf8');
  }

  /** Records written but not yet made durable, that someone waits for (or that have waited long enough). */
  #syncPending(): boolean {
    return this.#writtenSeq > this.#syncedSeq && (this.#waiters.length > 0 || Date.now() - this.#lastSync >= this.#syncMs);
  }

  readonly #onSyncTimer = (): void => {
    this.#syncTimer = null;
    this.#kick();
  };

  #kick(): void {
    if (this.#draining || this.#failure !== null || (this.#buffer.length === 0 && !this.#syncPending())) return;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    // The flag is set before the call: #drain clears it synchronously when it finishes.
    this.#draining = true;
    this.#drained = this.#drain();
  }

  /**
   * Writes queued entries. Entries queued meanwhile join the next batch,
   * written at once when they are urgent and after flushMs otherwise: under a
   * steady stream of reads that is one write every flushMs, not one per
   * write's round trip through the thread pool. Never rejects.
   */
  async #drain(): Promise<void> {
    let batch: Pending[] = [];
    try {
      for (let first = true; first ? this.#buffer.length > 0 || this.#syncPending() : this.#urgent || this.#syncPending(); first = false) {
        batch = this.#buffer;
        this.#buffer = [];
        this.#urgent = false;
        // Hash and write a large backlog in chunks, so that the event loop runs between them.
        for (let start = 0; start < batch.length; start += this.#maxBatch) {
          const end = Math.min(start + this.#maxBatch, batch.length);
          // The lines go into one reused buffer: a batch joined into one string would be a large
          // object, which only a full collection frees, at every flush of a busy gateway.
          let used = 0;
          for (let i = start; i < end; i++) {
            const item = batch[i] as Pending;
            const { hash, line } = sealAuditRecord(item.head, this.#prev);
            this.#prev = hash;
            if (item.durable !== undefined) item.line = line;
            used = this.#put(line, used);
          }
          await this.#writer.write(this.#scratch.subarray(0, used));
          if (this.#scratch.length > SCRATCH_BYTES) this.#scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
        }
        const last = batch[batch.length - 1];
        if (last !== undefined) {
          this.#writtenSeq = last.seq;
          this.#writtenHash = this.#prev;
        }
        // Reads' records need not each wait for the disk (DESIGN.md: reads
        // may be recorded in group commits); a durable entry or a flush()
        // does, and so does anything written more than syncMs ago.
        const mustSync =
          batch.some((item) => item.durable !== undefined) ||
          this.#waiters.length > 0 ||
          Date.now() - this.#lastSync >= this.#syncMs;
        if (mustSync) {
          await this.#writer.sync();
          this.#lastSync = Date.now();
          this.#syncedSeq = this.#writtenSeq;
          this.#syncedHash = this.#writtenHash;
          if (this.#syncTimer !== null) {
            clearTimeout(this.#syncTimer);
            this.#syncTimer = null;
          }
        } else if (this.#syncTimer === null) {
          this.#syncTimer = setTimeout(this.#onSyncTimer, this.#syncMs);
        }
        for (const item of batch) {
          if (item.durable !== undefined) item.durable.resolve(JSON.parse(item.line as string) as AuditRecord);
        }
        this.#settleWaiters();
        batch = [];
      }
    } catch (err) {
      this.#fail(err, batch);
    } finally {
      this.#draining = false;
      if (this.#failure === null && this.#buffer.length > 0 && this.#timer === null) this.#timer = setTimeout(this.#onTimer, this.#flushMs);
    }
  }

  #settleWaiters(): void {
    let done = 0;
    while (done < this.#waiters.length && (this.#waiters[done] as FlushWaiter).seq <= this.#syncedSeq) {
      (this.#waiters[done] as FlushWaiter).resolve();
      done++;
    }
    if (done > 0) this.#waiters = this.#waiters.slice(done);
  }

  #fail(err: unknown, batch: Pending[]): void {
    const cause = err instanceof Error ? err : new Error(String(err));
    this.#failure = new AuditUnavailableError(
      `Airlock could not write its audit log ${this.path} (${cause.message}); it records nothing more until it is restarted.`,
      { cause },
    );
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#syncTimer !== null) {
      clearTimeout(this.#syncTimer);
      this.#syncTimer = null;
    }
    const lost = [...batch, ...this.#buffer];
    this.#buffer = [];
    for (const item of lost) item.durable?.reject(this.#unavailable());
    for (const waiter of this.#waiters) waiter.reject(this.#unavailable());
    this.#waiters = [];
    try {
      this.#onFailure?.(this.#failure);
    } catch (callbackError) {
      // The failure stands (healthy is false, append throws); a throwing callback is reported, not allowed to hide it.
      process.emitWarning(`The audit log's onFailure callback threw: ${String(callbackError)}`);
    }
  }
}

function fileWriter(fh: FileHandle): AuditFileWriter {
  return {
    async write(data) {
      // The file is opened O_APPEND, so each write lands at the end.
      let offset = 0;
      while (offset < data.byteLength) {
        const { bytesWritten } = await fh.write(data, offset, data.byteLength - offset);
        if (bytesWritten === 0) throw new Error('the file accepted no bytes');
        offset += bytesWritten;
      }
    },
    sync: () => fh.datasync(),
    close: () => fh.close(),
  };
}

interface Tail {
  /** The last complete lines (at most the number asked for), without their newlines. */
  lines: Buffer[];
  /** Byte offset just past the last newline (0 when there is none). */
  completeEnd: number;
  /** Bytes after the last newline: a torn line, or nothing. */
  fragment: Buffer;
}

const TAIL_CHUNK = 64 * 1024;

/** Reads the file backwards, chunk by chunk, until it holds the last `n` complete lines. */
async function readTail(fh: FileHandle, size: number, n: number): Promise<Tail> {
  const chunks: Buffer[] = [];
  let pos = size;
  let newlines = 0;
  // n lines need n newlines, plus the one before the first of them (unless it starts the file).
  while (pos > 0 && newlines < n + 1) {
    const length = Math.min(TAIL_CHUNK, pos);
    pos -= length;
    const chunk = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(chunk, got, length - got, pos + got);
      if (bytesRead === 0) throw new Error(`The audit log shrank while Airlock was reading it (at byte ${pos + got}).`);
      got += bytesRead;
    }
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) newlines++;
    chunks.push(chunk);
  }
  const buf = Buffer.concat(chunks.reverse());
  const lastNewline = buf.lastIndexOf(10);
  if (lastNewline === -1) return { lines: [], completeEnd: 0, fragment: buf };
  const lines: Buffer[] = [];
  if (n > 0) {
    let end = lastNewline;
    // Lines in front of `pos` were not read; the first piece of `buf` is whole only when pos is 0.
    while (lines.length < n) {
      const start = end === 0 ? -1 : buf.lastIndexOf(10, end - 1);
      if (start === -1 && pos > 0) break;
      lines.push(buf.subarray(start + 1, end));
      if (start === -1) break;
      end = start;
    }
    lines.reverse();
  }
  return { lines, completeEnd: pos + lastNewline + 1, fragment: buf.subarray(lastNewline + 1) };
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

function parseOrThrow(line: Buffer, path: string, endOffset: number): AuditRecord {
  const parsed = parseAuditLine(line.toString('utf8'));
  if (!parsed.ok) {
    throw new AuditLogCorruptError(`The audit log ${path} has a line (ending at byte ${endOffset}) that is not a record: ${parsed.problem}.`);
  }
  return parsed.record;
}

/**
 * The last `n` records (oldest first), and the byte offset just past them for
 * `followAudit` to continue from. A torn final line is left out. Records are
 * read, not verified: `verifyAuditLog` checks the chain.
 */
export async function readAuditTail(stateDir: string, n: number): Promise<{ records: AuditRecord[]; end: number }> {
  const path = auditLogPath(stateDir);
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if (isMissing(err)) return { records: [], end: 0 };
    throw err;
  }
  try {
    const { size } = await fh.stat();
    const tail = await readTail(fh, size, Math.max(0, Math.floor(n)));
    let end = tail.completeEnd;
    const ends: number[] = [];
    for (let i = tail.lines.length - 1; i >= 0; i--) {
      ends.unshift(end);
      end -= (tail.lines[i] as Buffer).length + 1;
    }
    return { records: tail.lines.map((line, i) => parseOrThrow(line, path, ends[i] as number)), end: tail.completeEnd };
  } finally {
    await fh.close();
  }
}

export interface FollowAuditOptions {
  /** Byte offset to start from (`end` of `readAuditTail`); default: the end of the last complete line now. */
  from?: number;
  /** How often to look for new records, in milliseconds (default 200). */
  pollMs?: number;
}

/**
 * Calls `onRecord` for each record appended to the log, until `signal` aborts
 * (then it resolves). It polls the file; a line is passed on only once its
 * newline is there. Rejects if the log shrinks below what it already passed
 * on (cut or replaced) or holds a line that is not a record.
 */
export async function followAudit(
  stateDir: string,
  onRecord: (record: AuditRecord) => void,
  signal: AbortSignal,
  options: FollowAuditOptions = {},
): Promise<void> {
  const path = auditLogPath(stateDir);
  const pollMs = options.pollMs ?? 200;
  let offset = options.from ?? (await readAuditTail(stateDir, 0)).end;
  /** Offset where the unfinished line held in `carry` starts. */
  let lineStart = offset;
  let carry = Buffer.alloc(0);
  while (!signal.aborted) {
    let fh: FileHandle | null = null;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      // Not created yet: wait for it.
      if (!isMissing(err)) throw err;
    }
    if (fh !== null) {
      try {
        const { size } = await fh.stat();
        if (size < lineStart) {
          throw new AuditLogCorruptError(
            `The audit log ${path} shrank from at least ${lineStart} to ${size} bytes while it was followed: records already shown were cut off or the file was replaced.`,
          );
        }
        if (size < offset) {
          // Only the unfinished line was cut (a torn line repaired on restart).
          carry = carry.subarray(0, size - lineStart);
          offset = size;
        }
        while (offset < size) {
          const length = Math.min(TAIL_CHUNK, size - offset);
          const chunk = Buffer.alloc(length);
          const { bytesRead } = await fh.read(chunk, 0, length, offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          carry = carry.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([carry, chunk.subarray(0, bytesRead)]);
          let start = 0;
          for (let nl = carry.indexOf(10); nl !== -1; nl = carry.indexOf(10, start)) {
            onRecord(parseOrThrow(carry.subarray(start, nl), path, lineStart + nl + 1));
            start = nl + 1;
          }
          lineStart += start;
          carry = Buffer.from(carry.subarray(start));
        }
      } finally {
        await fh.close();
      }
    }
    try {
      await sleep(pollMs, undefined, { signal });
    } catch (err) {
      // An abort ends the wait and the loop; anything else is a real error.
      if (!signal.aborted) throw err;
    }
  }
}
