#!/usr/bin/env node
// `npm run bench`: pgbench -S with 8 clients in simple, extended and prepared
// modes, straight to PostgreSQL and through Airlock, in the same run.
// Uses the machine's PostgreSQL at 127.0.0.1:5432 when it answers (user
// postgres, trust), else an embedded one. Airlock runs in this process from
// dist/ (npm run bench builds first), with its audit log on.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parseConfig } from '../dist/src/config/load.js';
import { startGateway } from '../dist/src/gateway/gateway.js';
import { FileAuditLog } from '../dist/src/state/file-audit-log.js';
import { startEmbeddedPostgres } from '../dist/src/demo/embedded-postgres.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const SCALE = Number(process.env.BENCH_SCALE ?? 10);
const MODES = (process.env.BENCH_MODES ?? 'simple,extended,prepared').split(',');
const DB = 'airlock_bench';

function run(cmd, args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${out}`))));
  });
}

async function localServer() {
  const c = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1000 });
  try {
    await c.connect();
    await c.end();
    return { host: '127.0.0.1', port: 5432, user: 'postgres', password: null, stop: async () => {} };
  } catch {
    return null; // no local server: the embedded one is used instead
  }
}

async function main() {
  const scratch = await mkdtemp(join(tmpdir(), 'airlock-bench-'));
  let server = await localServer();
  let label = 'local PostgreSQL at 127.0.0.1:5432';
  if (server === null) {
    const embedded = await startEmbeddedPostgres({ dataDir: join(scratch, 'pg') });
    server = { host: embedded.host, port: embedded.port, user: embedded.user, password: embedded.password, stop: () => embedded.stop() };
    label = `embedded PostgreSQL on port ${embedded.port}`;
  }
  const admin = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password ?? undefined, database: 'postgres' });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  const pwEnv = server.password ? { PGPASSWORD: server.password } : {};
  console.log(`Initialising pgbench (scale ${SCALE}) on the ${label}…`);
  await run('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', server.host, '-p', String(server.port), '-U', server.user, DB], pwEnv);

  const agentPassword = 'bench-agent-password';
  const { config } = parseConfig(
    [
      'listen: 127.0.0.1:0',
      'admin:',
      '  listen: 127.0.0.1:0',
      `upstream: postgres://${server.user}${server.password ? ':${PW}' : ''}@${server.host}:${server.port}/${DB}?sslmode=disable`,
      `state_dir: ${JSON.stringify(scratch)}`,
      'agents:',
      '  - name: bench',
      '    password: ${AGENT}',
      '    read_role: airlock_read_bench',
      '  - name: bench_writer',
      '    password: ${AGENT}',
      '    profile: read-write',
      '    read_role: airlock_read_bench_writer',
      // Every transaction writes: the budgets must not be what is measured.
      '    write_limits: { writes_per_minute: 100000, rows_per_hour: 100000000 }',
    ].join('\n'),
    { source: 'bench config', baseDir: scratch, env: { PW: server.password ?? '', AGENT: agentPassword } },
  );
  const audit = await FileAuditLog.open(scratch, { flushMs: config.audit.flushMs });
  const gateway = await startGateway({ config, audit, log: () => {} });

  const writeScript = join(scratch, 'update.sql');
  await writeFile(
    writeScript,
    `\\set aid random(1, ${100000 * SCALE})\n\\set delta random(-5000, 5000)\nUPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n`,
  );
  const pgbench = async (host, port, user, env, mode, script = null) => {
    const out = await run(
      'pgbench',
      ['-n', ...(script === null ? ['-S'] : ['-f', script]), '-M', mode, '-c', String(CLIENTS), '-j', '2', '-T', String(SECONDS), '-h', host, '-p', String(port), '-U', user, DB],
      env,
    );
    const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
    const latency = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
    const failed = /number of failed transactions: (\d+)/.exec(out)?.[1] ?? '0';
    if (failed !== '0') throw new Error(`pgbench reported ${failed} failed transactions:\n${out}`);
    return { tps, latency };
  };

  console.log(`pgbench -S -c ${CLIENTS} -j 2 -T ${SECONDS}, direct vs through Airlock (audit log on), same run:\n`);
  console.log('mode       direct tps  airlock tps  ratio   direct lat  airlock lat');
  const results = [];
  for (const mode of MODES) {
    const direct = await pgbench(server.host, server.port, server.user, pwEnv, mode);
    const via = await pgbench('127.0.0.1', gateway.address.port, 'bench', { PGPASSWORD: agentPassword }, mode);
    const ratio = via.tps / direct.tps;
    results.push({ mode, direct, via, ratio });
    console.log(
      `${mode.padEnd(10)} ${direct.tps.toFixed(0).padStart(10)}  ${via.tps.toFixed(0).padStart(11)}  ${ratio.toFixed(2).padStart(5)}x  ${direct.latency.toFixed(3).padStart(8)} ms  ${via.latency.toFixed(3).padStart(8)} ms`,
    );
  }
  // The write path: every statement measured in its own transaction and durably on the record before COMMIT.
  console.log(`\nsingle-row UPDATE (custom script), -c ${CLIENTS}: the write path, direct vs through Airlock:\n`);
  console.log('mode       direct tps  airlock tps  ratio   direct lat  airlock lat');
  for (const mode of ['simple', 'extended']) {
    const direct = await pgbench(server.host, server.port, server.user, pwEnv, mode, writeScript);
    const via = await pgbench('127.0.0.1', gateway.address.port, 'bench_writer', { PGPASSWORD: agentPassword }, mode, writeScript);
    console.log(
      `${mode.padEnd(10)} ${direct.tps.toFixed(0).padStart(10)}  ${via.tps.toFixed(0).padStart(11)}  ${(via.tps / direct.tps).toFixed(2).padStart(5)}x  ${direct.latency.toFixed(3).padStart(8)} ms  ${via.latency.toFixed(3).padStart(8)} ms`,
    );
  }
  await gateway.close();
  await audit.close();
  const cleanup = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password ?? undefined, database: 'postgres' });
  await cleanup.connect();
  await cleanup.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await cleanup.query('DROP ROLE IF EXISTS airlock_read_bench');
  await cleanup.query('DROP ROLE IF EXISTS airlock_read_bench_writer');
  await cleanup.end();
  await server.stop();
  await rm(scratch, { recursive: true, force: true });
  const target = 0.5;
  const below = results.filter((r) => r.ratio < target);
  console.log(below.length === 0 ? `\nAll modes at or above the ${target}x target.` : `\nBelow the ${target}x target: ${below.map((r) => r.mode).join(', ')}.`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
