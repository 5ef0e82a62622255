import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdminTokens, createAdminToken, revokeAdminToken } from '../state/admin-tokens.js';
import { parseAge, parseUntil, startAdminApi } from './admin-api.js';
import type { AdminAction, AdminApi, FreezeControl, FreezeScope } from './admin-api.js';

interface Freeze {
  scope: FreezeScope;
  reason: string;
  by: string;
  until: string | null;
}

/** An in-memory FreezeControl that records every call. */
class FakeFreezes implements FreezeControl {
  readonly frozen = new Map<string, Freeze>();
  readonly windows = new Map<string, { name: string }>();
  readonly calls: string[] = [];
  failWith: Error | null = null;

  private key(scope: FreezeScope): string {
    return scope.kind === 'global' ? '*' : scope.agent;
  }
  async freeze(scope: FreezeScope, reason: string, by: string, until: Date | null) {
    this.calls.push(`freeze ${this.key(scope)} by ${by}`);
    if (this.failWith) throw this.failWith;
    const f: Freeze = { scope, reason, by, until: until?.toISOString() ?? null };
    this.frozen.set(this.key(scope), f);
    return f;
  }
  async unfreeze(scope: FreezeScope, by: string) {
    this.calls.push(`unfreeze ${this.key(scope)} by ${by}`);
    const f = this.frozen.get(this.key(scope)) ?? null;
    this.frozen.delete(this.key(scope));
    return f;
  }
  async endWindowEarly(name: string, by: string) {
    this.calls.push(`end-window ${name} by ${by}`);
    const w = this.windows.get(name) ?? null;
    this.windows.delete(name);
    return w;
  }
  status() {
    return { frozen: [...this.frozen.values()], windows: [...this.windows.values()] };
  }
}

const AGENT_PASSWORD = 'claude-secret-password';

let dir: string;
let api: AdminApi;
let base: string;
let freezes: FakeFreezes;
let actions: AdminAction[];
let logs: string[];
let alice: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-admin-api-'));
  alice = await createAdminToken(dir, 'alice');
  freezes = new FakeFreezes();
  actions = [];
  logs = [];
  api = await startAdminApi({
    host: '127.0.0.1',
    port: 0,
    tokens: await AdminTokens.open(dir),
    freezes,
    agents: ['claude', 'cursor'],
    onAction: (a) => actions.push(a),
    log: (line) => logs.push(line),
  });
  base = `http://${api.address.host}:${api.address.port}`;
});

afterEach(async () => {
  await api.close();
  await rm(dir, { recursive: true, force: true });
});

