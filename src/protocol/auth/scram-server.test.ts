import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { SCRAM_AUTH_FAILED, ScramServerExchange } from './scram-server.js';
import { ScramClientExchange } from './scram-client.js';
import { computeSaltedPassword, createScramVerifier, deriveScramKeys, hmacSha256, xorBuffers } from './scram-verifier.js';
import type { ScramVerifier } from './scram-verifier.js';

// RFC 7677 §3: user "user", password "pencil".
const RFC = {
  password: 'pencil',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
} as const;

const rfcVerifier = (): ScramVerifier => createScramVerifier(RFC.password, { salt: RFC.salt, iterations: 4096 });
const text = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('ScramServerExchange: RFC 7677 test vector', () => {
  it('produces the RFC server-first and server-final messages', () => {
    const server = new ScramServerExchange(rfcVerifier(), 'user', { serverNonce: RFC.serverNonce });
    const first = server.start('SCRAM-SHA-256', text(RFC.clientFirst));
    expect(first).toEqual({ ok: true, serverFirst: text(RFC.serverFirst) });
    const final = server.finish(text(RFC.clientFinal));
    expect(final).toEqual({ ok: true, serverFinal: text(RFC.serverFinal) });
  });

  it('refuses the RFC exchange when the verifier is for another password', () => {
    const verifier = createScramVerifier('pencils', { salt: RFC.salt, iterations: 4096 });
    const server = new ScramServerExchange(verifier, 'user', { serverNonce: RFC.serverNonce });
    expect(server.start('SCRAM-SHA-256', text(RFC.clientFirst)).ok).toBe(true);
    expect(server.finish(text(RFC.clientFinal))).toEqual({ ok: false, code: '28P01', error: SCRAM_AUTH_FAILED });
  });
});

describe('ScramServerExchange: client-first-message', () => {
  const cases: { name: string; mechanism?: string; message: string | Buffer; ok: boolean; says?: RegExp }[] = [
    { name: 'gs2 header n,, (no binding)', message: 'n,,n=,r=abc', ok: true },
    { name: 'gs2 header y,, (client could bind, thinks we cannot)', message: 'y,,n=,r=abc', ok: true },
    { name: 'a user name, ignored', message: 'n,,n=some=2Cone,r=abc', ok: true },
    { name: 'extensions after the nonce, ignored', message: 'n,,n=,r=abc,x=1', ok: true },
    { name: 'channel binding p=', message: 'p=tls-server-end-point,,n=,r=abc', ok: false, says: /channel binding/ },
    { name: 'an unknown binding flag', message: 'q,,n=,r=abc', ok: false },
    { name: 'an authorization identity', message: 'n,a=admin,n=,r=abc', ok: false, says: /authorization identity/ },
    { name: 'a mandatory extension', message: 'n,,m=ext,n=,r=abc', ok: false, says: /extension/ },
    { name: 'no gs2 header', message: 'n=,r=abc', ok: false },
    { name: 'no user attribute', message: 'n,,r=abc', ok: false },
    { name: 'no nonce', message: 'n,,n=', ok: false },
    { name: 'an empty nonce', message: 'n,,n=,r=', ok: false },
    { name: 'a nonce with a space', message: 'n,,n=,r=a c', ok: false },
    { name: 'a junk attribute', message: 'n,,n=,r=abc,junk', ok: false },
    { name: 'an embedded NUL', message: Buffer.from('n,,n=,r=ab\0c', 'latin1'), ok: false },
    { name: 'invalid UTF-8', message: Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xff, 0x2c, 0x72, 0x3d, 0x61]), ok: false },
    { name: 'an empty message', message: '', ok: false },
    { name: 'the PLUS mechanism', mechanism: 'SCRAM-SHA-256-PLUS', message: 'p=tls-server-end-point,,n=,r=abc', ok: false },
    { name: 'another mechanism', mechanism: 'PLAIN', message: 'n,,n=,r=abc', ok: false },
  ];
  it.each(cases)('$name → ok $ok', ({ mechanism, message, ok, says }) => {
    const server = new ScramServerExchange(rfcVerifier(), 'user');
    const result = server.start(mechanism ?? 'SCRAM-SHA-256', typeof message === 'string' ? text(message) : message);
    expect(result.ok).toBe(ok);
    if (!result.ok) expect(result.code).toBe('08P01');
    if (!result.ok && says !== undefined) expect(result.error).toMatch(says);
    if (result.ok) expect(result.serverFirst.toString()).toMatch(/^r=abc[^,]{24},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096$/);
  });

  it('gives each exchange a fresh 24-character server nonce', () => {
    const nonces = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const result = new ScramServerExchange(rfcVerifier(), 'user').start('SCRAM-SHA-256', text('n,,n=,r=abc'));
      if (!result.ok) throw new Error(result.error);
      nonces.add(result.serverFirst.toString().split(',')[0] ?? '');
    }
    expect(nonces.size).toBe(20);
  });

  it('accepts a client-first-message only once', () => {
    const server = new ScramServerExchange(rfcVerifier(), 'user');
    expect(server.start('SCRAM-SHA-256', text('n,,n=,r=abc')).ok).toBe(true);
    expect(server.start('SCRAM-SHA-256', text('n,,n=,r=abc')).ok).toBe(false);
  });
});

