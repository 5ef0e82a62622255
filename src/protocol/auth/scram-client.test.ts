import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../../demo/embedded-postgres.js';
import type { RunningPostgres } from '../../demo/embedded-postgres.js';
import {
  SALTED_PASSWORD_CACHE_LIMIT,
  ScramClientExchange,
  cachedSaltedPassword,
  saltedPasswordCacheSize,
} from './scram-client.js';
import { md5PasswordResponse } from './md5.js';
import { computeSaltedPassword, createScramVerifier, formatScramVerifier, hmacSha256 } from './scram-verifier.js';

// RFC 7677 §3: user "user", password "pencil".
const RFC = {
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
} as const;

const text = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('ScramClientExchange: RFC 7677 test vector', () => {
  it('produces the RFC client messages and accepts the RFC server signature', () => {
    const client = new ScramClientExchange('user', 'pencil', { clientNonce: RFC.clientNonce });
    expect(client.start(['SCRAM-SHA-256'])).toEqual({ ok: true, mechanism: 'SCRAM-SHA-256', clientFirst: text(RFC.clientFirst) });
    expect(client.continue(text(RFC.serverFirst))).toEqual({ ok: true, clientFinal: text(RFC.clientFinal) });
    expect(client.authenticated).toBe(false);
    expect(client.finish(text(RFC.serverFinal))).toEqual({ ok: true });
    expect(client.authenticated).toBe(true);
  });

  it('computes another proof for another password', () => {
    const client = new ScramClientExchange('user', 'pencils', { clientNonce: RFC.clientNonce });
    client.start(['SCRAM-SHA-256']);
    const result = client.continue(text(RFC.serverFirst));
    expect(result.ok && result.clientFinal.toString()).not.toBe(RFC.clientFinal);
  });

  it('escapes , and = in the user name (RFC 5802 §5.1)', () => {
    const client = new ScramClientExchange('a,b=c', 'pencil', { clientNonce: 'n' });
    const result = client.start(['SCRAM-SHA-256']);
    expect(result.ok && result.clientFirst.toString()).toBe('n,,n=a=2Cb=3Dc,r=n');
  });
});

describe('ScramClientExchange: mechanism choice', () => {
  it.each([
    [['SCRAM-SHA-256'], true],
    [['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'], true],
    [['SCRAM-SHA-256-PLUS'], false],
    [['SCRAM-SHA-1'], false],
    [[], false],
  ] as const)('%j → ok %s', (mechanisms, ok) => {
    const result = new ScramClientExchange('u', 'p').start([...mechanisms]);
    expect(result.ok).toBe(ok);
    if (result.ok) {
      expect(result.mechanism).toBe('SCRAM-SHA-256');
      expect(result.clientFirst.toString()).toMatch(/^n,,n=u,r=[A-Za-z0-9+/]{24}$/);
    }
  });
});

describe('ScramClientExchange: server-first-message', () => {
  const cases: { name: string; message: string | Buffer; ok: boolean }[] = [
    { name: 'a valid message', message: 'r=cnonceSRV,s=c2FsdA==,i=4096', ok: true },
    { name: 'one iteration (PostgreSQL allows low counts)', message: 'r=cnonceSRV,s=c2FsdA==,i=1', ok: true },
    { name: 'extensions after the count', message: 'r=cnonceSRV,s=c2FsdA==,i=4096,x=1', ok: true },
    { name: 'a nonce that does not extend ours', message: 'r=othernonce,s=c2FsdA==,i=4096', ok: false },
    { name: 'a nonce equal to ours (no server part)', message: 'r=cnonce,s=c2FsdA==,i=4096', ok: false },
    { name: 'a mandatory extension', message: 'm=x,r=cnonceSRV,s=c2FsdA==,i=4096', ok: false },
    { name: 'no salt', message: 'r=cnonceSRV,i=4096', ok: false },
    { name: 'an empty salt', message: 'r=cnonceSRV,s=,i=4096', ok: false },
    { name: 'a salt that is not base64', message: 'r=cnonceSRV,s=c2F*dA==,i=4096', ok: false },
    { name: 'zero iterations', message: 'r=cnonceSRV,s=c2FsdA==,i=0', ok: false },
    { name: 'negative iterations', message: 'r=cnonceSRV,s=c2FsdA==,i=-1', ok: false },
    { name: 'a non-numeric count', message: 'r=cnonceSRV,s=c2FsdA==,i=4k', ok: false },
    { name: 'a count past the cap', message: 'r=cnonceSRV,s=c2FsdA==,i=10000001', ok: false },
    { name: 'a huge count', message: 'r=cnonceSRV,s=c2FsdA==,i=99999999999999999999', ok: false },
    { name: 'attributes out of order', message: 's=c2FsdA==,r=cnonceSRV,i=4096', ok: false },
    { name: 'invalid UTF-8', message: Buffer.from([0x72, 0x3d, 0xff]), ok: false },
    { name: 'an empty message', message: '', ok: false },
  ];
  it.each(cases)('$name → ok $ok', ({ message, ok }) => {
    const client = new ScramClientExchange('u', 'p', { clientNonce: 'cnonce' });
    client.start(['SCRAM-SHA-256']);
    const result = client.continue(typeof message === 'string' ? text(message) : message);
    expect(result.ok).toBe(ok);
    if (result.ok) expect(result.clientFinal.toString()).toMatch(/^c=biws,r=cnonceSRV,p=[A-Za-z0-9+/]{43}=$/);
  });

  it('refuses a server-first-message before start', () => {
    expect(new ScramClientExchange('u', 'p').continue(text('r=x,s=c2FsdA==,i=1')).ok).toBe(false);
  });
});

