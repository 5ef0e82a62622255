import { mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withLockFile, writeFileAtomic } from './atomic-file.js';

describe('writeFileAtomic', () => {
  it('replaces the file with mode 0600 and leaves no temporary file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-atomic-'));
    const path = join(dir, 'state.json');
    await writeFile(path, 'old', { mode: 0o644 });
    await writeFileAtomic(path, 'new');
    expect(await readFile(path, 'utf8')).toBe('new');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['state.json']);
  });
});

describe('withLockFile', () => {
  const options = { waitMs: 300, staleMs: Number.POSITIVE_INFINITY, busy: (l: string) => `busy: ${l}` };

  it('runs one holder at a time', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-lock-'));
    const lock = join(dir, 'x.lock');
    const order: string[] = [];
    await Promise.all(
      ['a', 'b', 'c'].map((name) =>
        withLockFile(lock, { ...options, waitMs: 5000 }, async () => {
          order.push(`${name}+`);
          await new Promise((r) => setTimeout(r, 20));
          order.push(`${name}-`);
        }),
      ),
    );
    for (let i = 0; i < order.length; i += 2) expect(order[i]!.slice(0, 1)).toBe(order[i + 1]!.slice(0, 1));
    expect(await readdir(dir)).toEqual([]);
  });

  it('gives up with the busy sentence, and breaks a stale lock when told to', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-lock-'));
    const lock = join(dir, 'x.lock');
    await writeFile(lock, '1\n');
    await expect(withLockFile(lock, options, async () => 'ran')).rejects.toThrow(`busy: ${lock}`);
    await expect(withLockFile(lock, { ...options, staleMs: 0 }, async () => 'ran')).resolves.toBe('ran');
  });
});
