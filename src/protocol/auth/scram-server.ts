/**
 * The server side of a SCRAM-SHA-256 exchange: how Airlock authenticates an
 * agent. PostgreSQL's flow is described at
 * https://www.postgresql.org/docs/current/sasl-authentication.html and the
 * messages in RFC 5802 §7 (with SHA-256 from RFC 7677).
 *
 * Airlock advertises only `SCRAM-SHA-256` (no channel binding), so a client
 * may send the gs2 header `n,,` (it does not support binding) or `y,,` (it
 * does, but thinks we do not: true); `p=` is refused.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ScramVerifier } from './scram-verifier.js';
import {
  DEFAULT_SCRAM_ITERATIONS,
  SCRAM_SHA_256,
  decodeBase64Strict,
  decodeScramMessage,
  hmacSha256,
  isScramNonce,
  parseScramAttributes,
  sha256,
  xorBuffers,
} from './scram-verifier.js';

/**
 * SQLSTATEs a failed exchange maps to, as PostgreSQL uses them: a malformed
 * or out-of-order message is a protocol violation; a wrong proof is a failed
 * password (https://www.postgresql.org/docs/current/errcodes-appendix.html).
 */
export const SCRAM_ERROR_CODES = ['08P01', '28P01'] as const;
export type ScramErrorCode = (typeof SCRAM_ERROR_CODES)[number];

export type ScramServerFailure = { ok: false; error: string; code: ScramErrorCode };

/** Said for a wrong password and an unknown user alike, so the two look the same. */
export const SCRAM_AUTH_FAILED = 'Password authentication failed: the password is wrong or the user does not exist.';

// Mock salts for unknown users must be stable across attempts (else a changing
// salt gives the user's absence away) but unpredictable from outside; a
// per-process secret does both, as PostgreSQL's `mock_auth_nonce` does.
const MOCK_SECRET = randomBytes(32);
const MOCK_SALT_LENGTH = 16;
// 18 random bytes, as PostgreSQL's SCRAM_RAW_NONCE_LEN, give a 24-character nonce.
const SERVER_NONCE_BYTES = 18;
const PROOF_LENGTH = 32;

type ServerState =
  | { step: 'initial' }
  | { step: 'started'; gs2Header: string; clientFirstBare: string; serverFirst: string; nonce: string }
  | { step: 'done' };

export class ScramServerExchange {
  private state: ServerState = { step: 'initial' };
  private readonly verifier: ScramVerifier;
  private readonly doomed: boolean;
  private readonly serverNonce: string;

  /**
   * verifier null = unknown user: the exchange runs to the end with a fake
   * salt derived from `mockSeed` (an HMAC of it under a per-process secret, so
   * repeated attempts see a stable salt) and then fails, so an unknown user
   * and a wrong password are indistinguishable.
   *
   * `options.serverNonce` fixes the server's nonce: for test vectors only, as
   * a repeated nonce lets a recorded exchange be replayed.
   */
  constructor(verifier: ScramVerifier | null, mockSeed: string, options: { serverNonce?: string } = {}) {
    if (verifier === null) {
      const salt = createHmac('sha256', MOCK_SECRET).update(mockSeed).digest().subarray(0, MOCK_SALT_LENGTH);
      // Random keys: no proof can match them, and finish() still does the
      // same work as for a real user, so timing does not tell the two apart.
      this.verifier = {
        iterations: DEFAULT_SCRAM_ITERATIONS,
        salt: Buffer.from(salt),
        storedKey: randomBytes(32),
        serverKey: randomBytes(32),
      };
      this.doomed = true;
    } else {
      this.verifier = verifier;
      this.doomed = false;
    }
    this.serverNonce = options.serverNonce ?? randomBytes(SERVER_NONCE_BYTES).toString('base64');
    if (!isScramNonce(this.serverNonce)) {
      throw new RangeError('A SCRAM server nonce must be printable ASCII without commas.');
    }
  }

