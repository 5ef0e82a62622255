import { describe, it, expect, afterEach } from 'vitest';
import { spawn } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from './embedded-postgres.js';
import type { RunningPostgres } from './embedded-postgres.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A temp dir the OS user postgres can enter (we may run as root). */
async function workDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-embedded-'));
  await chmod(dir, 0o755);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function start(options: Parameters<typeof startEmbeddedPostgres>[0]): Promise<RunningPostgres> {
  const server = await startEmbeddedPostgres(options);
  cleanups.push(() => server.stop());
  return server;
}

async function scalar(url: string, sql: string): Promise<unknown> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ value: unknown }>(sql);
    return result.rows[0]?.value;
  } finally {
    await client.end();
  }
}

describe('startEmbeddedPostgres', () => {
  it('starts a quiet, password-protected PostgreSQL 18 for tests and removes it on stop', async () => {
    const dir = await workDir();
    const lines: string[] = [];
    const dataDir = join(dir, 'data');
    const server = await startEmbeddedPostgres({ dataDir, log: (line) => lines.push(line) });
    try {
      expect(server.url()).toBe(`postgres://postgres:${server.password}@127.0.0.1:${server.port}/postgres`);
      expect(await scalar(server.url(), "SELECT current_setting('server_version_num')::int AS value")).toBeGreaterThanOrEqual(180000);
      expect(await scalar(server.url(), "SELECT current_setting('fsync') AS value")).toBe('off');
      expect(await scalar(server.url(), "SELECT current_setting('max_connections') AS value")).toBe('200');
      expect(await scalar(server.url(), "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AS value FROM pg_authid WHERE rolname = 'postgres'")).toBe(true);
      const wrong = new pg.Client({ connectionString: server.url().replace(server.password, 'guess') });
      await expect(wrong.connect()).rejects.toThrow(/password authentication failed/);
      expect(lines.some((line) => line.includes('ready to accept connections'))).toBe(true);
    } finally {
      await server.stop();
    }
    await expect(stat(dataDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keeps a persistent cluster, its password and its data across restarts', async () => {
    const dataDir = join(await workDir(), 'data');
    const first = await startEmbeddedPostgres({ dataDir, persistent: true });
    await scalar(first.url(), 'CREATE TABLE kept AS SELECT 42 AS value');
    expect(await scalar(first.url(), "SELECT current_setting('fsync') AS value")).toBe('on');
    await first.stop();
    const passwordFile = await stat(join(dataDir, 'airlock-superuser-password'));
    expect(passwordFile.mode & 0o777).toBe(0o600);

    const second = await start({ dataDir, persistent: true });
    expect(second.password).toBe(first.password);
    expect(await scalar(second.url(), 'SELECT value FROM kept')).toBe(42);
  });

  it('recovers from a killed server, and refuses to start beside a running one', async () => {
    const dataDir = join(await workDir(), 'data');
    const first = await startEmbeddedPostgres({ dataDir, persistent: true });
    await expect(startEmbeddedPostgres({ dataDir, persistent: true })).rejects.toThrow(
      /A PostgreSQL server \(pid \d+, port \d+\) is already running in .*data/,
    );

    const pid = Number.parseInt((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0] ?? '', 10);
    process.kill(pid, 'SIGKILL');
    // Its children notice the postmaster's death and leave; PostgreSQL refuses to start while they hold shared memory.
    for (let i = 0; i < 50 && (await childrenAlive(dataDir)); i++) await new Promise((r) => setTimeout(r, 100));
    await first.stop(); // The process is gone: stop() must return, not wait for an exit that already happened.

    const second = await start({ dataDir, persistent: true });
    expect(await scalar(second.url(), 'SELECT 1 AS value')).toBe(1);
  });

  it('removes a pid file whose pid now belongs to another process', async () => {
    const dataDir = join(await workDir(), 'data');
    const first = await startEmbeddedPostgres({ dataDir, persistent: true });
    await first.stop();
    // Our own pid: alive, and not a postgres.
    await writeFile(join(dataDir, 'postmaster.pid'), `${process.pid}\n${dataDir}\n0\n5432\n`);
    const second = await start({ dataDir, persistent: true });
    expect(await scalar(second.url(), 'SELECT 1 AS value')).toBe(1);
  });

  it('refuses to reuse a cluster for a throwaway run, and a directory that is not a cluster', async () => {
    const dir = await workDir();
    const dataDir = join(dir, 'data');
    const server = await startEmbeddedPostgres({ dataDir, persistent: true });
    await server.stop();
    await expect(startEmbeddedPostgres({ dataDir })).rejects.toThrow(/already holds a PostgreSQL cluster/);
    expect((await stat(join(dataDir, 'PG_VERSION'))).isFile()).toBe(true);

    const other = join(dir, 'other');
    await mkdir(other);
    await writeFile(join(other, 'notes.txt'), 'mine');
    await expect(startEmbeddedPostgres({ dataDir: other })).rejects.toThrow(/is not empty and holds no PostgreSQL cluster/);
  });

  it('explains a port that is taken, quoting the server', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => blocker.close(() => resolve())));
    const address = blocker.address();
    if (address === null || typeof address === 'string') throw new Error('The blocking socket has no port.');
    const dataDir = join(await workDir(), 'data');
    await expect(startEmbeddedPostgres({ dataDir, port: address.port })).rejects.toThrow(
      new RegExp(`did not start on port ${address.port}[\\s\\S]*could not (bind|create)`),
    );
    // A throwaway cluster that failed leaves nothing behind.
    await expect(stat(dataDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.skipIf(process.getuid?.() !== 0)('as root, keeps the cluster where the postgres user can reach it when a directory above shuts it out', async () => {
    const dir = await workDir();
    const closed = join(dir, 'closed');
    await mkdir(closed, { mode: 0o700 });
    const dataDir = join(closed, 'data');
    const server = await startEmbeddedPostgres({ dataDir, persistent: true });
    cleanups.push(() => rm(dirname(server.dataDir), { recursive: true, force: true }));
    expect((await lstat(dataDir)).isSymbolicLink()).toBe(true);
    expect(await readlink(dataDir)).toBe(server.dataDir);
    expect(await scalar(server.url(), 'SELECT 1 AS value')).toBe(1);
    await server.stop();
    // A restart finds the cluster through the link.
    const again = await start({ dataDir, persistent: true });
    expect(again.dataDir).toBe(server.dataDir);
    expect(await scalar(again.url(), 'SELECT 1 AS value')).toBe(1);

    // A throwaway cluster: on stop, the cluster and the link are gone.
    const throwaway = join(closed, 'throwaway');
    const other = await startEmbeddedPostgres({ dataDir: throwaway });
    await other.stop();
    await expect(lstat(throwaway)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(other.dataDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('stops PostgreSQL when the process that started it is killed (SIGKILL)', async () => {
    const dataDir = join(await workDir(), 'data');
    const script = [
      `const { startEmbeddedPostgres } = await import(${JSON.stringify(new URL('./embedded-postgres.ts', import.meta.url).href)});`,
      `const pg = await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)}, persistent: true });`,
      'console.log(JSON.stringify({ port: pg.port }));',
      'setInterval(() => undefined, 1000);',
    ].join('\n');
    const owner = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(async () => {
      owner.kill('SIGKILL');
    });
    const port = await new Promise<number>((resolvePort, reject) => {
      let out = '';
      let err = '';
      owner.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /\{"port":(\d+)\}/.exec(out);
        if (match !== null) resolvePort(Number(match[1]));
      });
      owner.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      owner.once('exit', (code) => reject(new Error(`The owner exited (${code}) before PostgreSQL was up: ${err}`)));
    });
    expect(await answers(port)).toBe(true);
    owner.kill('SIGKILL');
    const t0 = Date.now();
    while ((await answers(port)) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 100));
    expect(await answers(port)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(5_000);
    // It was a clean stop: the cluster starts again.
    const again = await start({ dataDir, persistent: true });
    expect(await scalar(again.url(), 'SELECT 1 AS value')).toBe(1);
  });
});

/** Whether something accepts TCP connections on 127.0.0.1:port. */
async function answers(port: number): Promise<boolean> {
  return new Promise((resolveAnswer) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolveAnswer(true);
    });
    socket.once('error', () => resolveAnswer(false));
  });
}

/** Whether any process still works in the data directory (PostgreSQL's processes chdir there). */
async function childrenAlive(dataDir: string): Promise<boolean> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch((error: NodeJS.ErrnoException) => {
      // The process left between readdir and readlink, or is not ours to look at (so not PostgreSQL's).
      if (error.code === 'ENOENT' || error.code === 'ESRCH' || error.code === 'EACCES') return '';
      throw error;
    });
    if (cwd === dataDir) return true;
  }
  return false;
}
