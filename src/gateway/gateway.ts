/**
 * The gateway: listens for agents on the PostgreSQL wire protocol and runs a
 * session for each, in front of the upstream database.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import pg from 'pg';
import { createScramVerifier } from '../protocol/auth/scram-verifier.js';
import { parseParameterStatus } from '../protocol/backend.js';
import { loadParser } from '../sql/classify.js';
import { ClassifierPool, heapLimitMbFor } from '../sql/classifier-pool.js';
import type { AirlockConfig } from '../config/load.js';
import type { AuditLog } from '../state/audit-log.js';
import type { AgentCredentials } from './agent-credentials.js';
import { Admission } from './admission.js';
import { MemoryBudget } from './memory-budget.js';
import { IdleCollector } from './idle-collector.js';
import type { ApprovalRequest, ApprovalStore } from '../state/approval-store.js';

/** How often a statement waiting for approval is reminded, with a notice, of what it waits for. */
const APPROVAL_NOTICE_EVERY_MS = 10_000;
import { ClientSession } from './client-session.js';
import { prepareReadRole } from './read-roles.js';
import { readRolePassword, readRoleSecret, writeRolePassword } from './read-role-password.js';
import { checkWriteRole, prepareWriteRole, syncWriteGrants, writeGrantsFingerprint } from './write-roles.js';
import { StatementCache } from './statement-cache.js';
import { TripwireAlarm } from './tripwire-alarm.js';
import { loadSchemaKnowledge } from './schema-loader.js';
import { openProbeChannel, overloadResolverFor } from './overload-resolver.js';
import { planRead } from './read-plan.js';
import type { ReadEstimate } from './read-plan.js';
import type { ParseMessage } from '../protocol/frontend.js';
import type { OverloadResolver } from './overload-resolver.js';
import type { SchemaKnowledge } from '../policy/schema-knowledge.js';
import { compileTablePattern } from '../policy/table-pattern.js';
import { Tripwire } from '../policy/tripwire.js';
import { WriteBudget } from '../policy/limits.js';
import { compileAgentPolicy, unmatchedRulePatterns } from '../policy/rules.js';
import type { AgentPolicy } from '../policy/rules.js';
import { WriteConnection } from '../executor/write-connection.js';
import { connectUpstream } from './upstream.js';
import type { UpstreamLogin } from './upstream.js';
import type { Denial } from '../policy/decision.js';
import type { RelayIdentity } from './relay.js';
import { FreezeStore } from '../state/freeze-store.js';
import type { Journal } from '../state/journal.js';
import { FileJournal } from '../state/file-journal.js';
import { installCapture } from '../executor/capture.js';
import type { CaptureState } from '../executor/capture.js';

export interface Gateway {
  /** Where the gateway listens (the real port when the config said 0). */
  address: { host: string; port: number };
  /** The freeze state (also changed through the admin API). */
  freezes: FreezeStore;
  /** Warnings found at start-up, in plain words. */
  warnings: string[];
  /** Where undo capture is in place, as last installed or checked. */
  readonly capture: CaptureState[];
  /** The undo journal. */
  journal: Journal;
  /** Number of open client sessions. */
  readonly sessions: number;
  /** What the agent spent of its write budgets, and its destructive refusals the tripwire counts now (read-only). */
  usage(agent: string): AgentUsage;
  /** Stops listening, ends every session. */
  close(): Promise<void>;
}

/** An agent's budgets used and tripwire count, as the dashboard shows them. */
export interface AgentUsage {
  writesLastMinute: number;
  rowsLastHour: number;
  /** Destructive refusals within tripwire.window_seconds; the tripwire trips at tripwire.refusals. */
  tripwireRefusals: number;
}

export interface GatewayOptions {
  config: AirlockConfig;
  audit: AuditLog;
  log?: (line: string) => void;
  /** The clock freezes and freeze windows are judged by (tests move it). */
  now?: () => Date;
  /** How often the upstream's schema is read again, in milliseconds (tests shorten it); SCHEMA_REFRESH_MS by default. */
  schemaRefreshMs?: number;
  /** Where requests for a human's approval are kept; without it, what needs approval is refused. */
  approvals?: ApprovalStore;
  /** Told of each new request for approval (the admin side's notification). */
  onApprovalRequest?: (request: ApprovalRequest) => void;
  /** The undo journal (src/state/journal.ts); by default the file journal in the state directory, opened and closed by the gateway. */
  journal?: Journal;
}