/** A valid client-final for the exchange, built independently of the client module, with edits. */
function clientFinalFor(
  serverFirst: string,
  clientFirstBare: string,
  password: string,
  edit: { binding?: string; nonce?: string; extra?: string } = {},
): { withoutProof: string; proof: Buffer; authMessage: string } {
  const attrs = Object.fromEntries(serverFirst.split(',').map((a) => [a[0], a.slice(2)]));
  const nonce = edit.nonce ?? attrs.r ?? '';
  const withoutProof = `c=${edit.binding ?? 'biws'},r=${nonce}${edit.extra ?? ''}`;
  const salted = computeSaltedPassword(password, Buffer.from(attrs.s ?? '', 'base64'), Number(attrs.i));
  const keys = deriveScramKeys(salted);
  const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
  return { withoutProof, proof: xorBuffers(keys.clientKey, hmacSha256(keys.storedKey, authMessage)), authMessage };
}

describe('ScramServerExchange: client-final-message', () => {
  const password = 'correct horse';
  const verifier = createScramVerifier(password);

  function started(gs2 = 'n,,'): { server: ScramServerExchange; serverFirst: string } {
    const server = new ScramServerExchange(verifier, 'agent');
    const result = server.start('SCRAM-SHA-256', text(`${gs2}n=,r=clientnonce`));
    if (!result.ok) throw new Error(result.error);
    return { server, serverFirst: result.serverFirst.toString() };
  }

  it('accepts a correct proof and signs the same AuthMessage', () => {
    const { server, serverFirst } = started();
    const { withoutProof, proof, authMessage } = clientFinalFor(serverFirst, 'n=,r=clientnonce', password);
    const result = server.finish(text(`${withoutProof},p=${proof.toString('base64')}`));
    const serverSignature = hmacSha256(verifier.serverKey, authMessage).toString('base64');
    expect(result).toEqual({ ok: true, serverFinal: text(`v=${serverSignature}`) });
    // The exchange is over: the same message again is out of order.
    expect(server.finish(text(`${withoutProof},p=${proof.toString('base64')}`)).ok).toBe(false);
  });

  it('accepts y,, when the channel binding repeats it (eSws)', () => {
    const { server, serverFirst } = started('y,,');
    const { withoutProof, proof } = clientFinalFor(serverFirst, 'n=,r=clientnonce', password, { binding: 'eSws' });
    expect(server.finish(text(`${withoutProof},p=${proof.toString('base64')}`)).ok).toBe(true);
  });

  it('ignores extensions before the proof, which the AuthMessage still covers', () => {
    const { server, serverFirst } = started();
    const { withoutProof, proof } = clientFinalFor(serverFirst, 'n=,r=clientnonce', password, { extra: ',x=ext' });
    expect(server.finish(text(`${withoutProof},p=${proof.toString('base64')}`)).ok).toBe(true);
  });

  const broken: { name: string; build: (serverFirst: string) => string; code: string }[] = [
    {
      name: 'a wrong password',
      build: (sf) => {
        const f = clientFinalFor(sf, 'n=,r=clientnonce', 'wrong horse');
        return `${f.withoutProof},p=${f.proof.toString('base64')}`;
      },
      code: '28P01',
    },
    {
      name: 'a proof with one bit flipped',
      build: (sf) => {
        const f = clientFinalFor(sf, 'n=,r=clientnonce', password);
        f.proof[0] = (f.proof[0] ?? 0) ^ 1;
        return `${f.withoutProof},p=${f.proof.toString('base64')}`;
      },
      code: '28P01',
    },
    {
      name: 'a binding that does not repeat the gs2 header (y,, after n,,)',
      build: (sf) => {
        const f = clientFinalFor(sf, 'n=,r=clientnonce', password, { binding: 'eSws' });
        return `${f.withoutProof},p=${f.proof.toString('base64')}`;
      },
      code: '08P01',
    },
    {
      name: 'another nonce',
      build: (sf) => {
        const f = clientFinalFor(sf, 'n=,r=clientnonce', password, { nonce: 'clientnonceXYZ' });
        return `${f.withoutProof},p=${f.proof.toString('base64')}`;
      },
      code: '08P01',
    },
    {
      name: 'no proof',
      build: (sf) => clientFinalFor(sf, 'n=,r=clientnonce', password).withoutProof,
      code: '08P01',
    },
    {
      name: 'a short proof',
      build: (sf) => `${clientFinalFor(sf, 'n=,r=clientnonce', password).withoutProof},p=${Buffer.alloc(16).toString('base64')}`,
      code: '08P01',
    },
    {
      name: 'a proof that is not base64',
      build: (sf) => `${clientFinalFor(sf, 'n=,r=clientnonce', password).withoutProof},p=!!!!`,
      code: '08P01',
    },
    {
      name: 'an attribute after the proof',
      build: (sf) => {
        const f = clientFinalFor(sf, 'n=,r=clientnonce', password);
        return `${f.withoutProof},p=${f.proof.toString('base64')},x=1`;
      },
      code: '08P01',
    },
    {
      name: 'attributes out of order',
      build: (sf) => {
        const f = clientFinalFor(sf, 'n=,r=clientnonce', password);
        const [c, r] = f.withoutProof.split(',');
        return `${r},${c},p=${f.proof.toString('base64')}`;
      },
      code: '08P01',
    },
  ];
  it.each(broken)('refuses $name with $code', ({ build, code }) => {
    const { server, serverFirst } = started();
    const result = server.finish(text(build(serverFirst)));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.code).toBe(code);
  });

  it('refuses a client-final-message before the client-first-message', () => {
    const server = new ScramServerExchange(verifier, 'agent');
    expect(server.finish(text('c=biws,r=x,p=AAAA')).ok).toBe(false);
  });
});

