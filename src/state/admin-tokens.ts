/**
 * Admin credentials (DESIGN.md, "Trust boundaries"). Commands that change
 * what agents may do go through the running server's admin API, and the
 * admin API takes only these tokens: never an agent's password or any other
 * agent credential. Each token is named, so the record says who acted.
 *
 * Only a token's SHA-256 is kept, in `<stateDir>/admin-tokens.json` (mode
 * 0600). The token is 32 random bytes, so its hash cannot be turned back
 * into it, and a copy of the file lets nobody in. The file is written by the
 * local `airlock admin token create|revoke` step, run as Airlock's own OS
 * user; the server only reads it, again whenever it changes, so a token
 * created or revoked while the server runs counts at once.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, open, stat } from 'node:fs/promises';
import { withLockFile, writeFileAtomic } from './atomic-file.js';
import type { LockOptions } from './atomic-file.js';
import { join } from 'node:path';

export interface AdminTokenRecord {
  name: string;
  /** Hex SHA-256 of the token. */
  hash: string;
  /** When the token was created (ISO time). */
  created: string;
}

/** The file's name inside the state directory. */
export const ADMIN_TOKENS_FILE = 'admin-tokens.json';
/** Every admin token starts with this, so a leaked one is recognisable (secret scanners, logs). */
export const ADMIN_TOKEN_PREFIX = 'airlock_admin_';
const NAME_PATTERN = /^[a-z0-9_.@-]{1,64}$/i;
const HASH_PATTERN = /^[0-9a-f]{64}$/;

export function adminTokensPath(stateDir: string): string {
  return join(stateDir, ADMIN_TOKENS_FILE);
}

function sha256(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The file as stored: `{ "tokens": [...] }`, so later fields fit beside the list. */
interface TokensFile {
  tokens: AdminTokenRecord[];
}

/** Parses and checks the file's text; throws an Error in words naming the file. */
function parseTokens(file: string, text: string): AdminTokenRecord[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`The admin tokens file ${file} is not valid JSON. Restore it from a backup, or remove it and create the admin tokens again.`);
  }
  const tokens = (value as Partial<TokensFile> | null)?.tokens;
  if (!Array.isArray(tokens)) {
    throw new Error(`The admin tokens file ${file} has no "tokens" list, so it was not written by Airlock.`);
  }
  const seen = new Set<string>();
  return tokens.map((t: unknown, i) => {
    const r = t as Partial<AdminTokenRecord> | null;
    if (
      typeof r?.name !== 'string' ||
      !NAME_PATTERN.test(r.name) ||
      typeof r.hash !== 'string' ||
      !HASH_PATTERN.test(r.hash) ||
      typeof r.created !== 'string'
    ) {
      throw new Error(`Entry ${i + 1} of the admin tokens file ${file} lacks a valid name, hash or created time.`);
    }
    if (seen.has(r.name.toLowerCase())) {
      throw new Error(`The admin tokens file ${file} names "${r.name}" twice, so it was not written by Airlock.`);
    }
    seen.add(r.name.toLowerCase());
    return { name: r.name, hash: r.hash, created: r.created };
  });
}

/**
 * Reads the records, with the file's identity (inode, size, times) to tell
 * when it changed. A missing file is no tokens. A file others may write is
 * refused: whoever can write it can give themselves an admin token.
 */
async function loadTokens(file: string): Promise<{ records: AdminTokenRecord[]; version: string }> {
  let text: string;
  let version: string;
  try {
    const handle = await open(file, 'r');
    try {
      const st = await handle.stat({ bigint: true });
      if ((Number(st.mode) & 0o022) !== 0) {
        throw new Error(
          `The admin tokens file ${file} may be written by users other than its owner (mode ${(Number(st.mode) & 0o777).toString(8)}), so anyone of them could add an admin token. Run \`chmod 600 ${file}\`, check who changed it, and revoke tokens you do not know.`,
        );
      }
      version = fileVersion(st);
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], version: 'missing' };
    throw err;
  }
  return { records: parseTokens(file, text), version };
}

/** What changes whenever the file is replaced or written: every write here is a new inode (rename), and the times are in nanoseconds. */
function fileVersion(st: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/**
 * A stale lock is not broken automatically: token changes are rare, human
 * commands, and the message says what to do.
 */
const LOCK: LockOptions = {
  waitMs: 3000,
  staleMs: Number.POSITIVE_INFINITY,
  busy: (lock) =>
    `Another airlock command is changing the admin tokens (the lock file ${lock} exists). If none is running, one was interrupted: remove ${lock} and try again.`,
};

/**
 * Runs `change` on the records with the file locked against other writers
 * (another `airlock admin token` command), and writes the result atomically.
 * Without the lock a revoke racing a create could be undone by it.
 */
async function updateTokens<T>(stateDir: string, change: (records: AdminTokenRecord[]) => { records: AdminTokenRecord[] | null; result: T }): Promise<T> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = adminTokensPath(stateDir);
  return withLockFile(`${file}.lock`, LOCK, async () => {
    const { records } = await loadTokens(file);
    const { records: next, result } = change(records);
    if (next) await writeFileAtomic(file, JSON.stringify({ tokens: next } satisfies TokensFile, null, 2) + '\n');
    return result;
  });
}

