/**
 * The approvers' dashboard in a real browser (issue 16): Debian's chromium,
 * driven by playwright-core, against Airlock in front of a real PostgreSQL.
 * Sign in; an agent's held write appears as a pending approval with its
 * impact, without a reload; approving it completes the agent's statement;
 * freezing from the dashboard refuses the agent's next write; undoing a
 * change from the dashboard puts the rows back; a state-changing request
 * without the CSRF token is refused; a wrong token is refused and
 * rate-limited. A screenshot of each page goes to test-artifacts/dashboard/.
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Secret, TOTP } from 'otpauth';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAgent, TestAirlock } from './support/airlock.js';
import { CHROMIUM_INSTALL_MS, ensureChromium } from './support/chromium.js';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';

/** Without the background-networking flags chromium keeps calling home, which a closed network answers with timeouts. */
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/dashboard/', import.meta.url));

const GATED: TestAgent = { name: 'gated', password: 'gated-test-password', profile: 'writes-need-approval', extra: ['    write_limits: { max_rows: 1000, rows_per_hour: 100000 }'] };
const OPS: TestAgent = { name: 'ops', password: 'ops-test-password', profile: 'read-write', extra: ['    write_limits: { max_rows: 1000, rows_per_hour: 100000, writes_per_minute: 600 }'] };

/** Scheduled freezes, none in force during the test: the Freeze page lists them. */
const WINDOWS = [
  'freeze_windows:',
  '  - { name: weekend, reason: nobody is on call, weekly: { days: [sat, sun], start: "00:00", end: "00:01", timezone: Pacific/Kiritimati } }',
  '  - { name: release-2099, reason: the big release, agents: [ops], from: "2099-01-01T00:00:00Z", to: "2099-01-08T00:00:00Z" }',
];

const server = testServers()[0]!;

