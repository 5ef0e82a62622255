import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN_PREFIX, AdminTokens, adminTokensPath, createAdminToken, listAdminTokens, revokeAdminToken } from './admin-tokens.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-admin-tokens-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('createAdminToken', () => {
  it('returns a prefixed 32-byte token and keeps only its hash, in a 0600 file', async () => {
    const token = await createAdminToken(dir, 'alice');
    expect(token.startsWith(ADMIN_TOKEN_PREFIX)).toBe(true);
    expect(Buffer.from(token.slice(ADMIN_TOKEN_PREFIX.length), 'base64url')).toHaveLength(32);

    const file = adminTokensPath(dir);
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain(token);
    expect(text).not.toContain(token.slice(ADMIN_TOKEN_PREFIX.length));
    const stored = JSON.parse(text) as { tokens: { name: string; hash: string; created: string }[] };
    expect(stored.tokens).toEqual([{ name: 'alice', hash: createHash('sha256').update(token).digest('hex'), created: expect.any(String) }]);
    expect(Number.isNaN(Date.parse(stored.tokens[0]!.created))).toBe(false);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // No temporary or lock file is left behind.
    expect(await readdir(dir)).toEqual(['admin-tokens.json']);
  });

  it('gives a different token each time', async () => {
    const a = await createAdminToken(dir, 'a');
    const b = await createAdminToken(dir, 'b');
    expect(a).not.toBe(b);
    expect((await listAdminTokens(dir)).map((t) => t.name)).toEqual(['a', 'b']);
  });

  it('refuses a name that exists, in any case, and keeps the first token', async () => {
    const first = await createAdminToken(dir, 'alice');
    await expect(createAdminToken(dir, 'alice')).rejects.toThrow(/admin token named "alice" exists already/);
    await expect(createAdminToken(dir, 'ALICE')).rejects.toThrow(/exists already/);
    const tokens = await AdminTokens.open(dir);
    expect(tokens.count).toBe(1);
    expect(await tokens.verify(first)).toBe('alice');
  });

  it.each(['', 'a b', 'x'.repeat(65), 'alice/../bob', 'ünï', 'a;b'])('refuses the name %j', async (name) => {
    await expect(createAdminToken(dir, name)).rejects.toThrow(/cannot name an admin token/);
  });

  it.each(['a', 'alice@example.com', 'ops.bot-1_x', 'x'.repeat(64)])('accepts the name %j', async (name) => {
    const token = await createAdminToken(dir, name);
    expect(await (await AdminTokens.open(dir)).verify(token)).toBe(name);
  });

  it('creates the state directory if needed', async () => {
    const nested = join(dir, 'state', 'deeper');
    const token = await createAdminToken(nested, 'alice');
    expect(await (await AdminTokens.open(nested)).verify(token)).toBe('alice');
  });

  it('loses no token when many are created at once', async () => {
    const names = Array.from({ length: 8 }, (_, i) => `admin${i}`);
    const created = await Promise.all(names.map((n) => createAdminToken(dir, n)));
    const tokens = await AdminTokens.open(dir);
    expect(tokens.count).toBe(names.length);
    for (const [i, token] of created.entries()) expect(await tokens.verify(token)).toBe(names[i]);
  });

  it('waits for, then gives up on, a lock left by another command', async () => {
    await writeFile(`${adminTokensPath(dir)}.lock`, '');
    await expect(createAdminToken(dir, 'alice')).rejects.toThrow(/Another airlock command is changing the admin tokens/);
  });
});

describe('revokeAdminToken', () => {
  it('removes by name and says whether it did', async () => {
    const alice = await createAdminToken(dir, 'alice');
    const bob = await createAdminToken(dir, 'bob');
    expect(await revokeAdminToken(dir, 'alice')).toBe(true);
    expect(await revokeAdminToken(dir, 'alice')).toBe(false);
    expect(await revokeAdminToken(dir, 'nobody')).toBe(false);
    const tokens = await AdminTokens.open(dir);
    expect(await tokens.verify(alice)).toBeNull();
    expect(await tokens.verify(bob)).toBe('bob');
    expect((await stat(adminTokensPath(dir))).mode & 0o777).toBe(0o600);
  });

  it('says false when there is no file at all', async () => {
    expect(await revokeAdminToken(dir, 'alice')).toBe(false);
  });
});

