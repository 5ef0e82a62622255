/**
 * One agent connection from its first byte to the start of relaying: TLS
 * negotiation, start-up parameters, SCRAM-SHA-256 authentication, the
 * upstream connection on the agent's read role.
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import {
  authenticationOk,
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  backendKeyData,
  errorResponse,
  negotiateProtocolVersion,
  parseParameterStatus,
  readyForQuery,
} from '../protocol/backend.js';
import type { ErrorFields } from '../protocol/backend.js';
import { FRONTEND, parseSaslInitialResponse } from '../protocol/frontend.js';
import { MessageReader, ProtocolViolation, StartupPacketReader } from '../protocol/message-reader.js';
import { encodeCancelRequest, parseStartupPacket } from '../protocol/startup.js';
import type { StartupPacket } from '../protocol/startup.js';
import { ScramServerExchange } from '../protocol/auth/scram-server.js';
import { Relay } from './relay.js';
import type { RelayContext } from './relay.js';
import { connectUpstream, UpstreamError } from './upstream.js';
import type { UpstreamConnection, UpstreamLogin } from './upstream.js';
import type { AgentCredentials } from './agent-credentials.js';
import type { AdmissionTicket } from './admission.js';

/**
 * Start-up parameters a client may send. They only shape presentation; the
 * client encoding is always UTF-8 whatever is asked (the parser and the
 * server must read the same bytes the same way).
 */
export const ALLOWED_STARTUP_PARAMETERS = [
  'user',
  'database',
  'application_name',
  'client_encoding',
  'datestyle',
  'timezone',
  'extra_float_digits',
  'intervalstyle',
] as const;

/** Forwarded to the upstream as the client gave them. */
const FORWARDED_STARTUP_PARAMETERS = new Set(['application_name', 'datestyle', 'timezone', 'extra_float_digits', 'intervalstyle']);

export interface SessionContext extends RelayContext {
  tls: tls.SecureContext | null;
  agents: ReadonlyMap<string, AgentCredentials>;
  upstream: Omit<UpstreamLogin, 'user' | 'password' | 'params'>;
  /** Settings forced on every upstream session, in its StartupMessage. */
  upstreamParams: Record<string, string>;
  /** How long a connection may take from its first byte to a verified password (limits.login_timeout_ms). */
  loginTimeoutMs: number;
  /** Registers the session's cancel key; returns a function that unregisters it. */
  registerCancelKey: (processId: number, secretKey: Buffer, cancel: () => void) => () => void;
  onCancelRequest: (processId: number, secretKey: Buffer) => void;
}

/** How long a refused connection's socket may take to deliver its error and close. */
const FAILED_SOCKET_LINGER_MS = 1_000;

type Phase = 'startup' | 'auth-first' | 'auth-final' | 'connecting' | 'relaying' | 'closed';

