/**
 * The admin API (DESIGN.md, "Trust boundaries"): the one way to change what
 * agents may do while Airlock runs. The CLI is a client of it, never a
 * second way into the state store. Every request carries a named admin
 * token (`Authorization: Bearer <token>`, see src/state/admin-tokens.ts) or
 * the cookie of a dashboard session opened with one (session-routes.ts);
 * agent credentials never count here, since the tokens file is the only
 * thing checked. The name goes with every action to the audit log
 * (`onAction`), so the record says who.
 *
 * The dashboard (dashboard-assets.ts) is served here too, and is a client
 * of these same endpoints: it has no routes of its own that act.
 *
 * JSON in and out; every error is `{ error: "<full sentence>" }`.
 */
import { secondFactorProblem } from './second-factor.js';
import type { SecondFactor } from './second-factor.js';
import { registerApprovalRoutes } from './approval-routes.js';
import type { ApprovalRoutesOptions } from './approval-routes.js';
import { registerSessionRoutes } from './session-routes.js';
import type { DashboardAuth } from './session-routes.js';
import { DashboardSessions } from './dashboard-sessions.js';
import { PUBLIC_ASSET_PATHS, SECURITY_HEADERS, registerDashboardAssets } from './dashboard-assets.js';
import { registerEventStream } from './event-stream.js';
import { registerAuditRoutes } from './audit-routes.js';
import type { AuditAccess } from './audit-routes.js';
import { isIP } from 'node:net';
import Fastify from 'fastify';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { AdminTokens } from '../state/admin-tokens.js';
import type { ChangeEntry, ChangeFilter } from '../state/journal.js';
import { UndoRefused } from '../executor/undo.js';
import type { UndoResult } from '../executor/undo.js';
import type { TrashItem } from '../executor/trash.js';

export type FreezeScope = { kind: 'global' } | { kind: 'agent'; agent: string };

/** What the API needs from the freeze state (src/state/freeze-store.ts has this shape). */
export interface FreezeControl {
  /** Freezes the scope; resolves to the freeze in force. */
  freeze(scope: FreezeScope, reason: string, by: string, until: Date | null): Promise<unknown>;
  /** Lifts the freeze on the scope; resolves to what was lifted, or null if nothing was frozen there. */
  unfreeze(scope: FreezeScope, by: string): Promise<unknown | null>;
  /** Ends the named freeze window early; resolves to it, or null if no such window is in force. */
  endWindowEarly(name: string, by: string): Promise<unknown | null>;
  /** What is frozen now, and why. */
  status(): unknown;
}

/** What to undo: change ids, one transaction's changes, or everything an agent did since a time. */
export interface UndoRequest {
  changes?: string[];
  transaction?: string;
  agent?: string;
  since?: Date;
  dryRun: boolean;
  force: boolean;
}

/** What the API needs from the journal and undo (src/airlock.ts puts them together). */
export interface ChangeControl {
  /** Journalled changes, oldest first. */
  list(filter: ChangeFilter): ChangeEntry[];
  /** For each committed change named, how many of its rows were changed again since (read, not locked). */
  conflicts(ids: readonly string[]): Promise<Map<string, number>>;
  /** Undoes (or with dryRun, plans) the changes asked for, as `by`; throws UndoRefused for a request that cannot be done. */
  undo(request: UndoRequest, by: string): Promise<UndoResult>;
}

/** Which trashed tables to purge: those of named changes, or all trashed before a time. */
export interface PurgeRequest {
  changes?: string[];
  olderThan?: Date;
}

/** What the API needs from the trash (src/airlock.ts puts it together). */
export interface TrashControl {
  /** Every table in the trash, oldest first. */
  list(): Promise<TrashItem[]>;
  /** Drops the tables asked for, for good, as `by`; resolves to what was purged. Throws UndoRefused for a request that cannot be done. */
  purge(request: PurgeRequest, by: string): Promise<TrashItem[]>;
}

