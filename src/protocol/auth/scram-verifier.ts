/**
 * SCRAM-SHA-256 verifiers (what PostgreSQL keeps in `pg_authid.rolpassword`)
 * and the key derivation that both sides of an exchange share.
 *
 * RFC 5802 §3 defines the keys; RFC 7677 fixes the hash to SHA-256;
 * PostgreSQL's storage format is documented at
 * https://www.postgresql.org/docs/current/catalog-pg-authid.html
 *
 * Passwords: PostgreSQL runs passwords through SASLprep (RFC 4013) before
 * hashing, and libpq does the same on the client side. We hash the password's
 * UTF-8 bytes as they are, which is exactly what PostgreSQL does for a pure
 * ASCII password (and for any password SASLprep leaves unchanged, such as most
 * NFC-normalised text). A password with characters SASLprep maps or
 * normalises (non-ASCII spaces, soft hyphens, compatibility forms such as
 * full-width letters or ligatures) gives a different key than libpq's, so it
 * will not authenticate across the two. node-postgres and postgres.js skip
 * SASLprep too, so they agree with us.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/** The parts of a SCRAM-SHA-256 secret; the password cannot be recovered from them. */
export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** The SASL mechanism name (RFC 7677): the only one Airlock offers or picks. */
export const SCRAM_SHA_256 = 'SCRAM-SHA-256';

/** PostgreSQL's default for `scram_iterations` (and RFC 7677's minimum recommendation). */
export const DEFAULT_SCRAM_ITERATIONS = 4096;

/**
 * Iteration counts above this are refused, so that a hostile peer (or a
 * corrupted catalogue) cannot make one login cost minutes of CPU. PostgreSQL
 * itself caps `scram_iterations` at INT_MAX; ten million is about ten seconds.
 */
export const MAX_SCRAM_ITERATIONS = 10_000_000;

const SCRAM_KEY_LENGTH = 32;
const DEFAULT_SALT_LENGTH = 16;

/** Builds the secret PostgreSQL would store for `password`. */
export function createScramVerifier(
  password: string,
  options: { iterations?: number; salt?: Buffer } = {},
): ScramVerifier {
  const iterations = options.iterations ?? DEFAULT_SCRAM_ITERATIONS;
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > MAX_SCRAM_ITERATIONS) {
    throw new RangeError(
      `The SCRAM iteration count must be an integer from 1 to ${MAX_SCRAM_ITERATIONS}, not ${iterations}.`,
    );
  }
  const salt = options.salt ?? randomBytes(DEFAULT_SALT_LENGTH);
  if (salt.length === 0) throw new RangeError('The SCRAM salt must not be empty.');
  const keys = deriveScramKeys(computeSaltedPassword(password, salt, iterations));
  return { iterations, salt: Buffer.from(salt), storedKey: keys.storedKey, serverKey: keys.serverKey };
}

/**
 * PostgreSQL's `rolpassword` text: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
 * `ALTER ROLE r PASSWORD '<this>'` stores it as is, so the cleartext never
 * reaches the server (https://www.postgresql.org/docs/current/sql-createrole.html).
 */
export function formatScramVerifier(v: ScramVerifier): string {
  return (
    `SCRAM-SHA-256$${v.iterations}:${v.salt.toString('base64')}` +
    `$${v.storedKey.toString('base64')}:${v.serverKey.toString('base64')}`
  );
}

const VERIFIER_PATTERN = /^SCRAM-SHA-256\$([1-9][0-9]*):([^$:]+)\$([^$:]+):([^$:]+)$/;

/** The inverse of `formatScramVerifier`; null for anything that is not a well-formed verifier. */
export function parseScramVerifier(s: string): ScramVerifier | null {
  const match = VERIFIER_PATTERN.exec(s);
  if (match === null) return null;
  const [, iterationsText, saltText, storedKeyText, serverKeyText] = match;
  const iterations = Number(iterationsText);
  if (!Number.isSafeInteger(iterations) || iterations > MAX_SCRAM_ITERATIONS) return null;
  const salt = decodeBase64Strict(saltText ?? '');
  const storedKey = decodeBase64Strict(storedKeyText ?? '');
  const serverKey = decodeBase64Strict(serverKeyText ?? '');
  if (salt === null || salt.length === 0) return null;
  if (storedKey === null || storedKey.length !== SCRAM_KEY_LENGTH) return null;
  if (serverKey === null || serverKey.length !== SCRAM_KEY_LENGTH) return null;
  return { iterations, salt, storedKey, serverKey };
}

/** SaltedPassword := Hi(Normalize(password), salt, i) — RFC 5802 §3, Hi being PBKDF2-HMAC. */
export function computeSaltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  // Node encodes a string password as UTF-8; see the module comment on SASLprep.
  return pbkdf2Sync(password, salt, iterations, SCRAM_KEY_LENGTH, 'sha256');
}

/** ClientKey, StoredKey and ServerKey from SaltedPassword (RFC 5802 §3). */
export function deriveScramKeys(saltedPassword: Buffer): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const clientKey = hmacSha256(saltedPassword, 'Client Key');
  return {
    clientKey,
    storedKey: sha256(clientKey),
    serverKey: hmacSha256(saltedPassword, 'Server Key'),
  };
}

export function hmacSha256(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

export function xorBuffers(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes canonical base64 or returns null. `Buffer.from(s, 'base64')`
 * silently skips junk, which would let two different texts stand for one key.
 */
export function decodeBase64Strict(s: string): Buffer | null {
  if (!BASE64_PATTERN.test(s)) return null;
  const decoded = Buffer.from(s, 'base64');
  return decoded.toString('base64') === s ? decoded : null;
}

/** One `name=value` attribute of a SCRAM message (RFC 5802 §5.1). */
export interface ScramAttribute {
  name: string;
  value: string;
}

/**
 * Splits a SCRAM message into its attributes. Values cannot contain a comma
 * (user names escape it as `=2C`), so splitting on commas is exact. Returns
 * null when a part is not a one-letter name followed by `=`.
 */
export function parseScramAttributes(text: string): ScramAttribute[] | null {
  const attributes: ScramAttribute[] = [];
  for (const part of text.split(',')) {
    if (part.length < 2 || part[1] !== '=' || !/^[A-Za-z]$/.test(part[0] ?? '')) return null;
    attributes.push({ name: part[0] ?? '', value: part.slice(2) });
  }
  return attributes;
}

/** A nonce is printable ASCII without a comma (RFC 5802 §7, `printable`). */
export function isScramNonce(s: string): boolean {
  return /^[\x21-\x2b\x2d-\x7e]+$/.test(s);
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * SCRAM messages are UTF-8 text (RFC 5802 §5.1) and must round-trip byte for
 * byte, since the AuthMessage both sides sign is made of them. Returns null
 * for invalid UTF-8 or an embedded NUL, which PostgreSQL would cut the string at.
 */
export function decodeScramMessage(bytes: Buffer): string | null {
  if (bytes.includes(0)) return null;
  try {
    return utf8Decoder.decode(bytes);
  } catch (error) {
    // A fatal TextDecoder throws a TypeError for invalid UTF-8: that is a
    // malformed message, which the caller reports as such.
    if (error instanceof TypeError) return null;
    throw error;
  }
}