describe('ScramClientExchange: server-final-message', () => {
  function continued(): ScramClientExchange {
    const client = new ScramClientExchange('user', 'pencil', { clientNonce: RFC.clientNonce });
    client.start(['SCRAM-SHA-256']);
    client.continue(text(RFC.serverFirst));
    return client;
  }

  // A server that does not know the password signs with some other ServerKey.
  const forged = hmacSha256(createScramVerifier('guess').serverKey, 'anything').toString('base64');
  const signature = Buffer.from(RFC.serverFinal.slice(2), 'base64');
  signature[31] = (signature[31] ?? 0) ^ 0x80;

  const cases: { name: string; message: string; ok: boolean }[] = [
    { name: 'the right signature', message: RFC.serverFinal, ok: true },
    { name: 'the right signature and an extension', message: `${RFC.serverFinal},x=1`, ok: true },
    { name: 'a signature from another key', message: `v=${forged}`, ok: false },
    { name: 'the right signature with one bit flipped', message: `v=${signature.toString('base64')}`, ok: false },
    { name: 'a truncated signature', message: RFC.serverFinal.slice(0, 20), ok: false },
    { name: 'an empty signature', message: 'v=', ok: false },
    { name: 'a server error', message: 'e=invalid-proof', ok: false },
    { name: 'no signature', message: 'x=1', ok: false },
    { name: 'an empty message', message: '', ok: false },
  ];
  it.each(cases)('$name → ok $ok', ({ message, ok }) => {
    const client = continued();
    const result = client.finish(text(message));
    expect(result.ok).toBe(ok);
    expect(client.authenticated).toBe(ok);
  });

  it('names the server\'s error', () => {
    const result = continued().finish(text('e=other-error'));
    expect(!result.ok && result.error).toContain('other-error');
  });

  it('accepts a server-final-message only once, and only after continue', () => {
    const client = continued();
    expect(client.finish(text(RFC.serverFinal)).ok).toBe(true);
    expect(client.finish(text(RFC.serverFinal)).ok).toBe(false);
    const early = new ScramClientExchange('user', 'pencil');
    early.start(['SCRAM-SHA-256']);
    expect(early.finish(text(RFC.serverFinal)).ok).toBe(false);
  });
});

describe('cachedSaltedPassword', () => {
  it('returns what PBKDF2 returns, and the same buffer on a hit', () => {
    const salt = randomBytes(16);
    const first = cachedSaltedPassword('secret', salt, 4096);
    expect(first).toEqual(computeSaltedPassword('secret', salt, 4096));
    expect(cachedSaltedPassword('secret', Buffer.from(salt), 4096)).toBe(first);
    // Any part of the key differing is a miss.
    expect(cachedSaltedPassword('secret!', salt, 4096)).not.toEqual(first);
    expect(cachedSaltedPassword('secret', randomBytes(16), 4096)).not.toEqual(first);
    expect(cachedSaltedPassword('secret', salt, 4097)).not.toEqual(first);
  });

  it(`keeps at most ${SALTED_PASSWORD_CACHE_LIMIT} entries, dropping the least recently used`, () => {
    const salt = randomBytes(16);
    const kept = cachedSaltedPassword('kept', salt, 1);
    for (let i = 0; i < SALTED_PASSWORD_CACHE_LIMIT * 3; i++) {
      cachedSaltedPassword(`filler ${i}`, salt, 1);
      expect(cachedSaltedPassword('kept', salt, 1)).toBe(kept);
    }
    expect(saltedPasswordCacheSize()).toBe(SALTED_PASSWORD_CACHE_LIMIT);
    const evicted = cachedSaltedPassword('filler 0', salt, 1);
    expect(cachedSaltedPassword('filler 0', salt, 1)).toBe(evicted);
  });
});

