import { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminTokens, createAdminToken } from '../state/admin-tokens.js';
import { startAdminApi } from '../web/admin-api.js';
import type { AdminApi, FreezeControl } from '../web/admin-api.js';
import { adminRequest, adminTokenFromEnvOrPrompt } from './admin-client.js';
import type { PromptInput } from './admin-client.js';
import { caSignedServerCert } from '../../test/support/certificates.js';

/** A terminal that types `keys` once the prompt has asked, and remembers what was shown and the raw-mode switches. */
function fakeTerminal(keys: string[], isTTY = true) {
  const emitter = new EventEmitter();
  const shown: string[] = [];
  const raw: boolean[] = [];
  const input: PromptInput = {
    isTTY,
    setRawMode: (mode: boolean) => raw.push(mode),
    on: (event, listener) => emitter.on(event, listener),
    off: (event, listener) => emitter.off(event, listener),
    resume: () => setImmediate(() => keys.forEach((k) => emitter.emit('data', Buffer.from(k)))),
    pause: () => undefined,
  };
  return { input, output: { write: (t: string) => shown.push(t) }, shown, raw };
}

describe('adminTokenFromEnvOrPrompt', () => {
  it('takes AIRLOCK_ADMIN_TOKEN first, without asking', async () => {
    const t = fakeTerminal(['typed\r']);
    expect(await adminTokenFromEnvOrPrompt({ AIRLOCK_ADMIN_TOKEN: ' airlock_admin_x \n' }, t)).toBe('airlock_admin_x');
    expect(t.shown).toEqual([]);
  });

  it('asks on a terminal, echoing nothing, and honours backspace', async () => {
    const t = fakeTerminal(['airlock_admin_', 'abcX\u007f', 'd\r']);
    expect(await adminTokenFromEnvOrPrompt({}, t)).toBe('airlock_admin_abcd');
    expect(t.shown.join('')).toBe('Admin token: \n');
    expect(t.raw).toEqual([true, false]);
  });

  it('treats an empty AIRLOCK_ADMIN_TOKEN as unset', async () => {
    const t = fakeTerminal(['tok\n']);
    expect(await adminTokenFromEnvOrPrompt({ AIRLOCK_ADMIN_TOKEN: '' }, t)).toBe('tok');
  });

  it.each([
    ['Ctrl-C', '\u0003', /Cancelled/],
    ['Ctrl-D', '\u0004', /Cancelled/],
    ['an empty line', '\r', /No admin token was given\. Set AIRLOCK_ADMIN_TOKEN/],
  ])('gives up on %s, leaving the terminal as it was', async (_label, key, message) => {
    const t = fakeTerminal([key]);
    await expect(adminTokenFromEnvOrPrompt({}, t)).rejects.toThrow(message);
    expect(t.raw).toEqual([true, false]);
  });

  it('throws a clear Error when there is neither the variable nor a terminal', async () => {
    const t = fakeTerminal([], false);
    await expect(adminTokenFromEnvOrPrompt({}, t)).rejects.toThrow(
      /^Set AIRLOCK_ADMIN_TOKEN to an admin token \(airlock admin token create --name <you>/,
    );
    expect(t.shown).toEqual([]);
  });
});

describe('adminRequest', () => {
  let dir: string;
  let api: AdminApi;
  let token: string;
  const calls: string[] = [];
  const freezes: FreezeControl = {
    freeze: async (scope, reason, by) => (calls.push(`freeze by ${by}`), { scope, reason, by }),
    unfreeze: async () => null,
    endWindowEarly: async () => null,
    status: () => ({ frozen: calls.length > 0 }),
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-admin-client-'));
    token = await createAdminToken(dir, 'ops@example.com');
    api = await startAdminApi({ host: '127.0.0.1', port: 0, tokens: await AdminTokens.open(dir), freezes, agents: ['claude'], log: () => undefined });
  });
  afterAll(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('GETs and POSTs JSON with the token', async () => {
    const target = { host: api.address.host, port: api.address.port, token };
    expect(await adminRequest(target, 'GET', '/v1/status')).toEqual({ status: 200, body: { frozen: false } });
    const frozen = await adminRequest(target, 'POST', '/v1/freeze', { agent: 'claude', reason: 'look' });
    expect(frozen.status).toBe(201);
    expect(frozen.body.freeze).toEqual({ scope: { kind: 'agent', agent: 'claude' }, reason: 'look', by: 'ops@example.com' });
    expect(calls).toEqual(['freeze by ops@example.com']);
    expect(await adminRequest(target, 'GET', '/v1/status')).toEqual({ status: 200, body: { frozen: true } });
  });

  it('returns the API’s refusal as data', async () => {
    const wrong = await adminRequest({ host: api.address.host, port: api.address.port, token: 'nope' }, 'GET', '/v1/status');
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toMatch(/needs a valid admin token/);
    const bad = await adminRequest({ host: api.address.host, port: api.address.port, token }, 'POST', '/v1/freeze', { agent: 'mallory', reason: 'x' });
    expect(bad.status).toBe(404);
    expect(bad.body.error).toMatch(/no agent named "mallory"/);
  });

  it.each(['two words', 'tök', 'line\nbreak', ''])('refuses the token %j before sending it, without quoting it', async (bad) => {
    const attempt = adminRequest({ host: api.address.host, port: api.address.port, token: bad }, 'GET', '/v1/status');
    await expect(attempt).rejects.toThrow(/^The admin token holds spaces or characters no admin token has/);
    await attempt.catch((err: Error) => {
      if (bad) expect(err.message).not.toContain(bad);
    });
  });

  it('says the server is not running when the connection is refused', async () => {
    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    await expect(adminRequest({ host: '127.0.0.1', port, token }, 'GET', '/v1/status')).rejects.toThrow(
      `Airlock's admin API is not answering at 127.0.0.1:${port}: is \`airlock start\` running?`,
    );
  });

  it('shows an answer that is not JSON as an error from something else at the address', async () => {
    const server = createServer((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const res = await adminRequest({ host: '127.0.0.1', port, token }, 'GET', '/v1/status');
      expect(res.status).toBe(200);
      expect(res.body.error).toMatch(/is not JSON \(HTTP 200\): is the admin API at that address\? It began: hello/);
    } finally {
      server.close();
    }
  });
});

describe('adminRequest over HTTPS (admin.tls)', () => {
  it('talks HTTPS, trusting the CA it is given, and refuses a certificate it cannot trust', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-admin-client-tls-'));
    const token = await createAdminToken(dir, 'alice');
    await caSignedServerCert(dir);
    const freezes: FreezeControl = {
      freeze: async () => ({}),
      unfreeze: async () => null,
      endWindowEarly: async () => null,
      status: () => ({ frozen: false }),
    };
    const api = await startAdminApi({
      host: '127.0.0.1',
      port: 0,
      tokens: await AdminTokens.open(dir),
      freezes,
      agents: ['claude'],
      log: () => undefined,
      tls: { cert: await readFile(join(dir, 'server.crt'), 'utf8'), key: await readFile(join(dir, 'server.key'), 'utf8') },
    });
    try {
      const target = { host: api.address.host, port: api.address.port, token, scheme: 'https' as const };
      expect(await adminRequest({ ...target, ca: await readFile(join(dir, 'ca.crt'), 'utf8') }, 'GET', '/v1/status')).toEqual({ status: 200, body: { frozen: false } });
      await expect(adminRequest({ ...target, ca: await readFile(join(dir, 'other-ca.crt'), 'utf8') }, 'GET', '/v1/status')).rejects.toThrow(/could not be reached/);
      await expect(adminRequest({ host: api.address.host, port: api.address.port, token }, 'GET', '/v1/status')).rejects.toThrow();
    } finally {
      await api.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
