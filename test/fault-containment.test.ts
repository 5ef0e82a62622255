/**
 * A fault inside Airlock while it serves one agent ends that agent's session
 * and nobody else's: an exception must never reach the event loop, where it
 * would take the whole gateway down.
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import pg from 'pg';
import { StatementCache } from '../src/gateway/statement-cache.js';
import { testServers } from './support/postgres-servers.js';
import { useSeededAirlock } from './support/fixture.js';

const server = testServers()[0]!;

describe('fault containment', () => {
  const fixture = useSeededAirlock(server);

  afterAll(() => {
    vi.restoreAllMocks();
  });

  it('ends only the session whose statement hit the fault, with XX000, and keeps serving', async () => {
    const original = StatementCache.prototype.lookup;
    vi.spyOn(StatementCache.prototype, 'lookup').mockImplementation(function (this: StatementCache, text: string) {
      if (text.includes('airlock_test_fault')) throw new Error('simulated fault in classification');
      return original.call(this, text);
    });
    const bystander = new pg.Client(fixture.airlock.clientConfig());
    await bystander.connect();
    const victim = new pg.Client(fixture.airlock.clientConfig());
    victim.on('error', () => undefined); // the session ends under it, by design
    await victim.connect();

    const err = await victim.query('SELECT 1 AS airlock_test_fault').catch((e: unknown) => e as pg.DatabaseError);
    expect(err).toBeInstanceOf(Error);
    expect((err as pg.DatabaseError).code).toBe('XX000');

    const still = await bystander.query('SELECT count(*)::int AS n FROM companies');
    expect(still.rows[0].n).toBe(1196);
    const fresh = new pg.Client(fixture.airlock.clientConfig());
    await fresh.connect();
    expect((await fresh.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    await fresh.end();
    await bystander.end();
  });
});
