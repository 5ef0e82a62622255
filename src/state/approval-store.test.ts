import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { APPROVALS_FILE, ApprovalError, FileApprovalStore, statedReason, statementHash } from './approval-store.js';

const dirs: string[] = [];
async function store(now: () => number, expireSeconds = 60): Promise<{ s: FileApprovalStore; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-approvals-'));
  dirs.push(dir);
  return { s: await FileApprovalStore.open(dir, { expireSeconds, now }), dir };
}

afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const REQUEST = { agent: 'ops', session: 's1', text: 'DELETE FROM t WHERE id = $1', params: ['1'], hash: statementHash('DELETE FROM t WHERE id = $1', ['1']), reason: null, impact: { 'public.t': 1 } };

describe('approval requests', () => {
  it('binds the exact text and parameters, not the statement shape', () => {
    expect(statementHash('DELETE FROM t WHERE id = $1', ['1'])).not.toBe(statementHash('DELETE FROM t WHERE id = $1', ['2']));
    expect(statementHash('DELETE FROM t WHERE id = 1', [])).not.toBe(statementHash('DELETE FROM t WHERE id =  1', []));
    // No ambiguity between text and parameters.
    expect(statementHash('a', ['b'])).not.toBe(statementHash('a","b', []));
  });

  it("reads the agent's stated reason from a comment, and nothing else", () => {
    expect(statedReason('/* reason: fix the typo */ UPDATE t SET x = 1')).toBe('fix the typo');
    expect(statedReason('UPDATE t SET x = 1 /* REASON:customer asked */')).toBe('customer asked');
    expect(statedReason('UPDATE t SET x = 1 -- reason: nope')).toBeNull();
  });

  it('is approved once: take uses it, a second take finds nothing, and the agent and hash must match', async () => {
    const { s } = await store(() => 1_000);
    const r = await s.create(REQUEST);
    expect(s.pendingFor('ops', REQUEST.hash)?.id).toBe(r.id);
    await s.approve(r.id, 'alice', null);
    expect(await s.take('other-agent', REQUEST.hash)).toBeNull();
    expect(await s.take('ops', statementHash(REQUEST.text, ['2']))).toBeNull();
    expect(await s.take('ops', REQUEST.hash)).toMatchObject({ perTable: { 'public.t': 1 }, maxRows: null, request: { id: r.id, state: 'executed', decidedBy: 'alice' } });
    expect(await s.take('ops', REQUEST.hash)).toBeNull();
    await expect(s.approve(r.id, 'alice', null)).rejects.toThrow(ApprovalError);
  });

  it('expires pending and approved requests, and a decision wakes a waiter', async () => {
    let now = 1_000;
    const { s } = await store(() => now, 60);
    const a = await s.create(REQUEST);
    const waited = s.waitForDecision(a.id, 5_000);
    await s.deny(a.id, 'bob', 'no');
    expect(await waited).toBe('denied');
    const b = await s.create({ ...REQUEST, hash: 'other' });
    await s.approve(b.id, 'alice', 5);
    now += 60_000;
    expect(s.get(b.id)?.state).toBe('expired');
    expect(await s.take('ops', 'other')).toBeNull();
    await expect(s.approve(b.id, 'alice', null)).rejects.toThrow(/expired/);
  });

  it('keeps requests across a restart, numbering on', async () => {
    const { s, dir } = await store(() => 1_000);
    const r = await s.create(REQUEST);
    expect(JSON.parse(await readFile(join(dir, APPROVALS_FILE), 'utf8')).requests).toHaveLength(1);
    const again = await FileApprovalStore.open(dir, { expireSeconds: 60, now: () => 2_000 });
    expect(again.get(r.id)?.state).toBe('pending');
    expect((await again.create(REQUEST)).id).toBe(r.id + 1);
  });
});
