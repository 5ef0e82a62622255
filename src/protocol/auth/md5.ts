/**
 * The answer to AuthenticationMD5Password, for upstream servers that still
 * store MD5 passwords (deprecated since PostgreSQL 18). Defined at
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 * and https://www.postgresql.org/docs/current/auth-password.html
 *
 * MD5 is weak (the stored hash is password-equivalent); Airlock only speaks it
 * as a client because an upstream may demand it, and never offers it to agents.
 */
import { createHash } from 'node:crypto';

/** 'md5' + md5(md5(password + user) + salt), the text to send in a PasswordMessage. */
export function md5PasswordResponse(user: string, password: string, salt: Buffer): string {
  if (salt.length !== 4) {
    throw new RangeError(`The MD5 salt from AuthenticationMD5Password is 4 bytes, not ${salt.length}.`);
  }
  // The inner hash is the hex text PostgreSQL stores (without its 'md5' prefix);
  // the outer hash covers that text followed by the raw salt bytes.
  const inner = createHash('md5').update(password + user, 'utf8').digest('hex');
  const outer = createHash('md5').update(Buffer.concat([Buffer.from(inner, 'latin1'), salt])).digest('hex');
  return `md5${outer}`;
}
