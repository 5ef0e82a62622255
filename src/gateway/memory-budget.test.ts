import { beforeAll, describe, expect, it } from 'vitest';
import { loadParser } from '../sql/classify.js';
import { MemoryBudget } from './memory-budget.js';
import { StatementCache } from './statement-cache.js';

const MIB = 1024 * 1024;

beforeAll(async () => {
  await loadParser();
});

describe('MemoryBudget', () => {
  it('says why while resident memory is over the budget, reading it at most every 50 ms', () => {
    let resident = 100 * MIB;
    let reads = 0;
    let now = 0;
    const budget = new MemoryBudget(
      200 * MIB,
      () => {
        reads++;
        return resident;
      },
      () => now,
    );
    expect(budget.exceeded()).toBeNull();
    resident = 300 * MIB;
    now = 10;
    expect(budget.exceeded()).toBeNull(); // the last reading still stands
    now = 60;
    expect(budget.exceeded()).toMatch(/300 MiB in use, limits\.max_memory_bytes is 200 MiB/);
    expect(reads).toBe(2);
    resident = 150 * MIB;
    now = 120;
    expect(budget.exceeded()).toBeNull();
  });

  it('never refuses with a budget of 0', () => {
    const budget = new MemoryBudget(0, () => Number.MAX_SAFE_INTEGER);
    expect(budget.exceeded()).toBeNull();
  });

  it('makes the statement cache refuse misses unread, not cached, while hits are still answered', async () => {
    let resident = 100 * MIB;
    const cache = new StatementCache({ memory: new MemoryBudget(200 * MIB, () => resident, () => performance.now() * 1000) });
    expect((await cache.classifyAsync('SELECT 1')).ok).toBe(true);
    resident = 300 * MIB;
    expect(await cache.classifyAsync('SELECT 2 FROM pg_class')).toMatchObject({ ok: false, unjudged: 'no-memory' });
    expect((await cache.classifyAsync('SELECT 1')).ok).toBe(true);
    resident = 100 * MIB;
    expect((await cache.classifyAsync('SELECT 2 FROM pg_class')).ok).toBe(true);
  });
});
