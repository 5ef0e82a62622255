import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { runCheck } from './check-command.js';
import type { CommandArgs } from './main.js';

const dir = mkdtempSync(join(tmpdir(), 'airlock-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

const configPath = join(dir, 'airlock.yaml');
writeFileSync(
  configPath,
  `upstream: postgres://airlock@127.0.0.1/app
agents:
  - { name: claude, password: long-enough-password, profile: read-only }
  - { name: writer, password: long-enough-password, profile: read-write, write_limits: { max_rows: 7 } }
rules:
  - { agents: [claude], kinds: [insert, update], tables: [public.tasks], decision: allow }
  - { tables: [public.companies], decision: approve, note: customer data }
  - { kinds: [ddl], decision: deny }
  - { kinds: [select], tables: [public.secrets], decision: deny }
`,
  { mode: 0o600 },
);

/** Runs `airlock check` with these options; returns its exit code and what it printed. */
async function check(sql: string, values: CommandArgs['values'] = {}): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...parts: unknown[]) => lines.push(parts.join(' ')));
  const code = await runCheck({ values, positionals: ['check', sql] }, [sql]);
  return { code, out: lines.join('\n') };
}

describe('airlock check with a config', () => {
  it("judges with the agent's rules and prints allow-write with its limits", async () => {
    const r = await check("INSERT INTO tasks (title) VALUES ('x')", { config: configPath, agent: 'claude' });
    expect(r.code).toBe(0);
    expect(r.out).toContain('changes:   insert tasks');
    expect(r.out).toContain('policy:    insert public.tasks: allow by rules[0]');
    expect(r.out).toContain('Decision for agent "claude" (profile read-only): ALLOW (allow-write)');
    expect(r.out).toContain('within write_limits: max_rows 100, require_where on, rows_per_hour 1000, writes_per_minute 60');
  });

  it('says why a statement is refused, naming the rule and its note', async () => {
    const r = await check('SELECT * FROM companies', { config: configPath, agent: 'claude' });
    expect(r.code).toBe(3);
    expect(r.out).toContain('policy:    select public.companies: approve by rules[1] ("customer data")');
    expect(r.out).toContain('DENY [approval-required, SQLSTATE 42501]');
  });

  it("uses another agent's profile and limits", async () => {
    const r = await check('DELETE FROM tasks WHERE id = 1', { config: configPath, agent: 'writer' });
    expect(r.code).toBe(0);
    expect(r.out).toContain('policy:    delete public.tasks: allow by profile read-write');
    expect(r.out).toContain('max_rows 7');
    const drop = await check('DROP TABLE tasks CASCADE', { config: configPath, agent: 'writer' });
    expect(drop.out).toContain('drops: yes');
    expect(drop.out).toContain('cascade: yes');
    expect(drop.out).toContain('DENY [ddl, SQLSTATE 42501]');
  });

  it('prints the decision and the limits as JSON', async () => {
    const r = await check('UPDATE tasks SET done = true WHERE id = 1', { config: configPath, agent: 'claude', json: true });
    const parsed = JSON.parse(r.out) as { decision: unknown; mayWrite: boolean; writeLimits: { maxRows: number } };
    expect(parsed.decision).toEqual({ kind: 'allow-write', rule: 'write' });
    expect(parsed.mayWrite).toBe(true);
    expect(parsed.writeLimits.maxRows).toBe(100);
  });
});

describe('airlock check without a config', () => {
  it('judges under the read-only profile, as before rules', async () => {
    const r = await check('DELETE FROM executives');
    expect(r.code).toBe(3);
    expect(r.out).toContain('DENY [write, SQLSTATE 42501]');
    expect(r.out).toContain('may not DELETE on public.executives (profile read-only)');
    expect(r.out).not.toContain('policy:');
  });
});
