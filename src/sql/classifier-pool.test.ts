import { execFile } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClassifierPool } from './classifier-pool.js';
import type { ClassifierPoolOptions } from './classifier-pool.js';
import { classify, loadParser } from './classify.js';
import type { Classification } from './facts.js';

const pools: ClassifierPool[] = [];
function pool(options: ClassifierPoolOptions = {}): ClassifierPool {
  const p = new ClassifierPool(options);
  pools.push(p);
  return p;
}

beforeAll(async () => {
  await loadParser();
});

afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

/** `/*` repeated: PostgreSQL's lexer rescans the run at each one, so 100,000 take half a minute of CPU. */
const SLASH_STARS = '/*'.repeat(100_000);
/** About 6.9 MB: seconds of parsing. */
const IN_LIST = `SELECT * FROM t WHERE a IN (${Array.from({ length: 1_000_000 }, (_, i) => i).join(',')})`;

describe('ClassifierPool', () => {
  it('gives the same facts as classify() on the main thread, for reads, writes and syntax errors', async () => {
    const p = pool();
    await p.ready();
    for (const text of [
      'SELECT a, b FROM t WHERE id = 1',
      "UPDATE accounts SET balance = 0 WHERE id = 1; SET search_path = 'x'",
      'PREPARE q AS DELETE FROM t',
      'SELEC 1',
      "SELECT 'naïve ☃' FROM \"Ünïcode\"",
    ]) {
      expect(await p.classify(text)).toEqual(classify(text));
    }
  });

  it('refuses a run of /* and a multi-MB IN list at the deadline, while another worker and the event loop stay responsive', async () => {
    // Both in parallel (long texts are otherwise parsed one at a time: see below).
    const p = pool({ workers: 3, timeoutMs: 1000, largeTextChars: 10_000_000 });
    await p.ready();
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const started = performance.now();
    const elapsed: number[] = [];
    const hostile = [SLASH_STARS, IN_LIST].map((text) =>
      p.classify(text).then((r) => {
        elapsed.push(performance.now() - started);
        return r;
      }),
    );
    // Both hostile statements hold a worker; the third still answers at once.
    const simpleStarted = performance.now();
    const simple = await p.classify('SELECT 1');
    const simpleMs = performance.now() - simpleStarted;
    const results = await Promise.all(hostile);
    delay.disable();
    for (const r of results) {
      expect(r).toMatchObject({ ok: false, unjudged: 'too-complex' });
      expect(!r.ok && r.error).toMatch(/too complex to judge in time.*1000 ms/);
    }
    expect(simple.ok).toBe(true);
    expect(simpleMs).toBeLessThan(500);
    for (const ms of elapsed) {
      expect(ms).toBeGreaterThanOrEqual(990);
      expect(ms).toBeLessThan(2000);
    }
    // The hostile parse happens on other threads: the event loop only posts the text.
    const maxLagMs = delay.max / 1e6;
    expect(maxLagMs).toBeLessThan(250);
    console.log(`classifier pool: a simple SELECT beside two hostile parses took ${simpleMs.toFixed(1)} ms; event loop delay max ${maxLagMs.toFixed(1)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms`);
  });

  it('replaces a worker ended at the deadline and keeps serving', async () => {
    const p = pool({ workers: 1, timeoutMs: 300 });
    await p.ready();
    expect(await p.classify(SLASH_STARS)).toMatchObject({ ok: false, unjudged: 'too-complex' });
    expect(p.stats()).toMatchObject({ replaced: 1, workers: 1 });
    const after = await p.classify('SELECT 2');
    expect(after.ok).toBe(true);
    await p.ready();
    expect(p.stats()).toMatchObject({ workers: 1, busy: 0, queued: 0 });
  });

  it('answers a job queued behind a hostile one once a fresh worker takes it', async () => {
    const p = pool({ workers: 1, timeoutMs: 300 });
    await p.ready();
    const hostile = p.classify(SLASH_STARS);
    const queued = p.classify('SELECT 3');
    expect(p.stats().queued).toBe(1);
    expect(await hostile).toMatchObject({ unjudged: 'too-complex' });
    expect((await queued).ok).toBe(true);
  });

  it('retires a worker whose memory passed the budget after its job, and keeps serving', async () => {
    // A fresh worker already holds ~130 MiB of WebAssembly memory: a 16 MiB budget retires it after every job.
    const p = pool({ workers: 1, memoryBudgetBytes: 16 * 1024 * 1024 });
    await p.ready();
    expect((await p.classify('SELECT 1')).ok).toBe(true);
    expect(p.stats().recycled).toBe(1);
    expect((await p.classify('SELECT 2')).ok).toBe(true);
    expect(p.stats()).toMatchObject({ recycled: 2, replaced: 0, workers: 1 });
  });

  it('parses long texts one at a time, replacing the worker after each, while short ones go on', async () => {
    const p = pool({ workers: 2, largeTextChars: 1000 });
    await p.ready();
    const long = (n: number): string => `SELECT * FROM t WHERE a IN (${Array.from({ length: 2000 }, (_, i) => i + n).join(',')})`;
    const first = p.classify(long(0), 'a');
    const second = p.classify(long(1), 'b');
    const short = p.classify('SELECT 1', 'c');
    // The second long text waits for the first; the short one takes the other worker.
    expect(p.stats()).toMatchObject({ busy: 2, queued: 1 });
    const results = await Promise.all([first, second, short]);
    expect(results.map((r) => r.ok)).toEqual([true, true, true]);
    expect(p.stats()).toMatchObject({ recycled: 2, replaced: 0 });
    await p.ready();
    expect(p.stats().workers).toBe(2);
  });

  it('keeps a worker within its budget', async () => {
    const p = pool({ workers: 1 });
    await p.ready();
    for (let i = 0; i < 20; i++) await p.classify(`SELECT ${i}`);
    expect(p.stats()).toMatchObject({ recycled: 0, replaced: 0 });
  });

  it('answers too-complex when the parser runs out of JS heap on a statement, and replaces the worker', async () => {
    // Not much lower: a limit reached inside one large allocation, with too little
    // heap left for V8's 16 MiB of leeway, aborts the whole process instead.
    // Near its limit the worker's GC thrashes for seconds before it gives up: a long deadline.
    const p = pool({ workers: 1, heapLimitMb: 64, timeoutMs: 25_000 });
    await p.ready();
    const r = await p.classify(IN_LIST);
    expect(r).toMatchObject({ ok: false, unjudged: 'too-complex' });
    expect(!r.ok && r.error).toMatch(/SQL parser failed on it/);
    expect((await p.classify('SELECT 1')).ok).toBe(true);
    expect(p.stats().replaced).toBe(1);
  }, 40_000);

  it('serves waiting owners round-robin and refuses beyond the queue bounds', async () => {
    const p = pool({ workers: 1, timeoutMs: 5000, maxQueuePerOwner: 2, maxQueue: 3 });
    await p.ready();
    const order: string[] = [];
    const track = (label: string, text: string, owner: string): Promise<Classification> =>
      p.classify(text, owner).then((r) => {
        order.push(label);
        return r;
      });
    const running = track('a0', 'SELECT 0', 'a');
    const waiting = [track('a1', 'SELECT 1', 'a'), track('a2', 'SELECT 2', 'a')];
    const overOwner = await p.classify('SELECT 3', 'a');
    expect(overOwner).toMatchObject({ ok: false, unjudged: 'too-busy' });
    expect(!overOwner.ok && overOwner.error).toMatch(/too many statements at once \(2 waiting, 2 of them this client's\)/);
    waiting.push(track('b1', 'SELECT 4', 'b'));
    expect(await p.classify('SELECT 5', 'c')).toMatchObject({ ok: false, unjudged: 'too-busy' });
    await Promise.all([running, ...waiting]);
    expect(order).toEqual(['a0', 'a1', 'b1', 'a2']);
  });

  it('closes cleanly: pending jobs answered, no worker or timer left, later calls refused', async () => {
    const before = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length;
    const p = new ClassifierPool({ workers: 2, timeoutMs: 5000 });
    await p.ready();
    const running = p.classify(SLASH_STARS);
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown): void => {
      rejections.push(reason);
    };
    process.on('unhandledRejection', onRejection);
    try {
      await p.close();
      expect(await running).toMatchObject({ ok: false, unjudged: 'unavailable' });
      expect(await p.classify('SELECT 1')).toMatchObject({ ok: false, unjudged: 'unavailable' });
      expect(p.stats()).toMatchObject({ workers: 0, busy: 0, queued: 0 });
      await p.close();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length).toBeLessThanOrEqual(before);
      expect(rejections).toEqual([]);
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });

  it('holds the process open while a job waits or runs, and lets it exit once the workers are idle, without close()', async () => {
    const module = fileURLToPath(new URL('./classifier-pool.ts', import.meta.url));
    const script = `import { ClassifierPool } from ${JSON.stringify(module)};
      const p = new ClassifierPool();
      const r = await p.classify('SELECT 1');
      console.log(JSON.stringify({ ok: r.ok, workers: p.stats().workers }));`;
    const started = performance.now();
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 20_000 });
    expect(JSON.parse(stdout)).toEqual({ ok: true, workers: 2 });
    expect(performance.now() - started).toBeLessThan(20_000);
  });

  it('measures a cache miss of a simple SELECT through the pool', async () => {
    const p = pool({ workers: 2 });
    await p.ready();
    for (let i = 0; i < 500; i++) await p.classify(`SELECT abalance FROM pgbench_accounts WHERE aid = ${i}`);
    const samples: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const t = performance.now();
      await p.classify(`SELECT abalance FROM pgbench_accounts WHERE aid = ${i}`);
      samples.push(performance.now() - t);
    }
    samples.sort((a, b) => a - b);
    const us = (q: number): string => (samples[Math.floor(samples.length * q)]! * 1000).toFixed(0);
    console.log(`classifier pool: a simple SELECT through a worker: p50 ${us(0.5)} µs, p99 ${us(0.99)} µs`);
    expect(samples[samples.length >> 1]).toBeLessThan(5);
  });
});
