/**
 * The client side of a SCRAM-SHA-256 exchange: how Airlock logs in to the
 * upstream PostgreSQL. Flow: https://www.postgresql.org/docs/current/sasl-authentication.html;
 * messages: RFC 5802 §7 with SHA-256 (RFC 7677).
 *
 * Airlock does not do channel binding, so it sends the gs2 header `n,,` and
 * picks `SCRAM-SHA-256` even when the server also offers `-PLUS`.
 *
 * The caller must treat the upstream as authenticated only once `finish()`
 * has returned ok: a server that skips AuthenticationSASLFinal and sends
 * AuthenticationOk straight away has not proved it knows the password.
 * `authenticated` says whether that has happened.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  MAX_SCRAM_ITERATIONS,
  SCRAM_SHA_256,
  computeSaltedPassword,
  decodeBase64Strict,
  decodeScramMessage,
  deriveScramKeys,
  hmacSha256,
  isScramNonce,
  parseScramAttributes,
  xorBuffers,
} from './scram-verifier.js';

export type ScramClientFailure = { ok: false; error: string };

// 18 random bytes like libpq's SCRAM_RAW_NONCE_LEN: a 24-character nonce.
const CLIENT_NONCE_BYTES = 18;
const GS2_HEADER = 'n,,';

type ClientState =
  | { step: 'initial' }
  | { step: 'started'; clientFirstBare: string }
  | { step: 'continued'; serverSignature: Buffer }
  | { step: 'done'; authenticated: boolean };

export class ScramClientExchange {
  private state: ClientState = { step: 'initial' };
  private readonly clientNonce: string;

  /**
   * `options.clientNonce` fixes the client's nonce: for test vectors only.
   */
  constructor(
    private readonly user: string,
    private readonly password: string,
    options: { clientNonce?: string } = {},
  ) {
    this.clientNonce = options.clientNonce ?? randomBytes(CLIENT_NONCE_BYTES).toString('base64');
    if (!isScramNonce(this.clientNonce)) {
      throw new RangeError('A SCRAM client nonce must be printable ASCII without commas.');
    }
  }

  /** True once the server has proved, in its server-final-message, that it holds this password's keys. */
  get authenticated(): boolean {
    return this.state.step === 'done' && this.state.authenticated;
  }

  /** For SASLInitialResponse: picks SCRAM-SHA-256 from the server's list or returns an error. */
  start(mechanisms: string[]): { ok: true; mechanism: string; clientFirst: Buffer } | ScramClientFailure {
    if (this.state.step !== 'initial') return this.fail('The SCRAM exchange has already started.');
    if (!mechanisms.includes(SCRAM_SHA_256)) {
      return this.fail(
        `The upstream server offers the SASL mechanisms ${JSON.stringify(mechanisms)}, but Airlock supports only ${SCRAM_SHA_256}.`,
      );
    }
    // PostgreSQL ignores this user name in favour of the StartupMessage's; it
    // is sent escaped as a saslname (RFC 5802 §5.1) to stay a valid message.
    const clientFirstBare = `n=${escapeSaslName(this.user)},r=${this.clientNonce}`;
    this.state = { step: 'started', clientFirstBare };
    return { ok: true, mechanism: SCRAM_SHA_256, clientFirst: Buffer.from(GS2_HEADER + clientFirstBare, 'utf8') };
  }

  /** Answers AuthenticationSASLContinue: checks the server-first-message and computes the client proof. */
  continue(serverFirst: Buffer): { ok: true; clientFinal: Buffer } | ScramClientFailure {
    const state = this.state;
    if (state.step !== 'started') return this.fail('A SCRAM server-first-message arrived out of order.');
    const text = decodeScramMessage(serverFirst);
    const attributes = text === null ? null : parseScramAttributes(text);
    if (text === null || attributes === null) return this.fail('The SCRAM server-first-message is malformed.');
    if (attributes[0]?.name === 'm') {
      return this.fail('The upstream server requires a SCRAM extension Airlock does not support.');
    }
    // server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
    const [nonceAttribute, saltAttribute, iterationAttribute] = attributes;
    if (nonceAttribute?.name !== 'r' || !isScramNonce(nonceAttribute.value)) {
      return this.fail('The SCRAM server-first-message has no valid nonce.');
    }
    const nonce = nonceAttribute.value;
    // The combined nonce must extend ours, or the server is replaying another exchange.
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) {
      return this.fail('The SCRAM nonce from the upstream server does not extend the client nonce.');
    }
    const salt = saltAttribute?.name === 's' ? decodeBase64Strict(saltAttribute.value) : null;
    if (salt === null || salt.length === 0) return this.fail('The SCRAM server-first-message has no valid salt.');
    const iterationText = iterationAttribute?.name === 'i' ? iterationAttribute.value : '';
    const iterations = /^[1-9][0-9]{0,9}$/.test(iterationText) ? Number(iterationText) : 0;
    if (iterations < 1 || iterations > MAX_SCRAM_ITERATIONS) {
      return this.fail(
        `The SCRAM iteration count from the upstream server must be an integer from 1 to ${MAX_SCRAM_ITERATIONS}.`,
      );
    }

    const saltedPassword = cachedSaltedPassword(this.password, salt, iterations);
    const { clientKey, storedKey, serverKey } = deriveScramKeys(saltedPassword);
    const withoutProof = `c=${Buffer.from(GS2_HEADER, 'utf8').toString('base64')},r=${nonce}`;
    // AuthMessage := client-first-message-bare "," server-first-message ","
    //                client-final-message-without-proof   (RFC 5802 §3)
    const authMessage = `${state.clientFirstBare},${text},${withoutProof}`;
    const proof = xorBuffers(clientKey, hmacSha256(storedKey, authMessage));
    this.state = { step: 'continued', serverSignature: hmacSha256(serverKey, authMessage) };
    return { ok: true, clientFinal: Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8') };
  }

  /** Checks AuthenticationSASLFinal: the server's signature proves it holds this password's keys. */
  finish(serverFinal: Buffer): { ok: true } | ScramClientFailure {
    const state = this.state;
    if (state.step !== 'continued') return this.fail('A SCRAM server-final-message arrived out of order.');
    const text = decodeScramMessage(serverFinal);
    const attributes = text === null ? null : parseScramAttributes(text);
    const first = attributes?.[0];
    if (first === undefined) return this.fail('The SCRAM server-final-message is malformed.');
    // server-final-message = (server-error / verifier) ["," extensions]
    if (first.name === 'e') {
      return this.fail(`The upstream server ended the SCRAM exchange with the error "${first.value}".`);
    }
    const signature = first.name === 'v' ? decodeBase64Strict(first.value) : null;
    if (
      signature === null ||
      signature.length !== state.serverSignature.length ||
      !timingSafeEqual(signature, state.serverSignature)
    ) {
      return this.fail(
        'The upstream server\'s SCRAM signature is wrong: it does not hold this password\'s keys, so it may not be the real server.',
      );
    }
    this.state = { step: 'done', authenticated: true };
    return { ok: true };
  }

  /** Any failure ends the exchange. */
  private fail(error: string): ScramClientFailure {
    this.state = { step: 'done', authenticated: false };
    return { ok: false, error };
  }
}

