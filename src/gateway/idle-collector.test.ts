import { afterEach, describe, expect, it } from 'vitest';
import { IdleCollector } from './idle-collector.js';

describe('IdleCollector', () => {
  let collector: IdleCollector | null = null;
  afterEach(() => collector?.stop());

  it("collects once the process is quiet and the heap grew, and gives the heap back with V8's own collection", async () => {
    let garbage: unknown[] | null = Array.from({ length: 300_000 }, (_, i) => ({ i, s: `garbage ${i}` }));
    collector = new IdleCollector(undefined, { everyMs: 100, growthBytes: 1024 * 1024 });
    garbage = null;
    void garbage;
    const before = process.memoryUsage().heapUsed;
    await expect.poll(() => collector!.collections, { timeout: 5_000, interval: 50 }).toBeGreaterThan(0);
    expect(process.memoryUsage().heapUsed).toBeLessThan(before);
  });

  it('leaves a busy process to V8', async () => {
    let calls = 0;
    collector = new IdleCollector(() => calls++, { everyMs: 50, growthBytes: 0, quietUtilisation: 0.05 });
    // Keep the event loop busy for longer than several intervals.
    const until = Date.now() + 400;
    while (Date.now() < until) await new Promise<void>((r) => setImmediate(() => { const t = Date.now() + 5; while (Date.now() < t); r(); }));
    expect(calls).toBe(0);
  });
});
