#!/usr/bin/env node
// `npm run bench`: pgbench -S with 8 clients in simple, extended and prepared
// modes, straight to PostgreSQL, through pgbouncer (session mode) and through
// Airlock, in the same run. Uses the machine's PostgreSQL at 127.0.0.1:5432
// when it answers (user postgres, trust), else an embedded one. Airlock runs in
// this process from dist/ (npm run bench builds first), with its audit log on.
// pgbouncer is our own instance on a free loopback port (Debian's package is
// installed when missing and we are root; BENCH_PGBOUNCER=0 leaves it out).
import { execFileSync, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import pg from 'pg';
import { parseConfig } from '../dist/src/config/load.js';
import { startGateway } from '../dist/src/gateway/gateway.js';
import { FileAuditLog } from '../dist/src/state/file-audit-log.js';
import { startEmbeddedPostgres } from '../dist/src/demo/embedded-postgres.js';
import { installCapture } from '../dist/src/executor/capture.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
// Each read target runs ROUNDS times, interleaved with the others, and its median is reported:
// on a shared two-core machine one 10-second run of a target can differ from the next by 15%.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
// Unmeasured seconds of each mode against each target first: PostgreSQL's caches, and V8's optimising compiler for Airlock and the pipe.
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const SCALE = Number(process.env.BENCH_SCALE ?? 10);
const MODES = (process.env.BENCH_MODES ?? 'simple,extended,prepared').split(',');
const DB = 'airlock_bench';
const WITH_PGBOUNCER = process.env.BENCH_PGBOUNCER !== '0';

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

function which(cmd) {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', ...(process.env.PATH ?? '').split(':')]) {
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return join(dir, cmd);
    } catch {
      // not here
    }
  }
  return null;
}

/** pgbouncer's path, installing Debian's package when it is missing and we are root; null when it cannot be had. */
async function findPgbouncer() {
  const found = which('pgbouncer');
  if (found !== null || process.getuid?.() !== 0) return found;
  console.log('pgbouncer is missing: installing Debian\'s package (apt-get install -y pgbouncer)…');
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => run('apt-get', ['install', '-y', '--no-install-recommends', 'pgbouncer'], env);
  try {
    await install();
  } catch {
    await run('apt-get', ['update'], env);
    await install();
  }
  // The package enables a system service; ours is a private instance, so make sure that one is not running.
  for (const [cmd, args] of [['systemctl', ['disable', '--now', 'pgbouncer']], ['service', ['pgbouncer', 'stop']]]) {
    await run(cmd, args).catch(() => undefined);
  }
  return which('pgbouncer');
}

/**
 * A relay that only copies bytes, in Node.js: each client gets its own
 * connection to the server, and every chunk read on one side is written to
 * the other. It judges, records and tracks nothing, so its figures are the
 * floor of any Node.js relay on this machine: what Node's sockets and the
 * kernel cost, before Airlock does any work of its own.
 */
