/**
 * `airlock demo` (npm start) end to end: its embedded PostgreSQL never
 * outlives it, even when it is killed with no chance to clean up.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
/** tsx's loader by path: the demo runs in a directory of its own, where 'tsx' does not resolve. */
const TSX = new URL('../node_modules/tsx/dist/loader.mjs', import.meta.url).href;
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolveAnswer) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolveAnswer(true);
    });
    socket.once('error', () => resolveAnswer(false));
  });
}

describe('airlock demo', () => {
  it('prints the dashboard URL and a token that signs in; takes its PostgreSQL down with it when it is killed (SIGKILL)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-demo-'));
    // As root, PostgreSQL runs as the OS user postgres, which can enter this directory.
    await chmod(dir, 0o755);
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const demo = spawn(process.execPath, ['--import', TSX, MAIN, 'demo', '--port', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(async () => {
      demo.kill('SIGKILL');
    });
    const ports = await new Promise<{ airlock: number; postgres: number; dashboard: string; token: string }>((resolvePorts, reject) => {
      let out = '';
      let err = '';
      demo.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /Airlock is running on 127\.0\.0\.1:(\d+), in front of a real PostgreSQL \(port (\d+)\)/.exec(out);
        const dashboard = /The approvers' dashboard .*\n {2}(http:\/\/\S+)\nSign in with the demo's admin token .*\n {2}(airlock_admin_\S+)/.exec(out);
        if (match !== null && out.includes('Press Ctrl-C to stop.')) {
          if (dashboard === null) reject(new Error(`The demo did not print the dashboard's URL and a sign-in token:\n${out}`));
          else resolvePorts({ airlock: Number(match[1]), postgres: Number(match[2]), dashboard: dashboard[1]!, token: dashboard[2]! });
        }
      });
      demo.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      demo.once('exit', (code, signal) => reject(new Error(`The demo exited (${signal ?? code}) before it was ready:\n${out}\n${err}`)));
    });
    expect(await answers(ports.postgres)).toBe(true);
    expect(await answers(ports.airlock)).toBe(true);
    // The dashboard it names is there, and its token signs in.
    expect((await fetch(ports.dashboard)).status).toBe(200);
    const signIn = await fetch(new URL('/v1/session', ports.dashboard), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: ports.token }) });
    expect(signIn.status).toBe(201);

    demo.kill('SIGKILL');
    const killedAt = Date.now();
    while ((await answers(ports.postgres)) && Date.now() - killedAt < 15_000) await new Promise((r) => setTimeout(r, 100));
    const gone = Date.now() - killedAt;
    expect(await answers(ports.postgres)).toBe(false);
    expect(gone).toBeLessThan(5_000);
  }, 120_000);
});
