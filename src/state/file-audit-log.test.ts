import { describe, it, expect, afterEach, vi } from 'vitest';
import { appendFile, mkdir, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditUnavailableError, GENESIS_HASH, auditRecordHead, sealAuditRecord } from './audit-log.js';
import type { AuditEntry, AuditRecord } from './audit-log.js';
import { AuditLogCorruptError, FileAuditLog, auditDir, auditLogPath, followAudit, readAuditTail } from './file-audit-log.js';
import type { AuditFileWriter } from './file-audit-log.js';
import { verifyAuditLog } from './audit-verify.js';

const dirs: string[] = [];
async function stateDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-audit-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function entry(i: number, extra: Partial<AuditEntry> = {}): AuditEntry {
  return { event: 'statement', agent: 'claude', session: 's1', client: '127.0.0.1:5000', text: `SELECT ${i}`, decision: 'allow', rule: 'reads', rows: 1, durationMs: 0.5, ...extra };
}

async function records(dir: string): Promise<AuditRecord[]> {
  const text = await readFile(auditLogPath(dir), 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditRecord);
}

interface Counter {
  writes: number;
  syncs: number;
  inner: AuditFileWriter | null;
}
function counting(counter: Counter) {
  return (inner: AuditFileWriter): AuditFileWriter => {
    counter.inner = inner;
    return {
      write: (data) => {
        counter.writes++;
        return inner.write(data);
      },
      sync: () => {
        counter.syncs++;
        return inner.sync();
      },
      close: () => inner.close(),
    };
  };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('FileAuditLog', () => {
  it('creates the folder 0700 and the file 0600, and starts the chain at seq 1 with a zero prev', async () => {
    const dir = await stateDir();
    const log = await FileAuditLog.open(dir, { now: () => Date.UTC(2026, 10, 26, 14, 50, 1, 123) });
    log.append(entry(1));
    await log.close();
    expect((await stat(auditDir(dir))).mode & 0o777).toBe(0o700);
    expect((await stat(auditLogPath(dir))).mode & 0o777).toBe(0o600);
    const [first] = await records(dir);
    expect(first).toMatchObject({ seq: 1, at: '2026-11-26T14:50:01.123Z', prev: GENESIS_HASH, text: 'SELECT 1' });
  });

  it('continues the chain across close and reopen', async () => {
    const dir = await stateDir();
    for (const round of [0, 1, 2]) {
      const log = await FileAuditLog.open(dir);
      for (let i = 0; i < 3; i++) log.append(entry(round * 3 + i));
      await log.close();
    }
    const all = await records(dir);
    expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (let i = 1; i < all.length; i++) expect(all[i]?.prev).toBe(all[i - 1]?.hash);
    expect(await verifyAuditLog(dir)).toEqual({ ok: true, records: 9, head: all.at(-1)?.hash });
  });

  it('commits many appends in few writes, after flushMs', async () => {
    const dir = await stateDir();
    const counter: Counter = { writes: 0, syncs: 0, inner: null };
    const log = await FileAuditLog.open(dir, { flushMs: 20, wrapWriter: counting(counter) });
    for (let i = 0; i < 500; i++) log.append(entry(i));
    await Promise.resolve();
    expect(counter.writes).toBe(0); // nothing written in the caller's turn
    await vi.waitFor(() => expect(counter.syncs).toBe(1), { timeout: 2000, interval: 5 });
    expect(counter.writes).toBe(1);
    for (let i = 0; i < 500; i++) log.append(entry(i));
    await log.flush();
    expect(counter).toMatchObject({ writes: 2, syncs: 2 });
    await log.close();
    expect((await records(dir)).length).toBe(1000);
  });


  it('writes texts of any script and size byte for byte, the chain intact, batch after batch', async () => {
    const dir = await stateDir();
    const log = await FileAuditLog.open(dir, { flushMs: 1, maxBatch: 7 });
    const texts = ['SELECT \'é\'', 'SELECT \'日本語\'', 'SELECT \'🦆\'', `SELECT '${'ß'.repeat(200_000)}'`, 'SELECT 1'];
    for (let round = 0; round < 5; round++) for (const text of texts) log.append(entry(0, { text }));
    await log.close();
    const all = await records(dir);
    expect(all.map((r) => r.text?.length)).toEqual(Array.from({ length: 5 }, () => texts.map((t) => Math.min(t.length, 16 * 1024))).flat());
    expect(all.slice(0, 3).map((r) => r.text)).toEqual(texts.slice(0, 3));
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 25 });
  });

  it('under a steady stream of appends writes once every flushMs, not once per write', async () => {
    const dir = await stateDir();
    const counter: Counter = { writes: 0, syncs: 0, inner: null };
    const log = await FileAuditLog.open(dir, { flushMs: 50, wrapWriter: counting(counter) });
    const started = Date.now();
    let appended = 0;
    while (Date.now() - started < 400) {
      log.append(entry(appended++));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    // A write per round trip through the thread pool would be one per append here.
    expect(appended).toBeGreaterThan(100);
    expect(counter.writes).toBeLessThanOrEqual(10);
    await log.close();
    expect((await records(dir)).length).toBe(appended);
  });
  it('syncs reads\' records at most every syncMs, but at once for a durable entry or a flush', async () => {
    const dir = await stateDir();
    const counter: Counter = { writes: 0, syncs: 0, inner: null };
    const log = await FileAuditLog.open(dir, { flushMs: 1, syncMs: 300, wrapWriter: counting(counter) });
    log.append(entry(0));
    await vi.waitFor(() => expect(counter.syncs).toBe(1), { timeout: 2000, interval: 5 }); // the first batch syncs
    for (let round = 1; round <= 5; round++) {
      log.append(entry(round));
      await vi.waitFor(() => expect(counter.writes).toBe(round + 1), { timeout: 2000, interval: 2 });
    }
    expect(counter.syncs).toBe(1); // written, not yet synced
    await vi.waitFor(() => expect(counter.syncs).toBe(2), { timeout: 2000, interval: 10 }); // within syncMs
    log.append(entry(6));
    await log.appendDurable(entry(7));
    expect(counter.syncs).toBe(3);
    log.append(entry(8));
    await log.flush();
    expect(counter.syncs).toBe(4);
    await log.close();
    expect((await records(dir)).length).toBe(9);
  });

  it('writes at once when maxBatch entries wait, without waiting for flushMs', async () => {
    const dir = await stateDir();
    const counter: Counter = { writes: 0, syncs: 0, inner: null };
    const log = await FileAuditLog.open(dir, { flushMs: 60_000, maxBatch: 10, wrapWriter: counting(counter) });
    for (let i = 0; i < 9; i++) log.append(entry(i));
    await new Promise((r) => setTimeout(r, 30));
    expect(counter.writes).toBe(0);
    log.append(entry(9));
    await vi.waitFor(() => expect(counter.syncs).toBe(1), { timeout: 2000, interval: 5 });
    await log.close();
    expect((await records(dir)).length).toBe(10);
  });

  it('resolves appendDurable only after the batch holding it is synced, with the record as written', async () => {
    const dir = await stateDir();
    const gate = deferred();
    let synced = false;
    const log = await FileAuditLog.open(dir, {
      flushMs: 60_000,
      wrapWriter: (inner) => ({
        write: (data) => inner.write(data),
        sync: async () => {
          await gate.promise;
          await inner.sync();
          synced = true;
        },
        close: () => inner.close(),
      }),
    });
    log.append(entry(1));
    let record: AuditRecord | null = null;
    const durable = log.appendDurable(entry(2, { decision: 'deny', reason: 'Writes need approval.' })).then((r) => (record = r));
    await new Promise((r) => setTimeout(r, 30));
    expect(record).toBeNull(); // written (maybe) but not yet synced
    expect(synced).toBe(false);
    gate.resolve();
    await durable;
    expect(synced).toBe(true);
    const onDisk = await records(dir);
    expect(record).toEqual(onDisk[1]);
    expect(onDisk.map((r) => r.seq)).toEqual([1, 2]); // the plain append before it went in the same batch
    await log.close();
  });

  it('becomes unhealthy when a write fails: onFailure once, append throws, durable entries and flush reject', async () => {
    const dir = await stateDir();
    const counter: Counter = { writes: 0, syncs: 0, inner: null };
    const failures: AuditUnavailableError[] = [];
    const log = await FileAuditLog.open(dir, { wrapWriter: counting(counter), onFailure: (e) => failures.push(e) });
    await log.appendDurable(entry(1));
    expect(log.healthy).toBe(true);
    // Close the real file handle under the log: the next write fails in the operating system.
    await counter.inner?.close();
    const lost = log.appendDurable(entry(2));
    const lostToo = log.appendDurable(entry(3));
    const flushed = log.flush();
    await expect(lost).rejects.toBeInstanceOf(AuditUnavailableError);
    await expect(lostToo).rejects.toBeInstanceOf(AuditUnavailableError);
    await expect(flushed).rejects.toBeInstanceOf(AuditUnavailableError);
    expect(log.healthy).toBe(false);
    expect(() => log.append(entry(4))).toThrow(AuditUnavailableError);
    await expect(log.appendDurable(entry(5))).rejects.toThrow(/could not write its audit log/);
    await expect(log.flush()).rejects.toBeInstanceOf(AuditUnavailableError);
    expect(failures).toHaveLength(1);
    expect(failures[0]?.message).toMatch(/could not write its audit log .*audit\.jsonl/);
    expect(failures[0]?.cause).toBeInstanceOf(Error);
    expect(log.failure).toBe(failures[0]);
    await log.close();
    expect(failures).toHaveLength(1);
    // What reached the disk is still a valid chain, and the next start continues it.
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 1 });
  });

  it('becomes unhealthy when fsync fails (injected EIO), and calls onFailure once', async () => {
    const dir = await stateDir();
    let failures = 0;
    const log = await FileAuditLog.open(dir, {
      flushMs: 1,
      onFailure: () => failures++,
      wrapWriter: (inner) => ({
        write: (data) => inner.write(data),
        sync: () => Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })),
        close: () => inner.close(),
      }),
    });
    log.append(entry(1));
    log.append(entry(2));
    await vi.waitFor(() => expect(log.healthy).toBe(false), { timeout: 2000, interval: 2 });
    expect(() => log.append(entry(3))).toThrow(/EIO/);
    await new Promise((r) => setTimeout(r, 20));
    expect(failures).toBe(1);
    await log.close();
  });

  it('refuses to open when the log path is not a file', async () => {
    const dir = await stateDir();
    await mkdir(auditLogPath(dir), { recursive: true });
    await expect(FileAuditLog.open(dir)).rejects.toThrow(/EISDIR|not a regular file/);
  });

  it('refuses appends after close, and refuses entries that are not valid without using a seq', async () => {
    const dir = await stateDir();
    const log = await FileAuditLog.open(dir);
    expect(() => log.append({ ...entry(1), detail: { n: 1n } })).toThrow(TypeError);
    expect(() => log.append({ ...entry(1), event: 'nope' as 'statement' })).toThrow(/event "nope"/);
    const e = entry(1, { detail: { k: 'before' }, params: ['a'] });
    log.append(e);
    (e.detail as Record<string, unknown>).k = 'after'; // the record is what was appended, not what the object became
    e.params?.push('b');
    await log.close();
    expect(log.healthy).toBe(false);
    expect(() => log.append(entry(2))).toThrow(/closed/);
    const all = await records(dir);
    expect(all).toHaveLength(1);
    expect(all[0]).toMatchObject({ seq: 1, detail: { k: 'before' }, params: ['a'] });
  });

  it('refuses appends past maxPending while the disk stalls, without becoming unhealthy', async () => {
    const dir = await stateDir();
    const gate = deferred();
    const log = await FileAuditLog.open(dir, {
      maxPending: 5,
      wrapWriter: (inner) => ({ write: (d) => inner.write(d), sync: async () => { await gate.promise; await inner.sync(); }, close: () => inner.close() }),
    });
    log.append(entry(0));
    await new Promise((r) => setTimeout(r, 20)); // the first batch is now stuck in sync
    for (let i = 1; i <= 5; i++) log.append(entry(i));
    expect(() => log.append(entry(6))).toThrow(/falling behind/);
    expect(log.healthy).toBe(true);
    gate.resolve();
    await log.close();
    expect((await records(dir)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('reads only the tail on open: junk before the last record is not read, and a record longer than a read chunk is', async () => {
    const dir = await stateDir();
    await mkdir(auditDir(dir), { recursive: true });
    const junk = 'not a record\n'.repeat(400_000); // 5 MB that would fail any full read
    const big = entry(1, { text: 'SELECT ' + "'x' || ".repeat(30_000) + "'y'" }); // ~210 kB, over several 64 kB chunks
    const prev = 'ab'.repeat(32);
    const last = sealAuditRecord(auditRecordHead(big, 1000, '2026-01-01T00:00:00.000Z'), prev);
    await writeFile(auditLogPath(dir), junk + last.line);
    const log = await FileAuditLog.open(dir);
    const next = await log.appendDurable(entry(2));
    await log.close();
    expect(next).toMatchObject({ seq: 1001, prev: last.hash });
  });

  describe('a torn last line', () => {
    async function tornLog(): Promise<{ dir: string; before: AuditRecord[]; cut: number; size: number }> {
      const dir = await stateDir();
      const log = await FileAuditLog.open(dir);
      for (let i = 0; i < 3; i++) log.append(entry(i));
      await log.close();
      const before = await records(dir);
      const size = (await stat(auditLogPath(dir))).size;
      const cut = size - 40; // in the middle of the third line
      await truncate(auditLogPath(dir), cut);
      return { dir, before, cut, size };
    }

    it('is cut off, saved beside the log and put on the record by a startup entry (repair)', async () => {
      const { dir, before } = await tornLog();
      const text = await readFile(auditLogPath(dir), 'utf8');
      const fragment = text.slice(text.lastIndexOf('\n') + 1);
      expect((await verifyAuditLog(dir)).ok).toBe(false);
      const log = await FileAuditLog.open(dir);
      log.append(entry(9));
      await log.close();
      const after = await records(dir);
      expect(after.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
      expect(after[1]).toEqual(before[1]);
      const startup = after[2];
      expect(startup).toMatchObject({ event: 'startup', agent: null, detail: { tornTail: { bytes: Buffer.byteLength(fragment) } } });
      expect(startup?.reason).toMatch(/torn record/);
      const savedTo = (startup?.detail?.tornTail as { savedTo: string }).savedTo;
      expect(await readFile(savedTo, 'utf8')).toBe(fragment);
      expect((await stat(savedTo)).mode & 0o777).toBe(0o600);
      expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 4 });
    });

    it('stops the log from opening under the refuse policy, leaving the file as it was', async () => {
      const { dir, cut } = await tornLog();
      await expect(FileAuditLog.open(dir, { tornTail: 'refuse' })).rejects.toThrow(AuditLogCorruptError);
      await expect(FileAuditLog.open(dir, { tornTail: 'refuse' })).rejects.toThrow(/torn record: \d+ bytes after the last complete line/);
      expect((await stat(auditLogPath(dir))).size).toBe(cut);
      expect((await readdir(auditDir(dir))).filter((n) => n.includes('torn'))).toEqual([]);
    });
  });

  it.each([
    ['garbage', (text: string) => text + 'garbage\n', /unreadable/],
    ['an edited last record', (text: string) => text.replace(/"SELECT 2"/, '"SELECT 3"'), /hash .* does not match/],
    ['an empty last line', (text: string) => text + '\n', /unreadable/],
  ])('refuses to chain past %s at the end of the file', async (_name, edit, message) => {
    const dir = await stateDir();
    const log = await FileAuditLog.open(dir);
    for (let i = 0; i < 3; i++) log.append(entry(i));
    await log.close();
    await writeFile(auditLogPath(dir), edit(await readFile(auditLogPath(dir), 'utf8')));
    const opening = FileAuditLog.open(dir);
    await expect(opening).rejects.toBeInstanceOf(AuditLogCorruptError);
    await expect(opening).rejects.toThrow(message);
  });

  it('measures 100k appends and a flush (logged, not asserted)', async () => {
    const dir = await stateDir();
    const log = await FileAuditLog.open(dir);
    const n = 100_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) log.append(entry(i, { params: [String(i), null], fingerprint: 'a1b2c3d4' }));
    const t1 = performance.now();
    await log.flush();
    const t2 = performance.now();
    await log.close();
    const t3 = performance.now();
    const verified = await verifyAuditLog(dir);
    const t4 = performance.now();
    console.log(
      `audit: ${n} appends ${(t1 - t0).toFixed(0)} ms (${(((t1 - t0) * 1000) / n).toFixed(2)} µs each), flush ${(t2 - t1).toFixed(0)} ms, ` +
        `total ${(t2 - t0).toFixed(0)} ms; close ${(t3 - t2).toFixed(0)} ms; verify ${(t4 - t3).toFixed(0)} ms`,
    );
    expect(verified).toMatchObject({ ok: true, records: n });
  });
});