export class ClientSession {
  readonly id = randomBytes(6).toString('hex');
  private socket: net.Socket;
  private phase: Phase = 'startup';
  private startupReader = new StartupPacketReader();
  private authReader: MessageReader | null = null;
  private tlsDone = false;
  private agent: AgentCredentials | null = null;
  private user = '';
  private params = new Map<string, string>();
  private scram: ScramServerExchange | null = null;
  private readonly clientAddress: string;
  private readonly authTimer: NodeJS.Timeout;
  private unregisterCancel: (() => void) | null = null;
  private relay: Relay | null = null;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);

  constructor(
    socket: net.Socket,
    private readonly ctx: SessionContext,
    /** Its place at the door: counted as waiting until its password is verified, then against its agent's sessions. */
    private readonly ticket: AdmissionTicket,
    private readonly onClosed: (session: ClientSession) => void,
  ) {
    this.socket = socket;
    this.clientAddress = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    socket.setNoDelay(true);
    this.authTimer = setTimeout(() => {
      this.fail({
        severity: 'FATAL',
        code: '08006',
        message: `airlock: the client did not finish logging in in time (limits.login_timeout_ms is ${ctx.loginTimeoutMs})`,
      });
    }, ctx.loginTimeoutMs);
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    socket.on('data', this.onData);
    socket.on('error', (err) => this.close(`client socket error: ${err.message}`));
    socket.on('close', () => this.close('client closed the connection'));
  }

  private receive(chunk: Buffer): void {
    try {
      if (this.phase === 'startup') {
        const packet = this.startupReader.push(chunk);
        if (packet === null) return;
        this.onStartupPacket(parseStartupPacket(packet.body), packet.rest);
      } else if (this.phase === 'auth-first' || this.phase === 'auth-final') {
        for (const m of this.authReader!.push(chunk)) {
          // onAuthMessage may have moved the phase on (TypeScript cannot see that).
          if ((this.phase as Phase) === 'connecting') this.pendingWhileConnecting.push(Buffer.from(m.raw));
          else this.onAuthMessage(m.type, m.body);
        }
        if ((this.phase as Phase) === 'connecting') this.pendingWhileConnecting.push(this.authReader!.takeBuffered());
      } else if (this.phase === 'connecting') {
        // A pipelining client may send queries before ReadyForQuery; keep them
        // for the relay (they are judged like any other), within reason.
        this.pendingWhileConnecting.push(chunk);
        if (this.pendingWhileConnecting.reduce((n, b) => n + b.length, 0) > this.ctx.maxMessageBytes) {
          throw new ProtocolViolation('the client sent more than limits.max_message_bytes before its session was ready');
        }
      }
    } catch (err) {
      if (err instanceof ProtocolViolation) {
        this.fail({ severity: 'FATAL', code: '08P01', message: `airlock: protocol violation: ${err.message}` });
        return;
      }
      this.fail({ severity: 'FATAL', code: 'XX000', message: `airlock: internal error: ${(err as Error).message}` });
      this.ctx.log(`session ${this.id}: internal error: ${(err as Error).stack ?? String(err)}`);
    }
  }

  private pendingWhileConnecting: Buffer[] = [];

  private onStartupPacket(packet: StartupPacket, rest: Buffer): void {
    switch (packet.kind) {
      case 'ssl-request':
        if (rest.length > 0) {
          // Bytes sent before the TLS handshake could be injected by a
          // man in the middle (CVE-2021-23214): refuse them.
          throw new ProtocolViolation('data was sent after SSLRequest, before the TLS handshake');
        }
        if (this.tlsDone || this.ctx.tls === null) {
          this.socket.write('N');
          return;
        }
        this.upgradeToTls();
        return;
      case 'gssenc-request':
        if (rest.length > 0) throw new ProtocolViolation('data was sent after GSSENCRequest');
        this.socket.write('N');
        return;
      case 'cancel':
        this.ctx.onCancelRequest(packet.processId, packet.secretKey);
        this.close('cancel request handled');
        this.socket.destroy();
        return;
      case 'startup':
        if (rest.length > 0) throw new ProtocolViolation('data was sent before authentication');
        this.onStartup(packet.minor, packet.params);
        return;
    }
  }

  private upgradeToTls(): void {
    this.socket.off('data', this.onData);
    this.socket.removeAllListeners('error');
    this.socket.removeAllListeners('close');
    this.socket.write('S');
    const secure = new tls.TLSSocket(this.socket, { isServer: true, secureContext: this.ctx.tls! });
    secure.setNoDelay(true);
    this.socket = secure;
    this.tlsDone = true;
    this.startupReader = new StartupPacketReader();
    this.attach(secure);
  }

  private onStartup(minor: number, params: Map<string, string>): void {
    const user = params.get('user');
    if (user === undefined || user === '') {
      this.fail({ severity: 'FATAL', code: '28000', message: 'airlock: no user name was given; connect as your agent name' });
      return;
    }
    this.user = user;
    const unrecognisedOptions: string[] = [];
    for (const [rawName, value] of params) {
      const name = rawName.toLowerCase();
      if (name.startsWith('_pq_.')) {
        unrecognisedOptions.push(rawName);
        continue;
      }
      if (name === 'replication') {
        if (value === 'false' || value === 'off' || value === '0' || value === 'no') continue;
        this.refuseStartup('replication connections are not allowed through Airlock');
        return;
      }
      if (!(ALLOWED_STARTUP_PARAMETERS as readonly string[]).includes(name)) {
        this.refuseStartup(
          `the start-up parameter "${rawName}" is not allowed (Airlock accepts only ${ALLOWED_STARTUP_PARAMETERS.join(', ')})`,
        );
        return;
      }
      this.params.set(name, value);
    }
    if (minor > 0 || unrecognisedOptions.length > 0) {
      this.socket.write(negotiateProtocolVersion(0, unrecognisedOptions));
    }
    this.agent = this.ctx.agents.get(user) ?? null;
    // An unknown agent goes through the same exchange with a fake verifier,
    // so it is told apart from a wrong password by nothing.
    this.scram = new ScramServerExchange(this.agent?.verifier ?? null, user);
    this.authReader = new MessageReader(16_384);
    this.phase = 'auth-first';
    this.socket.write(authenticationSasl(['SCRAM-SHA-256']));
  }

  private refuseStartup(why: string): void {
    this.audit('refused-startup', why);
    this.fail({ severity: 'FATAL', code: '08P01', message: `airlock: ${why}` });
  }

  private onAuthMessage(type: number, body: Buffer): void {
    if (type !== FRONTEND.password) {
      throw new ProtocolViolation(`expected a SASL response, got message type '${String.fromCharCode(type)}'`);
    }
    if (this.phase === 'auth-first') {
      const initial = parseSaslInitialResponse(body);
      const step = this.scram!.start(initial.mechanism, initial.data);
      if (!step.ok) {
        this.authFailed(step.error);
        return;
      }
      this.phase = 'auth-final';
      this.socket.write(authenticationSaslContinue(step.serverFirst));
      return;
    }
    const step = this.scram!.finish(body);
    if (!step.ok || this.agent === null) {
      this.authFailed(step.ok ? 'unknown agent' : step.error);
      return;
    }
    // The password is verified: the login timer stops (the upstream connection has its own timeout),
    // and the session takes a logged-in place of its agent, if one is free.
    clearTimeout(this.authTimer);
    const refusal = this.ticket.login(this.agent.name, this.agent.maxSessions);
    if (refusal !== null) {
      this.audit('refused-startup', refusal.message);
      this.fail(refusal);
      return;
    }
    this.socket.write(authenticationSaslFinal(step.serverFinal));
    this.connect(this.agent).catch((err: unknown) => {
      // connect() handles the upstream's failures itself; this is a fault of Airlock's.
      this.ctx.log(`session ${this.id}: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      this.fail({ severity: 'FATAL', code: 'XX000', message: 'airlock: internal error; the session was ended and the error logged' });
    });
  }

  private authFailed(why: string): void {
    this.audit('auth-failed', why);
    this.fail({ severity: 'FATAL', code: '28P01', message: `password authentication failed for user "${this.user}"` });
  }

  private async connect(agent: AgentCredentials): Promise<void> {
    const database = this.params.get('database') ?? this.user;
    if (database !== agent.database) {
      this.audit('refused-startup', `asked for database "${database}"`);
      this.fail({
        severity: 'FATAL',
        code: '3D000',
        message: `airlock: agent "${agent.name}" may only connect to database "${agent.database}", not "${database}"`,
      });
      return;
    }
    this.phase = 'connecting';
    const params: Record<string, string> = {};
    for (const [name, value] of this.params) {
      if (FORWARDED_STARTUP_PARAMETERS.has(name)) params[name] = value;
    }
    Object.assign(params, this.ctx.upstreamParams);
    let upstream: UpstreamConnection;
    try {
      upstream = await connectUpstream({ ...this.ctx.upstream, user: agent.readRole, password: agent.readRolePassword, params });
    } catch (err) {
      const message = err instanceof UpstreamError ? err.message : String(err);
      this.ctx.log(`session ${this.id}: upstream connection for agent ${agent.name} failed: ${message}`);
      this.audit('connect', `upstream connection failed: ${message}`);
      this.fail({
        severity: 'FATAL',
        code: '08001',
        message: `airlock: could not connect to the database: ${message}`,
        hint: 'Airlock is running; the database behind it is not answering. Try again when it is back, or ask an operator to run `airlock doctor`.',
      });
      return;
    }
    if (this.phase !== 'connecting') {
      upstream.socket.destroy();
      return;
    }
    for (const raw of upstream.parameterStatus) {
      const { name, value } = parseParameterStatus(raw.subarray(5));
      const pinned = this.ctx.pinnedParameters.get(name);
      if (pinned !== undefined && value !== pinned) {
        upstream.socket.destroy();
        this.ctx.log(`SECURITY: read role ${agent.readRole} starts with ${name} = ${value}; refusing the session`);
        this.fail({
          severity: 'FATAL',
          code: '42501',
          message: `airlock: the read path is not safe: the database reports ${name} = ${value} for role "${agent.readRole}"`,
          hint: 'An operator should run `airlock doctor`.',
        });
        return;
      }
    }
    clearTimeout(this.authTimer);
    const secretKey = randomBytes(4);
    const processId = randomBytes(4).readUInt32BE(0) & 0x7fffffff;
    const cancel = (): void => {
      cancelUpstream(this.ctx.upstream, upstream);
      // A write running on the session's write connection is cancelled too;
      // the write path then rolls back whatever it had begun.
      const writing = this.relay?.writeConnection;
      if (writing != null) cancelUpstream(this.ctx.upstream, writing);
      // A statement waiting for a human's approval stops waiting (its request stays pending).
      this.relay?.cancelWait();
    };
    this.unregisterCancel = this.ctx.registerCancelKey(processId, secretKey, cancel);
    this.socket.off('data', this.onData);
    this.socket.removeAllListeners('close');
    this.socket.removeAllListeners('error');
    this.socket.write(
      Buffer.concat([authenticationOk(), ...upstream.parameterStatus, backendKeyData(processId, secretKey), readyForQuery('I')]),
    );
    this.phase = 'relaying';
    this.audit('connect', null);
    this.relay = new Relay(this.socket, upstream.socket, this.ctx, {
      agent: agent.name,
      profile: agent.profile,
      session: this.id,
      client: this.clientAddress,
    }, (reason) => this.close(reason), cancel);
    const leftover = Buffer.concat(this.pendingWhileConnecting);
    this.pendingWhileConnecting = [];
    this.relay.start(leftover);
  }

  private audit(event: 'connect' | 'auth-failed' | 'refused-startup' | 'disconnect', reason: string | null): void {
    try {
      this.ctx.audit.append({
        event,
        agent: this.agent?.name ?? (this.user || null),
        session: this.id,
        client: this.clientAddress,
        reason: reason ?? undefined,
      });
    } catch (err) {
      this.ctx.log(`audit: could not record ${event} of session ${this.id}: ${(err as Error).message}`);
    }
  }

  private fail(fields: ErrorFields): void {
    if (this.phase === 'closed') return;
    this.socket.end(errorResponse(fields));
    // A peer that neither reads nor closes must not keep the socket (it no longer holds a place) forever.
    const socket = this.socket;
    setTimeout(() => socket.destroy(), FAILED_SOCKET_LINGER_MS).unref();
    this.close(fields.message);
  }

  /** Ends a session that has not logged in yet (its place at the door was given to another). */
  refuse(fields: ErrorFields): void {
    if (this.relay === null) this.fail(fields);
  }

  /** Ends the session because Airlock is shutting down. */
  shutdown(): void {
    if (this.relay !== null) {
      this.relay.fatal({ severity: 'FATAL', code: '57P01', message: 'airlock: the gateway is shutting down' });
    } else {
      this.fail({ severity: 'FATAL', code: '57P01', message: 'airlock: the gateway is shutting down' });
    }
  }

  private close(reason: string): void {
    if (this.phase === 'closed') return;
    const wasRelaying = this.phase === 'relaying';
    this.phase = 'closed';
    clearTimeout(this.authTimer);
    this.ticket.release();
    this.unregisterCancel?.();
    if (this.relay !== null) this.relay.end(reason);
    if (wasRelaying) this.audit('disconnect', reason);
    this.onClosed(this);
  }
}

/** Sends a CancelRequest for the upstream session on a new connection, as the protocol asks. */
function cancelUpstream(target: { host: string; port: number }, upstream: { processId: number; secretKey: Buffer }): void {
  const socket = net.connect({ host: target.host, port: target.port });
  // A cancel is best effort by the protocol's own design; a failure to
  // deliver it leaves the query running, which the agent sees.
  socket.on('error', () => socket.destroy());
  socket.on('connect', () => socket.end(encodeCancelRequest(upstream.processId, upstream.secretKey)));
}