function startNodePipe(server) {
  const sockets = new Set();
  const relay = createServer((client) => {
    const upstream = connect({ host: server.host, port: server.port });
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      s.on('error', () => {});
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  return new Promise((resolve, reject) => {
    relay.once('error', reject);
    relay.listen(0, '127.0.0.1', () =>
      resolve({
        port: relay.address().port,
        stop: () => {
          for (const s of sockets) s.destroy();
          return new Promise((r) => relay.close(() => r()));
        },
      }),
    );
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Our own pgbouncer in session mode in front of `server`, on a free loopback
 * port, with its ini and userlist in `dir`; logs in as the same user as direct.
 * As root it runs as the OS user postgres (pgbouncer refuses root).
 */
async function startPgbouncer(bin, server, dir) {
  await mkdir(dir, { recursive: true });
  let ids = null;
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    ids = { uid, gid };
  }
  const port = await freePort();
  const quote = (s) => `"${s.replace(/"/g, '""')}"`;
  await writeFile(join(dir, 'userlist.txt'), `${quote(server.user)} ${quote(server.password ?? '')}\n`, { mode: 0o600 });
  await writeFile(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `${DB} = host=${server.host} port=${server.port} dbname=${DB}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      // Clients authenticate as they would to the server: trust when it trusts, SCRAM with the same password otherwise.
      `auth_type = ${server.password ? 'scram-sha-256' : 'trust'}`,
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'pool_mode = session',
      `max_client_conn = ${CLIENTS * 2 + 20}`,
      `default_pool_size = ${CLIENTS + 2}`,
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      'ignore_startup_parameters = extra_float_digits',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  if (ids !== null) {
    await chmod(join(dir, '..'), 0o711); // the scratch directory: postgres must pass through it
    await chmod(dir, 0o700);
    for (const f of ['', 'userlist.txt', 'pgbouncer.ini']) await chown(join(dir, f), ids.uid, ids.gid);
  }
  const child = spawn(bin, [join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'ignore', 'pipe'], ...(ids ?? {}) });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  let exited = false;
  child.on('exit', () => (exited = true));
  for (let i = 0; ; i++) {
    const up = await new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (exited || i >= 100) throw new Error(`pgbouncer did not start on port ${port}:\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    stop: async () => {
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    },
  };
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
  // For the undo journal's capture throughput: a keyed table of 10,000 rows an agent deletes whole.
  const direct = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password ?? undefined, database: DB });
  await direct.connect();
  await direct.query('CREATE TABLE bench_capture (id int PRIMARY KEY, n int NOT NULL, t text NOT NULL, at timestamptz NOT NULL DEFAULT now())');

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
      '    write_limits: { writes_per_minute: 100000, rows_per_hour: 100000000, max_rows: 100000 }',
      // Undo-optional only so that the unjournalled runs below (capture removed) are kept; the journalled runs are checked against the journal.
      'undo:',
      '  optional_tables: [public.pgbench_accounts, public.bench_capture]',
    ].join('\n'),
    { source: 'bench config', baseDir: scratch, env: { PW: server.password ?? '', AGENT: agentPassword } },
  );
  const audit = await FileAuditLog.open(scratch, { flushMs: config.audit.flushMs });
  // No schema look during the run: it would put capture back while the unjournalled runs measure without it.
  const gateway = await startGateway({ config, audit, log: () => {}, schemaRefreshMs: 24 * 3600_000 });
  let bouncer = null;
  if (WITH_PGBOUNCER) {
    const bin = await findPgbouncer();
    if (bin === null) console.log('pgbouncer is not installed (and we are not root to install it): its column is left out.');
    else {
      bouncer = await startPgbouncer(bin, server, join(scratch, 'pgbouncer')).catch((err) => {
        console.log(`pgbouncer could not be started, its column is left out: ${err.message}`);
        return null;
      });
    }
  }

  const writeScript = join(scratch, 'update.sql');
  await writeFile(
    writeScript,
    `\\set aid random(1, ${100000 * SCALE})\n\\set delta random(-5000, 5000)\nUPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n`,
  );
  const pgbench = async (host, port, user, env, mode, script = null, seconds = SECONDS) => {
    const out = await run(
      'pgbench',
      ['-n', ...(script === null ? ['-S'] : ['-f', script]), '-M', mode, '-c', String(CLIENTS), '-j', '2', '-T', String(seconds), '-h', host, '-p', String(port), '-U', user, DB],
      env,
    );
    const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
    const latency = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
    const failed = /number of failed transactions: (\d+)/.exec(out)?.[1] ?? '0';
    if (failed !== '0') throw new Error(`pgbench reported ${failed} failed transactions:\n${out}`);
    return { tps, latency };
  };

  const pipe = await startNodePipe(server);
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const fmt = (x, width) => (x === null ? '-' : x.tps.toFixed(0)).padStart(width);
  const times = (a, b) => (b === null ? '-' : `${(a.tps / b.tps).toFixed(2)}x`);
  const header =
    'mode       direct tps  pgbouncer tps  node pipe tps  airlock tps  airlock/direct  airlock/pgbouncer  airlock/pipe   latency ms: direct  pgbouncer  airlock';
  const row = (mode, direct, pgb, bare, via) =>
    `${mode.padEnd(10)} ${fmt(direct, 10)}  ${fmt(pgb, 13)}  ${fmt(bare, 13)}  ${fmt(via, 11)}  ` +
    `${times(via, direct).padStart(14)}  ${times(via, pgb).padStart(17)}  ${times(via, bare).padStart(12)}   ` +
    `${direct.latency.toFixed(3).padStart(18)}  ${(pgb ? pgb.latency.toFixed(3) : '-').padStart(9)}  ${via.latency.toFixed(3).padStart(7)}`;
  const pgbPw = server.password ? { PGPASSWORD: server.password } : {};
  const targets = [
    { key: 'direct', run: (mode, seconds) => pgbench(server.host, server.port, server.user, pwEnv, mode, null, seconds) },
    ...(bouncer ? [{ key: 'pgb', run: (mode, seconds) => pgbench('127.0.0.1', bouncer.port, server.user, pgbPw, mode, null, seconds) }] : []),
    { key: 'bare', run: (mode, seconds) => pgbench('127.0.0.1', pipe.port, server.user, pwEnv, mode, null, seconds) },
    { key: 'via', run: (mode, seconds) => pgbench('127.0.0.1', gateway.address.port, 'bench', { PGPASSWORD: agentPassword }, mode, null, seconds) },
  ];
  console.log(
    `pgbench -S -c ${CLIENTS} -j 2: direct, pgbouncer (session mode), a bare Node.js pipe and Airlock (audit log on); ` +
      `per mode ${WARMUP_SECONDS} s of warm-up against each, then ${ROUNDS} interleaved rounds of ${SECONDS} s, medians:\n`,
  );
  console.log(header);
  const results = [];
  for (const mode of MODES) {
    if (WARMUP_SECONDS > 0) for (const t of targets) await t.run(mode, WARMUP_SECONDS);
    const runs = Object.fromEntries(targets.map((t) => [t.key, []]));
    for (let round = 0; round < ROUNDS; round++) for (const t of targets) runs[t.key].push(await t.run(mode, SECONDS));
    const pick = (key) => {
      const list = runs[key];
      if (list === undefined) return null;
      const tps = median(list.map((r) => r.tps));
      return { tps, latency: median(list.map((r) => r.latency)), all: list.map((r) => r.tps) };
    };
    const [direct, pgb, bare, via] = ['direct', 'pgb', 'bare', 'via'].map(pick);
    const ratio = via.tps / direct.tps;
    results.push({ mode, direct, pgb, bare, via, ratio });
    console.log(row(mode, direct, pgb, bare, via));
  }
  await pipe.stop();
  console.log(
    `\neach round's tps: ${results
      .map((r) => `${r.mode}: direct ${r.direct.all.map((t) => t.toFixed(0)).join('/')}, ${r.pgb ? `pgbouncer ${r.pgb.all.map((t) => t.toFixed(0)).join('/')}, ` : ''}` +
        `pipe ${r.bare.all.map((t) => t.toFixed(0)).join('/')}, airlock ${r.via.all.map((t) => t.toFixed(0)).join('/')}`)
      .join('; ')}`,
  );
  // The write path: every statement measured in its own transaction and durably on the record before COMMIT.
  console.log(`\nsingle-row UPDATE (custom script), -c ${CLIENTS}, one run of ${SECONDS} s each: the write path, direct, pgbouncer, Airlock:\n`);
  console.log(header);
  for (const mode of ['simple', 'extended']) {
    const direct = await pgbench(server.host, server.port, server.user, pwEnv, mode, writeScript);
    const pgb = bouncer ? await pgbench('127.0.0.1', bouncer.port, server.user, pgbPw, mode, writeScript) : null;
    const via = await pgbench('127.0.0.1', gateway.address.port, 'bench_writer', { PGPASSWORD: agentPassword }, mode, writeScript);
    console.log(row(mode, direct, pgb, null, via));
  }
  await benchUndo({ server, direct, gateway, agentPassword, pgbench, pwEnv, writeScript });
  await direct.end();
  await bouncer?.stop();
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
  const verdict = (label, target, ratioOf) => {
    const below = results.filter((r) => ratioOf(r) < target);
    return `${label}: ${results.map((r) => `${r.mode} ${ratioOf(r).toFixed(2)}x`).join(', ')}; ` + (below.length === 0 ? `all at or above ${target}x.` : `below ${target}x: ${below.map((r) => r.mode).join(', ')}.`);
  };
  console.log(`\n${verdict('Airlock against direct', 0.5, (r) => r.ratio)}`);
  if (bouncer) console.log(verdict('Airlock against pgbouncer', 0.8, (r) => r.via.tps / r.pgb.tps));
  console.log(verdict('Airlock against the bare Node.js pipe (what Airlock\'s own work costs)', 0.8, (r) => r.via.tps / r.bare.tps));
  if (bouncer) console.log(verdict('the bare Node.js pipe against pgbouncer (the floor of a Node.js relay here)', 0.8, (r) => r.bare.tps / r.pgb.tps));
}