export const ADMIN_ACTION_KINDS = ['freeze', 'unfreeze', 'end-window', 'sign-in', 'sign-out'] as const;
export type AdminActionKind = (typeof ADMIN_ACTION_KINDS)[number];

export interface AdminAction {
  kind: AdminActionKind;
  /** The admin token's name. */
  by: string;
  detail: Record<string, unknown>;
}

export interface AdminApiOptions {
  /** Where to listen. Only where configured: the default in the config is 127.0.0.1. */
  host: string;
  /** 0 for any free port. */
  port: number;
  tokens: AdminTokens;
  freezes: FreezeControl;
  /** The known agent names. */
  agents: string[];
  /** The undo journal and undo; without it, /v1/changes and /v1/undo answer 404. */
  changes?: ChangeControl;
  /** The trash; without it, /v1/trash and /v1/trash/purge answer 404. */
  trash?: TrashControl;
  /** Called after each change, with who made it; the gateway records it on the audit log. */
  onAction?: (action: AdminAction) => void;
  /** Requests for approval (approval-routes.ts); without it the approval endpoints are absent. */
  approvals?: Omit<ApprovalRoutesOptions, 'by' | 'secondFactor'>;
  /** With admin.totp_secret: approve and unfreeze also need a current TOTP code (and signing in to the dashboard). */
  secondFactor?: SecondFactor;
  /** With admin.tls: the listener speaks HTTPS (PEM contents) and session cookies are Secure. */
  tls?: { cert: string; key: string } | null;
  /** The dashboard's sessions (a fresh in-memory store by default). */
  sessions?: DashboardSessions;
  /** Dashboard sign-in attempts per address per minute (5 by default). */
  signInsPerMinute?: number;
  /** Told of each refused dashboard sign-in (the gateway records it as auth-failed); never of what was presented. */
  onSignInRefused?: (client: string, why: string) => void;
  /** The audit log, to search, verify and follow (GET /v1/audit, /v1/audit/verify, /v1/events); without it those answer 404. */
  audit?: AuditAccess;
  /** Each agent: profile, rules that apply, budgets used, tripwire, freeze (GET /v1/agents). */
  agentDetails?: () => unknown[];
  /** The configured freeze windows, as written (GET /v1/freeze-windows). */
  freezeWindows?: () => unknown[];
  log?: (line: string) => void;
}

export interface AdminApi {
  address: { host: string; port: number };
  /** 'https' under admin.tls. */
  scheme: 'http' | 'https';
  close(): Promise<void>;
}

interface FreezeBody {
  agent?: string;
  reason: string;
  until?: string;
}

interface UnfreezeBody {
  agent?: string;
  window?: string;
}

const agentName = { type: 'string', minLength: 1, maxLength: 128 } as const;

const freezeBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['reason'],
  properties: {
    agent: agentName,
    // \S: a reason of spaces is no reason.
    reason: { type: 'string', minLength: 1, maxLength: 2000, pattern: '\\S' },
    until: { type: 'string', minLength: 1, maxLength: 64 },
  },
} as const;

interface UndoBody {
  changes?: string[];
  transaction?: string;
  agent?: string;
  since?: string;
  dryRun?: boolean;
  force?: boolean;
}

const undoBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    changes: { type: 'array', maxItems: 1000, items: { type: 'string', minLength: 1, maxLength: 64 } },
    transaction: { type: 'string', minLength: 1, maxLength: 32, pattern: '^[0-9]+$' },
    agent: agentName,
    since: { type: 'string', minLength: 1, maxLength: 64 },
    dryRun: { type: 'boolean' },
    force: { type: 'boolean' },
  },
} as const;

interface PurgeBody {
  changes?: string[];
  olderThan?: string;
}

const purgeBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    changes: { type: 'array', minItems: 1, maxItems: 1000, items: { type: 'string', minLength: 1, maxLength: 64 } },
    olderThan: { type: 'string', minLength: 1, maxLength: 64 },
  },
} as const;

const unfreezeBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    agent: agentName,
    window: { type: 'string', minLength: 1, maxLength: 128 },
  },
} as const;

