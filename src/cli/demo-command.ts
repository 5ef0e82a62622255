/**
 * `airlock demo` (what `npm start` runs): a real PostgreSQL with a demo
 * company's data, Airlock in front of it, and the lines an agent needs.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import pg from 'pg';
import { parseConfig } from '../config/load.js';
import { startEmbeddedPostgres } from '../demo/embedded-postgres.js';
import { seedDemo } from '../demo/seed.js';
import { startAirlock } from '../airlock.js';
import { FileAuditLog } from '../state/file-audit-log.js';
import { createAdminToken, revokeAdminToken } from '../state/admin-tokens.js';
import type { CommandArgs } from './main.js';
import { UsageError } from './main.js';
import { waitForSignal } from './signals.js';

const DEMO_DATABASE = 'demo';

/** The admin token the demo makes for its human at each start. */
const DEMO_ADMIN = 'demo-admin';

/**
 * The demo's policy, the issue's example on the demo schema. Rules are first
 * match wins, so what must hold for everyone comes first: the customers'
 * credentials in api_keys stay hidden, no DDL (not even with an approval),
 * anything on companies waits for a human (the rule names the view over it
 * too: a rule matches relations as statements name them, and a view is a
 * relation of its own). Then ops may write tasks and projects; its profile
 * (read-write) would let it write every other table too, so the last rule
 * takes that back.
 */
const DEMO_RULES = [
  'rules:',
  '  - { tables: [public.api_keys], decision: deny, note: "customer credentials: no agent reads or changes them" }',
  '  - { kinds: [ddl], decision: deny, note: "no schema changes from agents" }',
  '  - { tables: [public.companies], decision: approve, note: "anything on companies needs a human" }',
  '  - { agents: [ops], kinds: [insert, update, delete], tables: [public.tasks, public.projects], decision: allow }',
  '  - { agents: [ops], kinds: [write], decision: deny, note: "ops writes tasks and projects only" }',
];

export async function runDemo(args: CommandArgs): Promise<number> {
  const port = Number(args.values.port ?? '6432');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, not "${args.values.port}"`);
  const stateDir = resolve('.airlock');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  // As root, PostgreSQL runs as the OS user postgres, which must pass through
  // the state directory to its data directory; the audit log inside keeps 0700.
  if (process.getuid?.() === 0) await chmod(stateDir, 0o711);

  console.log('Starting an embedded PostgreSQL with demo data…');
  const postgres = await startEmbeddedPostgres({ dataDir: resolve(stateDir, 'demo-postgres'), persistent: true });
  let stopping = false;
  const stopPostgres = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await postgres.stop();
  };
  try {
    const admin = new pg.Client({ connectionString: postgres.url() });
    await admin.connect();
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DEMO_DATABASE]);
    if (exists.rows.length === 0) await admin.query(`CREATE DATABASE ${DEMO_DATABASE}`);
    await admin.end();
    await seedDemo(postgres.url(DEMO_DATABASE));

    const agentPassword = randomBytes(12).toString('hex');
    const opsPassword = randomBytes(12).toString('hex');
    // The demo's service account is the cluster's superuser, as many real
    // set-ups are: the read path must hold anyway.
    const { config, warnings } = parseConfig(
      [
        `listen: 127.0.0.1:${port}`,
        'admin:',
        `  listen: 127.0.0.1:${port === 0 ? 0 : port + 1}`,
        `upstream: postgres://${postgres.user}:\${DEMO_UPSTREAM_PASSWORD}@${postgres.host}:${postgres.port}/${DEMO_DATABASE}?sslmode=disable`,
        `state_dir: ${JSON.stringify(stateDir)}`,
        'agents:',
        '  - name: claude',
        '    password: ${DEMO_AGENT_PASSWORD}',
        '    profile: read-only',
        '  - name: ops',
        '    password: ${DEMO_OPS_PASSWORD}',
        '    profile: read-write',
        ...DEMO_RULES,
      ].join('\n'),
      {
        source: 'demo config',
        baseDir: stateDir,
        env: { DEMO_UPSTREAM_PASSWORD: postgres.password, DEMO_AGENT_PASSWORD: agentPassword, DEMO_OPS_PASSWORD: opsPassword },
      },
    );
    for (const w of warnings) console.error(`airlock: warning: ${w}`);

    const audit = await FileAuditLog.open(config.stateDir, { flushMs: config.audit.flushMs });
    const gateway = await startAirlock({ config, audit });
    // A fresh admin token for this run, for local use (approve, freeze): shown once, here.
    await revokeAdminToken(config.stateDir, DEMO_ADMIN);
    const adminToken = await createAdminToken(config.stateDir, DEMO_ADMIN);
    const adminAddress = `${gateway.adminAddress.host}:${gateway.adminAddress.port}`;
    const address = `127.0.0.1:${gateway.address.port}/${DEMO_DATABASE}`;
    const url = `postgres://claude:${agentPassword}@${address}`;
    const opsUrl = `postgres://ops:${opsPassword}@${address}`;
    console.log(`
Airlock is running on 127.0.0.1:${gateway.address.port}, in front of a real PostgreSQL (port ${postgres.port}) holding a demo company
(1,196 companies, 1,206 executives, ...). The agent "claude" may only read; the agent "ops" may also write tasks and projects.
No agent may touch api_keys or change the schema, and anything on companies needs a human's approval.

The approvers' dashboard (what the agents do, what waits for you, one switch that stops them all):
  ${gateway.dashboardUrl}
Sign in with the demo's admin token (for local use only; a new one at each start):
  ${adminToken}

Connect as the agent "claude" (profile read-only):
  psql "${url}"

A read that works:
  SELECT full_name, title FROM executives ORDER BY id LIMIT 5;

A DELETE that Airlock refuses (the data stays):
  DELETE FROM executives;

Connect as the agent "ops" (profile read-write; at most 100 rows per statement, cascaded rows included):
  psql "${opsUrl}"

An UPDATE that works (one row; it is kept, and on the record):
  UPDATE tasks SET status = 'done' WHERE id = 1 RETURNING id, title, status;

A DELETE that the row limit refuses (448 projects and, by ON DELETE CASCADE, their 1,792 tasks: it runs, is counted, and is rolled back):
  DELETE FROM projects WHERE status = 'archived';

A write that needs a human's approval (it waits, with a notice naming its request, until you decide):
  UPDATE companies SET plan = 'enterprise' WHERE id = 1;

Decide it in the dashboard (it appears under Approvals), or from another terminal with the same admin token:
  export AIRLOCK_ADMIN_TOKEN=${adminToken} AIRLOCK_ADMIN_ADDRESS=${adminAddress}
  npm run airlock -- approvals
  npm run airlock -- approve ID        (or: npm run airlock -- deny ID --reason "not today")

Three destructive statements refused within 10 minutes trip the tripwire, which freezes the agent (reads go on);
stop the demo and delete .airlock/ to start over.

Every statement is on the audit record; watch it from another terminal:
  npm run airlock -- audit tail -f --state-dir .airlock

Press Ctrl-C to stop.`);
    await waitForSignal();
    console.log('Stopping Airlock and the demo database…');
    await gateway.close();
    await audit.close();
  } finally {
    await stopPostgres();
  }
  return 0;
}
