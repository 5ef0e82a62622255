import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileAuditLog, auditLogPath } from '../state/file-audit-log.js';
import type { AuditRecord } from '../state/audit-log.js';
import { fileAuditAccess } from './audit-routes.js';

let dir: string;
let log: FileAuditLog;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-audit-routes-'));
  log = await FileAuditLog.open(dir, { flushMs: 1 });
  const at = { session: 's1', client: '127.0.0.1:1' };
  log.append({ event: 'statement', agent: 'claude', ...at, text: 'SELECT 1', decision: 'allow' });
  log.append({ event: 'statement', agent: 'claude', ...at, text: 'DELETE FROM executives', decision: 'deny', rule: 'write', reason: 'airlock: may not delete' });
  log.append({ event: 'statement', agent: 'ops', ...at, text: "UPDATE tasks SET status = 'done' WHERE id = 1", decision: 'allow' });
  log.append({ event: 'freeze', agent: null, session: null, client: null, reason: 'launch day', detail: { by: 'alice' } });
  await log.flush();
});

afterEach(async () => {
  await log.close();
  await rm(dir, { recursive: true, force: true });
});

describe('fileAuditAccess', () => {
  it('searches newest first, by agent, event, decision and words', async () => {
    const audit = fileAuditAccess(dir, null);
    expect((await audit.search({ limit: 10 })).map((r) => r.seq)).toEqual([4, 3, 2, 1]);
    expect((await audit.search({ limit: 2 })).map((r) => r.seq)).toEqual([4, 3]);
    expect((await audit.search({ limit: 10, before: 3 })).map((r) => r.seq)).toEqual([2, 1]);
    expect((await audit.search({ limit: 10, agent: 'claude' })).map((r) => r.seq)).toEqual([2, 1]);
    expect((await audit.search({ limit: 10, decision: 'deny' })).map((r) => r.text)).toEqual(['DELETE FROM executives']);
    expect((await audit.search({ limit: 10, event: 'freeze' })).map((r) => r.reason)).toEqual(['launch day']);
    expect((await audit.search({ limit: 10, text: 'executives' })).map((r) => r.seq)).toEqual([2]);
    expect((await audit.search({ limit: 10, text: 'MAY NOT' })).map((r) => r.seq)).toEqual([2]);
  });

  it('finds nothing, without failing, where there is no log yet', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'airlock-audit-routes-empty-'));
    try {
      expect(await fileAuditAccess(empty, null).search({ limit: 10 })).toEqual([]);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('verifies the chain, and says where it breaks', async () => {
    const audit = fileAuditAccess(dir, null);
    const good = await audit.verify();
    expect(good).toMatchObject({ ok: true, records: 4 });
    expect(good.checkpoint).toMatch(/No audit checkpoint is configured/);
    await log.close();
    await appendFile(auditLogPath(dir), '{"seq":5,"forged":true}\n');
    const bad = await audit.verify();
    expect(bad).toMatchObject({ ok: false, records: 4, line: 5 });
    expect(bad.problem).toMatch(/Line 5/);
  });

  it('follows records appended from now on', async () => {
    const audit = fileAuditAccess(dir, null);
    const seen: AuditRecord[] = [];
    const stop = new AbortController();
    const following = audit.follow((r) => seen.push(r), stop.signal);
    await new Promise((r) => setTimeout(r, 300));
    log.append({ event: 'unfreeze', agent: null, session: null, client: null, detail: { by: 'alice' } });
    await log.flush();
    for (let i = 0; i < 40 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    stop.abort();
    await following;
    expect(seen.map((r) => [r.seq, r.event])).toEqual([[5, 'unfreeze']]);
  });
});
