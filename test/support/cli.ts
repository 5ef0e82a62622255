/**
 * Runs the `airlock` command as a real process, built from the current source.
 *
 * Each test file builds its own copy into a temp directory rather than into
 * the shared `dist/`: test files run in parallel processes, and two `tsc`
 * runs writing the same files (or one writing while another process loads
 * them) would make the tests flaky. The copy gets a `package.json` (so that
 * Node reads it as ESM) and a link to the repository's `node_modules`.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

export interface BuiltCli {
  /** Absolute path of the built `main.js`. */
  main: string;
  /** Removes the build. */
  remove(): Promise<void>;
}

/**
 * Compiles `src/` with the project's build config into a temp directory.
 * Type errors elsewhere in the tree (others' work in progress) do not stop
 * the emit; a missing `main.js` does.
 */
export async function buildCli(): Promise<BuiltCli> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-cli-build-'));
  const outDir = join(dir, 'dist');
  const tsc = resolve(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await runProcess(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', outDir], {
    cwd: REPO_ROOT,
    timeoutMs: 120_000,
  });
  const main = join(outDir, 'src', 'cli', 'main.js');
  if (!existsSync(main)) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`The build did not produce ${main} (tsc exited ${result.code}):\n${result.stdout}${result.stderr}`);
  }
  await writeFile(join(outDir, 'package.json'), JSON.stringify({ type: 'module' }));
  // The dashboard's page and scripts are served as they are, not compiled: beside the module that serves them.
  await cp(join(REPO_ROOT, 'src', 'web', 'dashboard'), join(outDir, 'src', 'web', 'dashboard'), { recursive: true });
  await symlink(join(REPO_ROOT, 'node_modules'), join(outDir, 'node_modules'), 'dir');
  return { main, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface ProcessResult {
  /** Exit code, or null when a signal ended the process. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** The process is killed (SIGKILL) after this long and the run fails. Default 30 s. */
  timeoutMs?: number;
}

/** Runs a command to its end and collects its output. */
export function runProcess(command: string, args: string[], options: RunOptions = {}): Promise<ProcessResult> {
  const child = new RunningProcess(command, args, options);
  return child.exited(options.timeoutMs ?? 30_000);
}

/** A process that is still running: its output so far, and ways to wait for lines and to stop it. */
export class RunningProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  private readonly done: Promise<ProcessResult>;
  private result: ProcessResult | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(command: string, args: string[], options: RunOptions = {}) {
    this.child = spawn(command, args, {
      cwd: options.cwd ?? REPO_ROOT,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      this.stdout += s;
      this.notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      this.stderr += s;
      this.notify();
    });
    this.done = new Promise((resolveDone, reject) => {
      this.child.once('error', reject);
      this.child.once('close', (code, signal) => {
        this.result = { code, signal, stdout: this.stdout, stderr: this.stderr };
        this.notify();
        resolveDone(this.result);
      });
    });
  }

  /** Everything printed so far, stdout then stderr. */
  get output(): string {
    return this.stdout + this.stderr;
  }

  get running(): boolean {
    return this.result === null;
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  /** Resolves with the first match of `pattern` in stdout or stderr; fails when the process ends first or time runs out. */
  waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return new Promise((resolveMatch, reject) => {
      const check = (): void => {
        const m = this.stdout.match(pattern) ?? this.stderr.match(pattern);
        if (m !== null) {
          finish();
          resolveMatch(m);
        } else if (this.result !== null) {
          finish();
          reject(new Error(`The process ended (code ${this.result.code}, signal ${this.result.signal}) before printing ${pattern}:\n${this.output}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`No ${pattern} within ${timeoutMs} ms. Output so far:\n${this.output}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Waits for the process to end; kills it (SIGKILL) and fails after `timeoutMs`. */
  async exited(timeoutMs = 30_000): Promise<ProcessResult> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`The process did not end within ${timeoutMs} ms. Output:\n${this.output}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.done, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` and waits for the process to end. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<ProcessResult> {
    if (this.result !== null) return this.result;
    this.child.kill(signal);
    return this.exited(timeoutMs);
  }

  /** For clean-up after a failed test: ends the process whatever state it is in. */
  async kill(): Promise<void> {
    if (this.result !== null) return;
    this.child.kill('SIGKILL');
    await this.done.catch(() => undefined);
  }
}

/** A TCP port that was free a moment ago: bind port 0 on 127.0.0.1, read it, close. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => (port > 0 ? resolvePort(port) : reject(new Error('The kernel gave no free TCP port.'))));
    });
  });
}
