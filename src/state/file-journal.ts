/**
 * The undo journal in the state directory: `journal/journal.log`, appended
 * and synced (fdatasync) before `record()` resolves. Events, one JSON line
 * each:
 *
 * - `{"e":"change", …entry…, "names":[table, …]}`: a change, pending, then
 *   its `images` row images, one line each: `kind TAB table-index TAB image`,
 *   the image as PostgreSQL wrote it (row_to_json text has no raw newline
 *   unless a json column holds one: such an image is written as a JSON
 *   string, kind in upper case). Row images are never re-encoded, which is
 *   what keeps journalling 10,000 rows to a few milliseconds;
 * - `{"e":"state","ids":[…],"state":"committed"|"aborted"}`: its outcome;
 * - `{"e":"undone","ids":[…],"by":"<undo change id>"}`;
 * - `{"e":"purged","ids":[…],"by":"<admin>","at":…}`: their trashed tables dropped for good.
 *
 * Only the entries are kept in memory; a change's rows are read back from
 * the file (by offset) when an undo needs them. A record cut short by a
 * crash can only be a change whose COMMIT was never sent (COMMIT waits for
 * the sync), so it is cut off at open and saved beside the log.
 */
import { constants } from 'node:fs';
import { chmod, mkdir, open, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { tablesOf, trashedOf } from './journal.js';
import type { ChangeEntry, ChangeFilter, ChangeState, ImageKind, Journal, NewChange, RowImage } from './journal.js';

export function journalPath(stateDir: string): string {
  return join(stateDir, 'journal', 'journal.log');
}

interface QueuedAppend {
  lines: string[];
  /** Whether its caller waits for the sync (a change) or only for the write (a mark). */
  sync: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Located {
  entry: ChangeEntry;
  /** Where its row lines are in the file. */
  offset: number;
  length: number;
  names: string[];
}

/**
 * One Airlock instance's journal: several instances sharing a state
 * directory would each see only their own changes (the PostgreSQL state
 * store, not built yet, is for that).
 */
export class FileJournal implements Journal {
  private readonly changes = new Map<string, Located>();
  private readonly order: Located[] = [];
  /** Settles once the appends queued so far are written (and synced, where asked). */
  private tail: Promise<void> = Promise.resolve();
  /** Appends waiting for the write in progress to finish: they go out together, in order, after it. */
  private queue: QueuedAppend[] = [];
  private writing = false;
  private size: number;

  private constructor(
    private readonly fh: FileHandle,
    size: number,
    readonly path: string,
  ) {
    this.size = size;
  }

  /** Opens (creating if need be) the journal under `stateDir`, reading its entries. */
  static async open(stateDir: string): Promise<FileJournal> {
    const dir = join(stateDir, 'journal');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const path = journalPath(stateDir);
    const fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o600);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error(`The undo journal ${path} is not a regular file.`);
      const buf = st.size === 0 ? Buffer.alloc(0) : (await fh.read(Buffer.alloc(st.size), 0, st.size, 0)).buffer;
      const journal = new FileJournal(fh, 0, path);
      // Every complete record; `end` is where the last one ends.
      let end = 0;
      for (;;) {
        const nl = buf.indexOf(0x0a, end);
        if (nl === -1) break;
        const line = buf.subarray(end, nl).toString('utf8');
        const images = line.startsWith('{"e":"change"') ? Number((JSON.parse(line) as { images?: unknown }).images ?? 0) : 0;
        let rowsEnd = nl + 1;
        for (let i = 0; i < images && rowsEnd !== 0; i++) rowsEnd = buf.indexOf(0x0a, rowsEnd) + 1;
        if (rowsEnd === 0) break; // a change whose row lines were cut short
        journal.apply(line, nl + 1, rowsEnd - (nl + 1));
        end = rowsEnd;
      }
      journal.size = end;
      if (end < buf.length) {
        // A torn last line: a change recorded when Airlock died, whose COMMIT was never sent.
        await writeFile(`${path}.torn-${end}-${Date.now()}`, buf.subarray(end), { mode: 0o600, flag: 'wx' });
        await fh.truncate(end);
        await fh.datasync();
      }
      if (st.size === 0) {
        const dh = await open(dir, 'r');
        try {
          await dh.sync();
        } finally {
          await dh.close();
        }
      }
      return journal;
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async record(changes: readonly NewChange[]): Promise<void> {
    if (changes.length === 0) return;
    const at = new Date().toISOString();
    const lines = changes.map((c) => {
      const index = new Map<string, number>();
      for (const r of c.rows) if (!index.has(r.table)) index.set(r.table, index.size);
      const head = {
        e: 'change',
        id: c.id,
        txid: c.txid,
        at,
        kind: c.kind,
        agent: c.agent,
        by: c.by,
        statement: c.statement,
        tables: tablesOf(c.rows),
        images: c.rows.length,
        undoes: c.undoes ?? [],
        trashed: trashedOf(c.rows),
        names: [...index.keys()],
      };
      const parts = [`${JSON.stringify(head)}\n`];
      for (const r of c.rows) {
        const raw = !r.image.includes('\n') && !r.image.includes('\r');
        parts.push(`${raw ? r.kind : r.kind.toUpperCase()}\t${index.get(r.table)!}\t${raw ? r.image : JSON.stringify(r.image)}\n`);
      }
      return parts.join('');
    });
    await this.append(lines);
  }

  /**
   * Marks take effect at once and are written without a sync of their own
   * (the next record's sync, or the OS, makes them durable): a mark lost in a
   * crash leaves the change pending, and start-up settles it with pg_xact_status().
   */
  async settle(ids: readonly string[], state: 'committed' | 'aborted'): Promise<void> {
    if (ids.length === 0) return;
    const line = JSON.stringify({ e: 'state', ids, state, at: new Date().toISOString() });
    this.apply(line, 0, 0);
    await this.append([`${line}\n`], false);
  }

  async markUndone(ids: readonly string[], by: string): Promise<void> {
    if (ids.length === 0) return;
    await this.append([`${JSON.stringify({ e: 'undone', ids, by, at: new Date().toISOString() })}\n`]);
  }

  async markPurged(ids: readonly string[], by: string): Promise<void> {
    if (ids.length === 0) return;
    await this.append([`${JSON.stringify({ e: 'purged', ids, by, at: new Date().toISOString() })}\n`]);
  }

  get(id: string): ChangeEntry | null {
    const found = this.changes.get(id);
    return found === undefined ? null : { ...found.entry };
  }

  list(filter: ChangeFilter = {}): ChangeEntry[] {
    const table = filter.table?.toLowerCase();
    return this.order
      .map((l) => l.entry)
      .filter((e) => {
        if (filter.all !== true && (e.state === 'pending' || e.state === 'aborted')) return false;
        if (filter.agent !== undefined && e.agent !== filter.agent) return false;
        if (filter.txid !== undefined && e.txid !== filter.txid) return false;
        if (filter.since !== undefined && Date.parse(e.at) < filter.since.getTime()) return false;
        if (table !== undefined && !Object.keys(e.tables).some((t) => t.toLowerCase() === table || t.toLowerCase().endsWith(`.${table}`))) return false;
        return true;
      })
      .map((e) => ({ ...e }));
  }

  pending(): ChangeEntry[] {
    return this.order.filter((l) => l.entry.state === 'pending').map((l) => ({ ...l.entry }));
  }

  async rows(id: string): Promise<RowImage[]> {
    const found = this.changes.get(id);
    if (found === undefined) throw new Error(`The undo journal has no change ${id}.`);
    await this.tail;
    const { buffer } = await this.fh.read(Buffer.alloc(found.length), 0, found.length, found.offset);
    const out: RowImage[] = [];
    for (const line of buffer.toString('utf8').split('\n')) {
      if (line === '') continue;
      const tab1 = line.indexOf('\t');
      const tab2 = line.indexOf('\t', tab1 + 1);
      const flag = line.slice(0, tab1);
      const raw = flag === flag.toLowerCase();
      const image = line.slice(tab2 + 1);
      out.push({ table: found.names[Number(line.slice(tab1 + 1, tab2))]!, kind: flag.toLowerCase() as ImageKind, image: raw ? image : (JSON.parse(image) as string) });
    }
    return out;
  }

  async close(): Promise<void> {
    await this.tail.catch(() => undefined);
    await this.fh.close();
  }

  /**
   * Appends records (and syncs them, unless told not to). Appends are
   * written in order, in group commits: whatever was queued while the last
   * write and sync ran goes out in one write and one fdatasync, so
   * concurrent writers (each waiting for its entry before its COMMIT) share
   * a sync instead of queueing for one each.
   */
  private append(lines: string[], sync = true): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ lines, sync, resolve, reject });
      if (!this.writing) {
        this.writing = true;
        this.tail = this.drain();
      }
    });
  }

  /** Writes queued appends, a group at a time, until none is left. Never rejects: a failed group fails its callers, and the next one still runs. */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const group = this.queue;
        this.queue = [];
        try {
          await this.writeGroup(group);
          for (const a of group) a.resolve();
        } catch (err) {
          for (const a of group) a.reject(err);
        }
      }
    } finally {
      this.writing = false;
    }
  }

  private async writeGroup(group: readonly QueuedAppend[]): Promise<void> {
    const sync = group.some((a) => a.sync);
    const data = Buffer.from(group.map((a) => a.lines.join('')).join(''), 'utf8');
    await this.fh.write(data, 0, data.length, null);
    if (sync) await this.fh.datasync();
    // O_APPEND put it at the file's end, which is ours alone only while one instance writes here (see the class comment).
    this.size = sync ? (await this.fh.stat()).size : this.size + data.length;
    let at = this.size - data.length;
    for (const a of group) {
      for (const record of a.lines) {
        const length = Buffer.byteLength(record, 'utf8');
        // Unsynced appends (marks) were applied when they were made.
        if (a.sync) {
          const nl = record.indexOf('\n');
          const headBytes = Buffer.byteLength(record.slice(0, nl + 1), 'utf8');
          this.apply(record.slice(0, nl), at + headBytes, length - headBytes);
        }
        at += length;
      }
    }
  }

  /** Takes one event into the in-memory picture; for a change, its row lines are at `offset`, `length` bytes. */
  private apply(line: string, offset: number, length: number): void {
    const event = JSON.parse(line) as Record<string, unknown>;
    if (event.e === 'change') {
      const entry: ChangeEntry = {
        id: String(event.id),
        txid: String(event.txid),
        at: String(event.at),
        kind: event.kind === 'undo' ? 'undo' : 'write',
        agent: typeof event.agent === 'string' ? event.agent : null,
        by: typeof event.by === 'string' ? event.by : null,
        statement: String(event.statement),
        tables: (event.tables ?? {}) as Record<string, number>,
        images: Number(event.images ?? 0),
        state: 'pending',
        undoneBy: null,
        undoes: Array.isArray(event.undoes) ? (event.undoes as string[]) : [],
        trashed: Array.isArray(event.trashed) ? (event.trashed as ChangeEntry['trashed']) : [],
        purged: null,
      };
      const located = { entry, offset, length, names: Array.isArray(event.names) ? (event.names as string[]) : [] };
      this.changes.set(entry.id, located);
      this.order.push(located);
      return;
    }
    const ids = Array.isArray(event.ids) ? (event.ids as string[]) : [];
    for (const id of ids) {
      const found = this.changes.get(id);
      if (found === undefined) continue;
      if (event.e === 'state') found.entry.state = event.state as ChangeState;
      if (event.e === 'purged') found.entry.purged = { by: String(event.by), at: String(event.at) };
      if (event.e === 'undone') {
        found.entry.state = 'undone';
        found.entry.undoneBy = String(event.by);
      }
    }
  }
}
