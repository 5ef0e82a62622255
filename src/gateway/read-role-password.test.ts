import { mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readRolePassword, readRoleSecret, writeRolePassword } from './read-role-password.js';

describe('read-role passwords', () => {
  it('are the same on every instance holding the same service-account password, and differ per role', async () => {
    const a = await readRoleSecret('service-pw', await mkdtemp(join(tmpdir(), 'airlock-rrp-')));
    const b = await readRoleSecret('service-pw', await mkdtemp(join(tmpdir(), 'airlock-rrp-')));
    expect(readRolePassword(a, 'airlock_read_claude')).toBe(readRolePassword(b, 'airlock_read_claude'));
    expect(readRolePassword(a, 'airlock_read_claude')).not.toBe(readRolePassword(a, 'airlock_read_cursor'));
    const other = await readRoleSecret('another-pw', await mkdtemp(join(tmpdir(), 'airlock-rrp-')));
    expect(readRolePassword(other, 'airlock_read_claude')).not.toBe(readRolePassword(a, 'airlock_read_claude'));
  });

  it('for write roles differ from read roles, even for the same role name, and are as stable', async () => {
    const a = await readRoleSecret('service-pw', await mkdtemp(join(tmpdir(), 'airlock-rrp-')));
    const b = await readRoleSecret('service-pw', await mkdtemp(join(tmpdir(), 'airlock-rrp-')));
    expect(writeRolePassword(a, 'airlock_write_ops')).toBe(writeRolePassword(b, 'airlock_write_ops'));
    expect(writeRolePassword(a, 'same_name')).not.toBe(readRolePassword(a, 'same_name'));
    expect(writeRolePassword(a, 'airlock_write_ops')).not.toBe(writeRolePassword(a, 'airlock_write_cursor'));
  });

  it('without a service-account password, keep a random secret in the state directory (0600) and reuse it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-rrp-'));
    const first = await readRoleSecret(null, dir);
    const again = await readRoleSecret(null, dir);
    expect(again.equals(first)).toBe(true);
    expect((await stat(join(dir, 'read-role-secret'))).mode & 0o777).toBe(0o600);
    const elsewhere = await readRoleSecret(null, await mkdtemp(join(tmpdir(), 'airlock-rrp-')));
    expect(elsewhere.equals(first)).toBe(false);
  });
});