describe('ScramServerExchange: unknown users', () => {
  function saltFor(verifier: ScramVerifier | null, seed: string): string {
    const result = new ScramServerExchange(verifier, seed).start('SCRAM-SHA-256', text('n,,n=,r=abc'));
    if (!result.ok) throw new Error(result.error);
    return result.serverFirst.toString().split(',s=')[1] ?? '';
  }

  it('shows a stable salt per user name, different across names, shaped like a real one', () => {
    const ghost = saltFor(null, 'ghost');
    expect(saltFor(null, 'ghost')).toBe(ghost);
    expect(saltFor(null, 'phantom')).not.toBe(ghost);
    // A real verifier's salt is 16 bytes with 4096 iterations: the mock looks the same.
    expect(ghost).toMatch(/^[A-Za-z0-9+/]{22}==,i=4096$/);
  });

  it('fails even a proof computed from the mock salt, with the wrong-password answer', () => {
    const server = new ScramServerExchange(null, 'ghost');
    const first = server.start('SCRAM-SHA-256', text('n,,n=,r=abc'));
    if (!first.ok) throw new Error(first.error);
    const f = clientFinalFor(first.serverFirst.toString(), 'n=,r=abc', '');
    expect(server.finish(text(`${f.withoutProof},p=${f.proof.toString('base64')}`))).toEqual({
      ok: false,
      code: '28P01',
      error: SCRAM_AUTH_FAILED,
    });
  });
});

