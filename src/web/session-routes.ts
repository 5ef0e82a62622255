/**
 * Signing in to the dashboard: an admin token (and the TOTP code, with
 * `admin.totp_secret`) buys a session cookie, so that the browser never
 * keeps the token. The cookie is HttpOnly and SameSite=Strict, Secure when
 * the admin listener has TLS; every state-changing request made with it must
 * carry the CSRF token (X-CSRF-Token) the session endpoints hand out, bound
 * to the session; sign-in is rate-limited per address. Only admin tokens
 * open a session: agent credentials are never looked at here.
 *
 * The cookie, CSRF and rate-limit work is done by the fastify plugins
 * (@fastify/cookie, @fastify/csrf-protection, @fastify/rate-limit); this
 * module decides how they are set.
 *
 * POST /v1/session signs in, GET /v1/session says who is signed in (with a
 * fresh CSRF token), DELETE /v1/session signs out.
 */
import { randomBytes } from 'node:crypto';
import cookie from '@fastify/cookie';
import csrf from '@fastify/csrf-protection';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AdminTokens } from '../state/admin-tokens.js';
import { tokenDigest } from './dashboard-sessions.js';
import type { DashboardSessions } from './dashboard-sessions.js';
import type { DashboardSession } from './dashboard-sessions.js';
import type { SecondFactor } from './second-factor.js';

/** The session cookie's name. */
export const SESSION_COOKIE = 'airlock_session';
/** The cookie that holds the CSRF secret (@fastify/csrf-protection); the token itself travels in X-CSRF-Token. */
export const CSRF_COOKIE = 'airlock_csrf';
/** The header a cookie-authenticated POST, PUT, PATCH or DELETE must carry. */
export const CSRF_HEADER = 'x-csrf-token';
/** Sign-in attempts per address per minute, right or wrong. */
export const SIGN_INS_PER_MINUTE = 5;

/** Methods that change nothing: the only ones a cookie may make without the CSRF token. */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface SessionRoutesOptions {
  tokens: AdminTokens;
  sessions: DashboardSessions;
  /** With admin.tls: cookies are Secure. */
  secure: boolean;
  secondFactor?: SecondFactor;
  /** Sign-in attempts per address per minute (SIGN_INS_PER_MINUTE by default). */
  signInsPerMinute?: number;
  /** Put a sign-in or sign-out on the record. */
  record: (kind: 'sign-in' | 'sign-out', by: string, detail: Record<string, unknown>) => void;
  /** Put a refused sign-in on the record: from where, and why (never what was presented). */
  onSignInRefused?: (client: string, why: string) => void;
  log: (line: string) => void;
}