  /**
   * SASLInitialResponse: mechanism name and the client-first-message. Returns
   * the server-first-message to send in AuthenticationSASLContinue, or an
   * error for a malformed message or an unsupported mechanism.
   */
  start(mechanism: string, clientFirst: Buffer): { ok: true; serverFirst: Buffer } | ScramServerFailure {
    if (this.state.step !== 'initial') {
      return this.fail('08P01', 'The SCRAM exchange has already started; a client-first-message comes only once.');
    }
    if (mechanism !== SCRAM_SHA_256) {
      return this.fail('08P01', `The client chose the SASL mechanism ${JSON.stringify(mechanism.slice(0, 64))}, but only ${SCRAM_SHA_256} is offered.`);
    }
    const text = decodeScramMessage(clientFirst);
    if (text === null) return this.fail('08P01', 'The SCRAM client-first-message is not valid UTF-8 text.');

    // gs2-header = gs2-cbind-flag "," [ authzid ] ","  (RFC 5802 §7)
    const firstComma = text.indexOf(',');
    const secondComma = firstComma < 0 ? -1 : text.indexOf(',', firstComma + 1);
    if (secondComma < 0) return this.fail('08P01', 'The SCRAM client-first-message has no gs2 header.');
    const cbindFlag = text.slice(0, firstComma);
    const authzid = text.slice(firstComma + 1, secondComma);
    if (cbindFlag.startsWith('p=')) {
      return this.fail('08P01', 'The client asked for SCRAM channel binding, which this server does not offer: use SCRAM-SHA-256 without channel binding.');
    }
    if (cbindFlag !== 'n' && cbindFlag !== 'y') {
      return this.fail('08P01', `The SCRAM channel binding flag ${JSON.stringify(cbindFlag.slice(0, 64))} is not valid.`);
    }
    if (authzid !== '') {
      return this.fail('08P01', 'The client sent a SCRAM authorization identity, which is not supported.');
    }
    const gs2Header = text.slice(0, secondComma + 1);
    const clientFirstBare = text.slice(secondComma + 1);

    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    const attributes = parseScramAttributes(clientFirstBare);
    if (attributes === null) return this.fail('08P01', 'The SCRAM client-first-message is malformed.');
    if (attributes[0]?.name === 'm') {
      return this.fail('08P01', 'The client requires a SCRAM extension this server does not support.');
    }
    // The user name in n= is ignored, as PostgreSQL does: the StartupMessage's
    // user is the one being authenticated (libpq sends it empty).
    if (attributes[0]?.name !== 'n') return this.fail('08P01', 'The SCRAM client-first-message has no user name.');
    const nonceAttribute = attributes[1];
    if (nonceAttribute?.name !== 'r' || !isScramNonce(nonceAttribute.value)) {
      return this.fail('08P01', 'The SCRAM client-first-message has no valid nonce.');
    }
    // Any further attributes are optional extensions, ignored (RFC 5802 §5.1).

    const nonce = nonceAttribute.value + this.serverNonce;
    const serverFirst =
      `r=${nonce},s=${this.verifier.salt.toString('base64')},i=${this.verifier.iterations}`;
    this.state = { step: 'started', gs2Header, clientFirstBare, serverFirst, nonce };
    return { ok: true, serverFirst: Buffer.from(serverFirst, 'utf8') };
  }

  /**
   * SASLResponse with the client-final-message. ok true → send
   * AuthenticationSASLFinal(serverFinal) then AuthenticationOk.
   */
  finish(clientFinal: Buffer): { ok: true; serverFinal: Buffer } | ScramServerFailure {
    const state = this.state;
    if (state.step !== 'started') {
      return this.fail('08P01', 'A SCRAM client-final-message arrived before the client-first-message or after the end of the exchange.');
    }
    const text = decodeScramMessage(clientFinal);
    if (text === null) return this.fail('08P01', 'The SCRAM client-final-message is not valid UTF-8 text.');

    // client-final-message = client-final-message-without-proof "," proof
    const proofAt = text.lastIndexOf(',p=');
    if (proofAt < 0) return this.fail('08P01', 'The SCRAM client-final-message has no proof.');
    const withoutProof = text.slice(0, proofAt);
    const attributes = parseScramAttributes(withoutProof);
    const proof = decodeBase64Strict(text.slice(proofAt + 3));
    if (attributes === null || proof === null) return this.fail('08P01', 'The SCRAM client-final-message is malformed.');

    // channel-binding = "c=" base64(gs2-header [cbind-data]); without binding
    // it must repeat the client-first-message's header exactly.
    const binding = attributes[0];
    const bindingData = binding?.name === 'c' ? decodeBase64Strict(binding.value) : null;
    if (bindingData === null || !bindingData.equals(Buffer.from(state.gs2Header, 'utf8'))) {
      return this.fail('08P01', 'The SCRAM channel binding in the client-final-message does not match the client-first-message.');
    }
    const nonceAttribute = attributes[1];
    if (nonceAttribute?.name !== 'r' || nonceAttribute.value !== state.nonce) {
      return this.fail('08P01', 'The SCRAM nonce in the client-final-message does not match the one agreed.');
    }
    if (proof.length !== PROOF_LENGTH) return this.fail('08P01', 'The SCRAM client proof has the wrong length.');

    // AuthMessage := client-first-message-bare "," server-first-message ","
    //                client-final-message-without-proof   (RFC 5802 §3)
    const authMessage = `${state.clientFirstBare},${state.serverFirst},${withoutProof}`;
    const clientSignature = hmacSha256(this.verifier.storedKey, authMessage);
    const clientKey = xorBuffers(proof, clientSignature);
    const proofMatches = timingSafeEqual(sha256(clientKey), this.verifier.storedKey);
    // For an unknown user the random keys already make every proof fail;
    // `doomed` keeps it so should the mock keys ever become guessable.
    if (!proofMatches || this.doomed) return this.fail('28P01', SCRAM_AUTH_FAILED);

    const serverSignature = hmacSha256(this.verifier.serverKey, authMessage);
    this.state = { step: 'done' };
    return { ok: true, serverFinal: Buffer.from(`v=${serverSignature.toString('base64')}`, 'utf8') };
  }

  /** Any failure ends the exchange: a client cannot retry within one. */
  private fail(code: ScramErrorCode, error: string): ScramServerFailure {
    this.state = { step: 'done' };
    return { ok: false, error, code };
  }
}
