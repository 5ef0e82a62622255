/**
 * Runs a real PostgreSQL client program (psql, pgbench) for end-to-end tests
 * and collects what it printed.
 */
import { spawn } from 'node:child_process';

export interface ProcessResult {
  /** The exit code; null when the process was killed (by the timeout, say). */
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment without the libpq variables (PGHOST, PGSSLMODE, …) of
 * whoever runs the tests, so that the URL on the command line is all that
 * decides where a client connects and how.
 * https://www.postgresql.org/docs/current/libpq-envars.html
 */
export function cleanClientEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  // psql: no ~/.psqlrc surprises, no pager waiting for a terminal.
  return { ...env, PSQLRC: '/dev/null', PAGER: 'cat', PGCONNECT_TIMEOUT: '10', ...extra };
}

/** Runs `command` with `args`, feeding `input` (if any) on stdin, and kills it after `timeoutMs`. */
export function runProcess(
  command: string,
  args: string[],
  options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? cleanClientEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}

/** A running program fed line by line: write, wait for its answer, write again. */
export interface InteractiveProcess {
  write(text: string): void;
  /** Resolves with all stdout so far once it matches `pattern`; rejects after `timeoutMs` or when the program exits first. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Closes stdin and waits for the exit. */
  finish(): Promise<ProcessResult>;
}

export function startProcess(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): InteractiveProcess {
  const child = spawn(command, args, { env: options.env ?? cleanClientEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let exited = false;
  const listeners = new Set<() => void>();
  const notify = (): void => {
    for (const l of [...listeners]) l();
  };
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
    notify();
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const killer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  const done = new Promise<ProcessResult>((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(killer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(killer);
      exited = true;
      notify();
      resolve({ code, stdout, stderr });
    });
  });
  return {
    write: (text) => child.stdin.write(text),
    waitForOutput(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(stdout)) {
            cleanup();
            resolve(stdout);
          } else if (exited) {
            cleanup();
            reject(new Error(`The program exited before printing ${pattern}; stdout: ${stdout}; stderr: ${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`No output matching ${pattern} within ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    finish() {
      child.stdin.end();
      return done;
    },
  };
}