/**
 * Settings the upstream reports with ParameterStatus and the values the read
 * path requires. If one changes mid-session (a user function that calls
 * set_config, say), the session ends: the parser and the server would no
 * longer read the same bytes the same way, or the read-only wall is down.
 */
const PINNED_PARAMETERS = new Map([
  ['client_encoding', 'UTF8'],
  ['standard_conforming_strings', 'on'],
  ['default_transaction_read_only', 'on'],
  ['is_superuser', 'off'],
]);

/** How often the freeze state is re-read for changes made by other instances. */
const FREEZE_RELOAD_MS = 1000;

/** How often the upstream's functions and views are read again. */
const SCHEMA_REFRESH_MS = 30_000;

/**
 * Settings the write connection reports and must keep: what is judged is what
 * runs, and the write role is no superuser (else its grants are no wall).
 */
const WRITE_PINNED_PARAMETERS = new Map([
  ['client_encoding', 'UTF8'],
  ['standard_conforming_strings', 'on'],
  ['is_superuser', 'off'],
]);

/** Forced on every upstream session of the read path, in its StartupMessage. */
const UPSTREAM_PARAMS = {
  client_encoding: 'UTF8',
  standard_conforming_strings: 'on',
  default_transaction_read_only: 'on',
  // Unqualified names resolve as the policy reads them (in public), whatever
  // the database's or the role's default: a rule about app.secrets cannot be
  // dodged by writing `secrets` where the default search_path finds app first.
  search_path: 'public',
};

/** Connects as Airlock's service account (for administration, never for agents' reads). */
export function serviceClient(config: AirlockConfig): pg.Client {
  const u = config.upstream;
  return new pg.Client({
    host: u.host,
    port: u.port,
    user: u.user,
    password: u.password ?? undefined,
    database: u.database,
    connectionTimeoutMillis: config.limits.connectTimeoutMs,
    // libpq's sslmode, as node-postgres spells it: require encrypts without
    // checking; verify-ca checks the chain against sslrootcert; verify-full
    // also checks the host name. (prefer is tried as plain here; the relay's
    // own connections do try TLS first.)
    ssl:
      u.sslmode === 'disable' || u.sslmode === 'prefer'
        ? false
        : {
            rejectUnauthorized: u.sslmode !== 'require',
            ca: u.sslrootcert !== null ? readFileSync(u.sslrootcert, 'utf8') : undefined,
            checkServerIdentity: u.sslmode === 'verify-full' ? tls.checkServerIdentity : () => undefined,
          },
    application_name: 'airlock',
  });
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  if (options.journal !== undefined) return startWithJournal(options, options.journal, false);
  const journal = await FileJournal.open(options.config.stateDir);
  try {
    return await startWithJournal(options, journal, true);
  } catch (err) {
    await journal.close();
    throw err;
  }
}