/** What each endpoint takes, for error messages. */
const BODY_SHAPES: Record<string, string> = {
  '/v1/freeze': '{ "agent"?: string, "reason": string, "until"?: ISO time }',
  '/v1/unfreeze': '{ "agent"?: string } or { "window": string }',
  '/v1/undo': '{ "changes": [id, …] } or { "transaction": txid } or { "agent": name, "since": ISO time }, with "dryRun"?: boolean, "force"?: boolean',
  '/v1/trash/purge': '{ "changes": [id, …] } (the changes whose trashed tables to drop) or { "olderThan": age such as "7d", or ISO time }',
};

/**
 * An ISO 8601 time with its offset: a time without one would be read in the
 * server's zone, which need not be the admin's.
 */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i;

/** Parses `until`: a Date in the future, or a sentence saying what is wrong. */
export function parseUntil(text: string, now = new Date()): Date | string {
  const date = new Date(text);
  if (!ISO_TIME.test(text) || Number.isNaN(date.getTime()) || !sameCalendarDay(text, date)) {
    return `"until" must be an ISO 8601 time with a zone, such as 2030-01-31T18:00:00Z; "${text}" is not one.`;
  }
  if (date.getTime() <= now.getTime()) {
    return `"until" (${date.toISOString()}) is in the past, so the freeze would end before it began. Give a later time, or leave "until" out to freeze until lifted.`;
  }
  return date;
}

/** JavaScript rolls 2030-02-30 over to March 2 rather than refusing it: check the date read is the date written. */
function sameCalendarDay(text: string, date: Date): boolean {
  const offset = /(Z|([+-])(\d{2}):(\d{2}))$/i.exec(text);
  const minutes = !offset || offset[1]!.toUpperCase() === 'Z' ? 0 : (offset[2] === '-' ? -1 : 1) * (Number(offset[3]) * 60 + Number(offset[4]));
  const local = new Date(date.getTime() + minutes * 60_000).toISOString().slice(0, 10);
  return local === text.slice(0, 10);
}

function describeScope(scope: FreezeScope): string {
  return scope.kind === 'global' ? 'all agents' : `agent "${scope.agent}"`;
}

/** Turns schema errors into one sentence naming the field. */
function describeValidation(error: FastifyError, path: string): string {
  const first = error.validation?.[0];
  const params = (first?.params ?? {}) as Record<string, unknown>;
  const field = first?.instancePath ? `"${first.instancePath.replace(/^\//, '').replace(/\//g, '.')}"` : 'The body';
  let what: string;
  switch (first?.keyword) {
    case 'required':
      what = `"${String(params.missingProperty)}" is required`;
      break;
    case 'additionalProperties':
      what = `"${String(params.additionalProperty)}" is not a field this endpoint takes`;
      break;
    case 'type':
      what = `${field} must be ${params.type === 'object' ? 'a JSON object' : `a ${String(params.type)}`}`;
      break;
    case 'minLength':
    case 'pattern':
      what = `${field} must not be empty`;
      break;
    case 'maxLength':
      what = `${field} is longer than ${String(params.limit)} characters`;
      break;
    default:
      what = `${field} ${first?.message ?? 'is not valid'}`;
  }
  const shape = BODY_SHAPES[path];
  return `The request body was refused: ${what}.${shape ? ` ${path} takes ${shape}.` : ''}`;
}