describe('the dashboard, in a real browser', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let stateDir: string;
  let airlock: TestAirlock;
  let token: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let url: string;
  const clients: pg.Client[] = [];
  /** Every URL the browser asked for: all must be Airlock's own. */
  const requested: string[] = [];
  const pageErrors: string[] = [];

  const direct = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await withClient(db.url, (c) => c.query<T>(sql, params))).rows;

  async function agent(who: TestAgent): Promise<pg.Client> {
    const c = new pg.Client(airlock.clientConfig(who.name));
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  }

  async function shot(name: string): Promise<void> {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  async function open(path: string): Promise<void> {
    await page.goto(`${url}#/${path}`);
    await page.locator(`main[data-page="${path}"]`).waitFor();
  }

  beforeAll(async () => {
    const executablePath = await ensureChromium();
    await mkdir(ARTIFACTS, { recursive: true });
    db = await createTestDatabase(server, { seed: true });
    stateDir = await mkdtemp(join(tmpdir(), 'airlock-dashboard-'));
    airlock = await startTestAirlock(server, db, { stateDir, agents: [GATED, OPS], extraYaml: ['approvals:', '  wait_seconds: 60', ...WINDOWS] });
    token = await createAdminToken(stateDir, 'alice');
    url = airlock.gateway.dashboardUrl;
    browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    page.on('request', (r) => requested.push(r.url()));
    page.on('pageerror', (e) => pageErrors.push(e.message));
  }, CHROMIUM_INSTALL_MS + 120_000);

  afterAll(async () => {
    await browser?.close();
    for (const c of clients) await c.end().catch(() => undefined);
    await airlock?.close();
    await db?.drop();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it('signs in with an admin token; the session cookie is out of the page script’s reach', async () => {
    await page.goto(url);
    await page.locator('form.signin').waitFor();
    await shot('sign-in');
    await page.fill('#token', token);
    await page.click('form.signin button[type=submit]');
    await expect.poll(() => page.locator('[data-test=freeze-banner]').getAttribute('data-state')).toBe('clear');
    await expect.poll(() => page.locator('header.top .who').textContent()).toContain('alice');
    // HttpOnly: the page's own script cannot read the session (nor could an injected one).
    expect(await page.evaluate(() => document.cookie)).not.toContain('airlock_session');
    const cookies = await context.cookies();
    expect(cookies.find((c) => c.name === 'airlock_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    // The token is not kept in the page.
    expect(await page.content()).not.toContain(token);
  });

  it("shows an agent's held write as a pending approval with its impact, without a reload; approving it completes the agent's statement", async () => {
    await open('approvals');
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));
    const c = await agent(GATED);
    const pending = c.query("/* reason: fix a typo in the title */ UPDATE tasks SET title = 'approved from the dashboard' WHERE id = 1");
    const card = page.locator('[data-test=approval]');
    await card.waitFor({ timeout: 15_000 });
    expect(navigations).toEqual([]);
    await expect.poll(() => page.locator('[data-test=pending-count]').textContent()).toBe('1');
    const text = (await card.textContent()) ?? '';
    expect(text).toContain("UPDATE tasks SET title = 'approved from the dashboard' WHERE id = 1");
    expect(text).toContain('fix a typo in the title');
    expect(text).toContain('gated');
    // The dry run's impact: the table and its row count, and the row as it is and as it would be.
    const impact = card.locator('[data-test=impact]');
    expect(await impact.textContent()).toMatch(/public\.tasks\s*1 row/);
    expect(await impact.locator('.sample').count()).toBe(2);
    expect(await impact.textContent()).toContain('approved from the dashboard');
    // The statement is highlighted, not raw text.
    expect(await card.locator('pre.statement .tok-keyword').count()).toBeGreaterThan(2);
    await shot('approvals');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot('approvals-phone');
    await page.setViewportSize({ width: 1280, height: 860 });
    // Not run yet.
    expect((await direct<{ title: string }>('SELECT title FROM tasks WHERE id = 1'))[0]!.title).not.toBe('approved from the dashboard');
    await card.locator('[data-test=approve]').click();
    const result = await pending;
    expect(result.command).toBe('UPDATE');
    expect(result.rowCount).toBe(1);
    expect((await direct<{ title: string }>('SELECT title FROM tasks WHERE id = 1'))[0]!.title).toBe('approved from the dashboard');
    await card.waitFor({ state: 'detached' });
    await expect.poll(() => page.locator('[data-test=pending-count]').textContent()).toBe('0');
  });

  it("denies a held write with a reason, and the agent hears it", async () => {
    const c = await agent(GATED);
    const pending = c.query("UPDATE tasks SET title = 'never' WHERE id = 2").then(
      () => null,
      (e: Error) => e,
    );
    const card = page.locator('[data-test=approval]');
    await card.waitFor({ timeout: 15_000 });
    await card.locator('input[name=deny-reason]').fill('not during the launch');
    await card.locator('[data-test=deny]').click();
    const err = await pending;
    expect(err?.message).toContain('not during the launch');
    await card.waitFor({ state: 'detached' });
  });

  it("freezes every agent from the dashboard: the banner says so on every page, and the agent's next write is refused", async () => {
    await open('freeze');
    // The configured windows are listed with when they hold.
    const windows = (await page.locator('main').textContent()) ?? '';
    expect(windows).toContain('release-2099');
    expect(windows).toContain('the big release');
    expect(windows).toMatch(/every sat, sun 00:00–00:01 \(Pacific\/Kiritimati\)/);
    await shot('freeze');
    await page.locator('[data-test=freeze-all-quick]').click();
    await expect.poll(() => page.locator('[data-test=freeze-banner]').getAttribute('data-state')).toBe('frozen-all');
    for (const p of ['approvals', 'activity', 'agents']) {
      await open(p);
      expect(await page.locator('[data-test=freeze-banner]').textContent()).toContain('ALL AGENTS ARE FROZEN');
    }
    const c = await agent(OPS);
    const err = await c.query("UPDATE tasks SET status = 'done' WHERE id = 3").then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/all agents are frozen/);
    // Reads go on.
    expect((await c.query('SELECT count(*) FROM tasks')).rowCount).toBe(1);
    await open('freeze');
    await shot('freeze-frozen');
    await page.locator('[data-test=unfreeze-all]').click();
    await expect.poll(() => page.locator('[data-test=freeze-banner]').getAttribute('data-state')).toBe('clear');
    expect((await c.query("UPDATE tasks SET status = 'done' WHERE id = 3")).rowCount).toBe(1);
  });

  it('freezes one agent from the agents page, and lifts it', async () => {
    await open('agents');
    const card = page.locator('[data-test=agent][data-name=ops]');
    // Half a reason typed for another agent: the page redraws on the freeze below, and must keep it.
    await page.locator('[data-test=agent][data-name=gated] input[name=reason]').fill('half a reas');
    await card.locator('input[name=reason]').fill('looking into it');
    await card.locator('[data-test=freeze-ops]').click();
    await expect.poll(() => page.locator('[data-test=freeze-banner]').getAttribute('data-state')).toBe('frozen-some');
    await page.locator('[data-test=agent][data-name=ops] [data-test=unfreeze-ops]').waitFor();
    expect(await page.locator('[data-test=agent][data-name=gated] input[name=reason]').inputValue()).toBe('half a reas');
    const c = await agent(OPS);
    const err = await c.query("UPDATE tasks SET status = 'done' WHERE id = 4").then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/frozen/);
    await page.locator('[data-test=agent][data-name=ops] [data-test=unfreeze-ops]').click();
    await expect.poll(() => page.locator('[data-test=freeze-banner]').getAttribute('data-state')).toBe('clear');
  });

  it('shows live activity as it happens, filterable by agent and decision', async () => {
    await open('activity');
    await page.locator('[data-test=event]').first().waitFor();
    const c = await agent(OPS);
    await c.query("SELECT 'live marker' AS m");
    await c.query('DELETE FROM api_keys').catch(() => undefined);
    const marker = page.locator('[data-test=event]', { hasText: 'live marker' });
    await marker.waitFor({ timeout: 10_000 });
    await page.locator('[data-test=event][data-decision=deny]', { hasText: 'api_keys' }).first().waitFor({ timeout: 10_000 });
    await page.selectOption('select[name=decision]', 'deny');
    await expect.poll(() => page.locator('[data-test=event][data-decision=allow]').count()).toBe(0);
    await page.selectOption('select[name=agent]', 'gated');
    await expect.poll(() => page.locator('[data-test=event][data-agent=ops]').count()).toBe(0);
    await page.selectOption('select[name=agent]', 'ops');
    await page.selectOption('select[name=decision]', '');
    await shot('activity');
  });

  it('undoes a change from the dashboard, dry run first: the rows are back in the database', async () => {
    const before = await direct('SELECT * FROM tasks WHERE id IN (10, 11) ORDER BY id');
    expect(before).toHaveLength(2);
    const c = await agent(OPS);
    expect((await c.query('DELETE FROM tasks WHERE id IN (10, 11)')).rowCount).toBe(2);
    expect(await direct('SELECT * FROM tasks WHERE id IN (10, 11)')).toHaveLength(0);
    await open('changes');
    const card = page.locator('[data-test=change]', { hasText: 'DELETE FROM tasks WHERE id IN (10, 11)' });
    await card.waitFor({ timeout: 10_000 });
    await card.locator('[data-test=undo-preview]').click();
    const confirm = card.locator('[data-test=undo-confirm]');
    await confirm.waitFor();
    // The dry run changed nothing, and says what undo would do.
    expect(await direct('SELECT * FROM tasks WHERE id IN (10, 11)')).toHaveLength(0);
    expect(await card.locator('.undo-panel').textContent()).toMatch(/public\.tasks\s*0\s*0\s*2/);
    expect(await card.locator('.undo-panel').textContent()).toContain('No row was changed again since');
    await shot('changes');
    await confirm.click();
    await expect.poll(() => direct('SELECT * FROM tasks WHERE id IN (10, 11) ORDER BY id'), { timeout: 10_000 }).toEqual(before);
    await page.locator('[data-test=change]', { hasText: 'DELETE FROM tasks WHERE id IN (10, 11)' }).locator('.pill', { hasText: 'undone' }).waitFor({ timeout: 10_000 });
  });

  it('shows conflicts: a row changed again since the change, in the list and in the dry run, and undo then needs a named choice', async () => {
    const c = await agent(OPS);
    await c.query("UPDATE tasks SET title = 'the agent''s title' WHERE id = 20");
    // A human changes the same row afterwards.
    await direct("UPDATE tasks SET title = 'the human''s title' WHERE id = 20");
    await open('changes');
    const card = page.locator('[data-test=change]', { hasText: "UPDATE tasks SET title = 'the agent''s title' WHERE id = 20" });
    await card.waitFor({ timeout: 10_000 });
    await expect.poll(() => card.locator('header').textContent()).toContain('1 row changed since');
    await card.locator('[data-test=undo-preview]').click();
    await card.locator('[data-test=undo-confirm]').waitFor();
    const panel = (await card.locator('.undo-panel').textContent()) ?? '';
    expect(panel).toContain('1 row changed again after this change');
    expect(panel).toContain('"title":"the human\'s title"');
    expect(await card.locator('[data-test=undo-confirm]').textContent()).toContain('Undo anyway');
    await shot('changes-conflict');
    // Left as it is: the human's change stands.
    expect((await direct<{ title: string }>('SELECT title FROM tasks WHERE id = 20'))[0]!.title).toBe("the human's title");
  });

  it('shows each agent: profile, rules that apply, budgets used, tripwire', async () => {
    await open('agents');
    const ops = page.locator('[data-test=agent][data-name=ops]');
    await ops.waitFor();
    const text = (await ops.textContent()) ?? '';
    expect(text).toContain('read-write');
    expect(text).toContain('Writes, last minute');
    expect(text).toContain('Rows changed, last hour');
    expect(text).toContain('Destructive refusals');
    // ops wrote (and undo put 2 rows back, which is not the agent's spending): its budget shows use.
    const rows = await ops.locator('meter').nth(1).getAttribute('value');
    expect(Number(rows)).toBeGreaterThanOrEqual(3);
    await shot('agents');
  });

  it('searches the audit log and verifies its chain', async () => {
    await open('audit');
    await page.locator('[data-test=verify]').click();
    await expect.poll(() => page.locator('[data-test=verify-result]').textContent(), { timeout: 20_000 }).toContain('The audit log is intact');
    await page.fill('input[name=q]', 'approved from the dashboard');
    await page.click('form.filters button[type=submit]');
    // The page first showed the newest records unfiltered: wait for the search's own answer.
    await expect.poll(async () => (await page.locator('[data-test=audit-row]').allTextContents()).every((t) => t.includes('approved from the dashboard'))).toBe(true);
    expect(await page.locator('[data-test=audit-row]').count()).toBeGreaterThan(0);
    await shot('audit');
  });

  it('refuses a state-changing request made with the session cookie but without the CSRF token', async () => {
    // The page's own origin, the session cookie sent: only the CSRF token is missing.
    const forged = await page.evaluate(async () => {
      const r = await fetch('/v1/freeze', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'forged' }), credentials: 'same-origin' });
      return { status: r.status, body: (await r.json()) as { error: string } };
    });
    expect(forged.status).toBe(403);
    expect(forged.body.error).toMatch(/CSRF token/);
    const status = await page.evaluate(async () => (await fetch('/v1/status')).json());
    expect(status).toEqual({ manual: [], windows: [] });
  });

  it('was all served by Airlock itself, with no script error', () => {
    const origin = new URL(url).origin;
    expect(requested.filter((u) => !u.startsWith(origin) && !u.startsWith('data:'))).toEqual([]);
    expect(pageErrors).toEqual([]);
  });

  it('signs out', async () => {
    await page.locator('[data-test=sign-out]').click();
    await page.locator('form.signin').waitFor();
    expect((await context.cookies()).find((c) => c.name === 'airlock_session')).toBeUndefined();
  });

  it('refuses a wrong token, then rate-limits sign-in from the address', async () => {
    const other = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const p = await other.newPage();
    await p.goto(url);
    await p.locator('form.signin').waitFor();
    const messages: string[] = [];
    for (let i = 0; i < 8; i++) {
      await p.fill('#token', 'airlock_admin_not-a-real-token');
      await p.click('form.signin button[type=submit]');
      await expect.poll(async () => (await p.locator('form.signin .error').textContent()) ?? '').not.toBe('');
      const message = (await p.locator('form.signin .error').textContent()) ?? '';
      messages.push(message);
      // Clear it, so the next answer shows as new.
      await p.evaluate(() => document.querySelector('form.signin .error')!.replaceChildren());
      if (/Too many sign-in attempts/.test(message)) break;
    }
    expect(messages[0]).toMatch(/not a valid admin token/);
    expect(messages.at(-1)).toMatch(/Too many sign-in attempts/);
    // Now even the right token waits.
    await p.fill('#token', token);
    await p.click('form.signin button[type=submit]');
    await expect.poll(async () => (await p.locator('form.signin .error').textContent()) ?? '').toMatch(/Too many sign-in attempts/);
    await p.screenshot({ path: join(ARTIFACTS, 'sign-in-refused.png') });
    await other.close();
    // On the record: each refused sign-in, from where; never what was typed, and never the real token.
    await airlock.audit.flush();
    const record = await readFile(join(stateDir, 'audit', 'audit.jsonl'), 'utf8');
    expect(record).toContain('"event":"auth-failed"');
    expect(record).toContain('dashboard sign-in: not a valid admin token');
    expect(record).toContain('"event":"sign-in"');
    expect(record).not.toContain('not-a-real-token');
    expect(record).not.toContain(token);
  });
});

