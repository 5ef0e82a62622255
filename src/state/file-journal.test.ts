import { appendFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileJournal, journalPath } from './file-journal.js';
import type { RowImage } from './journal.js';

describe('the file journal', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-journal-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const rows: RowImage[] = [
    { table: 'public.companies', kind: 'd', image: '{"id":1,"name":"Acme","n":12345678901234567890.000000001}' },
    { table: 'public.executives', kind: 'd', image: '{"id":7,"company_id":1,"bio":"line one\\nline two"}' },
    // A json column keeps its text as written, raw newline included.
    { table: 'public.docs', kind: 'o', image: '{"id":2,"body":{\n  "a": "tab\there"\n}}' },
    { table: 'public.docs', kind: 'n', image: '{"id":2,"body":{"a":"b"}}' },
  ];

  it('keeps changes, their rows exactly, and their outcomes across a reopen', async () => {
    const j = await FileJournal.open(dir);
    await j.record([{ id: 'c1', txid: '100', kind: 'write', agent: 'ops', by: null, statement: 'DELETE FROM companies', rows }]);
    await j.record([{ id: 'c2', txid: '101', kind: 'write', agent: 'ops', by: null, statement: 'UPDATE t SET x = 1', rows: [] }]);
    expect(j.pending().map((e) => e.id)).toEqual(['c1', 'c2']);
    await j.settle(['c1'], 'committed');
    await j.settle(['c2'], 'aborted');
    expect(j.list().map((e) => e.id)).toEqual(['c1']);
    expect(await j.rows('c1')).toEqual(rows);
    await j.markUndone(['c1'], 'u1');
    await j.close();

    const again = await FileJournal.open(dir);
    expect(again.get('c1')).toMatchObject({ state: 'undone', undoneBy: 'u1', tables: { 'public.companies': 1, 'public.executives': 1, 'public.docs': 1 }, images: 4 });
    expect(again.get('c2')?.state).toBe('aborted');
    expect(await again.rows('c1')).toEqual(rows);
    expect(again.list({ table: 'executives', all: true }).map((e) => e.id)).toEqual(['c1']);
    await again.close();
  });

  it('cuts off a change whose row lines a crash cut short, and saves the bytes beside the log', async () => {
    const j = await FileJournal.open(dir);
    await j.record([{ id: 'kept', txid: '1', kind: 'write', agent: 'ops', by: null, statement: 's', rows: rows.slice(0, 1) }]);
    await j.close();
    // A change of two images of which only one line reached the disk.
    await appendFile(journalPath(dir), `${JSON.stringify({ e: 'change', id: 'torn', txid: '2', at: 'x', kind: 'write', statement: 's', images: 2, names: ['public.t'] })}\nd\t0\t{"id":1}\n`);
    const reopened = await FileJournal.open(dir);
    expect(reopened.get('torn')).toBeNull();
    expect(await reopened.rows('kept')).toEqual(rows.slice(0, 1));
    await reopened.record([{ id: 'after', txid: '3', kind: 'write', agent: 'ops', by: null, statement: 's', rows: rows.slice(1, 2) }]);
    await reopened.close();
    const last = await FileJournal.open(dir);
    expect(await last.rows('after')).toEqual(rows.slice(1, 2));
    expect(last.list({ all: true }).map((e) => e.id)).toEqual(['kept', 'after']);
    await last.close();
    expect((await readdir(join(dir, 'journal'))).some((f) => f.startsWith('journal.log.torn-'))).toBe(true);
  });

  it('writes concurrent records in group commits: fewer syncs than records, each change and its rows where they belong', async () => {
    const j = await FileJournal.open(dir);
    let syncs = 0;
    const fh = (j as unknown as { fh: { datasync: () => Promise<void> } }).fh;
    const datasync = fh.datasync.bind(fh);
    fh.datasync = () => {
      syncs++;
      return datasync();
    };
    const ids = Array.from({ length: 20 }, (_, i) => `g${i}`);
    // Marks (unsynced) interleaved with changes (synced), all at once, as concurrent sessions send them.
    await Promise.all(
      ids.flatMap((id, i) => [
        j.record([{ id, txid: String(200 + i), kind: 'write', agent: 'ops', by: null, statement: `UPDATE t SET x = ${i}`, rows: rows.slice(i % 4, (i % 4) + 1) }]),
        ...(i > 0 ? [j.settle([`g${i - 1}`], 'committed')] : []),
      ]),
    );
    expect(syncs).toBeGreaterThan(0);
    expect(syncs).toBeLessThan(ids.length);
    for (const [i, id] of ids.entries()) expect(await j.rows(id)).toEqual(rows.slice(i % 4, (i % 4) + 1));
    await j.close();
    const again = await FileJournal.open(dir);
    expect(again.list({ all: true }).map((e) => e.id)).toEqual(ids);
    expect(again.list().map((e) => e.id)).toEqual(ids.slice(0, -1));
    for (const [i, id] of ids.entries()) expect(await again.rows(id)).toEqual(rows.slice(i % 4, (i % 4) + 1));
    await again.close();
  });
});
