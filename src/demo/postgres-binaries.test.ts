import { mkdtemp, readFile, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { blockedFor, packagedBinaries, stageBinaries } from './postgres-binaries.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('stageBinaries', () => {
  it('copies the packaged PostgreSQL once, readable by all, and copies again over a damaged copy', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'airlock-stage-'));
    dirs.push(cache);
    const packaged = await packagedBinaries();
    const staged = await stageBinaries(packaged, cache);
    expect(staged.root.startsWith(cache)).toBe(true);
    expect((await stat(staged.postgres)).size).toBe((await stat(packaged.postgres)).size);
    expect((await stat(staged.postgres)).mode & 0o777).toBe(0o755);
    expect((await stat(staged.root)).mode & 0o777).toBe(0o755);
    const manifest = await stat(join(staged.root, 'airlock-staged.json'));

    // Used as it is the next time.
    const again = await stageBinaries(packaged, cache);
    expect(again).toEqual(staged);
    expect((await stat(join(staged.root, 'airlock-staged.json'))).mtimeMs).toBe(manifest.mtimeMs);

    // A copy cut short is not used: it is replaced.
    await truncate(staged.initdb, 10);
    const repaired = await stageBinaries(packaged, cache);
    expect((await stat(repaired.initdb)).size).toBe((await stat(packaged.initdb)).size);
    expect(await readFile(repaired.initdb)).toEqual(await readFile(packaged.initdb));
  });
});

describe('blockedFor', () => {
  it('names the first directory a user cannot enter', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blocked-'));
    dirs.push(dir);
    // mkdtemp makes 0700 directories: a user that owns nothing cannot enter.
    expect(await blockedFor(join(dir, 'a', 'b'), { uid: 65534, gid: 65534 })).toBe(dir);
    expect(await blockedFor(tmpdir(), { uid: 65534, gid: 65534 })).toBeNull();
  });
});