describe('readAuditTail', () => {
  it('returns the last n records, leaves out a torn line, and says where they end', async () => {
    const dir = await stateDir();
    expect(await readAuditTail(dir, 5)).toEqual({ records: [], end: 0 });
    const log = await FileAuditLog.open(dir);
    for (let i = 0; i < 10; i++) log.append(entry(i));
    await log.close();
    const size = (await stat(auditLogPath(dir))).size;
    const tail = await readAuditTail(dir, 3);
    expect(tail.records.map((r) => r.text)).toEqual(['SELECT 7', 'SELECT 8', 'SELECT 9']);
    expect(tail.end).toBe(size);
    expect((await readAuditTail(dir, 50)).records).toHaveLength(10);
    expect((await readAuditTail(dir, 0)).records).toEqual([]);
    await appendFile(auditLogPath(dir), '{"seq":11,"at":"');
    const torn = await readAuditTail(dir, 2);
    expect(torn.records.map((r) => r.seq)).toEqual([9, 10]);
    expect(torn.end).toBe(size);
  });

  it('says which line is not a record', async () => {
    const dir = await stateDir();
    const log = await FileAuditLog.open(dir);
    log.append(entry(1));
    await log.close();
    await appendFile(auditLogPath(dir), 'oops\n');
    await expect(readAuditTail(dir, 2)).rejects.toThrow(/line \(ending at byte \d+\) that is not a record/);
  });
});