/**
 * The undo journal's costs (issue 13), same run: a single-row UPDATE through
 * the write path journalled and not (capture removed); a 10,000-row DELETE
 * through Airlock, captured, read back and durably journalled before COMMIT;
 * the application's own UPDATEs (straight to PostgreSQL) with capture
 * installed and without.
 */
async function benchUndo({ server, direct, gateway, agentPassword, pgbench, pwEnv, writeScript }) {
  const agent = new pg.Client({ host: '127.0.0.1', port: gateway.address.port, user: 'bench_writer', password: agentPassword, database: DB });
  await agent.connect();
  const removeCapture = () => direct.query('DROP SCHEMA IF EXISTS airlock CASCADE');
  const putCaptureBack = () => installCapture(direct);
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const deleteMs = async () => {
    const times = [];
    for (let i = 0; i < 5; i++) {
      await direct.query("INSERT INTO bench_capture (id, n, t) SELECT g, g, 'row ' || g FROM generate_series(1, 10000) g");
      const t0 = performance.now();
      const r = await agent.query('DELETE FROM bench_capture WHERE id > 0');
      times.push(performance.now() - t0);
      if (r.rowCount !== 10000) throw new Error(`the bench DELETE removed ${r.rowCount} rows, not 10,000`);
    }
    return median(times);
  };
  const journalled = () => gateway.journal.list().length;

  console.log('\nUndo journal (single-row UPDATE through the write path, -c ' + CLIENTS + '; 10,000-row DELETE through Airlock, median of 5):\n');
  await putCaptureBack();
  const before = journalled();
  const withJournal = await pgbench('127.0.0.1', gateway.address.port, 'bench_writer', { PGPASSWORD: agentPassword }, 'simple', writeScript);
  const deleteWith = await deleteMs();
  const kept = journalled() - before;
  if (kept === 0) throw new Error('the journalled runs left nothing in the journal: capture is not working');
  await removeCapture();
  const withoutJournal = await pgbench('127.0.0.1', gateway.address.port, 'bench_writer', { PGPASSWORD: agentPassword }, 'simple', writeScript);
  const deleteWithout = await deleteMs();
  console.log(`write path, single-row UPDATE: journalled ${withJournal.latency.toFixed(3)} ms (${withJournal.tps.toFixed(0)} tps), unjournalled ${withoutJournal.latency.toFixed(3)} ms (${withoutJournal.tps.toFixed(0)} tps): ${(withJournal.latency / withoutJournal.latency).toFixed(2)}x latency (target <= 1.5x); ${kept} changes journalled`);
  console.log(
    `10,000-row DELETE through Airlock: journalled ${deleteWith.toFixed(1)} ms (${Math.round(10000 / (deleteWith / 1000))} rows/s end to end), unjournalled ${deleteWithout.toFixed(1)} ms; ` +
      `capture + read-back + durable journal: ${(deleteWith - deleteWithout).toFixed(1)} ms, ${Math.round(10000 / ((deleteWith - deleteWithout) / 1000))} rows/s (target >= 100,000)`,
  );

  // The application's own writes, straight to PostgreSQL: without capture, with, without, with.
  const app = { without: [], with: [] };
  for (const installed of [false, true, false, true]) {
    if (installed) await putCaptureBack();
    else await removeCapture();
    app[installed ? 'with' : 'without'].push((await pgbench(server.host, server.port, server.user, pwEnv, 'simple', writeScript)).tps);
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(
    `the application's own single-row UPDATE (direct, -c ${CLIENTS}): without capture ${app.without.map((t) => t.toFixed(0)).join(', ')} tps, with capture installed ${app.with.map((t) => t.toFixed(0)).join(', ')} tps: ` +
      `${(mean(app.with) / mean(app.without)).toFixed(2)}x (target >= 0.95x)`,
  );
  await agent.end();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
