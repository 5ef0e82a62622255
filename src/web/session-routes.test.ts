/**
 * The dashboard's sign-in, against the admin API over HTTP with fakes behind
 * it: cookie flags, CSRF on every state-changing request made with the
 * cookie (and not on the CLI's bearer requests), the rate limit, the second
 * factor, revocation, sign-out, and the security headers.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Secret, TOTP } from 'otpauth';
import { AdminTokens, createAdminToken, revokeAdminToken } from '../state/admin-tokens.js';
import { startAdminApi } from './admin-api.js';
import type { AdminAction, AdminApi, FreezeControl } from './admin-api.js';
import { SecondFactor } from './second-factor.js';
import { CSRF_COOKIE, SESSION_COOKIE } from './session-routes.js';
import { selfSignedCert } from '../../test/support/certificates.js';

class FakeFreezes implements FreezeControl {
  readonly calls: string[] = [];
  async freeze(_scope: unknown, reason: string, by: string) {
    this.calls.push(`freeze by ${by}: ${reason}`);
    return { reason, by };
  }
  async unfreeze(_scope: unknown, by: string) {
    this.calls.push(`unfreeze by ${by}`);
    return null;
  }
  async endWindowEarly() {
    return null;
  }
  status() {
    return { manual: [], windows: [] };
  }
}

const TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const AGENT_PASSWORD = 'claude-secret-password';

let dir: string;
let api: AdminApi;
let base: string;
let freezes: FakeFreezes;
let actions: AdminAction[];
let logs: string[];
let alice: string;
let refused: [string, string][];

async function start(options: { totp?: boolean; tls?: { cert: string; key: string } } = {}) {
  api = await startAdminApi({
    host: '127.0.0.1',
    port: 0,
    tokens: await AdminTokens.open(dir),
    freezes,
    agents: ['claude'],
    onAction: (a) => actions.push(a),
    onSignInRefused: (client, why) => refused.push([client, why]),
    log: (line) => logs.push(line),
    ...(options.totp ? { secondFactor: new SecondFactor(TOTP_SECRET) } : {}),
    tls: options.tls ?? null,
  });
  base = `http://${api.address.host}:${api.address.port}`;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-session-'));
  alice = await createAdminToken(dir, 'alice');
  freezes = new FakeFreezes();
  actions = [];
  logs = [];
  refused = [];
});

afterEach(async () => {
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
  cookies: Map<string, string>;
}

/** A tiny cookie jar: what a browser would keep and send back. */
class Browser {
  readonly jar = new Map<string, string>();
  csrf: string | null = null;

  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const h: Record<string, string> = { ...headers };
    if (this.jar.size > 0) h.cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(base + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const cookies = new Map<string, string>();
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [k, v] = pair!.split('=');
      cookies.set(k!, line);
      if (v === '' || /Max-Age=0|Expires=Thu, 01 Jan 1970/i.test(line)) this.jar.delete(k!);
      else this.jar.set(k!, v!);
    }
    const text = await res.text();
    return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>), headers: res.headers, cookies };
  }

  async signIn(token = alice, totp?: string): Promise<Answer> {
    const r = await this.call('POST', '/v1/session', totp === undefined ? { token } : { token, totp });
    if (r.status === 201) this.csrf = r.body.csrf as string;
    return r;
  }
}

describe('dashboard sign-in', () => {
  it('opens a session with an admin token: HttpOnly, SameSite=Strict cookies, a CSRF token, the token never echoed or logged, on the record', async () => {
    await start();
    const b = new Browser();
    const r = await b.signIn();
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ admin: 'alice', secondFactor: false });
    expect(typeof r.body.csrf).toBe('string');
    const session = r.cookies.get(SESSION_COOKIE)!;
    expect(session).toMatch(/HttpOnly/i);
    expect(session).toMatch(/SameSite=Strict/i);
    expect(session).toMatch(/Path=\//);
    expect(session).not.toMatch(/Secure/i);
    expect(r.cookies.get(CSRF_COOKIE)).toMatch(/HttpOnly/i);
    expect(JSON.stringify(r.body)).not.toContain(alice);
    for (const line of logs) expect(line).not.toContain(alice);
    expect(actions).toEqual([{ kind: 'sign-in', by: 'alice', detail: { client: '127.0.0.1' } }]);
    // The session reads as the admin; the GET hands out a CSRF token too.
    const who = await b.call('GET', '/v1/session');
    expect(who.body).toMatchObject({ admin: 'alice', via: 'session' });
    expect((await b.call('GET', '/v1/status')).status).toBe(200);
  });

  it.each([
    ['a wrong token', 'airlock_admin_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ["an agent's password", AGENT_PASSWORD],
    ["an agent's name and password", `claude:${AGENT_PASSWORD}`],
  ])('refuses %s with 401 and sets no session cookie', async (_what, token) => {
    await start();
    const b = new Browser();
    const r = await b.signIn(token);
    expect(r.status).toBe(401);
    expect(r.body.error).toMatch(/not a valid admin token/);
    expect(r.cookies.has(SESSION_COOKIE)).toBe(false);
    expect((await b.call('GET', '/v1/status')).status).toBe(401);
    for (const line of logs) expect(line).not.toContain(token);
    expect(refused).toEqual([['127.0.0.1', 'dashboard sign-in: not a valid admin token']]);
  });

  it('rate-limits sign-in: the sixth attempt in a minute from one address is refused with 429, right token or not', async () => {
    await start();
    const b = new Browser();
    for (let i = 0; i < 5; i++) expect((await b.signIn('wrong-token')).status).toBe(401);
    const limited = await b.signIn();
    expect(limited.status).toBe(429);
    expect(limited.body.error).toMatch(/^Too many sign-in attempts from this address/);
    expect(limited.cookies.has(SESSION_COOKIE)).toBe(false);
    // The CLI's bearer token is not limited by it.
    expect((await fetch(`${base}/v1/status`, { headers: { authorization: `Bearer ${alice}` } })).status).toBe(200);
  });

  it('needs the TOTP code too when admin.totp_secret is set', async () => {
    await start({ totp: true });
    const b = new Browser();
    const without = await b.signIn();
    expect(without.status).toBe(401);
    expect(without.body.error).toMatch(/TOTP/);
    expect(without.cookies.has(SESSION_COOKIE)).toBe(false);
    expect((await b.signIn(alice, '000000')).status).toBe(401);
    const code = new TOTP({ secret: Secret.fromBase32(TOTP_SECRET), digits: 6, period: 30, algorithm: 'SHA1' }).generate();
    const r = await b.signIn(alice, code);
    expect(r.status).toBe(201);
    expect(r.body.secondFactor).toBe(true);
  });
});

