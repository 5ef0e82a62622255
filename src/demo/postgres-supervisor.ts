/**
 * The embedded PostgreSQL runs under a tiny supervisor, so that it never
 * outlives the process that started it. The supervisor is a child of that
 * process holding the read end of a pipe from it: when the pipe closes
 * (a clean stop, a crash, even SIGKILL, which no exit hook survives) it
 * stops PostgreSQL (fast shutdown, immediate if that takes too long) and
 * exits with it. It sits in a process group of its own, so that a Ctrl-C
 * in the terminal reaches the gateway, which then stops it in its turn.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { RunAs } from './postgres-binaries.js';

/** How long a fast shutdown may take before the supervisor asks for an immediate one. */
export const FAST_SHUTDOWN_GRACE_MS = 5_000;

/**
 * The supervisor's own program, run with `node -e` (CommonJS): no file to
 * find at run time, the same code from the sources (tests) and from dist.
 * argv[1] is JSON: { command, args, uid?, gid?, graceMs }.
 */
const SUPERVISOR_SOURCE = `
const { spawn } = require('node:child_process');
const spec = JSON.parse(process.argv[1]);
const options = { stdio: ['ignore', 'inherit', 'inherit'] };
if (spec.uid !== undefined) { options.uid = spec.uid; options.gid = spec.gid; }
const child = spawn(spec.command, spec.args, options);
let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  // SIGINT: fast shutdown; SIGQUIT: immediate shutdown (https://www.postgresql.org/docs/current/server-shutdown.html).
  child.kill('SIGINT');
  setTimeout(() => child.kill('SIGQUIT'), spec.graceMs).unref();
}
child.on('error', (error) => {
  process.stderr.write('airlock: could not run ' + spec.command + ': ' + error.message + '\\n');
  process.exit(127);
});
child.on('exit', (code, signal) => process.exit(code === null ? 128 : code));
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.on('error', stop);
process.stdin.resume();
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, stop);
`;

/** A supervised server: its supervisor's process, and a way to stop both. */
export interface Supervised {
  /** The supervisor; PostgreSQL's output arrives on its stderr. */
  process: ChildProcess;
  /** Whether the supervisor (and so the server) has exited. */
  exited(): boolean;
  /** Why the supervisor itself could not run, if it could not. */
  failure(): Error | null;
  /** Closes the pipe (the server shuts down) and waits until the supervisor has exited. */
  stop(): Promise<void>;
}

/** Starts `command args` as `runAs`, under a supervisor tied to this process by a pipe. */
export function superviseServer(command: string, args: string[], runAs: RunAs, env: NodeJS.ProcessEnv): Supervised {
  const spec = { command, args, ...runAs, graceMs: FAST_SHUTDOWN_GRACE_MS };
  const child = spawn(process.execPath, ['-e', SUPERVISOR_SOURCE, JSON.stringify(spec)], {
    detached: true,
    stdio: ['pipe', 'ignore', 'pipe'],
    env,
  });
  let done = false;
  let failure: Error | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      done = true;
      resolve();
    });
    // Not even node could be started: there will be no 'exit'. The caller sees it through its output and exited().
    child.once('error', (error) => {
      failure = error;
      done = true;
      resolve();
    });
  });
  // The pipe breaks when the supervisor is gone; that is what exited() reports, not an error to throw.
  child.stdin?.on('error', () => undefined);
  return {
    process: child,
    exited: () => done,
    failure: () => failure,
    async stop() {
      if (!done) child.stdin?.end();
      await exited;
    },
  };
}