async function call(method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${alice}` }) {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers = { ...headers, 'content-type': 'application/json' };
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  // The API's JSON, whatever the endpoint answers; the tests check its fields.
  return { status: res.status, body: JSON.parse(text) as Record<string, any>, headers: res.headers }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

describe('admin API authentication', () => {
  const credentials: [string, () => Record<string, string>][] = [
    ['no Authorization header', () => ({})],
    ['a wrong bearer token', () => ({ authorization: 'Bearer airlock_admin_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' })],
    ['the agent’s password as a bearer token', () => ({ authorization: `Bearer ${AGENT_PASSWORD}` })],
    ['the agent’s name and password as Basic auth', () => ({ authorization: `Basic ${Buffer.from(`claude:${AGENT_PASSWORD}`).toString('base64')}` })],
    ['the token’s hash from the tokens file', () => ({ authorization: `Bearer ${createHash('sha256').update(alice).digest('hex')}` })],
    ['the admin token without the Bearer scheme', () => ({ authorization: alice })],
    ['the admin token cut short', () => ({ authorization: `Bearer ${alice.slice(0, -1)}` })],
    ['"Bearer" and nothing else', () => ({ authorization: 'Bearer ' })],
  ];
  const requests: [string, 'GET' | 'POST', string, unknown][] = [
    ['status', 'GET', '/v1/status', undefined],
    ['freeze', 'POST', '/v1/freeze', { reason: 'test' }],
    ['unfreeze', 'POST', '/v1/unfreeze', {}],
    ['an unknown path', 'GET', '/v1/secret', undefined],
    ['a freeze with a bad body', 'POST', '/v1/freeze', '{not json'],
  ];
  const cases = credentials.flatMap(([who, header]) => requests.map(([what, method, path, body]) => [who, what, header, method, path, body] as const));

  it.each(cases)('refuses %s on %s with 401, and changes nothing', async (_who, _what, header, method, path, body) => {
    const headers = header();
    const res = await call(method, path, body, headers);
    expect(res.status).toBe(401);
    expect(res.body.error).toMatch(/^This request needs a valid admin token.*\.$/);
    // Nothing about which tokens exist.
    expect(JSON.stringify(res.body)).not.toContain('alice');
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(freezes.calls).toEqual([]);
    expect(actions).toEqual([]);
    const refusal = logs.filter((l) => l.includes('refused'));
    expect(refusal).toHaveLength(1);
    expect(refusal[0]).toContain(`${method} ${path}`);
    // The log never holds what was presented.
    const presented = headers.authorization?.replace(/^\S+ ?/, '');
    if (presented) for (const line of logs) expect(line).not.toContain(presented);
    for (const line of logs) expect(line).not.toContain(AGENT_PASSWORD);
  });

  it('does not log a token sent in the query string', async () => {
    const res = await call('GET', `/v1/status?token=${alice}`, undefined, {});
    expect(res.status).toBe(401);
    for (const line of logs) expect(line).not.toContain(alice);
  });

  it('accepts a token created after start, and stops accepting a revoked one', async () => {
    const bob = await createAdminToken(dir, 'bob');
    const frozen = await call('POST', '/v1/freeze', { agent: 'claude', reason: 'bob looks' }, { authorization: `Bearer ${bob}` });
    expect(frozen.status).toBe(201);
    expect(actions.map((a) => a.by)).toEqual(['bob']);
    expect(freezes.calls).toEqual(['freeze claude by bob']);

    await revokeAdminToken(dir, 'bob');
    expect((await call('GET', '/v1/status', undefined, { authorization: `Bearer ${bob}` })).status).toBe(401);
    expect((await call('GET', '/v1/status')).status).toBe(200);
  });

  it('answers an unknown path only to an admin, with 404', async () => {
    const res = await call('GET', '/v1/nothing');
    expect(res.status).toBe(404);
    expect(res.body.error).toMatch(/has no GET \/v1\/nothing\..*POST \/v1\/freeze/);
  });
});

describe('POST /v1/freeze', () => {
  it('freezes all agents: 201, the freeze, the action on record with the token’s name', async () => {
    const res = await call('POST', '/v1/freeze', { reason: 'incident 42' });
    expect(res.status).toBe(201);
    expect(res.body.freeze).toEqual({ scope: { kind: 'global' }, reason: 'incident 42', by: 'alice', until: null });
    expect(res.body.message).toBe('All agents are frozen until lifted.');
    expect(actions).toEqual([{ kind: 'freeze', by: 'alice', detail: { scope: { kind: 'global' }, reason: 'incident 42', until: null } }]);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const status = await call('GET', '/v1/status');
    expect(status.status).toBe(200);
    expect(status.body).toEqual(freezes.status());
    expect(status.body.frozen).toHaveLength(1);
  });

  it('freezes one agent until a time, given with any zone offset', async () => {
    const until = new Date(Date.now() + 7_200_000);
    // The same instant written at UTC-05:00.
    const local = new Date(until.getTime() - 5 * 3_600_000).toISOString().replace('Z', '-05:00');
    const res = await call('POST', '/v1/freeze', { agent: 'cursor', reason: 'review', until: local });
    expect(res.status).toBe(201);
    expect(res.body.freeze).toMatchObject({ scope: { kind: 'agent', agent: 'cursor' }, until: until.toISOString() });
    expect(res.body.message).toBe(`Agent "cursor" is frozen until ${until.toISOString()}.`);
    expect(actions[0]).toMatchObject({ kind: 'freeze', by: 'alice', detail: { scope: { kind: 'agent', agent: 'cursor' }, until: until.toISOString() } });
  });

  it('answers 404 for an agent it does not know', async () => {
    const res = await call('POST', '/v1/freeze', { agent: 'mallory', reason: 'x' });
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('There is no agent named "mallory", so it cannot be frozen. The agents are: claude, cursor.');
    expect(freezes.calls).toEqual([]);
    expect(actions).toEqual([]);
  });

  it.each([
    ['until in the past', () => ({ reason: 'x', until: new Date(Date.now() - 60_000).toISOString() }), /is in the past/],
    ['until now-ish (a second ago)', () => ({ reason: 'x', until: new Date(Date.now() - 1000).toISOString() }), /is in the past/],
    ['until unparsable', () => ({ reason: 'x', until: 'tomorrow' }), /"until" must be an ISO 8601 time.*"tomorrow" is not one/],
    ['until without a zone', () => ({ reason: 'x', until: '2099-01-01T10:00:00' }), /must be an ISO 8601 time with a zone/],
    ['until on a day that does not exist', () => ({ reason: 'x', until: '2099-02-30T10:00:00Z' }), /must be an ISO 8601 time/],
    ['until as a number', () => ({ reason: 'x', until: 4102444800000 }), /"until" must be a string/],
    ['no reason', () => ({ agent: 'claude' }), /"reason" is required/],
    ['an empty reason', () => ({ reason: '' }), /"reason" must not be empty/],
    ['a reason of spaces', () => ({ reason: '   ' }), /"reason" must not be empty/],
    ['a reason that is a number', () => ({ reason: 42 }), /"reason" must be a string/],
    ['a mistyped field', () => ({ agnet: 'claude', reason: 'x' }), /"agnet" is not a field this endpoint takes/],
    ['an empty agent', () => ({ agent: '', reason: 'x' }), /"agent" must not be empty/],
    ['an array', () => [{ reason: 'x' }], /The body must be a JSON object/],
    ['text that is not JSON', () => '{"reason": ', /not valid JSON/],
  ])('answers 400 for %s, and freezes nothing', async (_label, body, message) => {
    const res = await call('POST', '/v1/freeze', body());
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(message);
    expect(res.body.error).toMatch(/\.$/);
    expect(freezes.calls).toEqual([]);
    expect(actions).toEqual([]);
  });

  it('answers 400 for no body and 415 for a body that is not JSON', async () => {
    const empty = await fetch(`${base}/v1/freeze`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' } });
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as { error: string }).error).toMatch(/body is empty/);
    const form = await fetch(`${base}/v1/freeze`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'text/plain' }, body: 'reason=x' });
    expect(form.status).toBe(415);
    expect(((await form.json()) as { error: string }).error).toMatch(/must be JSON/);
    expect(freezes.calls).toEqual([]);
  });

  it('answers 500 with the reason in a sentence when the freeze store fails, and records nothing', async () => {
    freezes.failWith = new Error('the state store is read-only');
    const res = await call('POST', '/v1/freeze', { reason: 'x' });
    expect(res.status).toBe(500);
    expect(res.body.error).toBe('Airlock could not carry out POST /v1/freeze: the state store is read-only.');
    expect(actions).toEqual([]);
    expect(logs.some((l) => l.includes('failed') && l.includes('read-only'))).toBe(true);
  });

  it('keeps answering, and logs, when recording the action fails', async () => {
    await api.close();
    api = await startAdminApi({
      host: '127.0.0.1',
      port: 0,
      tokens: await AdminTokens.open(dir),
      freezes,
      agents: ['claude'],
      onAction: () => {
        throw new Error('audit log full');
      },
      log: (line) => logs.push(line),
    });
    base = `http://${api.address.host}:${api.address.port}`;
    const res = await call('POST', '/v1/freeze', { reason: 'x' });
    expect(res.status).toBe(201);
    expect(logs.some((l) => /took effect but could not be recorded: audit log full/.test(l))).toBe(true);
  });
});