describe('the dashboard with admin.totp_secret, in a real browser', { timeout: 60_000 }, () => {
  const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
  const totp = new TOTP({ secret: Secret.fromBase32(SECRET), digits: 6, period: 30, algorithm: 'SHA1' });
  let db: TestDatabase;
  let stateDir: string;
  let airlock: TestAirlock;
  let browser: Browser;
  let client: pg.Client | null = null;

  beforeAll(async () => {
    const executablePath = await ensureChromium();
    db = await createTestDatabase(server, { seed: true });
    stateDir = await mkdtemp(join(tmpdir(), 'airlock-dashboard-totp-'));
    airlock = await startTestAirlock(server, db, { stateDir, agents: [GATED], extraYaml: ['approvals:', '  wait_seconds: 60'], adminYaml: [`  totp_secret: ${SECRET}`] });
    browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
  }, CHROMIUM_INSTALL_MS + 120_000);

  afterAll(async () => {
    await browser?.close();
    await client?.end().catch(() => undefined);
    await airlock?.close();
    await db?.drop();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it('signs in only with the TOTP code too, and approves with a fresh code', async () => {
    const token = await createAdminToken(stateDir, 'bob');
    const page = await browser.newPage();
    await page.goto(airlock.gateway.dashboardUrl);
    await page.fill('#token', token);
    await page.click('form.signin button[type=submit]');
    await expect.poll(async () => (await page.locator('form.signin .error').textContent()) ?? '').toMatch(/TOTP code/);
    const now = Date.now();
    await page.fill('#totp', totp.generate({ timestamp: now }));
    await page.click('form.signin button[type=submit]');
    await page.locator('main[data-page=approvals]').waitFor();
    client = new pg.Client(airlock.clientConfig(GATED.name));
    client.on('error', () => undefined);
    await client.connect();
    const pending = client.query("UPDATE tasks SET title = 'approved with a code' WHERE id = 5");
    const card = page.locator('[data-test=approval]');
    await card.waitFor({ timeout: 15_000 });
    // Without a code the form is not sent: the field is required.
    await card.locator('[data-test=approve]').click();
    expect(await card.locator('input[name=approve-totp]:invalid').count()).toBe(1);
    // The sign-in code is spent: the next one is good.
    await card.locator('input[name=approve-totp]').fill(totp.generate({ timestamp: now + 30_000 }));
    await card.locator('[data-test=approve]').click();
    expect((await pending).rowCount).toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, 'approvals-totp.png'), fullPage: true });
    await page.close();
  });
});