describe('AdminTokens', () => {
  it('has no tokens when the file is missing', async () => {
    const tokens = await AdminTokens.open(dir);
    expect(tokens.count).toBe(0);
    expect(await tokens.verify('anything')).toBeNull();
  });

  it.each([
    ['the empty string', ''],
    ['the prefix alone', ADMIN_TOKEN_PREFIX],
    ['a hash of the token instead of the token', 'HASH'],
    ['the token with a character changed', 'FLIP'],
    ['the token cut short', 'SHORT'],
    ['the token with trailing space', 'SPACE'],
  ])('refuses %s', async (_label, kind) => {
    const token = await createAdminToken(dir, 'alice');
    const hash = createHash('sha256').update(token).digest('hex');
    const presented = { HASH: hash, FLIP: token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'), SHORT: token.slice(0, -1), SPACE: `${token} ` }[kind] ?? kind;
    const tokens = await AdminTokens.open(dir);
    expect(await tokens.verify(presented)).toBeNull();
    expect(await tokens.verify(token)).toBe('alice');
  });

  it('accepts a token created after it was opened, and refuses one revoked after', async () => {
    const tokens = await AdminTokens.open(dir);
    expect(tokens.count).toBe(0);
    const alice = await createAdminToken(dir, 'alice');
    expect(await tokens.verify(alice)).toBe('alice');
    expect(tokens.count).toBe(1);
    const bob = await createAdminToken(dir, 'bob');
    expect(await tokens.verify(bob)).toBe('bob');
    expect(tokens.count).toBe(2);
    await revokeAdminToken(dir, 'alice');
    expect(await tokens.verify(alice)).toBeNull();
    expect(await tokens.verify(bob)).toBe('bob');
    expect(tokens.count).toBe(1);
  });

  it('refuses to open a file that is not Airlock’s', async () => {
    await writeFile(adminTokensPath(dir), 'not json', { mode: 0o600 });
    await expect(AdminTokens.open(dir)).rejects.toThrow(/not valid JSON/);
    await writeFile(adminTokensPath(dir), JSON.stringify({ tokens: [{ name: 'alice', hash: 'abc', created: 'x' }] }), { mode: 0o600 });
    await expect(AdminTokens.open(dir)).rejects.toThrow(/lacks a valid name, hash or created time/);
  });

  it('refuses a file others may write', async () => {
    await createAdminToken(dir, 'alice');
    await chmod(adminTokensPath(dir), 0o666);
    await expect(AdminTokens.open(dir)).rejects.toThrow(/may be written by users other than its owner/);
  });

  it('accepts no token while the file is broken, says so once, and recovers when it is fixed', async () => {
    const alice = await createAdminToken(dir, 'alice');
    const lines: string[] = [];
    const tokens = await AdminTokens.open(dir, { log: (line) => lines.push(line) });
    expect(await tokens.verify(alice)).toBe('alice');

    const file = adminTokensPath(dir);
    const good = await readFile(file, 'utf8');
    await chmod(file, 0o622);
    expect(await tokens.verify(alice)).toBeNull();
    expect(await tokens.verify(alice)).toBeNull();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/may be written by users other than its owner.*accepts no admin token/);
    expect(lines[0]).not.toContain(alice);

    await chmod(file, 0o600);
    await writeFile(file, good.replace('"tokens"', '"tokenz"'));
    expect(await tokens.verify(alice)).toBeNull();
    expect(lines[1]).toMatch(/no "tokens" list/);

    await writeFile(file, good);
    expect(await tokens.verify(alice)).toBe('alice');
  });
});