describe('POST /v1/unfreeze', () => {
  it('lifts a global freeze, then says nothing was frozen', async () => {
    await call('POST', '/v1/freeze', { reason: 'incident' });
    actions.length = 0;
    const first = await call('POST', '/v1/unfreeze', {});
    expect(first.status).toBe(200);
    expect(first.body.lifted).toMatchObject({ scope: { kind: 'global' }, reason: 'incident' });
    expect(first.body.message).toBe('The freeze on all agents was lifted.');
    expect(actions).toEqual([{ kind: 'unfreeze', by: 'alice', detail: { scope: { kind: 'global' } } }]);

    const second = await call('POST', '/v1/unfreeze', {});
    expect(second.status).toBe(200);
    expect(second.body.lifted).toBeNull();
    expect(second.body.message).toBe('Nothing was frozen for all agents, so nothing was lifted.');
    expect(actions).toHaveLength(1);
    expect(freezes.calls).toEqual(['freeze * by alice', 'unfreeze * by alice', 'unfreeze * by alice']);
  });

  it('lifts one agent’s freeze and leaves the other', async () => {
    await call('POST', '/v1/freeze', { agent: 'claude', reason: 'a' });
    await call('POST', '/v1/freeze', { agent: 'cursor', reason: 'b' });
    const res = await call('POST', '/v1/unfreeze', { agent: 'claude' });
    expect(res.status).toBe(200);
    expect(res.body.lifted).toMatchObject({ scope: { kind: 'agent', agent: 'claude' } });
    expect(res.body.message).toBe('The freeze on agent "claude" was lifted.');
    expect([...freezes.frozen.keys()]).toEqual(['cursor']);
  });

  it('asks the store about an agent no longer configured, and says so when nothing was frozen', async () => {
    const res = await call('POST', '/v1/unfreeze', { agent: 'retired' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ lifted: null, message: 'Nothing was frozen for agent "retired" (no agent named "retired" is configured), so nothing was lifted.' });
    expect(freezes.calls).toEqual(['unfreeze retired by alice']);
  });

  it('ends a freeze window early, or says there is none', async () => {
    freezes.windows.set('release', { name: 'release' });
    const res = await call('POST', '/v1/unfreeze', { window: 'release' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ lifted: { name: 'release' }, message: 'The freeze window "release" was ended early.' });
    expect(actions).toEqual([{ kind: 'end-window', by: 'alice', detail: { window: 'release' } }]);

    const again = await call('POST', '/v1/unfreeze', { window: 'release' });
    expect(again.body).toEqual({ lifted: null, message: 'No freeze window named "release" is in force, so there was nothing to end.' });
    expect(actions).toHaveLength(1);
  });

  it.each([
    ['agent and window together', { agent: 'claude', window: 'w' }, /Give "agent" or "window", not both/],
    ['a mistyped field', { windoww: 'w' }, /"windoww" is not a field/],
    ['an empty window name', { window: '' }, /"window" must not be empty/],
  ])('answers 400 for %s, and lifts nothing', async (_label, body, message) => {
    const res = await call('POST', '/v1/unfreeze', body);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(message);
    expect(freezes.calls).toEqual([]);
  });
});

