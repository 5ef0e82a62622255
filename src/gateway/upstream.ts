/**
 * Opens an authenticated connection to the upstream PostgreSQL as a given
 * role and hands over the raw socket for relaying.
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { AUTH, BACKEND, parseErrorFields } from '../protocol/backend.js';
import {
  encodePassword,
  encodeSaslInitialResponse,
  encodeSaslResponse,
  encodeTerminate,
} from '../protocol/frontend.js';
import { MessageReader } from '../protocol/message-reader.js';
import type { Message } from '../protocol/message-reader.js';
import { encodeSslRequest, encodeStartupMessage } from '../protocol/startup.js';
import { md5PasswordResponse } from '../protocol/auth/md5.js';
import { ScramClientExchange } from '../protocol/auth/scram-client.js';

export type SslMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface UpstreamLogin {
  host: string;
  port: number;
  user: string;
  password: string | null;
  database: string;
  sslmode: SslMode;
  sslrootcert: string | null;
  /** Run-time parameters sent in the StartupMessage. */
  params: Record<string, string>;
  connectTimeoutMs: number;
}

export interface UpstreamConnection {
  socket: net.Socket;
  /** ParameterStatus messages the server sent at start-up, as raw messages, in order. */
  parameterStatus: Buffer[];
  processId: number;
  secretKey: Buffer;
}

/** The upstream refused or failed: carries the server's fields when it sent an ErrorResponse. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly serverFields?: Map<string, string>,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** Connects, negotiates TLS if asked, authenticates and waits for ReadyForQuery. */
export async function connectUpstream(login: UpstreamLogin): Promise<UpstreamConnection> {
  const raw = await openSocket(login);
  let socket: net.Socket = raw;
  try {
    if (login.sslmode !== 'disable') socket = await negotiateTls(raw, login);
    return await startup(socket, login);
  } catch (err) {
    socket.destroy();
    raw.destroy();
    throw err;
  }
}

function openSocket(login: UpstreamLogin): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: login.host, port: login.port });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamError(`timed out after ${login.connectTimeoutMs} ms connecting to ${login.host}:${login.port}`, '08001'));
    }, login.connectTimeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new UpstreamError(`could not connect to ${login.host}:${login.port} (${err.code ?? err.message})`, '08001'));
    });
  });
}

/** Reads exactly one byte from the socket (the answer to SSLRequest). */
function readByte(socket: net.Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      cleanup();
      if (chunk.length !== 1) {
        // Bytes after the answer, before the TLS handshake, were not sent by a
        // well-behaved server (CVE-2021-23222): refuse to continue.
        reject(new UpstreamError('the server sent unexpected bytes after answering the TLS request', '08P01'));
        return;
      }
      resolve(chunk[0]!);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new UpstreamError(`connection failed during TLS negotiation: ${err.message}`, '08006'));
    };
    const onClose = (): void => {
      cleanup();
      reject(new UpstreamError('the server closed the connection during TLS negotiation', '08006'));
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.pause();
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.resume();
  });
}

async function negotiateTls(socket: net.Socket, login: UpstreamLogin): Promise<net.Socket> {
  socket.write(encodeSslRequest());
  const answer = await readByte(socket);
  if (answer !== 0x53 /* 'S' */) {
    if (login.sslmode === 'prefer') return socket;
    throw new UpstreamError(`the server does not accept TLS, and sslmode=${login.sslmode} requires it`, '08001');
  }
  const verify = login.sslmode === 'verify-ca' || login.sslmode === 'verify-full';
  const secure = tls.connect({
    socket,
    rejectUnauthorized: verify,
    ca: login.sslrootcert !== null ? readFileSync(login.sslrootcert) : undefined,
    servername: login.sslmode === 'verify-full' && net.isIP(login.host) === 0 ? login.host : undefined,
    // verify-ca checks the chain but not the host name, as libpq does.
    checkServerIdentity: login.sslmode === 'verify-full' ? tls.checkServerIdentity : () => undefined,
  });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', resolve);
    secure.once('error', (err) => reject(new UpstreamError(`TLS handshake with the database failed: ${err.message}`, '08001')));
  });
  secure.removeAllListeners('error');
  secure.setNoDelay(true);
  return secure;
}

