import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createScramVerifier, decodeBase64Strict, formatScramVerifier, parseScramVerifier } from './scram-verifier.js';

// RFC 7677 §3: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
const RFC_SALT = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');

describe('createScramVerifier', () => {
  it('derives StoredKey and ServerKey as RFC 5802 §3 defines them', () => {
    const salted = pbkdf2Sync('pencil', RFC_SALT, 4096, 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const verifier = createScramVerifier('pencil', { salt: RFC_SALT, iterations: 4096 });
    expect(verifier.iterations).toBe(4096);
    expect(verifier.salt).toEqual(RFC_SALT);
    expect(verifier.storedKey).toEqual(createHash('sha256').update(clientKey).digest());
    expect(verifier.serverKey).toEqual(createHmac('sha256', salted).update('Server Key').digest());
  });

  it('defaults to 4096 iterations and a fresh 16-byte salt', () => {
    const a = createScramVerifier('secret');
    const b = createScramVerifier('secret');
    expect(a.iterations).toBe(4096);
    expect(a.salt.length).toBe(16);
    expect(a.salt).not.toEqual(b.salt);
    expect(a.storedKey).not.toEqual(b.storedKey);
  });

  it.each([0, -1, 1.5, 10_000_001, Number.NaN])('refuses %d iterations', (iterations) => {
    expect(() => createScramVerifier('secret', { iterations })).toThrow(RangeError);
  });

  it('refuses an empty salt', () => {
    expect(() => createScramVerifier('secret', { salt: Buffer.alloc(0) })).toThrow(RangeError);
  });
});

describe('formatScramVerifier and parseScramVerifier', () => {
  it('writes PostgreSQL\'s rolpassword format', () => {
    const verifier = createScramVerifier('pencil', { salt: RFC_SALT, iterations: 4096 });
    const formatted = formatScramVerifier(verifier);
    expect(formatted).toBe(
      `SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$${verifier.storedKey.toString('base64')}:${verifier.serverKey.toString('base64')}`,
    );
    expect(parseScramVerifier(formatted)).toEqual(verifier);
  });

  it('round-trips random verifiers', () => {
    for (let i = 0; i < 5; i++) {
      const verifier = createScramVerifier(`password ${i}`, { iterations: 1 + i });
      expect(parseScramVerifier(formatScramVerifier(verifier))).toEqual(verifier);
    }
  });

  const key = Buffer.alloc(32, 7).toString('base64');
  const bad: [string, string][] = [
    ['an MD5 hash', 'md5' + '0'.repeat(32)],
    ['a cleartext password', 'pencil'],
    ['another mechanism', `SCRAM-SHA-1$4096:c2FsdA==$${key}:${key}`],
    ['zero iterations', `SCRAM-SHA-256$0:c2FsdA==$${key}:${key}`],
    ['too many iterations', `SCRAM-SHA-256$99999999999:c2FsdA==$${key}:${key}`],
    ['an empty salt', `SCRAM-SHA-256$4096:$${key}:${key}`],
    ['a salt that is not base64', `SCRAM-SHA-256$4096:c2F*sdA==$${key}:${key}`],
    ['a short StoredKey', `SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:${key}`],
    ['a short ServerKey', `SCRAM-SHA-256$4096:c2FsdA==$${key}:c2FsdA==`],
    ['a missing ServerKey', `SCRAM-SHA-256$4096:c2FsdA==$${key}`],
    ['trailing text', `SCRAM-SHA-256$4096:c2FsdA==$${key}:${key}$x`],
  ];
  it.each(bad)('parses %s as null', (_name, text) => {
    expect(parseScramVerifier(text)).toBeNull();
  });
});

describe('decodeBase64Strict', () => {
  it.each([
    ['', ''],
    ['biws', 'n,,'],
    ['eSws', 'y,,'],
    ['c2FsdA==', 'salt'],
  ])('decodes %j', (input, expected) => {
    expect(decodeBase64Strict(input)?.toString('latin1')).toBe(expected);
  });

  it.each(['biw', 'bi ws', 'biws=', 'c2FsdA=', 'c2FsdB==', '-_-_', 'YQ'])('refuses %j', (input) => {
    expect(decodeBase64Strict(input)).toBeNull();
  });
});
