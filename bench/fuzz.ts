#!/usr/bin/env node
/**
 * `npm run fuzz`: a fuzz and load harness, not part of `npm test`.
 *
 * Starts an embedded PostgreSQL with the demo data (or uses the superuser URL
 * given by --pg-url / FUZZ_PG_URL, in a database of its own), starts Airlock in
 * front of it as a child process (`node dist/src/cli/main.js start --config`),
 * then runs N hostile sessions for D seconds, each picking attacks at random
 * (pathological SQL, lying message lengths, slow tiny pieces, garbage, an
 * unfinished 60 MB message, unread pipelined floods, hang-ups, bare TCP
 * connections), while ONE bystander session, in a process of its own, runs
 * `SELECT 1` every ~10 ms and records latencies. It reports the bystander's
 * latencies and failures, the target's memory (before, peak, and after the
 * settle period), whether the target is still alive, and whether the data
 * changed (row count + md5 of every table's rows, before and after).
 *
 *   npm run fuzz -- --sessions 8 --seconds 20 --settle 10
 *   npm run fuzz -- --target direct            # the same attacks straight to PostgreSQL
 *   npm run fuzz -- --json                     # JSON on stdout (progress stays on stderr)
 *   FUZZ_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' npm run fuzz   # flags for the Airlock process
 *
 * Only 127.0.0.1 is ever targeted; every loop is bounded in count and time.
 */
import { fork, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/demo/embedded-postgres.js';
import { seedDemo } from '../src/demo/seed.js';
import { ScramClientExchange } from '../src/protocol/auth/scram-client.js';
import { AUTH } from '../src/protocol/backend.js';
import { encodeQuery, encodeSaslInitialResponse, encodeSaslResponse, encodeTerminate } from '../src/protocol/frontend.js';
import { encodeStartupMessage } from '../src/protocol/startup.js';
import { RUNTIME_NODE_FLAGS } from '../src/cli/runtime-flags.js';
import { loginClient } from '../test/support/wire.js';
import type { WireClient } from '../test/support/wire.js';

const HOST = '127.0.0.1';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// ---- small helpers --------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const rnd = (lo: number, hi: number): number => lo + Math.floor(Math.random() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const log = (line: string): void => void process.stderr.write(`fuzz: ${line}\n`);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface Credentials {
  user: string;
  password: string;
  database: string;
}

// ---- memory of the target -------------------------------------------------------

/** kB from a /proc file line such as `VmRSS:   12345 kB`; 0 when the process is gone. */
function procKb(file: string, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(file, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function descendants(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length && out.length < 2000; i++) {
    try {
      for (const task of readdirSync(`/proc/${out[i]}/task`)) {
        const kids = readFileSync(`/proc/${out[i]}/task/${task}/children`, 'utf8').trim();
        if (kids !== '') out.push(...kids.split(/\s+/).map(Number));
      }
    } catch {
      // the process ended between the reads
    }
  }
  return out;
}

/**
 * The target's memory in kB. Airlock is one process: its VmRSS. PostgreSQL is
 * a postmaster and a process per connection sharing memory: the sum of their
 * PSS (proportional set size), so shared buffers are counted once.
 */
function memoryKb(spec: { pid: number; tree: boolean }): number {
  if (!spec.tree) return procKb(`/proc/${spec.pid}/status`, 'VmRSS');
  return descendants(spec.pid).reduce((sum, pid) => sum + procKb(`/proc/${pid}/smaps_rollup`, 'Pss'), 0);
}

// ---- the bystander and the memory sampler ---------------------------------------
// Each runs in a process of its own (this file, forked with --helper): the
// attackers' CPU and GC here, and the sampler's synchronous /proc reads, must
// not show up as the bystander's latency.

interface BystanderConfig {
  role: 'bystander' | 'sampler';
  port: number;
  credentials: Credentials;
  memory: { pid: number; tree: boolean };
}

type BystanderPhase = 'baseline' | 'load';

interface BystanderReport {
  latencies: Record<BystanderPhase, number[]>;
  failures: Record<BystanderPhase, number>;
  failureReasons: Record<string, number>;
  memory: { at: number; kb: number }[];
}

const QUERY_TIMEOUT_MS = 10_000;

async function bystanderMain(cfg: BystanderConfig): Promise<void> {
  const send = (m: unknown): void => void process.send?.(m);
  const report: BystanderReport = { latencies: { baseline: [], load: [] }, failures: { baseline: 0, load: 0 }, failureReasons: {}, memory: [] };
  let phase = 'idle' as BystanderPhase | 'idle' | 'done';
  const sampler = cfg.role === 'sampler' ? setInterval(() => report.memory.push({ at: Date.now(), kb: memoryKb(cfg.memory) }), 100) : undefined;
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'baseline' || m.cmd === 'load') phase = m.cmd;
    else if (m.cmd === 'stop') phase = 'idle';
    else if (m.cmd === 'finish') {
      phase = 'done';
      clearInterval(sampler);
      send({ type: 'report', report });
      setTimeout(() => process.exit(0), 200);
    }
  });
  const fail = (p: BystanderPhase, reason: string): void => {
    report.failures[p]++;
    report.failureReasons[reason] = (report.failureReasons[reason] ?? 0) + 1;
  };
  if (cfg.role === 'sampler') return void send({ type: 'ready' });
  let client: WireClient | null = null;
  const loginOnce = async (): Promise<WireClient> => (await loginClient({ ...cfg.credentials, port: cfg.port, host: HOST }, { timeoutMs: QUERY_TIMEOUT_MS })).client;
  client = await loginOnce();
  send({ type: 'ready' });
  for (;;) {
    if (phase === 'done') return;
    if (phase === 'idle') {
      await sleep(20);
      continue;
    }
    const p: BystanderPhase = phase;
    const started = performance.now();
    try {
      if (client === null || client.closed) {
        client?.destroy();
        client = null;
        client = await loginOnce();
      }
      const messages = await client.query('SELECT 1', QUERY_TIMEOUT_MS);
      const error = messages.find((m) => m.type === 'E');
      if (error !== undefined) {
        fail(p, 'error response');
      } else if (!messages.some((m) => m.type === 'D')) {
        fail(p, 'no row');
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      fail(p, /within/.test(message) ? 'timeout (10 s)' : /login|closed|ECONN/i.test(message) ? 'connection lost / login failed' : 'other');
      client?.destroy();
      client = null;
      await sleep(100); // a failed login is not retried in a tight loop
    }
    report.latencies[p].push(performance.now() - started);
    await sleep(10);
  }
}

