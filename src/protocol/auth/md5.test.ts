import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { md5PasswordResponse } from './md5.js';

// node-postgres's own implementation, as an independent reference.
const require = createRequire(import.meta.url);
const pgCrypto = require('pg/lib/crypto/utils.js') as {
  postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>;
};

describe('md5PasswordResponse', () => {
  it('hashes the well-known stored hash of postgres/postgres with the salt', () => {
    // 'md5' + md5('postgres' + 'postgres') is the classic rolpassword md53175bce1d3201d16594cebf9d7eb3f9d.
    const salt = Buffer.from([0x01, 0x02, 0x03, 0x04]);
    const outer = createHash('md5').update(Buffer.concat([Buffer.from('3175bce1d3201d16594cebf9d7eb3f9d'), salt])).digest('hex');
    expect(md5PasswordResponse('postgres', 'postgres', salt)).toBe(`md5${outer}`);
  });

  it.each([
    ['postgres', 'postgres'],
    ['agent', 'correct horse battery staple'],
    ['üser', 'pässwörd'],
    ['a', ''],
  ])('agrees with node-postgres for %j / %j', async (user, password) => {
    for (let i = 0; i < 5; i++) {
      const salt = randomBytes(4);
      expect(md5PasswordResponse(user, password, salt)).toBe(await pgCrypto.postgresMd5PasswordHash(user, password, salt));
    }
  });

  it('refuses a salt that is not 4 bytes', () => {
    expect(() => md5PasswordResponse('a', 'b', Buffer.alloc(3))).toThrow(RangeError);
  });
});