/** saslname escaping (RFC 5802 §5.1): `=` and `,` become `=3D` and `=2C`. */
function escapeSaslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

/**
 * How many SaltedPassword values the process keeps. Airlock reconnects
 * upstream often with one or a few passwords, and each PBKDF2 run costs
 * milliseconds at 4096 iterations (far more at higher counts).
 */
export const SALTED_PASSWORD_CACHE_LIMIT = 16;

// In-process only, never persisted. Keyed by an HMAC under a per-process
// secret so that the cleartext password is not kept in the key as well.
const saltedPasswordCache = new Map<string, Buffer>();
const CACHE_KEY_SECRET = randomBytes(32);

/** `computeSaltedPassword` through a small least-recently-used cache keyed by (password, salt, iterations). */
export function cachedSaltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  const key = createHmac('sha256', CACHE_KEY_SECRET)
    .update(JSON.stringify([password, salt.toString('base64'), iterations]))
    .digest('base64');
  const hit = saltedPasswordCache.get(key);
  if (hit !== undefined) {
    // Re-insert so that Map order is least-recently-used first.
    saltedPasswordCache.delete(key);
    saltedPasswordCache.set(key, hit);
    return hit;
  }
  const saltedPassword = computeSaltedPassword(password, salt, iterations);
  saltedPasswordCache.set(key, saltedPassword);
  while (saltedPasswordCache.size > SALTED_PASSWORD_CACHE_LIMIT) {
    const oldest = saltedPasswordCache.keys().next().value;
    if (oldest === undefined) break;
    saltedPasswordCache.delete(oldest);
  }
  return saltedPassword;
}

/** The number of cached SaltedPassword values (for tests and diagnostics). */
export function saltedPasswordCacheSize(): number {
  return saltedPasswordCache.size;
}
