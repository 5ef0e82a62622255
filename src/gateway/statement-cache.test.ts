import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClassifierPool } from '../sql/classifier-pool.js';
import { loadParser } from '../sql/classify.js';
import { entryBytes, FACTS_ESTIMATE_BYTES, StatementCache, TOO_COMPLEX_MIN_CHARS, TOO_COMPLEX_TTL_MS } from './statement-cache.js';

let pool: ClassifierPool;

beforeAll(async () => {
  await loadParser();
  pool = new ClassifierPool({ workers: 1, timeoutMs: 1000 });
  await pool.ready();
});

afterAll(async () => {
  await pool.close();
});

describe('StatementCache', () => {
  it('shares one parse between plain SELECTs that differ only in literals', () => {
    const cache = new StatementCache();
    const a = cache.classify('SELECT abalance FROM pgbench_accounts WHERE aid = 1;');
    const b = cache.classify('SELECT abalance FROM pgbench_accounts WHERE aid = 2;');
    expect(b).toBe(a);
  });

  it.each([
    ["SET standard_conforming_strings = 'on'", "SET standard_conforming_strings = 'off'"],
    ["SET client_encoding = 'UTF8'", "SET client_encoding = 'SJIS'"],
    ["SELECT set_config('application_name', 'x', false)", "SELECT set_config('default_transaction_read_only', 'off', false)"],
    ['BEGIN ISOLATION LEVEL SERIALIZABLE', 'BEGIN ISOLATION LEVEL SERIALIZABLE'],
    ["SELECT 1 FROM t WHERE a = 'x' FOR UPDATE", "SELECT 1 FROM t WHERE a = 'y' FOR UPDATE"],
  ])('never shares facts that depend on literal values: %s / %s', async (first, second) => {
    for (const cache of [new StatementCache(), new StatementCache({ pool })]) {
      const a = await cache.classifyAsync(first);
      const b = await cache.classifyAsync(second);
      if (first !== second) expect(b).not.toBe(a);
      expect(b.ok && b.statements[0]!.text).toBe(second);
      expect(cache.lookup(second)).toBe(b);
    }
  });

  it('parses each new text of an unshareable kind on its own', () => {
    const cache = new StatementCache();
    const on = cache.classify("SET standard_conforming_strings = 'on'");
    const off = cache.classify("SET standard_conforming_strings = 'off'");
    expect(on.ok && on.statements[0]!.setting?.values).toEqual(['on']);
    expect(off.ok && off.statements[0]!.setting?.values).toEqual(['off']);
  });

  it('answers hits synchronously with lookup, exact and by shape, after a miss went to the pool', async () => {
    const cache = new StatementCache({ pool });
    expect(cache.lookup('SELECT abalance FROM pgbench_accounts WHERE aid = 1')).toBeUndefined();
    const facts = await cache.classifyAsync('SELECT abalance FROM pgbench_accounts WHERE aid = 1');
    expect(facts.ok).toBe(true);
    expect(cache.lookup('SELECT abalance FROM pgbench_accounts WHERE aid = 1')).toBe(facts);
    expect(cache.lookup('SELECT abalance FROM pgbench_accounts WHERE aid = 99')).toBe(facts);
    expect(await cache.classifyAsync('SELECT abalance FROM pgbench_accounts WHERE aid = 7')).toBe(facts);
  });

  it('parses a text asked for twice at once only once', async () => {
    const cache = new StatementCache({ pool });
    const [a, b] = await Promise.all([cache.classifyAsync('SELECT x FROM once'), cache.classifyAsync('SELECT x FROM once')]);
    expect(b).toBe(a);
  });

  it('refuses a statement over max_statement_bytes unread, counting UTF-8 bytes', async () => {
    const cache = new StatementCache({ pool, maxStatementBytes: 1024 });
    const ascii = `SELECT '${'x'.repeat(1020)}'`;
    const refused = await cache.classifyAsync(ascii);
    expect(refused).toMatchObject({ ok: false, unjudged: 'too-large' });
    expect(!refused.ok && refused.error).toBe(
      'the statement is 1029 bytes long, more than the 1024 bytes limits.max_statement_bytes allows, so it was not parsed or run',
    );
    expect(cache.classify(ascii)).toMatchObject({ unjudged: 'too-large' });
    // 340 snowmen are 340 UTF-16 units but 1020 bytes, plus 9 bytes of SELECT '': over.
    expect(await cache.classifyAsync(`SELECT '${'☃'.repeat(340)}'`)).toMatchObject({ unjudged: 'too-large' });
    expect((await cache.classifyAsync(`SELECT '${'☃'.repeat(300)}'`)).ok).toBe(true);
    // Even though a shorter text of the same shape is cached now.
    expect(cache.lookup(ascii)).toMatchObject({ unjudged: 'too-large' });
    expect(cache.lookup(`SELECT '${'x'.repeat(10)}'`)?.ok).toBe(true);
  });

  it('caches too-complex refusals but not too-busy ones', async () => {
    const slow = new ClassifierPool({ workers: 1, timeoutMs: 200, maxQueue: 0 });
    try {
      await slow.ready();
      const cache = new StatementCache({ pool: slow });
      const hostile = '/*'.repeat(100_000);
      const first = cache.classifyAsync(hostile);
      const busy = await cache.classifyAsync('SELECT 1');
      expect(busy).toMatchObject({ ok: false, unjudged: 'too-busy' });
      expect(cache.lookup('SELECT 1')).toBeUndefined();
      expect(await first).toMatchObject({ ok: false, unjudged: 'too-complex' });
      expect(cache.lookup(hostile)).toBe(await first);
      // The worker ended at the deadline has a successor, once it has loaded the parser.
      await slow.ready();
      expect((await cache.classifyAsync('SELECT 1')).ok).toBe(true);
    } finally {
      await slow.close();
    }
  });

  it("keeps a too-complex verdict for TOO_COMPLEX_TTL_MS only, and never a short text's (a busy machine, not the text)", async () => {
    let parses = 0;
    // A pool that always runs out of time: what a machine under heavy load does to any statement.
    const outOfTime = {
      classify: () => {
        parses++;
        return Promise.resolve({ ok: false as const, unjudged: 'too-complex' as const, error: 'the statement is too complex to judge in time' });
      },
    } as unknown as ClassifierPool;
    let now = 1_000;
    const cache = new StatementCache({ pool: outOfTime, now: () => now });
    const short = 'SELECT count(*) FROM items';
    const long = 'SELECT 1 ' + '/*'.repeat(TOO_COMPLEX_MIN_CHARS);
    for (const text of [short, long]) expect(await cache.classifyAsync(text)).toMatchObject({ ok: false, unjudged: 'too-complex' });
    expect(cache.lookup(short)).toBeUndefined();
    expect(cache.lookup(long)).toMatchObject({ unjudged: 'too-complex' });
    now += TOO_COMPLEX_TTL_MS - 1;
    await cache.classifyAsync(long);
    expect(parses).toBe(2);
    now += 1;
    expect(cache.lookup(long)).toBeUndefined();
    await cache.classifyAsync(long);
    expect(parses).toBe(3);
  });

  it('evicts the least recently used entries to stay within its byte budget', () => {
    const texts = Array.from({ length: 10 }, (_, i) => `SET application_name = 'app${i}'`);
    const cache = new StatementCache({ maxBytes: 2 * 5 * (FACTS_ESTIMATE_BYTES + 200) });
    const first = cache.classify(texts[0]!);
    const perEntry = entryBytes(texts[0]!, first);
    expect(perEntry).toBeGreaterThan(FACTS_ESTIMATE_BYTES);
    const fits = Math.floor((5 * (FACTS_ESTIMATE_BYTES + 200)) / perEntry);
    for (const text of texts.slice(1, fits)) cache.classify(text);
    expect(cache.size).toBe(fits);
    // Touch the oldest: the next insert evicts the second oldest instead.
    expect(cache.lookup(texts[0]!)).toBe(first);
    cache.classify(texts[fits]!);
    expect(cache.size).toBe(fits);
    expect(cache.lookup(texts[0]!)).toBe(first);
    expect(cache.lookup(texts[1]!)).toBeUndefined();
    expect(cache.bytes).toBeLessThanOrEqual(5 * (FACTS_ESTIMATE_BYTES + 200));
  });

  it('does not keep an entry larger than its whole budget', () => {
    const cache = new StatementCache({ maxBytes: 4096 });
    const long = `SELECT ${'a, '.repeat(1000)}b FROM t`;
    expect(cache.classify(long).ok).toBe(true);
    expect(cache.size).toBe(0);
    expect(cache.lookup(long)).toBeUndefined();
  });

  it('works without a cache at all (statement_cache_bytes 0)', async () => {
    const cache = new StatementCache({ pool, maxBytes: 0 });
    expect((await cache.classifyAsync('SELECT 1')).ok).toBe(true);
    expect(cache.size).toBe(0);
  });
});
