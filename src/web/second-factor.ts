/**
 * The second factor for the admin actions that let an agent do more
 * (approve, unfreeze): with `admin.totp_secret` configured, they also need a
 * current TOTP code (RFC 6238: 6 digits, 30-second steps, SHA-1, as every
 * authenticator app makes), so that an admin token read from disk is not
 * enough. A code is good once; after 5 wrong codes in a minute, every code
 * is refused for a minute.
 */
import type { FastifyRequest } from 'fastify';
import { Secret, TOTP } from 'otpauth';

const MAX_FAILURES = 5;
const LOCK_MS = 60_000;

export class SecondFactor {
  private readonly totp: TOTP;
  /** The time step of the last code accepted: a code is never good twice. */
  private lastStep = -1;
  private failures: number[] = [];

  constructor(
    secretBase32: string,
    private readonly now: () => number = Date.now,
  ) {
    this.totp = new TOTP({ secret: Secret.fromBase32(secretBase32), digits: 6, period: 30, algorithm: 'SHA1' });
  }

  /** Null when `code` is a current, unused code; else why not, in a sentence. */
  check(code: string | undefined): string | null {
    const now = this.now();
    this.failures = this.failures.filter((t) => now - t < LOCK_MS);
    if (this.failures.length >= MAX_FAILURES) {
      return 'Too many wrong TOTP codes in the last minute: every code is refused for a minute. Nothing was changed.';
    }
    if (code === undefined || code === '') {
      return 'This action needs a current TOTP code as well as the admin token (X-Airlock-TOTP header; the CLI takes --totp or AIRLOCK_TOTP). Nothing was changed.';
    }
    const delta = /^\d{6}$/.test(code) ? this.totp.validate({ token: code, timestamp: now, window: 1 }) : null;
    const step = delta === null ? -1 : Math.floor(now / 30_000) + delta;
    if (delta === null || step <= this.lastStep) {
      this.failures.push(now);
      return delta === null ? 'The TOTP code is not current. Nothing was changed.' : 'That TOTP code was used already; wait for the next one. Nothing was changed.';
    }
    this.lastStep = step;
    return null;
  }
}

/** Why the request lacks the second factor the action needs (admin.totp_secret), or null. */
export function secondFactorProblem(factor: SecondFactor | undefined, request: FastifyRequest): string | null {
  if (factor === undefined) return null;
  const header = request.headers['x-airlock-totp'];
  return factor.check(typeof header === 'string' ? header.trim() : undefined);
}