describe('followAudit', () => {
  it('passes on records as they are written, waits for partial lines, and stops on abort', async () => {
    const dir = await stateDir();
    const log = await FileAuditLog.open(dir, { flushMs: 1 });
    log.append(entry(0));
    await log.flush();
    const { end } = await readAuditTail(dir, 10);
    const seen: AuditRecord[] = [];
    const abort = new AbortController();
    // Its handler is attached at once: a follower failing early is this test's failure, not an unhandled rejection.
    const stopped = expect(followAudit(dir, (r) => seen.push(r), abort.signal, { from: end, pollMs: 5 })).resolves.toBeUndefined();
    log.append(entry(1));
    log.append(entry(2));
    await vi.waitFor(() => expect(seen.map((r) => r.seq)).toEqual([2, 3]), { timeout: 2000, interval: 5 });
    await log.close();

    // A line written in two parts is passed on once, when its newline arrives.
    const lastHash = seen.at(-1)?.hash as string;
    const { line } = sealAuditRecord(auditRecordHead(entry(3, { text: 'SELECT \u00e9\u00e9' }), 4, '2026-01-01T00:00:00.000Z'), lastHash);
    const bytes = Buffer.from(line);
    const split = bytes.indexOf(0xc3) + 1; // in the middle of a two-byte character
    await appendFile(auditLogPath(dir), bytes.subarray(0, split));
    await new Promise((r) => setTimeout(r, 40));
    expect(seen).toHaveLength(2);
    await appendFile(auditLogPath(dir), bytes.subarray(split));
    await vi.waitFor(() => expect(seen).toHaveLength(3), { timeout: 2000, interval: 5 });
    expect(seen[2]?.text).toBe('SELECT \u00e9\u00e9');

    abort.abort();
    await stopped;
  });

  it('starts at the end by default and waits for a log that does not exist yet', async () => {
    const dir = await stateDir();
    const seen: number[] = [];
    const abort = new AbortController();
    const stopped = expect(followAudit(dir, (r) => seen.push(r.seq), abort.signal, { pollMs: 5 })).resolves.toBeUndefined();
    await new Promise((r) => setTimeout(r, 20));
    const log = await FileAuditLog.open(dir, { flushMs: 1 });
    log.append(entry(0));
    await vi.waitFor(() => expect(seen).toEqual([1]), { timeout: 2000, interval: 5 });
    await log.close();
    abort.abort();
    await stopped;

    const later: number[] = [];
    const again = new AbortController();
    const stoppedAgain = expect(followAudit(dir, (r) => later.push(r.seq), again.signal, { pollMs: 5 })).resolves.toBeUndefined();
    await new Promise((r) => setTimeout(r, 20));
    const reopened = await FileAuditLog.open(dir, { flushMs: 1 });
    reopened.append(entry(1));
    await vi.waitFor(() => expect(later).toEqual([2]), { timeout: 2000, interval: 5 });
    await reopened.close();
    again.abort();
    await stoppedAgain;
  });

  it('rejects when records it already passed on are cut off', async () => {
    const dir = await stateDir();
    const log = await FileAuditLog.open(dir);
    log.append(entry(0));
    await log.close();
    const abort = new AbortController();
    const following = followAudit(dir, () => undefined, abort.signal, { from: 0, pollMs: 5 });
    // The follower may reject while truncate() is still pending: the expectation's handler is attached first.
    const rejected = expect(following).rejects.toThrow(/shrank/);
    await new Promise((r) => setTimeout(r, 20));
    await truncate(auditLogPath(dir), 10);
    await rejected;
    abort.abort();
  });
});