export interface DashboardAuth {
  /** The live session the request's cookie names, its token still valid; null otherwise (a session whose token was revoked is ended). */
  sessionOf(request: FastifyRequest): Promise<DashboardSession | null>;
  /** For a request made with the session cookie: refuses (403) a state-changing one without the session's CSRF token. A fastify onRequest hook. */
  checkCsrf(request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void;
}

const signInBody = {
  type: 'object',
  additionalProperties: false,
  required: ['token'],
  properties: {
    token: { type: 'string', minLength: 1, maxLength: 200 },
    totp: { type: 'string', maxLength: 16 },
  },
} as const;

/** Registers the plugins and the /v1/session routes; `by` names the admin of a request the auth hook let in. */
export async function registerSessionRoutes(app: FastifyInstance, o: SessionRoutesOptions, by: (request: FastifyRequest) => string): Promise<DashboardAuth> {
  const cookieOptions = { path: '/', httpOnly: true, sameSite: 'strict', secure: o.secure } as const;
  await app.register(cookie);
  await app.register(csrf, {
    cookieKey: CSRF_COOKIE,
    cookieOpts: cookieOptions,
    // The token is bound to the session (an HMAC over its id), so a token from one session is no good in another.
    getUserInfo: (request: FastifyRequest) => request.cookies[SESSION_COOKIE] ?? '',
    getToken: (request: FastifyRequest) => {
      const header = request.headers[CSRF_HEADER];
      return typeof header === 'string' ? header : '';
    },
    // A key for this process: tokens die with it, as the sessions do.
    csrfOpts: { hmacKey: randomBytes(32) },
  });
  await app.register(rateLimit, { global: false });

  const sessionOf = async (request: FastifyRequest): Promise<DashboardSession | null> => {
    const id = request.cookies[SESSION_COOKIE];
    const session = o.sessions.use(id);
    if (session === null) return null;
    // Revoked (or the tokens file unreadable): the session ends with the token.
    const name = await o.tokens.verifyDigest(session.tokenDigest);
    if (name !== session.admin) {
      o.sessions.end(session.id);
      return null;
    }
    return session;
  };

  const perMinute = o.signInsPerMinute ?? SIGN_INS_PER_MINUTE;
  app.post<{ Body: { token: string; totp?: string } }>(
    '/v1/session',
    {
      schema: { body: signInBody },
      config: {
        rateLimit: {
          max: perMinute,
          timeWindow: 60_000,
          errorResponseBuilder: (_request: FastifyRequest, context: { after: string }) =>
            Object.assign(new Error(`Too many sign-in attempts from this address (at most ${perMinute} a minute). Nothing was checked; try again in ${context.after}.`), {
              statusCode: 429,
            }),
        },
      },
    },
    async (request, reply) => {
      const digest = tokenDigest(request.body.token);
      const name = await o.tokens.verifyDigest(digest);
      if (name === null) {
        // Never the token itself: only that one was refused, and from where.
        o.log(`dashboard: refused a sign-in from ${request.ip}: not a valid admin token.`);
        o.onSignInRefused?.(request.ip, 'dashboard sign-in: not a valid admin token');
        return reply.code(401).send({ error: 'That is not a valid admin token, so nobody was signed in. Create one as Airlock\'s OS user with `airlock admin token create --name <you>`.' });
      }
      if (o.secondFactor !== undefined) {
        const problem = o.secondFactor.check(request.body.totp?.trim());
        if (problem !== null) {
          o.log(`dashboard: refused a sign-in as ${name} from ${request.ip}: the TOTP code was missing or wrong.`);
          o.onSignInRefused?.(request.ip, `dashboard sign-in as ${name}: the TOTP code was missing or wrong`);
          return reply.code(401).send({ error: problem.replace('Nothing was changed.', 'Nobody was signed in.') });
        }
      }
      const session = o.sessions.open(name, digest);
      void reply.setCookie(SESSION_COOKIE, session.id, { ...cookieOptions, maxAge: o.sessions.cookieMaxAgeSeconds });
      // The new session's id is not in this request's cookies yet: bind the token to it by name.
      const csrfToken = reply.generateCsrf({ userInfo: session.id });
      o.record('sign-in', name, { client: request.ip });
      return reply.code(201).send({ admin: name, csrf: csrfToken, secondFactor: o.secondFactor !== undefined, message: `Signed in as ${name}.` });
    },
  );

  app.get('/v1/session', async (request, reply) => {
    const session = await sessionOf(request);
    if (session === null) return { admin: by(request), via: 'bearer', secondFactor: o.secondFactor !== undefined };
    return { admin: session.admin, via: 'session', csrf: reply.generateCsrf({ userInfo: session.id }), secondFactor: o.secondFactor !== undefined };
  });

  app.delete('/v1/session', async (request, reply) => {
    const id = request.cookies[SESSION_COOKIE];
    const name = by(request);
    if (!o.sessions.end(id)) return reply.code(400).send({ error: 'This request was not made with a dashboard session, so there is nothing to sign out of. A bearer token is revoked with `airlock admin token revoke`.' });
    void reply.clearCookie(SESSION_COOKIE, cookieOptions).clearCookie(CSRF_COOKIE, cookieOptions);
    o.record('sign-out', name, {});
    return { message: `${name} is signed out.` };
  });

  return {
    sessionOf,
    checkCsrf(request, reply, done) {
      if (SAFE_METHODS.has(request.method)) return done();
      app.csrfProtection(request, reply, done);
    },
  };
}