describe('CSRF', () => {
  it('refuses a state-changing request made with the session cookie but without the CSRF token, and changes nothing', async () => {
    await start();
    const b = new Browser();
    await b.signIn();
    const r = await b.call('POST', '/v1/freeze', { reason: 'forged' });
    expect(r.status).toBe(403);
    expect(r.body.error).toMatch(/CSRF token/);
    expect(freezes.calls).toEqual([]);
    // A wrong token is no better.
    expect((await b.call('POST', '/v1/freeze', { reason: 'forged' }, { 'x-csrf-token': 'nope' })).status).toBe(403);
    expect(freezes.calls).toEqual([]);
    // With it, the same request goes through, as the signed-in admin.
    const ok = await b.call('POST', '/v1/freeze', { reason: 'real' }, { 'x-csrf-token': b.csrf! });
    expect(ok.status).toBe(201);
    expect(freezes.calls).toEqual(['freeze by alice: real']);
  });

  it("does not take another session's CSRF token", async () => {
    await start();
    const a = new Browser();
    const b = new Browser();
    await a.signIn();
    await b.signIn();
    const r = await a.call('POST', '/v1/freeze', { reason: 'x' }, { 'x-csrf-token': b.csrf! });
    expect(r.status).toBe(403);
    expect(freezes.calls).toEqual([]);
  });

  it('does not ask the bearer-token CLI for one', async () => {
    await start();
    const r = await fetch(`${base}/v1/freeze`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'cli' }) });
    expect(r.status).toBe(201);
  });
});

describe('ending a session', () => {
  it('signs out: the cookie is cleared and the session no longer opens anything', async () => {
    await start();
    const b = new Browser();
    await b.signIn();
    const id = b.jar.get(SESSION_COOKIE)!;
    // Sign-out changes state: it needs the CSRF token too.
    expect((await b.call('DELETE', '/v1/session')).status).toBe(403);
    const out = await b.call('DELETE', '/v1/session', undefined, { 'x-csrf-token': b.csrf! });
    expect(out.status).toBe(200);
    expect(b.jar.has(SESSION_COOKIE)).toBe(false);
    // The old cookie, replayed, opens nothing.
    const replay = await fetch(`${base}/v1/status`, { headers: { cookie: `${SESSION_COOKIE}=${id}` } });
    expect(replay.status).toBe(401);
    expect(actions.map((a) => a.kind)).toEqual(['sign-in', 'sign-out']);
  });

  it('ends the sessions of a revoked token at their next request', async () => {
    await start();
    const b = new Browser();
    await b.signIn();
    expect((await b.call('GET', '/v1/status')).status).toBe(200);
    await revokeAdminToken(dir, 'alice');
    expect((await b.call('GET', '/v1/status')).status).toBe(401);
  });
});

describe('the page', () => {
  it('is served without a session, with a strict Content-Security-Policy; the data is not', async () => {
    await start();
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    const html = await page.text();
    // No inline script, nothing from elsewhere.
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    for (const asset of ['/ui/app.js', '/ui/style.css', '/ui/icon.svg']) expect((await fetch(base + asset)).status).toBe(200);
    expect((await fetch(`${base}/ui/../admin-tokens.json`)).status).toBe(401);
    expect((await fetch(`${base}/v1/approvals`)).status).toBe(401);
  });
});

describe('admin.tls', () => {
  it('serves the admin API and the dashboard over HTTPS, with Secure session cookies', async () => {
    const files = await selfSignedCert(dir, 'admin');
    await start({ tls: { cert: await readFile(files.cert, 'utf8'), key: await readFile(files.key, 'utf8') } });
    expect(api.scheme).toBe('https');
    const { status, cookies } = await new Promise<{ status: number; cookies: string[] }>((resolve, reject) => {
      const req = httpsRequest(
        // The certificate is self-signed for localhost: this test checks the listener speaks TLS and what it answers, not the chain.
        { host: api.address.host, port: api.address.port, path: '/v1/session', method: 'POST', rejectUnauthorized: false, headers: { 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, cookies: res.headers['set-cookie'] ?? [] }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ token: alice }));
    });
    expect(status).toBe(201);
    const session = cookies.find((c) => c.startsWith(`${SESSION_COOKIE}=`))!;
    expect(session).toMatch(/; Secure/i);
    expect(session).toMatch(/HttpOnly/i);
    // Plain HTTP gets no answer from it.
    await expect(fetch(`http://${api.address.host}:${api.address.port}/`)).rejects.toThrow();
  });
});
