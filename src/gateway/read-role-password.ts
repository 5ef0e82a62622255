/**
 * The read roles' passwords. Every Airlock instance in front of the same
 * upstream must arrive at the same password for a role, or each start would
 * lock the others out of new upstream connections (DESIGN.md: several
 * instances behind one load balancer). So the password is derived, not
 * drawn: HMAC-SHA-256 of the role name under a secret only Airlock holds —
 * the service account's password when it has one (every instance is
 * configured with it, and whoever knows it can do more than a read role),
 * else a random secret kept in the state directory (mode 0600).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const SECRET_FILE = 'read-role-secret';

/** The secret read-role passwords are derived from. */
export async function readRoleSecret(servicePassword: string | null, stateDir: string): Promise<Buffer> {
  if (servicePassword !== null && servicePassword !== '') return Buffer.from(`service-account:${servicePassword}`, 'utf8');
  const path = join(stateDir, SECRET_FILE);
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const secret = randomBytes(32);
  try {
    // 'wx': if another instance sharing this directory wrote it first, use theirs.
    await writeFile(path, secret, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return readFile(path);
  }
  await chmod(path, 0o600);
  return secret;
}

/** The password of one read role: the same on every instance holding the same secret. */
export function readRolePassword(secret: Buffer, role: string): string {
  return derivedPassword(secret, 'airlock read role', role);
}

/**
 * The password of one write role (write-roles.ts), from the same secret under
 * another label: a read role's password never opens its agent's write role,
 * even when an operator gives both the same name in two configs.
 */
export function writeRolePassword(secret: Buffer, role: string): string {
  return derivedPassword(secret, 'airlock write role', role);
}

function derivedPassword(secret: Buffer, label: string, role: string): string {
  return createHmac('sha256', secret).update(`${label}\0${role}`).digest('base64url');
}