function sentence(text: string): string {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** The path without its query string: a query could hold anything, a pasted token included, and this goes to the log. */
function pathOf(request: FastifyRequest): string {
  return (request.url.split('?')[0] ?? '').slice(0, 200);
}

/** Starts the admin API; resolves once it listens. */
export async function startAdminApi(o: AdminApiOptions): Promise<AdminApi> {
  const log = o.log ?? ((line: string) => console.error(line));
  const known = new Set(o.agents);
  /** Who each request is: set by the auth hook, read by the handlers. A WeakMap, not a request decoration, keeps this out of fastify's global types. */
  const adminOf = new WeakMap<FastifyRequest, string>();

  const app = Fastify({
    logger: false,
    ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}),
    // Open event streams must not hold close() up.
    forceCloseConnections: true,
    bodyLimit: 16 * 1024,
    // Fastify's defaults drop unknown fields and coerce types. Refuse both:
    // a mistyped `agnet` must not quietly become a freeze of every agent.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });

  // JSON only: fastify also reads text/plain by default.
  app.removeContentTypeParser('text/plain');

  const refuse = (request: FastifyRequest, reply: FastifyReply, why: string) => {
    log(`admin API: refused ${request.method} ${pathOf(request)} from ${request.ip}: ${why}`);
    return reply
      .code(401)
      .header('www-authenticate', 'Bearer realm="airlock-admin"')
      .send({ error: 'This request needs a valid admin token, sent as "Authorization: Bearer <token>", or a signed-in dashboard session. Create a token as Airlock\'s OS user with `airlock admin token create --name <you>`.' });
  };

  /** Requests let in by a dashboard session cookie rather than a bearer token: they need the CSRF token to change anything. */
  const viaSession = new WeakSet<FastifyRequest>();
  // First: the cookie plugin's hook must have parsed the cookies before the auth hook below reads them.
  const dashboard: DashboardAuth = await registerSessionRoutes(
    app,
    {
      tokens: o.tokens,
      sessions: o.sessions ?? new DashboardSessions(),
      secure: Boolean(o.tls),
      secondFactor: o.secondFactor,
      signInsPerMinute: o.signInsPerMinute,
      record: (kind, name, detail) => record({ kind, by: name, detail }),
      onSignInRefused: o.onSignInRefused,
      log,
    },
    (request) => by(request),
  );

  // Before anything else (routing, body parsing): nothing answers without a valid admin token, not even "no such endpoint".
  // The exceptions are the dashboard's page and assets (which hold no data) and signing in.
  app.addHook('onRequest', async (request, reply) => {
    void reply.headers(SECURITY_HEADERS);
    const path = pathOf(request);
    if ((request.method === 'GET' || request.method === 'HEAD') && PUBLIC_ASSET_PATHS.has(path)) return;
    if (request.method === 'POST' && path === '/v1/session') return;
    void reply.header('cache-control', 'no-store');
    const header = request.headers.authorization;
    if (header === undefined) {
      const session = await dashboard.sessionOf(request);
      if (session === null) {
        return refuse(request, reply, request.headers.cookie === undefined ? 'no Authorization header.' : 'no Authorization header, and no live dashboard session.');
      }
      adminOf.set(request, session.admin);
      viaSession.add(request);
      return;
    }
    const match = /^Bearer +(\S+) *$/i.exec(header);
    if (!match) return refuse(request, reply, 'the Authorization header is not a Bearer token.');
    const name = await o.tokens.verify(match[1]!);
    if (name === null) return refuse(request, reply, 'the bearer token is not a valid admin token.');
    adminOf.set(request, name);
  });

  // A browser sends the session cookie on its own; the CSRF token shows the dashboard's own script sent the request.
  app.addHook('onRequest', (request, reply, done) => {
    if (!viaSession.has(request)) return done();
    dashboard.checkCsrf(request, reply, done);
  });

  const by = (request: FastifyRequest): string => {
    const name = adminOf.get(request);
    // The onRequest hook answers 401 before any handler runs without a name; reaching here without one is a bug, so fail closed.
    if (name === undefined) throw new Error('The request reached a handler without an admin name.');
    return name;
  };

  const record = (action: AdminAction): void => {
    log(`admin API: ${action.by} did ${action.kind} ${JSON.stringify(action.detail)}`);
    try {
      o.onAction?.(action);
    } catch (err) {
      // The change is made and cannot be taken back here; say loudly that its record is missing.
      log(`admin API: the ${action.kind} by ${action.by} took effect but could not be recorded: ${(err as Error).message}`);
    }
  };

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({
      error: `The admin API has no ${request.method} ${pathOf(request)}. It has GET /v1/status, POST /v1/freeze, POST /v1/unfreeze, GET /v1/freeze-windows, GET /v1/approvals, GET /v1/approvals/ID, POST /v1/approvals/ID/approve, POST /v1/approvals/ID/deny, GET /v1/changes, POST /v1/undo, GET /v1/agents, GET /v1/audit, GET /v1/audit/verify, GET /v1/events, GET /v1/trash, POST /v1/trash/purge and POST/GET/DELETE /v1/session; the dashboard is at /.`,
    });
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const path = pathOf(request);
    if (error.validation) return reply.code(400).send({ error: describeValidation(error, path) });
    const messages: Record<string, [number, string]> = {
      FST_ERR_CTP_INVALID_JSON_BODY: [400, 'The request body is not valid JSON.'],
      FST_ERR_CTP_EMPTY_JSON_BODY: [400, `The request body is empty; ${path} takes a JSON object${BODY_SHAPES[path] ? `: ${BODY_SHAPES[path]}` : ''}.`],
      FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'The request body must be JSON, sent with "Content-Type: application/json".'],
      FST_ERR_CTP_BODY_TOO_LARGE: [413, 'The request body is larger than the admin API takes (16 KiB).'],
      FST_CSRF_MISSING_SECRET: [403, `This request came with a dashboard session but without its CSRF token (the ${'X-CSRF-Token'} header), so it was refused; nothing was changed. Reload the dashboard.`],
      FST_CSRF_INVALID_TOKEN: [403, 'This request came with a dashboard session but without its CSRF token (the X-CSRF-Token header), or with one of another session, so it was refused; nothing was changed. Reload the dashboard.'],
    };
    const known = error.code ? messages[error.code] : undefined;
    if (known) return reply.code(known[0]).send({ error: known[1] });
    const status = error.statusCode ?? 500;
    // The rate limiter's own sentence (session-routes.ts).
    if (status === 429) return reply.code(429).send({ error: error.message });
    if (status < 500) return reply.code(status).send({ error: sentence(`The request was refused: ${error.message}`) });
    log(`admin API: ${request.method} ${path} failed: ${error.stack ?? error.message}`);
    // The caller has shown an admin token, so the reason may be told.
    return reply.code(500).send({ error: sentence(`Airlock could not carry out ${request.method} ${path}: ${error.message}`) });
  });

  app.get('/v1/status', async () => o.freezes.status());
  app.get('/v1/freeze-windows', async () => ({ windows: o.freezeWindows?.() ?? [] }));
  app.get('/v1/agents', async () => ({ agents: o.agentDetails?.() ?? o.agents.map((name) => ({ name })) }));

  await registerDashboardAssets(app, log);
  if (o.audit !== undefined) {
    registerAuditRoutes(app, o.audit);
    registerEventStream(app, {
      audit: o.audit,
      stillSignedIn: async (request) => (viaSession.has(request) ? (await dashboard.sessionOf(request)) !== null : true),
      log,
    });
  }

  app.post<{ Body: FreezeBody }>('/v1/freeze', { schema: { body: freezeBodySchema } }, async (request, reply) => {
    const { agent, reason, until } = request.body;
    if (agent !== undefined && !known.has(agent)) {
      return reply.code(404).send({ error: `There is no agent named "${agent}", so it cannot be frozen. The agents are: ${[...known].join(', ') || '(none configured)'}.` });
    }
    let untilDate: Date | null = null;
    if (until !== undefined) {
      const parsed = parseUntil(until);
      if (typeof parsed === 'string') return reply.code(400).send({ error: parsed });
      untilDate = parsed;
    }
    const scope: FreezeScope = agent === undefined ? { kind: 'global' } : { kind: 'agent', agent };
    const name = by(request);
    const freeze = await o.freezes.freeze(scope, reason, name, untilDate);
    record({ kind: 'freeze', by: name, detail: { scope, reason, until: untilDate?.toISOString() ?? null } });
    const message = `${scope.kind === 'global' ? 'All agents are' : `Agent "${scope.agent}" is`} frozen ${untilDate ? `until ${untilDate.toISOString()}` : 'until lifted'}.`;
    return reply.code(201).send({ freeze, message });
  });

  app.post<{ Body: UnfreezeBody }>('/v1/unfreeze', { schema: { body: unfreezeBodySchema } }, async (request, reply) => {
    const { agent, window } = request.body;
    const name = by(request);
    const missing = secondFactorProblem(o.secondFactor, request);
    if (missing !== null) return reply.code(401).send({ error: missing });
    if (window !== undefined) {
      if (agent !== undefined) {
        return reply.code(400).send({ error: 'Give "agent" or "window", not both: a window is ended for every agent it covers.' });
      }
      const lifted = await o.freezes.endWindowEarly(window, name);
      if (lifted === null) return { lifted: null, message: `No freeze window named "${window}" is in force, so there was nothing to end.` };
      record({ kind: 'end-window', by: name, detail: { window } });
      return { lifted, message: `The freeze window "${window}" was ended early.` };
    }
    // An unknown agent is not refused here: a freeze may outlive the agent's entry in the config.
    const scope: FreezeScope = agent === undefined ? { kind: 'global' } : { kind: 'agent', agent };
    const lifted = await o.freezes.unfreeze(scope, name);
    if (lifted === null) {
      const unknown = agent !== undefined && !known.has(agent) ? ` (no agent named "${agent}" is configured)` : '';
      return { lifted: null, message: `Nothing was frozen for ${describeScope(scope)}${unknown}, so nothing was lifted.` };
    }
    record({ kind: 'unfreeze', by: name, detail: { scope } });
    return { lifted, message: `The freeze on ${describeScope(scope)} was lifted.` };
  });

  if (o.approvals !== undefined) registerApprovalRoutes(app, { ...o.approvals, by, secondFactor: o.secondFactor });
  const control = o.changes;
  if (control !== undefined) {
    app.get<{ Querystring: Record<string, string | undefined> }>('/v1/changes', async (request, reply) => {
      const q = request.query;
      const filter: ChangeFilter = {};
      if (q.agent !== undefined) filter.agent = q.agent;
      if (q.table !== undefined) filter.table = q.table;
      if (q.transaction !== undefined) filter.txid = q.transaction;
      if (q.all === 'true') filter.all = true;
      if (q.since !== undefined) {
        const since = parseTime(q.since);
        if (since === null) return reply.code(400).send({ error: `"since" must be an ISO 8601 time with a zone, such as 2030-01-31T18:00:00Z; "${q.since}" is not one.` });
        filter.since = since;
      }
      const changes: (ChangeEntry & { conflicts?: number })[] = control.list(filter);
      if (q.check === 'true') {
        // The newest committed changes, up to CHECKED_CHANGES: each check reads its rows from the database.
        const committed = changes.filter((e) => e.state === 'committed').slice(-CHECKED_CHANGES);
        const counts = await control.conflicts(committed.map((e) => e.id));
        for (const e of changes) if (counts.has(e.id)) e.conflicts = counts.get(e.id)!;
      }
      return { changes };
    });

    app.post<{ Body: UndoBody }>('/v1/undo', { schema: { body: undoBodySchema } }, async (request, reply) => {
      const b = request.body;
      const ways = [b.changes !== undefined, b.transaction !== undefined, b.agent !== undefined].filter(Boolean).length;
      if (ways !== 1) {
        return reply.code(400).send({ error: `Name what to undo one way: ${BODY_SHAPES['/v1/undo']}.` });
      }
      if (b.agent !== undefined && b.since === undefined) {
        return reply.code(400).send({ error: 'Undoing an agent\'s changes needs "since" (an ISO 8601 time): everything the agent did from then on is undone.' });
      }
      let since: Date | undefined;
      if (b.since !== undefined) {
        const parsed = parseTime(b.since);
        if (parsed === null) return reply.code(400).send({ error: `"since" must be an ISO 8601 time with a zone, such as 2030-01-31T18:00:00Z; "${b.since}" is not one.` });
        since = parsed;
      }
      const name = by(request);
      try {
        const result = await control.undo(
          { changes: b.changes, transaction: b.transaction, agent: b.agent, since, dryRun: b.dryRun === true, force: b.force === true },
          name,
        );
        if (result.applied) log(`admin API: ${name} undid ${result.changes.join(', ')} (undo change ${result.undoChangeId ?? '?'})`);
        if (!result.applied && b.dryRun !== true) {
          return reply.code(409).send({
            ...result,
            error: `Undo stopped: ${result.conflicts.length} row(s) were changed again after the change${result.changes.length === 1 ? '' : 's'} being undone; nothing was changed. Look at the conflicts, then undo with force to overwrite them.`,
          });
        }
        return result;
      } catch (err) {
        if (err instanceof UndoRefused) return reply.code(err.message.startsWith('The journal has no change') ? 404 : 409).send({ error: err.message });
        throw err;
      }
    });
  }

  const trash = o.trash;
  if (trash !== undefined) {
    app.get('/v1/trash', async () => ({ trash: await trash.list() }));

    app.post<{ Body: PurgeBody }>('/v1/trash/purge', { schema: { body: purgeBodySchema } }, async (request, reply) => {
      const b = request.body;
      if ((b.changes === undefined) === (b.olderThan === undefined)) {
        return reply.code(400).send({ error: `Name what to purge one way: ${BODY_SHAPES['/v1/trash/purge']}.` });
      }
      let olderThan: Date | undefined;
      if (b.olderThan !== undefined) {
        const parsed = parseAge(b.olderThan);
        if (parsed === null) {
          return reply.code(400).send({ error: `"olderThan" must be an age (30m, 12h, 7d) or an ISO 8601 time with a zone, such as 2030-01-31T18:00:00Z; "${b.olderThan}" is neither.` });
        }
        olderThan = parsed;
      }
      const name = by(request);
      const missing = secondFactorProblem(o.secondFactor, request);
      if (missing !== null) return reply.code(401).send({ error: missing });
      try {
        const purged = await trash.purge({ changes: b.changes, olderThan }, name);
        if (purged.length > 0) log(`admin API: ${name} purged ${purged.map((t) => t.table).join(', ')} from the trash`);
        const message =
          purged.length === 0
            ? 'Nothing in the trash matched, so nothing was purged.'
            : `${purged.length} table(s) were dropped from the trash for good; the changes that dropped them can no longer be undone.`;
        return { purged, message };
      } catch (err) {
        if (err instanceof UndoRefused) return reply.code(err.message.startsWith('The journal has no change') ? 404 : 409).send({ error: err.message });
        throw err;
      }
    });
  }

  if (!isLoopback(o.host) && !o.tls) {
    log(
      `admin API: listening on ${o.host}, beyond this machine, over plain HTTP: admin tokens and dashboard sessions cross the network readable. Set admin.tls, or keep it on 127.0.0.1 and reach it through SSH.`,
    );
  }
  await app.listen({ host: o.host, port: o.port });
  const bound = app.server.address();
  if (bound === null || typeof bound === 'string') throw new Error(`The admin API did not get a TCP address (got ${String(bound)}).`);
  log(`admin API: listening on ${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`);
  return {
    address: { host: bound.address, port: bound.port },
    scheme: o.tls ? 'https' : 'http',
    close: () => app.close(),
  };
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** An age back from now (30m, 12h, 7d) or an ISO 8601 time with its zone, or null. */
export function parseAge(text: string, now = new Date()): Date | null {
  const rel = /^(\d+)\s*(m|h|d)$/.exec(text.trim());
  if (rel !== null) return new Date(now.getTime() - Number(rel[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'm' | 'h' | 'd']);
  return parseTime(text);
}

/** Most changes GET /v1/changes?check=true checks for conflicts (the newest committed ones). */
const CHECKED_CHANGES = 200;

/** An ISO 8601 time with its zone, or null. */
function parseTime(text: string): Date | null {
  const date = new Date(text);
  return ISO_TIME.test(text) && !Number.isNaN(date.getTime()) ? date : null;
}