// ---------------------------------------------------------------------------
// Against a real PostgreSQL 18 (embedded-postgres) that requires SCRAM-SHA-256,
// with one pg_hba.conf line that makes one role use MD5 instead.

/** Frontend message: Byte1 type, Int32 length (including itself), body. */
function frontendMessage(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

function startupMessage(user: string, database: string): Buffer {
  const body = Buffer.from(`\0\0\0\0user\0${user}\0database\0${database}\0\0`, 'utf8');
  body.writeInt32BE(196608, 0); // protocol 3.0
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([length, body]);
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

/** A raw client connection that reads typed backend messages. */
class RawConnection {
  private buffer = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiting?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
    socket.on('error', () => {
      // 'close' follows and ends any pending read.
    });
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  async read(): Promise<{ type: string; body: Buffer }> {
    for (;;) {
      if (this.buffer.length >= 5) {
        const total = 1 + this.buffer.readInt32BE(1);
        if (this.buffer.length >= total) {
          const message = { type: this.buffer.toString('latin1', 0, 1), body: this.buffer.subarray(5, total) };
          this.buffer = this.buffer.subarray(total);
          return message;
        }
      }
      if (this.closed) throw new Error('The server closed the connection.');
      await new Promise<void>((resolve) => (this.waiting = resolve));
      this.waiting = null;
    }
  }

  /** The next message that is not a NoticeResponse (PostgreSQL 18 warns about MD5). */
  async readSkippingNotices(): Promise<{ type: string; body: Buffer }> {
    for (;;) {
      const message = await this.read();
      if (message.type !== 'N') return message;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The SQLSTATE of an ErrorResponse body (fields: Byte1 code, String value; then a zero byte). */
function sqlstate(body: Buffer): string | undefined {
  for (const field of body.toString('utf8').split('\0')) {
    if (field.startsWith('C')) return field.slice(1);
  }
  return undefined;
}

type LoginOutcome =
  | { kind: 'ok'; authenticated: boolean }
  | { kind: 'server-error'; code: string | undefined }
  | { kind: 'client-refused'; error: string };

/** Runs a SCRAM login through the R/p messages (https://www.postgresql.org/docs/current/sasl-authentication.html). */
async function scramLogin(
  port: number,
  user: string,
  password: string,
  tamperServerFinal: (serverFinal: Buffer) => Buffer = (b) => b,
): Promise<LoginOutcome> {
  const connection = await RawConnection.open(port);
  try {
    connection.send(startupMessage(user, 'postgres'));
    const client = new ScramClientExchange(user, password);

    const sasl = await connection.read();
    if (sasl.type === 'E') return { kind: 'server-error', code: sqlstate(sasl.body) };
    expect(sasl.type).toBe('R');
    expect(sasl.body.readInt32BE(0)).toBe(10); // AuthenticationSASL
    const mechanisms = sasl.body.subarray(4).toString('utf8').split('\0').filter((m) => m !== '');
    const first = client.start(mechanisms);
    if (!first.ok) return { kind: 'client-refused', error: first.error };
    // SASLInitialResponse: String mechanism, Int32 length, Byte[n] client-first-message.
    connection.send(
      frontendMessage('p', Buffer.concat([Buffer.from(`${first.mechanism}\0`), int32(first.clientFirst.length), first.clientFirst])),
    );

    const saslContinue = await connection.read();
    if (saslContinue.type === 'E') return { kind: 'server-error', code: sqlstate(saslContinue.body) };
    expect(saslContinue.body.readInt32BE(0)).toBe(11); // AuthenticationSASLContinue
    const second = client.continue(saslContinue.body.subarray(4));
    if (!second.ok) return { kind: 'client-refused', error: second.error };
    connection.send(frontendMessage('p', second.clientFinal)); // SASLResponse

    const saslFinal = await connection.read();
    if (saslFinal.type === 'E') return { kind: 'server-error', code: sqlstate(saslFinal.body) };
    expect(saslFinal.body.readInt32BE(0)).toBe(12); // AuthenticationSASLFinal
    const final = client.finish(tamperServerFinal(Buffer.from(saslFinal.body.subarray(4))));
    if (!final.ok) return { kind: 'client-refused', error: final.error };

    const ok = await connection.read();
    expect(ok.type).toBe('R');
    expect(ok.body.readInt32BE(0)).toBe(0); // AuthenticationOk
    return { kind: 'ok', authenticated: client.authenticated };
  } finally {
    connection.close();
  }
}

/** Runs an MD5 login (AuthenticationMD5Password, code 5, then a PasswordMessage). */
async function md5Login(port: number, user: string, password: string): Promise<LoginOutcome> {
  const connection = await RawConnection.open(port);
  try {
    connection.send(startupMessage(user, 'postgres'));
    const challenge = await connection.readSkippingNotices();
    expect(challenge.type).toBe('R');
    expect(challenge.body.readInt32BE(0)).toBe(5);
    const salt = challenge.body.subarray(4, 8);
    connection.send(frontendMessage('p', Buffer.from(`${md5PasswordResponse(user, password, salt)}\0`, 'utf8')));
    const answer = await connection.readSkippingNotices();
    if (answer.type === 'E') return { kind: 'server-error', code: sqlstate(answer.body) };
    expect(answer.type).toBe('R');
    expect(answer.body.readInt32BE(0)).toBe(0);
    return { kind: 'ok', authenticated: true };
  } finally {
    connection.close();
  }
}

describe('ScramClientExchange against a real PostgreSQL', () => {
  const suffix = randomBytes(6).toString('hex');
  let superPassword = '';
  const md5Role = `airlock_md5_${suffix}`;
  let port = 0;
  let database: RunningPostgres | undefined;
  let workDir: string | undefined;

  async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: superPassword, database: 'postgres' });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'airlock-scram-'));
    // As root, the server runs as the OS user postgres, which must enter this directory.
    await chmod(workDir, 0o755);
    database = await startEmbeddedPostgres({ dataDir: join(workDir, 'data') });
    port = database.port;
    superPassword = database.password;
    // The first matching pg_hba.conf line wins: one role uses MD5
    // (https://www.postgresql.org/docs/current/auth-pg-hba-conf.html).
    const hbaPath = join(database.dataDir, 'pg_hba.conf');
    const hba = await readFile(hbaPath, 'utf8');
    await writeFile(hbaPath, `host all ${md5Role} 127.0.0.1/32 md5\n${hba}`);
    await admin((client) => client.query('SELECT pg_reload_conf()'));
  });

  afterAll(async () => {
    await database?.stop();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it('logs in with the right password and verifies the server', async () => {
    expect(await scramLogin(port, 'postgres', superPassword)).toEqual({ kind: 'ok', authenticated: true });
  });

  it('gets 28P01 for a wrong password', async () => {
    expect(await scramLogin(port, 'postgres', superPassword + 'x')).toEqual({ kind: 'server-error', code: '28P01' });
  });

  it('rejects a forged server-final-message', async () => {
    const outcome = await scramLogin(port, 'postgres', superPassword, (serverFinal) => {
      const signature = Buffer.from(serverFinal.toString('utf8').slice(2), 'base64');
      signature[0] = (signature[0] ?? 0) ^ 1;
      return Buffer.from(`v=${signature.toString('base64')}`);
    });
    expect(outcome.kind).toBe('client-refused');
  });

  it('logs in with the password behind a verifier set by ALTER ROLE, the cleartext never sent', async () => {
    const role = `airlock_scram_${suffix}`;
    const password = `role-${randomBytes(9).toString('base64')}`;
    // A non-default iteration count proves the client follows the server's.
    const verifier = formatScramVerifier(createScramVerifier(password, { iterations: 5000 }));
    await admin(async (client) => {
      await client.query(`CREATE ROLE ${role} LOGIN`);
      await client.query(`ALTER ROLE ${role} PASSWORD '${verifier}'`);
      const stored = await client.query<{ rolpassword: string }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [role]);
      expect(stored.rows[0]?.rolpassword).toBe(verifier);
    });
    try {
      expect(await scramLogin(port, role, password)).toEqual({ kind: 'ok', authenticated: true });
      expect(await scramLogin(port, role, password.toUpperCase() + '!')).toEqual({ kind: 'server-error', code: '28P01' });
    } finally {
      await admin((client) => client.query(`DROP ROLE ${role}`));
    }
  });

  it('answers an MD5 challenge for a role stored with MD5', async () => {
    const password = `md5-${randomBytes(9).toString('hex')}`;
    await admin(async (client) => {
      client.on('notice', () => {
        // PostgreSQL 18 warns that MD5 passwords are deprecated: expected here.
      });
      await client.query(`SET password_encryption = 'md5'`);
      await client.query(`CREATE ROLE ${md5Role} LOGIN PASSWORD '${password}'`);
    });
    try {
      expect(await md5Login(port, md5Role, password)).toEqual({ kind: 'ok', authenticated: true });
      expect(await md5Login(port, md5Role, password + 'x')).toEqual({ kind: 'server-error', code: '28P01' });
    } finally {
      await admin((client) => client.query(`DROP ROLE ${md5Role}`));
    }
  });
});