/**
 * Creates a token named `name` (unique, case-insensitively; /^[a-z0-9_.@-]{1,64}$/i),
 * stores only its hash in `<stateDir>/admin-tokens.json` (mode 0600, atomic
 * write), and returns the token itself ONCE: 'airlock_admin_' + 32 random
 * bytes in base64url. Throws if the name exists.
 */
export async function createAdminToken(stateDir: string, name: string): Promise<string> {
  if (!NAME_PATTERN.test(name)) {
    throw new Error(
      `"${name}" cannot name an admin token: use 1 to 64 letters, digits, dots, dashes, underscores or @ (for example your user name or e-mail address).`,
    );
  }
  const token = ADMIN_TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const record: AdminTokenRecord = { name, hash: sha256(token).toString('hex'), created: new Date().toISOString() };
  return updateTokens(stateDir, (records) => {
    if (records.some((r) => r.name.toLowerCase() === name.toLowerCase())) {
      throw new Error(`An admin token named "${name}" exists already. Revoke it first (airlock admin token revoke --name ${name}), or choose another name.`);
    }
    return { records: [...records, record], result: token };
  });
}

/** Revokes by name (case-insensitively); returns whether one was removed. */
export async function revokeAdminToken(stateDir: string, name: string): Promise<boolean> {
  return updateTokens(stateDir, (records) => {
    const kept = records.filter((r) => r.name.toLowerCase() !== name.toLowerCase());
    return kept.length === records.length ? { records: null, result: false } : { records: kept, result: true };
  });
}

/** The names and creation times of the admin tokens, without their hashes (for `airlock admin token list`). */
export async function listAdminTokens(stateDir: string): Promise<{ name: string; created: string }[]> {
  const { records } = await loadTokens(adminTokensPath(stateDir));
  return records.map(({ name, created }) => ({ name, created }));
}

/** The server's view of the admin tokens: checks a presented token, following the file as it changes. */
export class AdminTokens {
  private records: { name: string; hash: Buffer }[] = [];
  private version = '';
  /** Set while the file on disk cannot be used: every token is refused until it is fixed (fail closed). */
  private problem: string | null = null;

  private constructor(
    private readonly file: string,
    private readonly log: (line: string) => void,
  ) {}

  /** Opens the tokens of `stateDir`; a missing file is no tokens, a broken or loosely permitted one throws. */
  static async open(stateDir: string, options: { log?: (line: string) => void } = {}): Promise<AdminTokens> {
    const tokens = new AdminTokens(adminTokensPath(stateDir), options.log ?? ((line) => console.error(line)));
    const { records, version } = await loadTokens(tokens.file);
    tokens.use(records, version);
    return tokens;
  }

  private use(records: AdminTokenRecord[], version: string): void {
    this.records = records.map((r) => ({ name: r.name, hash: Buffer.from(r.hash, 'hex') }));
    this.version = version;
    this.problem = null;
  }

  /** Re-reads the file if it is not the one last read. If it cannot be used now, no token is valid until it can. */
  private async refresh(): Promise<void> {
    let version: string;
    try {
      version = fileVersion(await stat(this.file, { bigint: true }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.fail(`Airlock cannot read the admin tokens file ${this.file} (${(err as Error).message}), so it accepts no admin token until it can.`);
        return;
      }
      version = 'missing';
    }
    if (version === this.version && this.problem === null) return;
    try {
      const loaded = await loadTokens(this.file);
      this.use(loaded.records, loaded.version);
    } catch (err) {
      this.fail(`${(err as Error).message} Until then Airlock accepts no admin token.`);
    }
  }

  private fail(problem: string): void {
    this.records = [];
    this.version = '';
    if (problem !== this.problem) this.log(problem);
    this.problem = problem;
  }

  /**
   * The token's name if valid, else null. Compares hashes in constant time,
   * and against every record, so the answer's timing says nothing about
   * which tokens exist.
   */
  async verify(token: string): Promise<string | null> {
    return this.verifyDigest(sha256(token));
  }

  /**
   * As `verify`, given the token's SHA-256 rather than the token: the
   * dashboard's sessions keep only that, and ask again at each request, so a
   * revoked token ends its sessions at once.
   */
  async verifyDigest(given: Buffer): Promise<string | null> {
    await this.refresh();
    if (given.length !== 32) return null;
    let found: string | null = null;
    for (const r of this.records) {
      if (timingSafeEqual(given, r.hash) && found === null) found = r.name;
    }
    return found;
  }

  /** How many tokens the file held when last read. */
  get count(): number {
    return this.records.length;
  }
}
