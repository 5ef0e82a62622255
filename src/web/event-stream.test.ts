/**
 * GET /v1/events over HTTP: only for an admin (token or session), one
 * `audit` event per record followed, and a session's stream ends when the
 * session does.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdminTokens, createAdminToken } from '../state/admin-tokens.js';
import type { AuditRecord } from '../state/audit-log.js';
import { startAdminApi } from './admin-api.js';
import type { AdminApi, FreezeControl } from './admin-api.js';
import type { AuditAccess } from './audit-routes.js';
import { DashboardSessions } from './dashboard-sessions.js';

const freezes: FreezeControl = {
  freeze: async () => ({}),
  unfreeze: async () => null,
  endWindowEarly: async () => null,
  status: () => ({ manual: [], windows: [] }),
};

/** An audit log whose follower the test feeds by hand. */
class FakeAudit implements AuditAccess {
  private readonly followers = new Set<(r: AuditRecord) => void>();
  async search() {
    return [];
  }
  async verify() {
    return { ok: true, records: 0, checkpoint: '' };
  }
  follow(onRecord: (r: AuditRecord) => void, signal: AbortSignal): Promise<void> {
    this.followers.add(onRecord);
    return new Promise((resolve) =>
      signal.addEventListener('abort', () => {
        this.followers.delete(onRecord);
        resolve();
      }),
    );
  }
  emit(record: Partial<AuditRecord>): void {
    for (const f of this.followers) f({ seq: 1, at: new Date().toISOString(), event: 'statement', agent: 'claude', session: 's', client: 'c', prev: 'p', hash: 'h', ...record } as AuditRecord);
  }
  get following(): number {
    return this.followers.size;
  }
}

let dir: string;
let api: AdminApi;
let base: string;
let audit: FakeAudit;
let token: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-events-'));
  token = await createAdminToken(dir, 'alice');
  audit = new FakeAudit();
  api = await startAdminApi({ host: '127.0.0.1', port: 0, tokens: await AdminTokens.open(dir), freezes, agents: ['claude'], audit, sessions: new DashboardSessions(), log: () => undefined });
  base = `http://${api.address.host}:${api.address.port}`;
});

afterEach(async () => {
  await api.close();
  await rm(dir, { recursive: true, force: true });
});

/** Reads the stream until `until` matches what arrived, or the stream ends. */
async function read(response: Response, until: RegExp): Promise<string> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    text += decoder.decode(value);
    if (until.test(text)) {
      await reader.cancel();
      return text;
    }
  }
}

describe('GET /v1/events', () => {
  it('answers 401 without an admin token or session', async () => {
    expect((await fetch(`${base}/v1/events`)).status).toBe(401);
  });

  it('streams each audit record as an `audit` event, without its hash links', async () => {
    const response = await fetch(`${base}/v1/events`, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(response.headers.get('content-security-policy')).toContain("default-src 'self'");
    for (let i = 0; i < 50 && audit.following === 0; i++) await new Promise((r) => setTimeout(r, 10));
    audit.emit({ seq: 7, text: 'DELETE FROM executives', decision: 'deny' });
    const text = await read(response, /DELETE FROM executives[\s\S]*\n\n/);
    const event = /event: audit\nid: 7\ndata: (.*)\n\n/.exec(text);
    expect(event).not.toBeNull();
    const data = JSON.parse(event![1]!) as Record<string, unknown>;
    expect(data).toMatchObject({ seq: 7, event: 'statement', agent: 'claude', text: 'DELETE FROM executives', decision: 'deny' });
    expect(data).not.toHaveProperty('hash');
    expect(data).not.toHaveProperty('prev');
    // The one follower is let go when the last stream closes.
    for (let i = 0; i < 100 && audit.following > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(audit.following).toBe(0);
  });

  it('streams to a session cookie too', async () => {
    const signIn = await fetch(`${base}/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
    const cookie = signIn.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const response = await fetch(`${base}/v1/events`, { headers: { cookie } });
    expect(response.status).toBe(200);
    for (let i = 0; i < 50 && audit.following === 0; i++) await new Promise((r) => setTimeout(r, 10));
    audit.emit({ seq: 9, event: 'freeze', agent: null, reason: 'launch' });
    expect(await read(response, /launch/)).toContain('"event":"freeze"');
  });
});