// ---- a raw client: log in, then hand the socket over ---------------------------

/** Tracks every socket an attack opens, so that all are destroyed when the load stops. */
const openSockets = new Set<net.Socket>();
/** When the load ends: no connect or login waits past it. */
let loadDeadline = Infinity;
const capped = (ms: number): number => Math.max(0, Math.min(ms, loadDeadline - Date.now()));

function connectRaw(port: number, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((res, rej) => {
    const socket = net.connect({ host: HOST, port });
    socket.setNoDelay(true);
    openSockets.add(socket);
    socket.on('close', () => openSockets.delete(socket));
    socket.on('error', () => undefined); // outcomes are judged by what arrives and by 'close'
    const timer = setTimeout(() => {
      socket.destroy();
      rej(new Error(Date.now() >= loadDeadline ? 'connect cut short by the end of the load' : 'connect timeout'));
    }, capped(timeoutMs));
    socket.once('connect', () => {
      clearTimeout(timer);
      res(socket);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      rej(new Error('connection closed before connect'));
    });
  });
}

/** Frames backend messages (type, body) from a byte stream; answers here are small. */
class Framer {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): { type: string; body: Buffer }[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: { type: string; body: Buffer }[] = [];
    let at = 0;
    while (this.buf.length - at >= 5) {
      const len = this.buf.readUInt32BE(at + 1);
      if (len < 4 || len > 1 << 30) throw new Error(`bad backend length ${len}`);
      if (at + 1 + len > this.buf.length) break;
      out.push({ type: String.fromCharCode(this.buf[at]!), body: this.buf.subarray(at + 5, at + 1 + len) });
      at += 1 + len;
    }
    this.buf = this.buf.subarray(at);
    return out;
  }
}

class LoginFailed extends Error {}

/** Logs in with SCRAM (or trust) on a raw socket; resolves once ReadyForQuery arrived, with no listener left reading. */
async function rawLogin(port: number, cred: Credentials, timeoutMs = 10_000): Promise<net.Socket> {
  const socket = await connectRaw(port);
  return new Promise((res, rej) => {
    const framer = new Framer();
    const scram = new ScramClientExchange(cred.user, cred.password);
    const done = (error: Error | null): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (error === null) res(socket);
      else {
        socket.destroy();
        rej(error);
      }
    };
    const timer = setTimeout(() => done(new LoginFailed(Date.now() >= loadDeadline ? 'login cut short by the end of the load' : 'login timeout (10 s)')), capped(timeoutMs));
    const onClose = (): void => done(new LoginFailed('closed during login'));
    const onData = (chunk: Buffer): void => {
      let messages;
      try {
        messages = framer.push(chunk);
      } catch (error) {
        return done(error as Error);
      }
      for (const m of messages) {
        if (m.type === 'E') return done(new LoginFailed(`login refused: ${m.body.toString('utf8').replace(/\0/g, ' ').slice(0, 160)}`));
        if (m.type === 'Z') return done(null);
        if (m.type !== 'R') continue;
        const code = m.body.readInt32BE(0);
        const data = m.body.subarray(4);
        if (code === AUTH.sasl) {
          const step = scram.start(data.toString('utf8').split('\0').filter((s) => s !== ''));
          if (!step.ok) return done(new LoginFailed(step.error));
          socket.write(encodeSaslInitialResponse(step.mechanism, step.clientFirst));
        } else if (code === AUTH.saslContinue) {
          const step = scram.continue(data);
          if (!step.ok) return done(new LoginFailed(step.error));
          socket.write(encodeSaslResponse(step.clientFinal));
        } else if (code !== AUTH.saslFinal && code !== AUTH.ok) {
          return done(new LoginFailed(`authentication request ${code} not spoken here`));
        }
      }
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.write(encodeStartupMessage({ user: cred.user, database: cred.database }));
  });
}

type Outcome = 'answered' | 'error' | 'closed' | 'timeout';

/** Reads until `ready` ReadyForQuery messages, the server closes, or the deadline. Whether any ErrorResponse came. */
function awaitAnswer(socket: net.Socket, ready: number, deadline: number): Promise<Outcome> {
  return new Promise((res) => {
    if (socket.destroyed) return res('closed');
    const framer = new Framer();
    let seen = 0;
    let errored = false;
    const finish = (o: Outcome): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      res(o);
    };
    const timer = setTimeout(() => finish('timeout'), Math.max(0, deadline - Date.now()));
    const onClose = (): void => finish('closed');
    const onData = (chunk: Buffer): void => {
      try {
        for (const m of framer.push(chunk)) {
          if (m.type === 'E') errored = true;
          if (m.type === 'Z' && ++seen >= ready) return finish(errored ? 'error' : 'answered');
        }
      } catch {
        socket.destroy();
      }
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.resume();
  });
}

/** Writes, waiting for the socket to drain; false when the socket is gone or the deadline passed. */
async function writeDrained(socket: net.Socket, data: Buffer, deadline: number): Promise<boolean> {
  if (socket.destroyed) return false;
  if (socket.write(data)) return true;
  return new Promise((res) => {
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      res(ok);
    };
    const onDrain = (): void => finish(true);
    const onClose = (): void => finish(false);
    const timer = setTimeout(() => finish(false), Math.max(0, deadline - Date.now()));
    socket.on('drain', onDrain);
    socket.on('close', onClose);
  });
}

/** Waits until the server closes the socket or the deadline; true when it closed. */
function closedBy(socket: net.Socket, deadline: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((res) => {
    const timer = setTimeout(() => {
      socket.off('close', onClose);
      res(false);
    }, Math.max(0, deadline - Date.now()));
    const onClose = (): void => {
      clearTimeout(timer);
      res(true);
    };
    socket.on('close', onClose);
    socket.resume(); // read (and drop) whatever comes, so that a close is seen
  });
}