describe('parseUntil', () => {
  const now = new Date('2030-01-01T00:00:00Z');
  it.each([
    ['2030-01-01T00:00:01Z', '2030-01-01T00:00:01.000Z'],
    ['2030-01-01T01:00+01:00', null],
    ['2030-01-01T01:00:00.5+00:30', '2030-01-01T00:30:00.500Z'],
    ['2029-12-31T23:00:00-02:00', '2030-01-01T01:00:00.000Z'],
    ['2030-01-01T00:00:00Z', null],
    ['2030-02-29T00:00:00Z', null],
    ['2032-02-29T00:00:00Z', '2032-02-29T00:00:00.000Z'],
    ['2030-01-01T24:00:00Z', null],
    ['2030-06-01', null],
    ['June 1, 2030', null],
  ])('%s → %s', (text, expected) => {
    const r = parseUntil(text, now);
    if (expected === null) expect(typeof r).toBe('string');
    else expect(r).toEqual(new Date(expected));
  });
});

describe('where it listens', () => {
  it('binds the configured host only, and warns when that is beyond this machine', async () => {
    expect(api.address.host).toBe('127.0.0.1');
    expect(logs.some((l) => l.includes('beyond this machine'))).toBe(false);
    const wide: string[] = [];
    const other = await startAdminApi({ host: '0.0.0.0', port: 0, tokens: await AdminTokens.open(dir), freezes, agents: [], log: (l) => wide.push(l) });
    try {
      expect(wide.some((l) => l.includes('listening on 0.0.0.0, beyond this machine'))).toBe(true);
    } finally {
      await other.close();
    }
  });
});

describe('parseAge', () => {
  const now = new Date('2030-01-08T00:00:00Z');
  it.each([
    ['7d', '2030-01-01T00:00:00.000Z'],
    ['12h', '2030-01-07T12:00:00.000Z'],
    ['30m', '2030-01-07T23:30:00.000Z'],
    ['2030-01-05T00:00:00Z', '2030-01-05T00:00:00.000Z'],
    ['7 days', null],
    ['2030-01-05', null],
  ])('%s → %s', (text, expected) => {
    const r = parseAge(text, now);
    expect(r === null ? null : r.toISOString()).toBe(expected);
  });
});

