import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCheckpoint, startCheckpoints, writeCheckpoint } from './audit-checkpoint.js';
import { verifyAuditLog } from './audit-verify.js';
import { FileAuditLog, auditLogPath } from './file-audit-log.js';

const KEY = 'a-long-checkpoint-key-for-tests';

async function dirs(): Promise<{ state: string; file: string }> {
  const root = await mkdtemp(join(tmpdir(), 'airlock-checkpoint-'));
  return { state: join(root, 'state'), file: join(root, 'audit.checkpoint') };
}

async function logWith(state: string, n: number): Promise<FileAuditLog> {
  const log = await FileAuditLog.open(state, { flushMs: 1 });
  for (let i = 0; i < n; i++) log.append({ event: 'statement', agent: 'claude', session: 's', client: 'c', text: `SELECT ${i}` });
  await log.flush();
  return log;
}

describe('audit checkpoints', () => {
  it('signs a head and reads it back; a changed or foreign checkpoint is refused', async () => {
    const { file } = await dirs();
    const written = await writeCheckpoint({ file, key: KEY }, { seq: 7, hash: 'ab'.repeat(32) });
    expect(await readCheckpoint({ file, key: KEY })).toEqual({ ok: true, checkpoint: written });

    const forged = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    forged.seq = 3;
    await writeFile(file, JSON.stringify(forged));
    expect(await readCheckpoint({ file, key: KEY })).toMatchObject({ ok: false, problem: expect.stringContaining('valid signature') });

    await writeCheckpoint({ file, key: 'another-key-of-enough-length' }, { seq: 7, hash: 'ab'.repeat(32) });
    expect(await readCheckpoint({ file, key: KEY })).toMatchObject({ ok: false, problem: expect.stringContaining('valid signature') });

    expect(await readCheckpoint({ file: file + '.gone', key: KEY })).toMatchObject({ ok: false, problem: expect.stringContaining('missing') });
  });

  it('follows the durable head, and lets verify notice a cut-off tail', async () => {
    const { state, file } = await dirs();
    const log = await logWith(state, 10);
    const checkpoints = startCheckpoints(log, { file, key: KEY }, { intervalMs: 10 });
    for (let i = 10; i < 20; i++) log.append({ event: 'statement', agent: 'claude', session: 's', client: 'c', text: `SELECT ${i}` });
    await log.close();
    await checkpoints.stop();
    const read = await readCheckpoint({ file, key: KEY });
    expect(read).toMatchObject({ ok: true, checkpoint: { seq: 20 } });
    if (!read.ok) return;
    expect(await verifyAuditLog(state, { checkpoint: read.checkpoint })).toMatchObject({ ok: true, records: 20 });

    // Cut the last five records off: still a valid chain, but short of the checkpoint.
    const lines = (await readFile(auditLogPath(state), 'utf8')).split('\n').filter((l) => l !== '');
    await writeFile(auditLogPath(state), lines.slice(0, 15).join('\n') + '\n');
    expect(await verifyAuditLog(state)).toMatchObject({ ok: true, records: 15 });
    expect(await verifyAuditLog(state, { checkpoint: read.checkpoint })).toMatchObject({
      ok: false,
      problem: expect.stringContaining('cut off its end'),
    });
  });

  it('notices a log rewritten after the checkpoint with a different valid chain', async () => {
    const { state, file } = await dirs();
    const log = await logWith(state, 3);
    const cp = await writeCheckpoint({ file, key: KEY }, log.syncedHead);
    await log.close();
    // Someone replaces the whole log with another one of the same length.
    const other = await dirs();
    const fake = await logWith(other.state, 3);
    await fake.close();
    await writeFile(auditLogPath(state), await readFile(auditLogPath(other.state)));
    expect(await verifyAuditLog(state, { checkpoint: cp })).toMatchObject({ ok: false, problem: expect.stringContaining('rewritten') });
  });
});
