/**
 * The undo journal in the state directory: `journal/journal.log`, one JSON
 * line per event, appended and synced (fdatasync) before `record()` resolves.
 *
 * - `{"e":"change", …entry…, "rows":[[table, kind, image], …]}`: a change,
 *   pending, with its row images;
 * - `{"e":"state","ids":[…],"state":"committed"|"aborted"}`: its outcome;
 * - `{"e":"undone","ids":[…],"by":"<undo change id>"}`.
 *
 * Only the entries are kept in memory; a change's rows are read back from
 * the file (by offset) when an undo needs them. A line cut short by a crash
 * can only be a change whose COMMIT was never sent (COMMIT waits for the
 * sync), so it is cut off at open and saved beside the log.
 */
import { constants } from 'node:fs';
import { chmod, mkdir, open, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { tablesOf } from './journal.js';
import type { ChangeEntry, ChangeFilter, ChangeState, ImageKind, Journal, NewChange, RowImage } from './journal.js';

export function journalPath(stateDir: string): string {
  return join(stateDir, 'journal', 'journal.log');
}

interface Located {
  entry: ChangeEntry;
  /** Where its line is in the file. */
  offset: number;
  length: number;
}

export class FileJournal implements Journal {
  private readonly changes = new Map<string, Located>();
  private readonly order: Located[] = [];
  /** Appends run one at a time, in order. */
  private tail: Promise<void> = Promise.resolve();
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
      const end = buf.lastIndexOf(0x0a) + 1;
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
      const journal = new FileJournal(fh, end, path);
      let at = 0;
      while (at < end) {
        const nl = buf.indexOf(0x0a, at);
        journal.apply(buf.subarray(at, nl).toString('utf8'), at, nl + 1 - at);
        at = nl + 1;
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
      };
      // The rows go last, so that reading an entry's head never needs them.
      const rows = c.rows.map((r) => [r.table, r.kind, r.image]);
      return `${JSON.stringify(head).slice(0, -1)},"rows":${JSON.stringify(rows)}}\n`;
    });
    await this.append(lines);
  }

  async settle(ids: readonly string[], state: 'committed' | 'aborted'): Promise<void> {
    if (ids.length === 0) return;
    await this.append([`${JSON.stringify({ e: 'state', ids, state, at: new Date().toISOString() })}\n`]);
  }

  async markUndone(ids: readonly string[], by: string): Promise<void> {
    if (ids.length === 0) return;
    await this.append([`${JSON.stringify({ e: 'undone', ids, by, at: new Date().toISOString() })}\n`]);
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
    const line = JSON.parse(buffer.toString('utf8')) as { rows: [string, ImageKind, string][] };
    return line.rows.map(([table, kind, image]) => ({ table, kind, image }));
  }

  async close(): Promise<void> {
    await this.tail.catch(() => undefined);
    await this.fh.close();
  }

  /** Appends lines and syncs them; appends run in order, one at a time. */
  private append(lines: string[]): Promise<void> {
    const run = this.tail.then(async () => {
      const data = Buffer.from(lines.join(''), 'utf8');
      const start = this.size;
      await this.fh.write(data, 0, data.length, null);
      await this.fh.datasync();
      this.size += data.length;
      let at = start;
      for (const line of lines) {
        const length = Buffer.byteLength(line, 'utf8');
        this.apply(line.slice(0, -1), at, length);
        at += length;
      }
    });
    // A failed append fails its caller; the next one still runs.
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Takes one line's event into the in-memory picture. */
  private apply(line: string, offset: number, length: number): void {
    // Only the head of a change line is parsed here; its rows are read when needed.
    const cut = line.startsWith('{"e":"change"') ? line.indexOf(',"rows":[') : -1;
    const event = JSON.parse(cut === -1 ? line : `${line.slice(0, cut)}}`) as Record<string, unknown>;
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
      };
      const located = { entry, offset, length };
      this.changes.set(entry.id, located);
      this.order.push(located);
      return;
    }
    const ids = Array.isArray(event.ids) ? (event.ids as string[]) : [];
    for (const id of ids) {
      const found = this.changes.get(id);
      if (found === undefined) continue;
      if (event.e === 'state') found.entry.state = event.state as ChangeState;
      if (event.e === 'undone') {
        found.entry.state = 'undone';
        found.entry.undoneBy = String(event.by);
      }
    }
  }
}