async function startWithJournal(options: GatewayOptions, journal: Journal, ownJournal: boolean): Promise<Gateway> {
  const { config, audit } = options;
  const log = options.log ?? ((line: string) => console.error(line));
  await loadParser();

  const warnings: string[] = [];
  const agents = new Map<string, AgentCredentials>();
  const canaryTables = config.canaryTables.map((p) => compileTablePattern(p));
  const policies = new Map<string, AgentPolicy>();
  for (const agent of config.agents) policies.set(agent.name, compileAgentPolicy(agent, config.rules));
  // Agents whose policy may write, and the role (with its derived password) their writes run as.
  const writeRoles = new Map<string, { role: string; password: string }>();
  /** writeGrantsFingerprint when the write roles' grants were last brought up to date. */
  let grantsFingerprint = '';
  const service = serviceClient(config);
  try {
    await service.connect();
  } catch (err) {
    throw new Error(`Airlock could not connect to the database as its service account: ${(err as Error).message}`);
  }
  const secret = await readRoleSecret(config.upstream.password, config.stateDir);
  let schema: SchemaKnowledge;
  let capture: CaptureState[] = [];
  const undoOptional = config.undo.optionalTables.map((p) => compileTablePattern(p));
  const isUndoOptional = (s: string, n: string): boolean => undoOptional.some((p) => p.matches(s, n));
  /** Says, once per table and reason, where writes will be refused for want of capture. */
  const reported = new Set<string>();
  const reportCapture = (states: CaptureState[], into: (line: string) => void): void => {
    for (const st of states) {
      const dot = st.table.indexOf('.');
      if (st.installed || isUndoOptional(st.table.slice(0, dot), st.table.slice(dot + 1))) continue;
      const line = `undo capture is not in place on ${st.table}: ${st.reason ?? 'unknown reason'}. Agents' writes to it are refused (rule no-journal) unless undo.optional_tables names it.`;
      if (reported.has(line)) continue;
      reported.add(line);
      into(line);
    }
  };
  try {
    schema = await loadSchemaKnowledge(service, config.trustedFunctions, canaryTables);
    for (const pattern of canaryTables) {
      const known = schema.relations.map((r) => ({ schema: r.slice(0, r.indexOf('.')), name: r.slice(r.indexOf('.') + 1) }));
      if (!known.some((r) => pattern.matches(r.schema, r.name))) {
        warnings.push(`canary_tables: ${pattern.source} matches no table or view in the database (yet); check the name.`);
      }
    }
    warnings.push(...unmatchedRulePatterns(config.rules, new Set(schema.relations.map((r) => r.toLowerCase()))));
    if (config.agents.some((a) => policies.get(a.name)!.mayWrite)) {
      try {
        capture = await installCapture(service);
        reportCapture(capture, (line) => warnings.push(line));
      } catch (err) {
        // Not fatal: without capture, agents' writes are refused (no-journal) until the next look installs it.
        warnings.push(`Airlock could not install undo capture: ${(err as Error).message}. Agents' writes are refused (rule no-journal) until it is in place, except to tables under undo.optional_tables.`);
      }
      await settleJournal(service, journal, log);
    }
    for (const agent of config.agents) {
      const password = readRolePassword(secret, agent.readRole);
      const role = await prepareReadRole(service, agent.readRole, password, { idleInTransactionMs: config.limits.idleInTransactionMs });
      warnings.push(...role.warnings);
      const policy = policies.get(agent.name)!;
      if (policy.mayWrite) {
        const writePassword = writeRolePassword(secret, agent.writeRole);
        const written = await prepareWriteRole(service, agent.writeRole, writePassword, policy, {
          statementTimeoutMs: config.limits.statementTimeoutMs,
          lockTimeoutMs: config.limits.lockTimeoutMs,
          idleInTransactionMs: config.limits.idleInTransactionMs,
        });
        warnings.push(...written.warnings);
        writeRoles.set(agent.name, { role: agent.writeRole, password: writePassword });
      }
      agents.set(agent.name, {
        name: agent.name,
        profile: agent.profile,
        database: agent.database,
        verifier: createScramVerifier(agent.password),
        readRole: agent.readRole,
        readRolePassword: password,
        maxSessions: agent.maxSessions,
      });
    }
  } finally {
    await service.end();
  }

  const cancelKeys = new Map<string, () => void>();
  const keyOf = (processId: number, secretKey: Buffer): string => `${processId}:${secretKey.toString('hex')}`;
  const sessions = new Set<ClientSession>();
  const secureContext = config.tls === null ? null : tls.createSecureContext({ cert: config.tls.cert, key: config.tls.key });

  // A table created since the last look has no grants for the write roles yet
  // (its writes are refused by PostgreSQL meanwhile); one dropped has none to keep.
  const regrantWriteRoles = async (client: pg.Client): Promise<void> => {
    // Relations created, dropped or recreated under the same name, or grants changed behind Airlock's back.
    const seen = await writeGrantsFingerprint(client);
    if (seen === grantsFingerprint) return;
    for (const [agent, { role }] of writeRoles) {
      try {
        await syncWriteGrants(client, role, policies.get(agent)!);
        for (const w of await checkWriteRole(client, role, policies.get(agent)!)) log(`gateway: ${w}`);
      } catch (err) {
        log(`gateway: could not bring the write role "${role}" of agent "${agent}" up to date with the schema: ${(err as Error).message}`);
      }
    }
    // What was seen before syncing, not after: a table created meanwhile
    // must still look new at the next look. (The grants made here change the
    // fingerprint too, so the next look syncs once more, finding nothing to do.)
    grantsFingerprint = seen;
  };

  // Functions and views created after start-up are unknown until the next
  // look: unknown functions are refused meanwhile, unknown views are read.
  let refreshing = false;
  const refresh = setInterval(() => {
    if (refreshing) return;
    refreshing = true;
    const client = serviceClient(config);
    client
      .connect()
      .then(() => loadSchemaKnowledge(client, config.trustedFunctions, canaryTables))
      .then(
        async (fresh) => {
          schema = fresh;
          if (writeRoles.size > 0) {
            await regrantWriteRoles(client).catch((err: Error) => {
              log(`gateway: could not bring the write roles' grants up to date (trying again at the next look): ${err.message}`);
            });
            // Tables created since: capture installed on them; changes left unknown (a lost connection): settled.
            await installCapture(client).then(
              (states) => {
                capture = states;
                reportCapture(states, (line) => log(`gateway: ${line}`));
              },
              (err: Error) => log(`gateway: could not bring undo capture up to date (trying again at the next look): ${err.message}`),
            );
            await settleJournal(client, journal, log);
          }
        },
        (err: Error) => log(`gateway: could not re-read the upstream's schema (keeping the last one): ${err.message}`),
      )
      .finally(() => {
        refreshing = false;
        // Closing a connection that failed to open fails too; nothing is left to release.
        client.end().catch(() => undefined);
      });
  }, options.schemaRefreshMs ?? SCHEMA_REFRESH_MS);
  refresh.unref();

  const freezes = await FreezeStore.open(config.stateDir, config.freezeWindows, options.now);
  // Freezes made through another instance sharing this state directory.
  const reloadFreezes = setInterval(() => {
    freezes.reload().catch((err: Error) => log(`gateway: could not re-read the freeze state: ${err.message}`));
  }, FREEZE_RELOAD_MS);
  reloadFreezes.unref();

  const memory = new MemoryBudget(config.limits.maxMemoryBytes);
  // Parsing runs on worker threads under a deadline (limits.classify_timeout_ms); closed in close().
  const classifier = new ClassifierPool({
    workers: config.limits.classifierWorkers,
    timeoutMs: config.limits.classifyTimeoutMs,
    memoryBudgetBytes: config.limits.classifierMemoryBytes,
    heapLimitMb: heapLimitMbFor(config.limits.maxStatementBytes),
  });
  try {
    await classifier.ready();
  } catch (err) {
    await classifier.close();
    throw new Error(`Airlock could not start its SQL parser workers: ${(err as Error).message}`);
  }

  const tripwire = new Tripwire(config.tripwire.refusals, config.tripwire.windowSeconds * 1000);
  const budget = new WriteBudget();
  const alarm = new TripwireAlarm(
    tripwire,
    freezes,
    audit,
    config.tripwire.webhook,
    log,
  );

  // Each agent's read role, with its sessions' parameters: what a question
  // about how the server reads a statement must be asked as.
  const readLogins = new Map<string, UpstreamLogin>();
  for (const agent of agents.values()) {
    readLogins.set(agent.name, {
      host: config.upstream.host,
      port: config.upstream.port,
      database: agent.database,
      sslmode: config.upstream.sslmode,
      sslrootcert: config.upstream.sslrootcert,
      connectTimeoutMs: config.limits.connectTimeoutMs,
      user: agent.readRole,
      password: agent.readRolePassword,
      params: { ...UPSTREAM_PARAMS, statement_timeout: String(config.limits.statementTimeoutMs), lock_timeout: String(config.limits.lockTimeoutMs) },
    });
  }
  // One probe connection per agent, opened only when a statement names a function a user overloaded.
  const resolvers = new Map<string, OverloadResolver>();
  for (const [name, login] of readLogins) resolvers.set(name, overloadResolverFor(login, { timeoutMs: config.limits.statementTimeoutMs }));
  // A read held for approval is planned on a connection of its own, closed after.
  const estimateRead = async (agent: string, parse: ParseMessage, bind: Buffer | null): Promise<ReadEstimate | { error: string }> => {
    const login = readLogins.get(agent);
    if (login === undefined) return { error: `no read role for agent "${agent}"` };
    const channel = await openProbeChannel({ ...login, params: { ...login.params, application_name: 'airlock approval plan' } }, { timeoutMs: config.limits.statementTimeoutMs });
    try {
      return await planRead(channel, parse, bind);
    } finally {
      channel.close();
    }
  };

  const ctx = {
    schema: () => schema,
    resolverFor: (agent: string) => resolvers.get(agent) ?? null,
    estimateRead,
    trustedFunctions: new Set(config.trustedFunctions),
    canaryTables,
    onRefusal: (who: RelayIdentity, denial: Denial, text: string) => alarm.onRefusal(who, denial, text),
    freezeCause: (agent: string) => alarm.freezeCause(agent),
    ...(options.approvals === undefined || config.approvals.waitSeconds === 0
      ? {}
      : {
          approvals: {
            store: options.approvals,
            waitMs: config.approvals.waitSeconds * 1000,
            noticeEveryMs: APPROVAL_NOTICE_EVERY_MS,
            onRequest: (request: ApprovalRequest) => {
              log(`approvals: request #${request.id} from agent "${request.agent}" waits for a human (airlock approve ${request.id})`);
              options.onApprovalRequest?.(request);
            },
          },
        }),
    cache: new StatementCache({
      maxBytes: config.limits.statementCacheBytes,
      maxStatementBytes: config.limits.maxStatementBytes,
      pool: classifier,
      memory,
    }),
    audit,
    maxMessageBytes: config.limits.maxMessageBytes,
    maxStatementBytes: config.limits.maxStatementBytes,
    pinnedParameters: PINNED_PARAMETERS,
    policyFor: (agent: string) => policies.get(agent),
    budget,
    journal,
    undoOptional: isUndoOptional,
    openWriteConnection: async (who: RelayIdentity) => {
      const u = config.upstream;
      // Writes run as the agent's write role, never as the service account: its grants are the second wall.
      const writer = writeRoles.get(who.agent);
      if (writer === undefined) throw new Error(`write path: agent "${who.agent}" has no write role (its policy allows no writes)`);
      const conn = await connectUpstream({
        host: u.host,
        port: u.port,
        database: u.database,
        sslmode: u.sslmode,
        sslrootcert: u.sslrootcert,
        connectTimeoutMs: config.limits.connectTimeoutMs,
        user: writer.role,
        password: writer.password,
        params: {
          client_encoding: 'UTF8',
          standard_conforming_strings: 'on',
          // Unqualified names resolve as the policy reads them: in public.
          search_path: 'public',
          default_transaction_read_only: 'off',
          statement_timeout: String(config.limits.statementTimeoutMs),
          lock_timeout: String(config.limits.lockTimeoutMs),
          application_name: `airlock write ${who.agent}`.slice(0, 63),
        },
      });
      for (const raw of conn.parameterStatus) {
        const { name, value } = parseParameterStatus(raw.subarray(5));
        const pinned = WRITE_PINNED_PARAMETERS.get(name);
        if (pinned !== undefined && value !== pinned) {
          conn.socket.destroy();
          log(`SECURITY: write role ${writer.role} starts with ${name} = ${value}; refusing its write connection`);
          throw new Error(`the write path is not safe: the database reports ${name} = ${value} for role "${writer.role}"; an operator should run \`airlock doctor\``);
        }
      }
      return new WriteConnection(conn.socket, WRITE_PINNED_PARAMETERS, conn.processId, conn.secretKey);
    },
    log,
    tls: secureContext,
    agents,
    upstream: {
      host: config.upstream.host,
      port: config.upstream.port,
      database: config.upstream.database,
      sslmode: config.upstream.sslmode,
      sslrootcert: config.upstream.sslrootcert,
      connectTimeoutMs: config.limits.connectTimeoutMs,
    },
    upstreamParams: {
      ...UPSTREAM_PARAMS,
      // The agent cannot SET these (the policy refuses it), so they hold for the session.
      statement_timeout: String(config.limits.statementTimeoutMs),
      lock_timeout: String(config.limits.lockTimeoutMs),
    },
    loginTimeoutMs: config.limits.loginTimeoutMs,
    registerCancelKey: (processId: number, secretKey: Buffer, cancel: () => void) => {
      const key = keyOf(processId, secretKey);
      cancelKeys.set(key, cancel);
      return () => cancelKeys.delete(key);
    },
    onCancelRequest: (processId: number, secretKey: Buffer) => {
      // Only the holder of a session's own key can cancel it; an unknown key
      // is ignored without an answer, as PostgreSQL does.
      cancelKeys.get(keyOf(processId, secretKey))?.();
    },
  };

  const admission = new Admission({ maxClients: config.limits.maxClients, maxPendingLogins: config.limits.maxPendingLogins });
  const server = net.createServer((socket) => {
    let session: ClientSession | null = null;
    const ticket = admission.arrive(() =>
      session?.refuse({
        severity: 'FATAL',
        code: '53300',
        message: `airlock: too many connections are logging in at once (limits.max_pending_logins is ${config.limits.maxPendingLogins}); this one waited longest`,
        hint: `Log in within limits.login_timeout_ms (${config.limits.loginTimeoutMs} ms) of connecting.`,
      }),
    );
    session = new ClientSession(socket, ctx, ticket, (s) => sessions.delete(s));
    sessions.add(session);
    const overBudget = memory.exceeded();
    if (overBudget !== null) {
      session.refuse({ severity: 'FATAL', code: '53200', message: `airlock: ${overBudget}`, hint: 'Connect again shortly; an operator can raise limits.max_memory_bytes.' });
    }
  });
  // Beyond both limits (plus refused sockets still delivering their error, for up to a second),
  // the kernel's backlog rather than our memory holds the rest.
  server.maxConnections = config.limits.maxClients + 2 * config.limits.maxPendingLogins + 64;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`Airlock could not listen on ${config.listen.host}:${config.listen.port}: ${err.code ?? err.message}`)),
    );
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  server.on('error', (err) => log(`gateway: listener error: ${err.message}`));
  const bound = server.address() as net.AddressInfo;
  audit.append({ event: 'startup', agent: null, session: null, client: null, detail: { listen: `${bound.address}:${bound.port}` } });

  // What a flood leaves behind is given back once it is over.
  const idle = new IdleCollector();

  return {
    address: { host: bound.address, port: bound.port },
    freezes,
    warnings,
    journal,
    get capture() {
      return capture;
    },
    get sessions() {
      return sessions.size;
    },
    usage(agent) {
      return { ...budget.used(agent), tripwireRefusals: tripwire.recentRefusals(agent) };
    },
    async close() {
      clearInterval(refresh);
      clearInterval(reloadFreezes);
      idle.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.shutdown();
      await closed;
      await classifier.close();
      for (const r of resolvers.values()) r.close();
      if (ownJournal) await journal.close();
      try {
        audit.append({ event: 'shutdown', agent: null, session: null, client: null });
      } catch (err) {
        log(`audit: could not record shutdown: ${(err as Error).message}`);
      }
    },
  };
}

/**
 * Settles journal entries whose transaction's outcome was not known (Airlock
 * stopped, or lost its connection, between the journal's record and its
 * mark) by asking the server: `pg_xact_status(txid)`. A transaction still in
 * progress stays pending; one too old for the server to say is left pending
 * and logged, for a human.
 */
export async function settleJournal(service: pg.Client, journal: Journal, log: (line: string) => void): Promise<void> {
  const pending = journal.pending();
  if (pending.length === 0) return;
  const committed: string[] = [];
  const aborted: string[] = [];
  for (const entry of pending) {
    try {
      const { rows } = await service.query<{ s: string | null }>('SELECT pg_catalog.pg_xact_status($1::xid8) AS s', [entry.txid]);
      const status = rows[0]?.s ?? null;
      if (status === 'committed') committed.push(entry.id);
      else if (status === 'aborted') aborted.push(entry.id);
      else if (status === null) log(`journal: the outcome of change ${entry.id} (transaction ${entry.txid}) is too old for the database to say; it stays pending`);
    } catch (err) {
      log(`journal: could not ask the database about change ${entry.id} (transaction ${entry.txid}): ${(err as Error).message}`);
    }
  }
  await journal.settle(committed, 'committed');
  await journal.settle(aborted, 'aborted');
}