describe('ScramServerExchange with ScramClientExchange', () => {
  it.each(['ascii password', 'pässwörd ünïcode', 'p,a=s=2Cs'])('authenticates both ways with %j', (password) => {
    const verifier = createScramVerifier(password, { iterations: 4096 });
    const server = new ScramServerExchange(verifier, 'agent');
    const client = new ScramClientExchange('agent,=name', password);
    const c1 = client.start(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    if (!c1.ok) throw new Error(c1.error);
    const s1 = server.start(c1.mechanism, c1.clientFirst);
    if (!s1.ok) throw new Error(s1.error);
    const c2 = client.continue(s1.serverFirst);
    if (!c2.ok) throw new Error(c2.error);
    const s2 = server.finish(c2.clientFinal);
    if (!s2.ok) throw new Error(s2.error);
    expect(client.finish(s2.serverFinal)).toEqual({ ok: true });
    expect(client.authenticated).toBe(true);
  });

  it('does not authenticate a client whose password differs', () => {
    const server = new ScramServerExchange(createScramVerifier('right'), 'agent');
    const client = new ScramClientExchange('agent', 'wrong');
    const c1 = client.start(['SCRAM-SHA-256']);
    if (!c1.ok) throw new Error(c1.error);
    const s1 = server.start(c1.mechanism, c1.clientFirst);
    if (!s1.ok) throw new Error(s1.error);
    const c2 = client.continue(s1.serverFirst);
    if (!c2.ok) throw new Error(c2.error);
    expect(server.finish(c2.clientFinal).ok).toBe(false);
  });
});

// ---------------------------------------------------------------------------
// Against real clients: a tiny PostgreSQL server that speaks just enough of the
// protocol (https://www.postgresql.org/docs/current/protocol-flow.html) to
// authenticate, then answers every query with an error.

/** Backend message: Byte1 type, Int32 length (including itself), body. */
function backendMessage(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

function authentication(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const codeBytes = Buffer.alloc(4);
  codeBytes.writeInt32BE(code);
  return backendMessage('R', Buffer.concat([codeBytes, data]));
}

function errorResponse(code: string, message: string): Buffer {
  const fields = [['S', 'FATAL'], ['V', 'FATAL'], ['C', code], ['M', message]];
  return backendMessage('E', Buffer.concat([...fields.map(([k, v]) => Buffer.from(`${k}${v}\0`, 'utf8')), Buffer.alloc(1)]));
}

const READY_FOR_QUERY = backendMessage('Z', Buffer.from('I', 'latin1'));
const NO_QUERIES_CODE = 'XX999';

/** Reads length-prefixed messages from a socket; the first one has no type byte (StartupMessage). */
class FrameReader {
  private buffer = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  private closed = false;

  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiting?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
  }

  async read(typed: boolean): Promise<{ type: string; body: Buffer } | null> {
    const headerLength = typed ? 5 : 4;
    for (;;) {
      if (this.buffer.length >= headerLength) {
        const length = this.buffer.readInt32BE(typed ? 1 : 0);
        const total = (typed ? 1 : 0) + length;
        if (this.buffer.length >= total) {
          const type = typed ? this.buffer.toString('latin1', 0, 1) : '';
          const body = this.buffer.subarray(headerLength, total);
          this.buffer = this.buffer.subarray(total);
          return { type, body };
        }
      }
      if (this.closed) return null;
      await new Promise<void>((resolve) => (this.waiting = resolve));
      this.waiting = null;
    }
  }
}

/** The user name from a StartupMessage body (Int32 protocol, then name/value pairs). */
function startupUser(body: Buffer): string {
  const parts = body.subarray(4).toString('utf8').split('\0');
  const index = parts.indexOf('user');
  return index >= 0 ? (parts[index + 1] ?? '') : '';
}

async function serveConnection(socket: Socket, users: Map<string, ScramVerifier>): Promise<void> {
  const reader = new FrameReader(socket);
  let startup = await reader.read(false);
  // SSLRequest (code 80877103): say no, then read the real StartupMessage.
  if (startup !== null && startup.body.length === 4 && startup.body.readInt32BE(0) === 80877103) {
    socket.write('N');
    startup = await reader.read(false);
  }
  if (startup === null) return;
  const user = startupUser(startup.body);
  const exchange = new ScramServerExchange(users.get(user) ?? null, user);
  socket.write(authentication(10, Buffer.from('SCRAM-SHA-256\0\0', 'latin1')));

  // SASLInitialResponse: String mechanism, Int32 length of data (-1 for none), data.
  const initial = await reader.read(true);
  if (initial === null || initial.type !== 'p') return void socket.end();
  const nul = initial.body.indexOf(0);
  const mechanism = initial.body.toString('utf8', 0, nul);
  const dataLength = initial.body.readInt32BE(nul + 1);
  const first = exchange.start(mechanism, initial.body.subarray(nul + 5, nul + 5 + Math.max(dataLength, 0)));
  if (!first.ok) return void socket.end(errorResponse(first.code, first.error));
  socket.write(authentication(11, first.serverFirst));

  // SASLResponse: the client-final-message is the whole body.
  const response = await reader.read(true);
  if (response === null || response.type !== 'p') return void socket.end();
  const final = exchange.finish(response.body);
  if (!final.ok) return void socket.end(errorResponse(final.code, final.error));
  socket.write(Buffer.concat([authentication(12, final.serverFinal), authentication(0), READY_FOR_QUERY]));

  // Authenticated: answer every query (simple, or extended at its Sync) with an error.
  for (;;) {
    const message = await reader.read(true);
    if (message === null || message.type === 'X') return void socket.end();
    if (message.type === 'Q' || message.type === 'S') {
      socket.write(Buffer.concat([errorResponse(NO_QUERIES_CODE, 'This test server runs no queries.'), READY_FOR_QUERY]));
    }
  }
}

describe('ScramServerExchange against real PostgreSQL clients', () => {
  const password = 'agent-secret-' + Math.random().toString(36).slice(2);
  const users = new Map<string, ScramVerifier>([['agent', createScramVerifier(password)]]);
  let server: Server;
  let port = 0;

  beforeAll(async () => {
    server = createServer((socket) => {
      socket.on('error', () => {
        // A client that hangs up mid-exchange is expected in the failure cases.
      });
      serveConnection(socket, users).catch((error: unknown) => socket.destroy(error as Error));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function pgConnect(user: string, pw: string): Promise<{ code?: string; message?: string }> {
    const client = new pg.Client({ host: '127.0.0.1', port, user, password: pw, database: 'app' });
    try {
      await client.connect();
      await client.end();
      return {};
    } catch (error) {
      const e = error as { code?: string; message?: string };
      return { code: e.code, message: e.message };
    }
  }

  it('node-postgres connects with the right password', async () => {
    expect(await pgConnect('agent', password)).toEqual({});
  });

  it('node-postgres fails with 28P01 on a wrong password, and identically for an unknown user', async () => {
    const wrong = await pgConnect('agent', password + 'x');
    expect(wrong).toEqual({ code: '28P01', message: SCRAM_AUTH_FAILED });
    expect(await pgConnect('nobody', password)).toEqual(wrong);
  });

  async function postgresJsQuery(user: string, pw: string): Promise<string | undefined> {
    const sql = postgres({ host: '127.0.0.1', port, user, password: pw, database: 'app', fetch_types: false, max: 1, onnotice: () => {} });
    try {
      await sql`select 1`;
      return 'no error';
    } catch (error) {
      return (error as { code?: string }).code;
    } finally {
      await sql.end({ timeout: 1 });
    }
  }

  it('postgres.js authenticates with the right password (its query then meets the test server\'s error)', async () => {
    expect(await postgresJsQuery('agent', password)).toBe(NO_QUERIES_CODE);
  });

  it('postgres.js fails with 28P01 on a wrong password and for an unknown user', async () => {
    expect(await postgresJsQuery('agent', 'nope')).toBe('28P01');
    expect(await postgresJsQuery('nobody', 'nope')).toBe('28P01');
  });
});