/** Whether the server says anything (an authentication request, an error) before it closes or the deadline. */
function firstData(socket: net.Socket, deadline: number): Promise<'answered' | 'closed' | 'timeout'> {
  if (socket.destroyed) return Promise.resolve('closed');
  return new Promise((res) => {
    const finish = (o: 'answered' | 'closed' | 'timeout'): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      res(o);
    };
    const onData = (): void => finish('answered');
    const onClose = (): void => finish('closed');
    const timer = setTimeout(() => finish('timeout'), Math.max(0, deadline - Date.now()));
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.resume();
  });
}

function hangUp(socket: net.Socket): void {
  socket.destroy();
}

function bye(socket: net.Socket): void {
  if (!socket.destroyed) socket.end(encodeTerminate());
  setTimeout(() => socket.destroy(), 100);
}

/** A simple Query message around bytes that are already UTF-8 (no copy of the text through a JS string). */
function queryOf(sql: Buffer | string): Buffer {
  const text = typeof sql === 'string' ? Buffer.from(sql, 'utf8') : sql;
  const out = Buffer.allocUnsafe(6 + text.length);
  out[0] = 0x51; // 'Q'
  out.writeUInt32BE(5 + text.length, 1);
  text.copy(out, 5);
  out[out.length - 1] = 0;
  return out;
}

// ---- the attacks ---------------------------------------------------------------

interface AttackContext {
  port: number;
  /** The read-only and the read-write identity the attackers log in as. */
  reader: Credentials;
  writer: Credentials;
  /** When this attack must be over (the load's end or the attack's own cap, whichever is first). */
  deadline: number;
  note: (outcome: string) => void;
}

/** 5 MB of a list of ids no row has: the same text each time (a cache may hit), or made distinct in place. */
let inListBody: Buffer | null = null;
function inList(): Buffer {
  if (inListBody === null) {
    const parts: string[] = [];
    let size = 0;
    for (let id = 1_000_000; size < 5 * 1024 * 1024; id++) {
      const s = `-${id},`;
      parts.push(s);
      size += s.length;
    }
    inListBody = Buffer.from(parts.join('') + '-1', 'latin1');
  }
  return inListBody;
}

/** SQL for one identity: reads for the reader, zero-row writes for the writer (nothing may change either way). */
function sqlFor(writer: boolean, predicate: string): string {
  return writer ? `UPDATE public.tasks SET title = title WHERE id < 0 AND (${predicate})` : `SELECT count(*) FROM public.tasks WHERE ${predicate}`;
}

async function sqlAttack(ctx: AttackContext, texts: () => Buffer[]): Promise<void> {
  const writer = Math.random() < 0.5;
  const socket = await rawLogin(ctx.port, writer ? ctx.writer : ctx.reader);
  for (const text of texts()) {
    if (Date.now() >= ctx.deadline) break;
    if (!(await writeDrained(socket, queryOf(text), ctx.deadline))) {
      ctx.note('closed');
      return hangUp(socket);
    }
    const outcome = await awaitAnswer(socket, 1, ctx.deadline);
    ctx.note(outcome);
    if (outcome === 'closed' || outcome === 'timeout') return hangUp(socket);
  }
  bye(socket);
}

