import { Secret, TOTP } from 'otpauth';
import { describe, expect, it } from 'vitest';
import { SecondFactor } from './second-factor.js';

const SECRET = new Secret({ size: 20 }).base32;
const codeAt = (ms: number): string => new TOTP({ secret: Secret.fromBase32(SECRET) }).generate({ timestamp: ms });

describe('SecondFactor (TOTP)', () => {
  it('takes a current code once, and the next step\'s code after it', () => {
    let now = 1_700_000_000_000;
    const factor = new SecondFactor(SECRET, () => now);
    expect(factor.check(codeAt(now))).toBeNull();
    expect(factor.check(codeAt(now))).toMatch(/used already/);
    now += 30_000;
    expect(factor.check(codeAt(now))).toBeNull();
  });

  it('refuses a missing, malformed or stale code, and locks for a minute after 5 wrong ones', () => {
    let now = 1_700_000_000_000;
    const factor = new SecondFactor(SECRET, () => now);
    expect(factor.check(undefined)).toMatch(/needs a current TOTP code/);
    expect(factor.check('12345')).toMatch(/not current/);
    expect(factor.check(codeAt(now - 5 * 60_000))).toMatch(/not current/);
    for (let i = 0; i < 3; i++) factor.check('000000' === codeAt(now) ? '111111' : '000000');
    expect(factor.check(codeAt(now))).toMatch(/Too many wrong TOTP codes/);
    now += 61_000;
    expect(factor.check(codeAt(now))).toBeNull();
  });
});