function startup(socket: net.Socket, login: UpstreamLogin): Promise<UpstreamConnection> {
  return new Promise((resolve, reject) => {
    const reader = new MessageReader(1 << 20);
    const parameterStatus: Buffer[] = [];
    let processId = 0;
    let secretKey = Buffer.alloc(0);
    let scram: ScramClientExchange | null = null;
    const timer = setTimeout(
      () => fail(new UpstreamError(`timed out after ${login.connectTimeoutMs} ms logging in to the database`, '08001')),
      login.connectTimeoutMs,
    );

    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      reject(err);
    };
    const onError = (err: Error): void => fail(new UpstreamError(`connection to the database failed: ${err.message}`, '08006'));
    const onClose = (): void => fail(new UpstreamError('the database closed the connection during login', '08006'));

    const needPassword = (): string => {
      if (login.password === null) throw new UpstreamError(`the database asks for a password for role "${login.user}" and none is configured`, '28P01');
      return login.password;
    };

    const handle = (m: Message): boolean => {
      switch (m.type) {
        case BACKEND.authentication: {
          const code = m.body.readInt32BE(0);
          if (code === AUTH.ok) {
            // A fake server could skip SASLFinal and claim success: insist on its proof.
            if (scram !== null && !scram.authenticated) {
              throw new UpstreamError('the database claimed success without proving it knows the password', '28000');
            }
            return false;
          }
          if (code === AUTH.cleartextPassword) {
            socket.write(encodePassword(needPassword()));
          } else if (code === AUTH.md5Password) {
            socket.write(encodePassword(md5PasswordResponse(login.user, needPassword(), m.body.subarray(4, 8))));
          } else if (code === AUTH.sasl) {
            const mechanisms = m.body.toString('utf8', 4).split('\0').filter((s) => s !== '');
            scram = new ScramClientExchange(login.user, needPassword());
            const first = scram.start(mechanisms);
            if (!first.ok) throw new UpstreamError(first.error, '28000');
            socket.write(encodeSaslInitialResponse(first.mechanism, first.clientFirst));
          } else if (code === AUTH.saslContinue && scram !== null) {
            const next = scram.continue(m.body.subarray(4));
            if (!next.ok) throw new UpstreamError(next.error, '28000');
            socket.write(encodeSaslResponse(next.clientFinal));
          } else if (code === AUTH.saslFinal && scram !== null) {
            const done = scram.finish(m.body.subarray(4));
            if (!done.ok) throw new UpstreamError(`the database failed to prove it knows the password: ${done.error}`, '28000');
          } else {
            throw new UpstreamError(`the database asked for an authentication method Airlock does not support (code ${code})`, '28000');
          }
          return false;
        }
        case BACKEND.parameterStatus:
          parameterStatus.push(Buffer.from(m.raw));
          return false;
        case BACKEND.backendKeyData:
          processId = m.body.readUInt32BE(0);
          secretKey = Buffer.from(m.body.subarray(4));
          return false;
        case BACKEND.negotiateProtocolVersion:
        case BACKEND.noticeResponse:
          return false;
        case BACKEND.errorResponse: {
          const fields = parseErrorFields(m.body);
          throw new UpstreamError(fields.get('M') ?? 'the database refused the connection', fields.get('C') ?? '08006', fields);
        }
        case BACKEND.readyForQuery:
          return true;
        default:
          throw new UpstreamError(`unexpected message '${String.fromCharCode(m.type)}' from the database during login`, '08P01');
      }
    };

    const onData = (chunk: Buffer): void => {
      try {
        const messages = reader.push(chunk);
        for (let i = 0; i < messages.length; i++) {
          if (handle(messages[i]!)) {
            if (i !== messages.length - 1 || reader.buffered > 0) {
              throw new UpstreamError('the database sent messages before it was asked anything', '08P01');
            }
            clearTimeout(timer);
            socket.off('data', onData);
            socket.off('error', onError);
            socket.off('close', onClose);
            socket.pause();
            resolve({ socket, parameterStatus, processId, secretKey });
            return;
          }
        }
      } catch (err) {
        socket.write(encodeTerminate());
        fail(err instanceof Error ? err : new Error(String(err)));
      }
    };

    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.write(encodeStartupMessage({ user: login.user, database: login.database, ...login.params }));
    socket.resume();
  });
}