const ATTACKS: Record<string, { capMs: number; run: (ctx: AttackContext) => Promise<void> }> = {
  /** Runs of `/*` tens of KB long, nested comments closed or left open. */
  'comment-run': {
    capMs: 20_000,
    run: (ctx) =>
      sqlAttack(ctx, () =>
        Array.from({ length: rnd(1, 4) }, () => {
          const k = rnd(10_000, 40_000);
          const closed = Math.random() < 0.5;
          return Buffer.from(`SELECT 1 ${'/*'.repeat(k)}${closed ? ` x ${'*/'.repeat(k)}` : ''}`, 'latin1');
        }),
      ),
  },
  /** A 5 MB IN list, the same text every time, as a read or a write matching no row. */
  'in-list-5mb': {
    capMs: 30_000,
    run: async (ctx) => {
      const writer = Math.random() < 0.5;
      const head = Buffer.from(writer ? 'DELETE FROM public.tasks WHERE id IN (' : 'SELECT count(*) FROM public.tasks WHERE id IN (', 'latin1');
      const text = Buffer.concat([head, inList(), Buffer.from(')')]);
      const socket = await rawLogin(ctx.port, writer ? ctx.writer : ctx.reader);
      for (let i = rnd(1, 2); i > 0 && Date.now() < ctx.deadline; i--) {
        if (!(await writeDrained(socket, queryOf(text), ctx.deadline))) return ctx.note('closed');
        const outcome = await awaitAnswer(socket, 1, ctx.deadline);
        ctx.note(outcome);
        if (outcome === 'closed' || outcome === 'timeout') return hangUp(socket);
      }
      bye(socket);
    },
  },
  /** Long UNION ALL chains. */
  'union-chain': {
    capMs: 20_000,
    run: (ctx) => sqlAttack(ctx, () => [Buffer.from(`SELECT 1${' UNION ALL SELECT 1'.repeat(rnd(5_000, 50_000))}`, 'latin1')]),
  },
  /** Deep nesting of parentheses. */
  'deep-parens': {
    capMs: 20_000,
    run: (ctx) =>
      sqlAttack(ctx, () => {
        const k = pick([1_000, 10_000, 100_000, 200_000]);
        return [Buffer.from(`SELECT ${'('.repeat(k)}1${')'.repeat(k)}`, 'latin1')];
      }),
  },
  /** A dollar quote opened and never closed, up to 4 MB long. */
  'dollar-unterminated': {
    capMs: 20_000,
    run: (ctx) => sqlAttack(ctx, () => [Buffer.concat([Buffer.from('SELECT $fz$'), Buffer.alloc(rnd(1_000, 4 * 1024 * 1024), 'x')])]),
  },
  /** Distinct multi-MB statements: no two texts alike, so no cache can help. */
  'distinct-mb': {
    capMs: 30_000,
    run: async (ctx) => {
      const writer = Math.random() < 0.5;
      const texts = Array.from({ length: rnd(1, 3) }, () => {
        const literal = randomBytes(rnd(768 * 1024, 6 * 1024 * 1024)).toString('base64'); // 1–8 MB of text
        return Buffer.from(sqlFor(writer, `title <> '${literal}'`), 'latin1');
      });
      const socket = await rawLogin(ctx.port, writer ? ctx.writer : ctx.reader);
      for (const text of texts) {
        if (!(await writeDrained(socket, queryOf(text), ctx.deadline))) return ctx.note('closed');
        const outcome = await awaitAnswer(socket, 1, ctx.deadline);
        ctx.note(outcome);
        if (outcome === 'closed' || outcome === 'timeout') return hangUp(socket);
      }
      bye(socket);
    },
  },
  /** Length words that lie: too large, too small, longer than what follows, shorter than what follows; before and after login. */
  'lying-length': {
    capMs: 10_000,
    run: async (ctx) => {
      const variant = pick(['huge', 'below-4', 'promise-more', 'says-less', 'startup-promise-more', 'startup-huge']);
      if (variant.startsWith('startup')) {
        const socket = await connectRaw(ctx.port);
        const head = Buffer.alloc(8);
        head.writeUInt32BE(variant === 'startup-huge' ? 0x7fffffff : 9_000, 0);
        head.writeUInt32BE(196608, 4); // protocol 3.0
        socket.write(Buffer.concat([head, Buffer.from('user\0reader\0')]));
        ctx.note((await closedBy(socket, Math.min(ctx.deadline, Date.now() + rnd(2_000, 8_000)))) ? 'closed' : 'timeout');
        return hangUp(socket);
      }
      const socket = await rawLogin(ctx.port, Math.random() < 0.5 ? ctx.reader : ctx.writer);
      const q = queryOf('SELECT 1');
      if (variant === 'huge') q.writeUInt32BE(0x7fffffff, 1);
      else if (variant === 'below-4') q.writeUInt32BE(rnd(0, 3), 1);
      else if (variant === 'promise-more') q.writeUInt32BE(rnd(100, 1_000_000), 1);
      else q.writeUInt32BE(6, 1); // 'SELECT 1' is longer: the rest is read as the next messages
      socket.write(q);
      if (variant === 'says-less') {
        const outcome = await awaitAnswer(socket, 1, Math.min(ctx.deadline, Date.now() + 5_000));
        ctx.note(outcome);
      } else {
        ctx.note((await closedBy(socket, Math.min(ctx.deadline, Date.now() + rnd(2_000, 8_000)))) ? 'closed' : 'timeout');
      }
      hangUp(socket);
    },
  },
  /** A message split into 1–3 byte pieces, sent slowly: the start-up packet (before login) or a query. */
  'slow-split': {
    capMs: 10_000,
    run: async (ctx) => {
      const preLogin = Math.random() < 0.5;
      const socket = preLogin ? await connectRaw(ctx.port) : await rawLogin(ctx.port, ctx.reader);
      const message = preLogin ? encodeStartupMessage({ user: ctx.reader.user, database: ctx.reader.database }) : encodeQuery('SELECT count(*) FROM public.tasks');
      const gap = rnd(20, 200);
      for (let at = 0; at < message.length && !socket.destroyed && Date.now() < ctx.deadline; ) {
        const n = rnd(1, 3);
        socket.write(message.subarray(at, at + n));
        at += n;
        await sleep(gap);
      }
      ctx.note(preLogin ? `start-up: ${await firstData(socket, Math.min(ctx.deadline, Date.now() + 5_000))}` : await awaitAnswer(socket, 1, Math.min(ctx.deadline, Date.now() + 5_000)));
      hangUp(socket);
    },
  },
  /** Random bytes, before or after login. */
  garbage: {
    capMs: 8_000,
    run: async (ctx) => {
      const preLogin = Math.random() < 0.5;
      const socket = preLogin ? await connectRaw(ctx.port) : await rawLogin(ctx.port, ctx.writer);
      for (let i = rnd(1, 16); i > 0 && !socket.destroyed; i--) socket.write(randomBytes(rnd(1, 64 * 1024)));
      ctx.note((await closedBy(socket, Math.min(ctx.deadline, Date.now() + 3_000))) ? 'closed' : 'timeout');
      hangUp(socket);
    },
  },
  /** A Query announcing 60 MB, sent in 8 KB pieces and never finished. */
  'unfinished-60mb': {
    capMs: 25_000,
    run: async (ctx) => {
      const socket = await rawLogin(ctx.port, Math.random() < 0.5 ? ctx.reader : ctx.writer);
      const total = 60 * 1024 * 1024;
      const head = Buffer.alloc(5 + 8192 - 5, 0x20);
      head[0] = 0x51;
      head.writeUInt32BE(total + 4, 1);
      head.write('SELECT 1 /*', 5, 'latin1');
      const piece = Buffer.alloc(8192, 0x20);
      let sent = 0;
      let ok = await writeDrained(socket, head, ctx.deadline);
      for (sent = head.length; ok && sent + piece.length < total && Date.now() < ctx.deadline; sent += piece.length) {
        ok = await writeDrained(socket, piece, ctx.deadline);
      }
      if (!ok || socket.destroyed) ctx.note('closed');
      else ctx.note((await closedBy(socket, Math.min(ctx.deadline, Date.now() + rnd(1_000, 3_000)))) ? 'closed' : 'unfinished, held');
      hangUp(socket);
    },
  },
  /** Up to 200k pipelined `SELECT 1` without reading a single answer, then a hang-up. */
  'pipeline-flood': {
    capMs: 20_000,
    run: async (ctx) => {
      const socket = await rawLogin(ctx.port, Math.random() < 0.5 ? ctx.reader : ctx.writer);
      socket.pause(); // never read the answers
      const batch = Buffer.concat(Array.from({ length: 1_000 }, () => encodeQuery('SELECT 1')));
      let sent = 0;
      const count = rnd(50, 200) * 1_000;
      while (sent < count && Date.now() < ctx.deadline && (await writeDrained(socket, batch, ctx.deadline))) sent += 1_000;
      ctx.note(sent >= count ? 'all sent' : socket.destroyed ? 'closed' : 'writes blocked');
      await sleep(Math.min(2_000, ctx.deadline - Date.now()));
      hangUp(socket);
    },
  },
  /** Hang-ups: during login, during a query, inside an open transaction. */
  hangup: {
    capMs: 10_000,
    run: async (ctx) => {
      const variant = pick(['mid-login', 'mid-query', 'in-transaction']);
      if (variant === 'mid-login') {
        const socket = await connectRaw(ctx.port);
        socket.write(encodeStartupMessage({ user: ctx.reader.user, database: ctx.reader.database }));
        await sleep(rnd(0, 50));
        ctx.note('hung up');
        return hangUp(socket);
      }
      const socket = await rawLogin(ctx.port, variant === 'in-transaction' ? ctx.writer : ctx.reader);
      socket.write(
        variant === 'mid-query'
          ? encodeQuery('SELECT count(*) FROM public.tasks a, public.tasks b WHERE a.id < 3000 AND b.id < 3000')
          : encodeQuery('BEGIN; UPDATE public.tasks SET title = title WHERE id < 0; SELECT count(*) FROM public.tasks'),
      );
      await sleep(rnd(0, 30));
      ctx.note('hung up');
      hangUp(socket);
    },
  },
  /** Many bare TCP connections that never log in (some send 4 bytes of a start-up packet). */
  'bare-connections': {
    capMs: 12_000,
    run: async (ctx) => {
      const want = Math.min(rnd(50, 150), MAX_BARE - bareOpen);
      if (want <= 0) return ctx.note('skipped (cap)');
      bareOpen += want;
      const sockets: net.Socket[] = [];
      try {
        const results = await Promise.allSettled(Array.from({ length: want }, () => connectRaw(ctx.port, 5_000)));
        for (const r of results) if (r.status === 'fulfilled') sockets.push(r.value);
        for (const s of sockets) if (Math.random() < 0.3) s.write(Buffer.from([0, 0, 0, 8]));
        await sleep(Math.min(rnd(2_000, 8_000), ctx.deadline - Date.now()));
        const closed = sockets.filter((s) => s.destroyed).length;
        ctx.note(`${closed === 0 ? 'none' : closed === sockets.length ? 'all' : 'some'} closed by server`);
      } finally {
        for (const s of sockets) s.destroy();
        bareOpen -= want;
      }
    },
  },
};

