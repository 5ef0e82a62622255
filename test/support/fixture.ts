/**
 * The usual set-up of an end-to-end test: a seeded database on a real
 * server and an Airlock in front of it, for the enclosing describe block.
 */
import { afterAll, beforeAll } from 'vitest';
import { startTestAirlock } from './airlock.js';
import type { TestAirlock } from './airlock.js';
import { createTestDatabase } from './postgres-servers.js';
import type { TestDatabase, TestServer } from './postgres-servers.js';

export interface SeededAirlock {
  readonly db: TestDatabase;
  readonly airlock: TestAirlock;
}

/** Registers beforeAll/afterAll hooks; the fields are set once beforeAll ran. */
export function useSeededAirlock(server: TestServer, options?: Parameters<typeof startTestAirlock>[2]): SeededAirlock {
  const state = {} as { db: TestDatabase; airlock: TestAirlock };
  beforeAll(async () => {
    state.db = await createTestDatabase(server, { seed: true });
    state.airlock = await startTestAirlock(server, state.db, options);
  });
  afterAll(async () => {
    await state.airlock?.close();
    await state.db?.drop();
  });
  return state;
}
