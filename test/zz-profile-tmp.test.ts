import { it } from 'vitest';
import { dbFingerprint } from './support/db-fingerprint.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import pg from 'pg';
it('profile', async () => {
  for (const server of testServers()) {
    const db = await createTestDatabase(server, { seed: true });
    const orig = pg.Client.prototype.query;
    const times: [number, string][] = [];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (pg.Client.prototype as any).query = async function (this: pg.Client, ...args: any[]) { const t = performance.now(); const r = await (orig as any).apply(this, args); times.push([performance.now() - t, String(args[0]).slice(0, 80).replace(/\s+/g, ' ')]); return r; };
    for (let i = 0; i < 3; i++) { times.length = 0; const t = performance.now(); await dbFingerprint(db.url); console.log(server.name, 'total', (performance.now() - t).toFixed(0)); }
    console.log(times.filter(([ms]) => ms > 5).map(([ms, q]) => `${ms.toFixed(0)}ms ${q}`).join('\n'));
    pg.Client.prototype.query = orig;
    await db.drop();
  }
});