/** Bare connections held at once, all sessions together (file descriptors are finite). */
const MAX_BARE = 400;
let bareOpen = 0;

interface AttackStats {
  runs: number;
  outcomes: Record<string, number>;
  failures: Record<string, number>;
}

async function hostileSession(base: Omit<AttackContext, 'deadline' | 'note'>, loadEnd: number, stats: Map<string, AttackStats>): Promise<void> {
  // FUZZ_ATTACKS=a,b limits the run to those attacks (to find which one hurts).
  const only = process.env.FUZZ_ATTACKS?.split(',').filter((n) => n in ATTACKS);
  const names = only !== undefined && only.length > 0 ? only : Object.keys(ATTACKS);
  for (let i = 0; i < 100_000 && Date.now() < loadEnd; i++) {
    const name = pick(names);
    const attack = ATTACKS[name]!;
    const s = stats.get(name) ?? { runs: 0, outcomes: {}, failures: {} };
    stats.set(name, s);
    s.runs++;
    const ctx: AttackContext = {
      ...base,
      deadline: Math.min(loadEnd, Date.now() + attack.capMs),
      note: (o) => void (s.outcomes[o] = (s.outcomes[o] ?? 0) + 1),
    };
    try {
      await attack.run(ctx);
    } catch (error) {
      const m = error instanceof Error ? error.message : String(error);
      const key = error instanceof LoginFailed ? `login: ${m.replace(/\s+/g, ' ').slice(0, 90)}` : m.slice(0, 90);
      s.failures[key] = (s.failures[key] ?? 0) + 1;
      await sleep(50);
    }
  }
}

// ---- the database --------------------------------------------------------------

interface Server {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  label: string;
  stop: () => Promise<void>;
}

function superClient(server: Server, database = server.database): pg.Client {
  return new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database });
}

/** Row count and md5 of the rows (in text form, sorted) of every table in the public schema. */
async function fingerprint(server: Server): Promise<Record<string, string>> {
  const c = superClient(server);
  await c.connect();
  try {
    const tables = await c.query<{ name: string }>("SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
    const out: Record<string, string> = {};
    for (const { name } of tables.rows) {
      const r = await c.query<{ n: string; h: string }>(`SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS h FROM public.${name} t`);
      out[name] = `${r.rows[0]!.n} rows, md5 ${r.rows[0]!.h}`;
    }
    return out;
  } finally {
    await c.end();
  }
}

async function startServer(scratch: string, url: string | undefined): Promise<Server> {
  if (url !== undefined) {
    const u = new URL(url);
    if (!['127.0.0.1', 'localhost'].includes(u.hostname)) throw new Error('--pg-url must point at 127.0.0.1: this harness attacks only loopback addresses.');
    const base = { host: HOST, port: Number(u.port || 5432), user: decodeURIComponent(u.username || 'postgres'), password: decodeURIComponent(u.password), database: 'postgres' };
    const admin = new pg.Client({ ...base });
    await admin.connect();
    await admin.query('DROP DATABASE IF EXISTS airlock_fuzz WITH (FORCE)');
    await admin.query('CREATE DATABASE airlock_fuzz');
    await admin.end();
    return { ...base, database: 'airlock_fuzz', label: `PostgreSQL at ${HOST}:${base.port} (database airlock_fuzz)`, stop: async () => undefined };
  }
  const pgDir = join(scratch, 'pg');
  const embedded = await startEmbeddedPostgres({ dataDir: pgDir });
  const admin = new pg.Client({ connectionString: embedded.url() });
  await admin.connect();
  await admin.query('CREATE DATABASE fuzz');
  await admin.end();
  return { host: embedded.host, port: embedded.port, user: embedded.user, password: embedded.password, database: 'fuzz', label: `embedded PostgreSQL on port ${embedded.port}`, stop: () => embedded.stop() };
}

/** The postmaster's pid: the parent of a backend's. */
async function postmasterPid(server: Server): Promise<number> {
  const c = superClient(server);
  await c.connect();
  try {
    const r = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const stat = readFileSync(`/proc/${r.rows[0]!.pid}/stat`, 'utf8'); // read while the backend lives
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } finally {
    await c.end();
  }
}

// ---- Airlock as a child process ------------------------------------------------------

interface Gateway {
  child: ChildProcess;
  port: number;
  tail: string[];
  exited: { code: number | null; signal: NodeJS.Signals | null } | null;
}

async function startAirlock(scratch: string, server: Server, passwords: Record<string, string>): Promise<Gateway> {
  const state = join(scratch, 'state');
  await mkdir(state, { recursive: true, mode: 0o700 });
  const configFile = join(scratch, 'airlock.yaml');
  await writeFile(
    configFile,
    [
      'listen: 127.0.0.1:0',
      'admin:',
      '  listen: 127.0.0.1:0',
      `upstream: postgres://${server.user}${server.password ? ':${FUZZ_UPSTREAM_PASSWORD}' : ''}@${server.host}:${server.port}/${server.database}?sslmode=disable`,
      `state_dir: ${JSON.stringify(state)}`,
      'agents:',
      '  - name: fuzz_reader',
      '    password: ${FUZZ_READER_PASSWORD}',
      '    profile: read-only',
      '  - name: fuzz_writer',
      '    password: ${FUZZ_WRITER_PASSWORD}',
      '    profile: read-write',
      '  - name: fuzz_bystander',
      '    password: ${FUZZ_BYSTANDER_PASSWORD}',
      '    profile: read-only',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  // FUZZ_NODE_ARGS: Node.js flags for the Airlock process (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof).
  const nodeArgs = (process.env.FUZZ_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  // As the airlock command runs it (its #! line, src/cli/runtime-flags.ts).
  const child = spawn(process.execPath, [...RUNTIME_NODE_FLAGS, ...nodeArgs, join(ROOT, 'dist/src/cli/main.js'), 'start', '--config', configFile], {
    env: {
      MALLOC_ARENA_MAX: '2',
      ...process.env,
      FUZZ_UPSTREAM_PASSWORD: server.password,
      FUZZ_READER_PASSWORD: passwords.reader!,
      FUZZ_WRITER_PASSWORD: passwords.writer!,
      FUZZ_BYSTANDER_PASSWORD: passwords.bystander!,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const gw: Gateway = { child, port: 0, tail: [], exited: null };
  const keep = (d: Buffer): void => {
    for (const line of d.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      gw.tail.push(line.slice(0, 400));
      if (gw.tail.length > 40) gw.tail.shift();
    }
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.on('exit', (code, signal) => (gw.exited = { code, signal }));
  const deadline = Date.now() + 60_000;
  while (gw.port === 0) {
    const m = gw.tail.map((l) => /Airlock is listening on [\d.]+:(\d+)/.exec(l)).find((x) => x !== null);
    if (m) gw.port = Number(m[1]);
    else if (gw.exited !== null || Date.now() > deadline) throw new Error(`Airlock did not start:\n${gw.tail.join('\n')}`);
    else await sleep(50);
  }
  return gw;
}

async function stopAirlock(gw: Gateway): Promise<void> {
  if (gw.exited !== null || gw.child.pid === undefined) return;
  gw.child.kill('SIGTERM');
  for (let i = 0; i < 100 && gw.exited === null; i++) await sleep(100);
  if (gw.exited === null) gw.child.kill('SIGKILL');
  for (let i = 0; i < 20 && gw.exited === null; i++) await sleep(100);
}

// ---- the run -------------------------------------------------------------------------

interface Options {
  sessions: number;
  seconds: number;
  settle: number;
  target: 'airlock' | 'direct';
  directUser: 'plain' | 'superuser';
  pgUrl: string | undefined;
  json: boolean;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string', default: process.env.FUZZ_SESSIONS ?? '16' },
      seconds: { type: 'string', default: process.env.FUZZ_SECONDS ?? '60' },
      settle: { type: 'string', default: process.env.FUZZ_SETTLE ?? '60' },
      target: { type: 'string', default: process.env.FUZZ_TARGET ?? 'airlock' },
      'direct-user': { type: 'string', default: 'plain' },
      'pg-url': { type: 'string', default: process.env.FUZZ_PG_URL },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(`npm run fuzz -- [--sessions 16] [--seconds 60] [--settle 60] [--target airlock|direct]
                    [--direct-user plain|superuser] [--pg-url postgres://postgres:pw@127.0.0.1:5432/postgres] [--json]
  --sessions     hostile sessions at once (1..64)
  --seconds      how long the load lasts (1..600)
  --settle       seconds to wait after the load before the last memory reading (0..600)
  --target       airlock (default): through a gateway started here; direct: straight to PostgreSQL
  --direct-user  with --target direct, attackers log in as a plain role (read + write grants) or the superuser
  --pg-url       a superuser URL of a PostgreSQL on 127.0.0.1 (env FUZZ_PG_URL); default: an embedded one
  --json         the results as JSON on stdout`);
    process.exit(0);
  }
  const num = (name: string, v: string | undefined, lo: number, hi: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new Error(`--${name} must be an integer in ${lo}..${hi}, not "${v}"`);
    return n;
  };
  if (values.target !== 'airlock' && values.target !== 'direct') throw new Error('--target must be airlock or direct');
  if (values['direct-user'] !== 'plain' && values['direct-user'] !== 'superuser') throw new Error('--direct-user must be plain or superuser');
  return {
    sessions: num('sessions', values.sessions, 1, 64),
    seconds: num('seconds', values.seconds, 1, 600),
    settle: num('settle', values.settle, 0, 600),
    target: values.target,
    directUser: values['direct-user'],
    pgUrl: values['pg-url'],
    json: values.json ?? false,
  };
}

function summary(latencies: number[], failures: number): Record<string, number> {
  const s = [...latencies].sort((a, b) => a - b);
  return { queries: s.length, failures, mean_ms: s.reduce((a, b) => a + b, 0) / s.length, p50_ms: percentile(s, 50), p99_ms: percentile(s, 99), max_ms: s.at(-1) ?? NaN };
}

async function main(): Promise<void> {
  const opts = options();
  const scratch = await mkdtemp(join(tmpdir(), 'airlock-fuzz-'));
  // As root, PostgreSQL runs as the OS user postgres, which must pass through this directory.
  if (process.getuid?.() === 0) await chmod(scratch, 0o711);
  let server: Server | null = null;
  let gateway: Gateway | null = null;
  const helperProcesses: ChildProcess[] = [];
  const createdRoles: string[] = [];
  try {
    log(`starting PostgreSQL${opts.pgUrl ? ' (given URL)' : ' (embedded)'}…`);
    server = await startServer(scratch, opts.pgUrl);
    await seedDemo(`postgres://${encodeURIComponent(server.user)}:${encodeURIComponent(server.password)}@${server.host}:${server.port}/${server.database}`);
    const before = await fingerprint(server);
    const passwords = { reader: randomBytes(12).toString('hex'), writer: randomBytes(12).toString('hex'), bystander: randomBytes(12).toString('hex') };

    let port: number;
    let reader: Credentials;
    let writer: Credentials;
    let bystanderCred: Credentials;
    let memorySpec: { pid: number; tree: boolean };
    if (opts.target === 'airlock') {
      log('starting Airlock (node dist/src/cli/main.js start)…');
      gateway = await startAirlock(scratch, server, passwords);
      port = gateway.port;
      reader = { user: 'fuzz_reader', password: passwords.reader, database: server.database };
      writer = { user: 'fuzz_writer', password: passwords.writer, database: server.database };
      bystanderCred = { user: 'fuzz_bystander', password: passwords.bystander, database: server.database };
      memorySpec = { pid: gateway.child.pid!, tree: false };
      createdRoles.push('airlock_read_fuzz_reader', 'airlock_read_fuzz_writer', 'airlock_read_fuzz_bystander');
    } else {
      // Plain roles: the attackers may read and write every table (as the writer agent may), the bystander only read.
      const c = superClient(server);
      await c.connect();
      for (const [role, pw, grants] of [
        ['fuzz_plain', passwords.writer, 'pg_read_all_data, pg_write_all_data'],
        ['fuzz_bystander_plain', passwords.bystander, 'pg_read_all_data'],
      ] as const) {
        await c.query(`DROP ROLE IF EXISTS ${role}`);
        await c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${pw}'`);
        await c.query(`GRANT ${grants} TO ${role}`);
        await c.query(`ALTER ROLE ${role} SET statement_timeout = '60s'`); // as Airlock sets for agent sessions
        createdRoles.push(role);
      }
      await c.end();
      port = server.port;
      const attacker: Credentials =
        opts.directUser === 'superuser'
          ? { user: server.user, password: server.password, database: server.database }
          : { user: 'fuzz_plain', password: passwords.writer, database: server.database };
      reader = attacker;
      writer = attacker;
      bystanderCred = { user: 'fuzz_bystander_plain', password: passwords.bystander, database: server.database };
      memorySpec = { pid: await postmasterPid(server), tree: true };
    }

    // The bystander and the sampler: processes of their own (see bystanderMain).
    const helpers = (['bystander', 'sampler'] as const).map((role) => {
      const child = fork(fileURLToPath(import.meta.url), ['--helper'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      helperProcesses.push(child);
      const h = { child, report: null as BystanderReport | null, ready: Promise.resolve() };
      h.ready = new Promise<void>((res, rej) => {
        child.on('message', (m: { type: string; report?: BystanderReport }) => {
          if (m.type === 'ready') res();
          if (m.type === 'report') h.report = m.report!;
        });
        child.once('exit', (code) => rej(new Error(`the ${role} exited (${code}) before it was ready`)));
      });
      child.send({ cmd: 'config', cfg: { role, port, credentials: bystanderCred, memory: memorySpec } satisfies BystanderConfig });
      return h;
    });
    const tell = (cmd: string): void => helpers.forEach((h) => h.child.send({ cmd }));
    await Promise.all(helpers.map((h) => h.ready));

    log('bystander: 2 s of baseline…');
    tell('baseline');
    await sleep(2_000);
    const loadStart = Date.now();
    const loadEnd = loadStart + opts.seconds * 1000;
    loadDeadline = loadEnd;
    log(`load: ${opts.sessions} hostile sessions for ${opts.seconds} s against ${opts.target === 'airlock' ? `Airlock on port ${port}` : `PostgreSQL on port ${port} (${opts.directUser} role)`}…`);
    tell('load');
    const stats = new Map<string, AttackStats>();
    const base = { port, reader, writer };
    const sessions = Array.from({ length: opts.sessions }, () => hostileSession(base, loadEnd, stats));
    // Every attack ends by loadEnd; sockets still open then are destroyed, and stragglers get a few seconds.
    await Promise.race([Promise.all(sessions), sleep(opts.seconds * 1000 + 5_000)]);
    for (const s of openSockets) s.destroy();
    const loadStop = Date.now();
    tell('stop');
    log(`load over (${((loadStop - loadStart) / 1000).toFixed(1)} s); settling for ${opts.settle} s…`);
    await sleep(opts.settle * 1000);
    const settledAt = Date.now();

    // Alive: the process is up (Airlock) and a fresh login runs SELECT 1; three tries of 10 s, so that
    // "still busy with the load" (answers within 30 s) is told apart from "wedged or dead".
    let alive = gateway === null || gateway.exited === null;
    let aliveDetail = gateway?.exited ? `exited (code ${gateway.exited.code}, signal ${gateway.exited.signal})` : 'process up';
    if (alive) {
      alive = false;
      let lastError = '';
      for (let attempt = 1; attempt <= 3 && !alive && !(gateway?.exited ?? null); attempt++) {
        const t0 = Date.now();
        try {
          const { client } = await loginClient({ ...bystanderCred, port, host: HOST }, { timeoutMs: 10_000 });
          const rows = await client.queryRows('SELECT 1');
          client.close();
          alive = rows[0]?.[0] === '1';
          lastError = alive ? '' : 'SELECT 1 gave no 1';
        } catch (error) {
          lastError = error instanceof Error ? error.message : String(error);
          await sleep(10_000 - (Date.now() - t0));
        }
        if (alive) aliveDetail += `, fresh login + SELECT 1 ok${attempt > 1 ? ` at try ${attempt} (${((Date.now() - settledAt) / 1000).toFixed(1)} s after the settle period)` : ''}`;
      }
      if (!alive) aliveDetail += gateway?.exited ? `, then exited (code ${gateway.exited.code}, signal ${gateway.exited.signal})` : `, no fresh login + SELECT 1 within 3 tries of 10 s: ${lastError}`;
    }
    tell('finish');
    for (let i = 0; i < 100 && helpers.some((h) => h.report === null); i++) await sleep(50);
    const [r, sampled] = helpers.map((h) => h.report);
    if (!r || !sampled) throw new Error('the bystander or the sampler sent no report');
    const after = await fingerprint(server);
    const changed = Object.keys({ ...before, ...after }).filter((t) => before[t] !== after[t]);

    const mem = sampled.memory;
    const beforeKb = [...mem].reverse().find((s) => s.at <= loadStart)?.kb ?? NaN;
    const peak = mem.filter((s) => s.at >= loadStart && s.at <= settledAt).reduce((m, s) => (s.kb > m.kb ? s : m), { at: 0, kb: 0 });
    const afterKb = [...mem].reverse().find((s) => s.at <= settledAt)?.kb ?? NaN;
    const result = {
      target: opts.target === 'airlock' ? 'airlock' : `direct (${opts.directUser} role)`,
      server: server.label,
      sessions: opts.sessions,
      load_seconds: (loadStop - loadStart) / 1000,
      settle_seconds: opts.settle,
      bystander: {
        baseline: summary(r.latencies.baseline, r.failures.baseline),
        under_load: summary(r.latencies.load, r.failures.load),
        failure_reasons: r.failureReasons,
      },
      memory: {
        what: opts.target === 'airlock' ? 'Airlock process VmRSS' : 'PostgreSQL processes, sum of PSS',
        before_mb: beforeKb / 1024,
        peak_mb: peak.kb / 1024,
        peak_at_s: (peak.at - loadStart) / 1000,
        after_settle_mb: afterKb / 1024,
        samples: mem.length,
      },
      alive,
      alive_detail: aliveDetail,
      database_changed: changed.length > 0,
      changed_tables: changed.map((t) => ({ table: t, before: before[t], after: after[t] })),
      attacks: Object.fromEntries([...stats].sort(([a], [b]) => a.localeCompare(b))),
      airlock_output_tail: gateway?.tail.slice(-10) ?? [],
    };
    if (opts.json) console.log(JSON.stringify(result, null, 2));
    else printTable(result);
    process.exitCode = alive && changed.length === 0 ? 0 : 1;
  } finally {
    for (const s of openSockets) s.destroy();
    for (const h of helperProcesses) if (h.exitCode === null) h.kill('SIGTERM');
    if (gateway !== null) await stopAirlock(gateway);
    if (server !== null) {
      if (opts.pgUrl !== undefined) {
        try {
          const c = superClient(server, 'postgres');
          await c.connect();
          await c.query('DROP DATABASE IF EXISTS airlock_fuzz WITH (FORCE)');
          for (const role of createdRoles) await c.query(`DROP ROLE IF EXISTS ${role}`);
          await c.end();
        } catch (error) {
          log(`cleanup of the given server failed: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
      await server.stop();
    }
    await rm(scratch, { recursive: true, force: true });
  }
}

function printTable(r: {
  target: string;
  server: string;
  sessions: number;
  load_seconds: number;
  settle_seconds: number;
  bystander: { baseline: Record<string, number>; under_load: Record<string, number>; failure_reasons: Record<string, number> };
  memory: { what: string; before_mb: number; peak_mb: number; peak_at_s: number; after_settle_mb: number };
  alive: boolean;
  alive_detail: string;
  database_changed: boolean;
  changed_tables: { table: string; before?: string; after?: string }[];
  attacks: Record<string, AttackStats>;
  airlock_output_tail: string[];
}): void {
  const f = (n: number | undefined, d = 1): string => (n === undefined || Number.isNaN(n) ? '-' : n.toFixed(d));
  const out: string[] = [];
  out.push('');
  out.push(`Fuzz run: target ${r.target}; ${r.server}; ${r.sessions} hostile sessions for ${r.load_seconds.toFixed(1)} s; settle ${r.settle_seconds} s`);
  out.push('');
  out.push('bystander SELECT 1        queries  failures  mean ms   p50 ms    p99 ms     max ms');
  for (const [name, s] of [
    ['baseline (2 s, no load)', r.bystander.baseline],
    ['under load', r.bystander.under_load],
  ] as const) {
    out.push(`${name.padEnd(24)} ${String(s.queries).padStart(8)} ${String(s.failures).padStart(9)} ${f(s.mean_ms, 1).padStart(8)} ${f(s.p50_ms, 2).padStart(8)} ${f(s.p99_ms, 1).padStart(9)} ${f(s.max_ms, 0).padStart(10)}`);
  }
  const reasons = Object.entries(r.bystander.failure_reasons);
  if (reasons.length > 0) out.push(`  failures: ${reasons.map(([k, v]) => `${k} ×${v}`).join(', ')}`);
  out.push('');
  out.push(`memory (${r.memory.what})`);
  out.push(`  before load ${f(r.memory.before_mb)} MB   peak ${f(r.memory.peak_mb)} MB (at +${f(r.memory.peak_at_s)} s)   ${r.settle_seconds} s after load ${f(r.memory.after_settle_mb)} MB`);
  out.push('');
  out.push(`alive after the load:  ${r.alive ? 'yes' : 'NO'} (${r.alive_detail})`);
  out.push(`database changed:      ${r.database_changed ? 'YES: ' + r.changed_tables.map((c) => c.table).join(', ') : 'no (row counts and md5 of every table equal)'}`);
  out.push('');
  out.push('attack                runs  outcomes / harness-side failures');
  for (const [name, s] of Object.entries(r.attacks)) {
    const parts = [...Object.entries(s.outcomes).map(([k, v]) => `${k} ${v}`), ...Object.entries(s.failures).map(([k, v]) => `[${k}] ${v}`)];
    out.push(`${name.padEnd(20)} ${String(s.runs).padStart(5)}  ${parts.join(', ')}`);
  }
  if (!r.alive && r.airlock_output_tail.length > 0) {
    out.push('');
    out.push('Airlock output, last lines:');
    for (const l of r.airlock_output_tail) out.push(`  ${l}`);
  }
  console.log(out.join('\n'));
}

if (process.argv.includes('--helper')) {
  process.once('message', (m: { cmd: string; cfg: BystanderConfig }) => {
    bystanderMain(m.cfg).catch((error) => {
      process.stderr.write(`fuzz bystander: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(1);
    });
  });
} else {
  main().catch((error) => {
    console.error(error instanceof Error ? error.stack : error);
    process.exitCode = 1;
  });
}
