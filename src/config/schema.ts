/**
 * The configuration file's format: which keys exist, what each may hold, its
 * default, and why a value is refused. Everything here is pure (no files, no
 * environment); `load.ts` turns a file into an `AirlockConfig` with it.
 *
 * The same zod schema validates files and generates the JSON Schema editors
 * use (`npm run schema` writes `schema/airlock.schema.json`), so the two
 * cannot disagree. Checks a JSON Schema cannot express (the upstream URL's
 * parts, `listen`'s address) are zod transforms on the field: they run in
 * the same pass, so a file's problems are reported together.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { DEFAULT_WRITE_LIMITS, POLICY_KINDS, POLICY_KIND_ALIASES, PROFILES, RULE_DECISIONS } from '../policy/rules.js';

// The policy owns its vocabulary (profiles, kinds, decisions); the config only parses it.
export { POLICY_KINDS, POLICY_KIND_ALIASES, PROFILES } from '../policy/rules.js';
export type { PolicyKind, PolicyKindAlias, Profile, RuleConfig, RuleDecision, WriteLimits } from '../policy/rules.js';

/** What a rule's `kinds` may list: the kinds themselves, and the aliases `write` and `ddl`. */
export const RULE_KIND_NAMES = [...POLICY_KINDS, ...(Object.keys(POLICY_KIND_ALIASES) as (keyof typeof POLICY_KIND_ALIASES)[])] as const;
export type RuleKindName = (typeof RULE_KIND_NAMES)[number];

/** Bodies a tripwire webhook can carry. */
export const WEBHOOK_FORMATS = ['json', 'slack'] as const;
export type WebhookFormat = (typeof WEBHOOK_FORMATS)[number];

/** libpq's sslmode values that Airlock honours (`allow` is left out: it prefers no TLS). */
export const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** Query parameters the upstream URL may carry. */
export const UPSTREAM_URL_PARAMETERS = ['sslmode', 'sslrootcert'] as const;

/**
 * PostgreSQL keeps names to NAMEDATALEN - 1 = 63 bytes and silently cuts
 * longer ones, so two long names could become one role.
 * https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS
 */
export const MAX_NAME_BYTES = 63;

/** The user name an agent logs in with. Written without the `i` flag so the JSON Schema says the same. */
export const AGENT_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/;

/** A group of agents, as rules name it: the same shape as an agent's name. */
export const GROUP_NAME_PATTERN = AGENT_NAME_PATTERN;

/**
 * A rule's relation pattern: schema.table, `*` matching any characters in
 * either part. Upper case is allowed for quoted mixed-case names (an allow
 * rule matches as PostgreSQL stores names: unquoted names are lower case).
 */
export const RULE_TABLE_PATTERN = /^[A-Za-z_*][A-Za-z0-9_$*]*\.[A-Za-z_*][A-Za-z0-9_$*]*$/;

/**
 * Read roles are created and granted by Airlock, so they are kept to names
 * that never need quoting in SQL.
 */
export const READ_ROLE_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Role names PostgreSQL refuses in CREATE ROLE; `pg_` names are reserved too.
 * https://www.postgresql.org/docs/current/sql-createrole.html
 */
const RESERVED_ROLE_NAMES = ['public', 'none', 'current_role', 'current_user', 'session_user'] as const;

export const DEFAULTS = {
  listen: '127.0.0.1:6432',
  upstreamHost: '127.0.0.1',
  upstreamPort: 5432,
  sslmode: 'prefer',
  stateDir: '.airlock',
  profile: 'read-only',
  flushMs: 5,
  maxMessageBytes: 64 * 1024 * 1024,
  maxClients: 200,
  loginTimeoutMs: 5000,
  maxPendingLogins: 64,
  maxSessionsPerAgent: 20,
  connectTimeoutMs: 5000,
  statementTimeoutMs: 60_000,
  tripwireRefusals: 3,
  adminListen: '127.0.0.1:6433',
  tripwireWindowSeconds: 600,
  lockTimeoutMs: 10_000,
  idleInTransactionMs: 60_000,
  maxStatementBytes: 1024 * 1024,
  classifyTimeoutMs: 2000,
  classifierWorkers: 2,
  classifierMemoryBytes: 256 * 1024 * 1024,
  statementCacheBytes: 64 * 1024 * 1024,
  maxMemoryBytes: 1024 * 1024 * 1024,
  approvalWaitSeconds: 300,
  approvalExpireSeconds: 3600,
} as const satisfies Record<string, string | number>;

export interface ListenAddress {
  /** A host name or IP address, IPv6 without brackets (as `net.Server.listen` wants it). */
  host: string;
  port: number;
}

/** Where and as whom Airlock connects to the production PostgreSQL. */
export interface UpstreamTarget {
  host: string;
  port: number;
  user: string;
  /** null when the URL names none (trust or peer authentication). */
  password: string | null;
  database: string;
  sslmode: SslMode;
  /** A PEM file of trusted CAs; in `ConfigFile` as written, in `AirlockConfig` absolute. */
  sslrootcert: string | null;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; problems: string[] };

/** The read role Airlock uses for an agent that does not name one. */
export function defaultReadRole(agentName: string): string {
  return `airlock_read_${agentName.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, MAX_NAME_BYTES);
}

/** The write role an agent gets when its entry names none. */
export function defaultWriteRole(agentName: string): string {
  return `airlock_write_${agentName.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, MAX_NAME_BYTES);
}

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || (isIPv4(h) && h.startsWith('127.'));
}

// Host names as RFC 1123 allows them, plus `_` (seen in container networks).
const HOST_NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;

/**
 * Splits `host:port`, `[ipv6]:port`. Returns a problem that says what a
 * valid address looks like rather than what the parser tripped on.
 */
function splitHostPort(text: string, what: string): Parsed<{ host: string; port: string | null }> {
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return fail(`${what} opens an IPv6 address with [ but never closes it with ]`);
    const host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (!isIPv6(host)) return fail(`${what} has [${host}], which is not an IPv6 address`);
    if (rest === '') return { ok: true, value: { host, port: null } };
    if (!rest.startsWith(':')) return fail(`${what} has text after the IPv6 address; write [address]:port`);
    return { ok: true, value: { host, port: rest.slice(1) } };
  }
  const colons = text.split(':').length - 1;
  if (colons > 1) return fail(`${what} looks like an IPv6 address; write it in brackets, as in [::1]:6432`);
  const [host = '', port] = text.split(':');
  return { ok: true, value: { host, port: port ?? null } };
}

function checkHost(host: string, what: string): string | null {
  if (isIPv6(host) || isIPv4(host) || HOST_NAME.test(host)) return null;
  return `${what} must be a host name or an IP address (got ${JSON.stringify(host)})`;
}

function parsePort(port: string, what: string, min: number): Parsed<number> {
  const n = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
  if (!(n >= min && n <= 65535)) return fail(`${what} must be a number from ${min} to 65535 (got ${JSON.stringify(port)})`);
  return { ok: true, value: n };
}

/** `host:port` or `[ipv6]:port`; port 0 asks the OS for a free port (tests use it). */
export function parseListen(text: string): Parsed<ListenAddress> {
  const split = splitHostPort(text, 'the address');
  if (!split.ok) return split;
  const { host, port } = split.value;
  if (port === null || host === '') {
    return fail(`must be host:port, as in 127.0.0.1:6432 or [::1]:6432 (got ${JSON.stringify(text)})`);
  }
  const hostProblem = checkHost(host, 'the host');
  if (hostProblem) return fail(hostProblem);
  const p = parsePort(port, 'the port', 0);
  if (!p.ok) return p;
  return { ok: true, value: { host, port: p.value } };
}

const URL_EXAMPLE = 'postgres://user:password@host:5432/database';
const PASSWORD_HINT =
  'If the password holds @, :, /, ?, # or %, percent-encode it, or put it in an environment variable: ' +
  '${VAR} in the user or password part is percent-encoded for you.';

/**
 * Parses the upstream connection URL (a subset of libpq's URI form:
 * https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS).
 * Problems never quote the user-info part, which holds the password.
 */
export function parseUpstreamUrl(url: string): Parsed<UpstreamTarget> {
  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  if (!schemeMatch) return fail(`must be a PostgreSQL URL such as ${URL_EXAMPLE}`);
  const scheme = (schemeMatch[1] ?? '').toLowerCase();
  if (scheme !== 'postgres' && scheme !== 'postgresql') {
    return fail(`must use the postgres:// or postgresql:// scheme (got ${JSON.stringify(`${scheme}://`)})`);
  }
  let rest = url.slice(schemeMatch[0].length);
  if (rest.includes('#')) return fail(`must not contain #: a URL fragment means nothing here. ${PASSWORD_HINT}`);

  const problems: string[] = [];
  const authorityEnd = rest.search(/[/?]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  rest = authorityEnd < 0 ? '' : rest.slice(authorityEnd);
  if (rest.includes('@')) return fail(`has an @ after the host. ${PASSWORD_HINT}`);

  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? null : authority.slice(0, at);
  const hostport = authority.slice(at + 1);

  let user = '';
  let password: string | null = null;
  if (userinfo !== null) {
    const colon = userinfo.indexOf(':');
    const rawUser = colon < 0 ? userinfo : userinfo.slice(0, colon);
    const rawPassword = colon < 0 ? null : userinfo.slice(colon + 1);
    const u = percentDecode(rawUser, 'the user name');
    if (u.ok) user = u.value;
    else problems.push(...u.problems);
    if (rawPassword !== null) {
      const p = percentDecode(rawPassword, 'the password');
      // PostgreSQL refuses empty passwords, so `user:@host` means no password.
      if (p.ok) password = p.value === '' ? null : p.value;
      else problems.push(...p.problems);
    }
  }
  if (user === '' && problems.length === 0) {
    problems.push(`must name the user Airlock connects as, as in ${URL_EXAMPLE}`);
  } else if (byteLength(user) > MAX_NAME_BYTES) {
    problems.push(`the user name is longer than ${MAX_NAME_BYTES} bytes, PostgreSQL's limit`);
  }

  let host: string = DEFAULTS.upstreamHost;
  let port: number = DEFAULTS.upstreamPort;
  if (hostport.includes('%')) {
    problems.push('has a percent-encoded host; Unix-domain sockets are not supported, name a TCP host');
  } else if (hostport.includes(',')) {
    problems.push('names several hosts; Airlock connects to one');
  } else {
    const split = splitHostPort(hostport, 'the host');
    if (!split.ok) problems.push(...split.problems);
    else {
      if (split.value.host !== '') {
        const hostProblem = checkHost(split.value.host, 'the host');
        if (hostProblem) problems.push(hostProblem);
        else host = split.value.host;
      }
      if (split.value.port !== null) {
        const p = parsePort(split.value.port, 'the port', 1);
        if (p.ok) port = p.value;
        else problems.push(...p.problems);
      }
    }
  }

  const queryStart = rest.indexOf('?');
  const path = queryStart < 0 ? rest : rest.slice(0, queryStart);
  const query = queryStart < 0 ? '' : rest.slice(queryStart + 1);
  let database = '';
  if (path === '' || path === '/') {
    problems.push(`must name the database after the host, as in ${URL_EXAMPLE}`);
  } else if (path.indexOf('/', 1) >= 0) {
    problems.push('has a / in the database name; percent-encode it as %2F');
  } else {
    const d = percentDecode(path.slice(1), 'the database name');
    if (!d.ok) problems.push(...d.problems);
    else if (byteLength(d.value) > MAX_NAME_BYTES) {
      problems.push(`the database name is longer than ${MAX_NAME_BYTES} bytes, PostgreSQL's limit`);
    } else database = d.value;
  }

  let sslmode: SslMode = DEFAULTS.sslmode;
  let sslrootcert: string | null = null;
  const seen = new Set<string>();
  for (const pair of query === '' ? [] : query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const k = percentDecode(eq < 0 ? pair : pair.slice(0, eq), 'a query parameter name');
    const v = percentDecode(eq < 0 ? '' : pair.slice(eq + 1), 'a query parameter value');
    if (!k.ok || !v.ok) {
      problems.push(...(k.ok ? [] : k.problems), ...(v.ok ? [] : v.problems));
      continue;
    }
    const key = k.value;
    if (!isOneOf(UPSTREAM_URL_PARAMETERS, key)) {
      problems.push(`has the query parameter ${JSON.stringify(key)}, which Airlock does not support${PARAMETER_HINTS[key] ?? ''}; only sslmode and sslrootcert are allowed`);
      continue;
    }
    if (seen.has(key)) {
      problems.push(`sets the query parameter ${key} twice`);
      continue;
    }
    seen.add(key);
    if (v.value === '') {
      problems.push(`sets the query parameter ${key} to nothing`);
    } else if (key === 'sslmode') {
      if (isOneOf(SSL_MODES, v.value)) sslmode = v.value;
      else problems.push(`sslmode must be one of: ${SSL_MODES.join(', ')} (got ${JSON.stringify(v.value)})`);
    } else {
      sslrootcert = v.value;
    }
  }

  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, value: { host, port, user, password, database, sslmode, sslrootcert } };
}

const PARAMETER_HINTS: Record<string, string> = {
  connect_timeout: ' (use limits.connect_timeout_ms)',
  host: ' (Unix-domain sockets are not supported; name the host before the path)',
  sslcert: ' (client certificates are not supported yet)',
  sslkey: ' (client certificates are not supported yet)',
};

function percentDecode(text: string, what: string): Parsed<string> {
  try {
    return { ok: true, value: decodeURIComponent(text) };
  } catch (error) {
    // decodeURIComponent throws URIError only; its message quotes nothing useful, and the text may be a password.
    if (!(error instanceof URIError)) throw error;
    return fail(`${what} is not valid percent-encoding (write a literal % as %25)`);
  }
}

function fail(problem: string): { ok: false; problems: string[] } {
  return { ok: false, problems: [problem] };
}

function isOneOf<T extends string>(set: readonly T[], value: string): value is T {
  return (set as readonly string[]).includes(value);
}

function byteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** Turns a `Parsed` into zod issues on the field, so parse problems join the schema's. */
function parsedField<T>(parse: (text: string) => Parsed<T>) {
  return (text: string, ctx: z.core.$RefinementCtx<string>): T => {
    const result = parse(text);
    if (result.ok) return result.value;
    for (const message of result.problems) ctx.issues.push({ code: 'custom', message, input: text });
    return z.NEVER;
  };
}

const noNul = (s: string) => !s.includes('\0');
const NUL_MESSAGE = 'must not contain a NUL character';

/** Largest values the write limits take: far beyond any sensible one, small enough to be a number a person means. */
const MAX_ROWS_LIMIT = 100_000_000;
const MAX_WRITES_PER_MINUTE = 100_000;

const WRITE_LIMIT_WORDS = {
  max_rows: 'Rows one statement may change, rows changed by cascades (ON DELETE CASCADE, ...) included; a write over it is rolled back.',
  require_where: 'UPDATE and DELETE need a WHERE clause (TRUNCATE is judged by its own kind).',
  rows_per_hour: 'Rows an agent may change in any hour; a write that would pass it is rolled back and trips the tripwire.',
  writes_per_minute: 'Writes an agent may make in any minute; the next is refused and trips the tripwire.',
} as const;

/**
 * Limits are positive: to forbid writes, use the profile or a rule, not a
 * limit of 0. At the top level every key has its default; for one agent
 * every key is optional, and the top level's value stands for those left out.
 */
const writeLimitsSchema = z.strictObject({
  max_rows: z.number().int().min(1).max(MAX_ROWS_LIMIT).default(DEFAULT_WRITE_LIMITS.maxRows).describe(WRITE_LIMIT_WORDS.max_rows),
  require_where: z.boolean().default(DEFAULT_WRITE_LIMITS.requireWhere).describe(WRITE_LIMIT_WORDS.require_where),
  rows_per_hour: z.number().int().min(1).max(MAX_ROWS_LIMIT).default(DEFAULT_WRITE_LIMITS.rowsPerHour).describe(WRITE_LIMIT_WORDS.rows_per_hour),
  writes_per_minute: z
    .number()
    .int()
    .min(1)
    .max(MAX_WRITES_PER_MINUTE)
    .default(DEFAULT_WRITE_LIMITS.writesPerMinute)
    .describe(WRITE_LIMIT_WORDS.writes_per_minute),
});
const agentWriteLimitsSchema = z.strictObject({
  max_rows: z.number().int().min(1).max(MAX_ROWS_LIMIT).optional().describe(WRITE_LIMIT_WORDS.max_rows),
  require_where: z.boolean().optional().describe(WRITE_LIMIT_WORDS.require_where),
  rows_per_hour: z.number().int().min(1).max(MAX_ROWS_LIMIT).optional().describe(WRITE_LIMIT_WORDS.rows_per_hour),
  writes_per_minute: z.number().int().min(1).max(MAX_WRITES_PER_MINUTE).optional().describe(WRITE_LIMIT_WORDS.writes_per_minute),
});

const ruleSchema = z
  .strictObject({
    agents: z
      .array(z.string().min(1, { error: 'must not be empty' }))
      .min(1, { error: 'must name at least one agent or group (leave it out for every agent)' })
      .optional()
      .describe('Agent names or group names the rule applies to; every agent when left out.'),
    kinds: z
      .array(z.enum(RULE_KIND_NAMES))
      .min(1, { error: 'must name at least one kind (leave it out for every kind)' })
      .optional()
      .describe(
        'What the rule decides: select, insert, update, delete, merge, truncate, create, alter, drop; write = insert, update, delete, merge; ddl = create, alter, drop. ' +
          'Every kind when left out, except that an allow rule never grants truncate or DDL unless it names them.',
      ),
    tables: z
      .array(
        z.string().regex(RULE_TABLE_PATTERN, {
          error: 'must be a schema-qualified table name or pattern such as public.tasks or archive.*',
        }),
      )
      .min(1, { error: 'must name at least one table or pattern (leave it out for any relation)' })
      .optional()
      .describe('Relations as schema.table with * wildcards; left out: any relation, and statements that name none (CREATE FUNCTION, SELECT 1).'),
    decision: z.enum(RULE_DECISIONS).describe('allow, deny, or approve (needs a human; refused until approvals exist).'),
    note: z.string().min(1, { error: 'must not be empty' }).optional().describe('Why the rule exists; shown with its decisions.'),
    allow_unrecoverable: z
      .boolean()
      .optional()
      .describe(
        'On an allow rule for drop: also lets through DDL whose loss undo cannot take back (DROP SCHEMA, DROP … CASCADE), which is otherwise refused (rule unrecoverable) whatever the rules say. ' +
          'DROP TABLE and DROP COLUMN never need it: they are made recoverable.',
      ),
  })
  .refine((r) => r.allow_unrecoverable !== true || r.decision === 'allow', {
    error: 'allow_unrecoverable goes only on a rule with decision: allow',
    path: ['allow_unrecoverable'],
  })
  .describe('A rule: the first one (in file order) that matches an agent, a kind and a relation decides; otherwise the profile does.');

const agentSchema = z
  .strictObject({
    name: z
      .string()
      .regex(AGENT_NAME_PATTERN, {
        error: (iss) =>
          'must be a PostgreSQL user name: a letter or _, then up to 62 letters, digits, _, $ or - ' +
          `(got ${JSON.stringify(iss.input)})`,
      })
      .describe('The user name the agent connects to Airlock as. Unique among agents, compared without regard to case.')
      .meta({ examples: ['claude'] }),
    password: z
      .string()
      .min(8, { error: 'must be at least 8 characters long' })
      .refine(noNul, { error: NUL_MESSAGE })
      .describe('The password the agent connects with (SCRAM). Best given as ${VAR}; 16 characters or more.'),
    profile: z
      .enum(PROFILES)
      .default(DEFAULTS.profile)
      .describe(
        'What the agent may do where no rule decides. read-only: reads pass, everything else is refused. ' +
          'read-write: reads, INSERT, UPDATE, DELETE and MERGE pass; TRUNCATE and DDL need approval. ' +
          'writes-need-approval: reads pass; every change needs approval. (Approvals are not available yet: what needs one is refused.)',
      ),
    groups: z
      .array(
        z.string().regex(GROUP_NAME_PATTERN, {
          error: (iss) => `must be a group name: a letter or _, then up to 62 letters, digits, _, $ or - (got ${JSON.stringify(iss.input)})`,
        }),
      )
      .optional()
      .describe("Groups the agent belongs to, for rules' agents lists (e.g. [bots, reporting])."),
    write_limits: agentWriteLimitsSchema
      .optional()
      .describe("This agent's own write limits; each key left out is the top-level write_limits' value."),
    max_sessions: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .optional()
      .describe(
        'Most sessions this agent may hold at once; a further login is refused (53300). Default: limits.max_sessions_per_agent. ' +
          'A session of an agent that may write can hold two upstream connections.',
      ),
    database: z
      .string()
      .min(1, { error: 'must not be empty' })
      .refine((s) => byteLength(s) <= MAX_NAME_BYTES, { error: `must be at most ${MAX_NAME_BYTES} bytes long` })
      .refine(noNul, { error: NUL_MESSAGE })
      .optional()
      .describe("The database name the agent must ask for when it connects. Default: the upstream URL's database."),
    read_role: z
      .string()
      .regex(READ_ROLE_PATTERN, {
        error: (iss) =>
          'must be a lower-case PostgreSQL role name: a letter or _, then up to 62 letters, digits or _ ' +
          `(got ${JSON.stringify(iss.input)})`,
      })
      .refine((s) => !s.startsWith('pg_'), { error: 'must not start with pg_, which PostgreSQL reserves' })
      .refine((s) => !(RESERVED_ROLE_NAMES as readonly string[]).includes(s), {
        error: (iss) => `must not be ${JSON.stringify(iss.input)}, a name PostgreSQL reserves`,
      })
      .optional()
      .describe(
        "The upstream role Airlock runs this agent's reads as: no superuser, no write grants, one per agent. " +
          'Default: airlock_read_<name>, lower-cased, other characters as _.',
      ),
    write_role: z
      .string()
      .regex(READ_ROLE_PATTERN, {
        error: (iss) =>
          'must be a lower-case PostgreSQL role name: a letter or _, then up to 62 letters, digits or _ ' +
          `(got ${JSON.stringify(iss.input)})`,
      })
      .refine((s) => !s.startsWith('pg_'), { error: 'must not start with pg_, which PostgreSQL reserves' })
      .refine((s) => !(RESERVED_ROLE_NAMES as readonly string[]).includes(s), {
        error: (iss) => `must not be ${JSON.stringify(iss.input)}, a name PostgreSQL reserves`,
      })
      .optional()
      .describe(
        "The upstream role Airlock runs this agent's writes as, when its policy lets it write: no superuser, " +
          'only the table privileges its rules could allow, one per agent. Default: airlock_write_<name>, lower-cased, other characters as _.',
      ),
  })
  .describe('An agent: one Airlock identity with its own password, profile, read role and (when it may write) write role.');

export const configFileSchema = z
  .strictObject({
    listen: z
      .string()
      .default(DEFAULTS.listen)
      .transform(parsedField(parseListen))
      .describe('Where Airlock accepts agent connections: host:port, IPv6 as [::1]:6432.'),
    upstream: z
      .string()
      .meta({
        description:
          "Airlock's own service account on the production PostgreSQL: " +
          'postgres://user:password@host:port/database?sslmode=...&sslrootcert=...',
        examples: ['postgres://airlock:${AIRLOCK_UPSTREAM_PASSWORD}@127.0.0.1:5432/app'],
      })
      .transform(parsedField(parseUpstreamUrl)),
    state_dir: z
      .string()
      .min(1, { error: 'must not be empty' })
      .default(DEFAULTS.stateDir)
      .describe("Where Airlock keeps its own state (audit log, ...), relative to the config file's directory."),
    tls: z
      .strictObject({
        cert: z.string().min(1, { error: 'must not be empty' }).describe('PEM certificate file, relative to the config file.'),
        key: z.string().min(1, { error: 'must not be empty' }).describe('PEM private key file (unencrypted), relative to the config file.'),
      })
      .optional()
      .describe('TLS for clients connecting to Airlock. Without it, connections to Airlock are not encrypted.'),
    agents: z
      .array(agentSchema)
      .min(1, { error: 'must list at least one agent' })
      .describe('The agents that may connect, each with its own identity.'),
    trusted_functions: z
      .array(
        z
          .string()
          .regex(/^[a-z_][a-z0-9_$]*\.[a-z_][a-z0-9_$]*$/, {
            error: 'must be a schema-qualified, lower-case function name such as public.format_money',
          }),
      )
      .default([])
      .describe(
        "Functions outside pg_catalog that agents may call in reads (schema.name). Others are refused: Airlock cannot see inside a function, and PostgreSQL lets some side effects (notifications, advisory locks) through a READ ONLY transaction.",
      ),
    write_limits: writeLimitsSchema
      .prefault({})
      .describe("Limits on every agent's writes; agents[].write_limits overrides them per agent."),
    rules: z
      .array(ruleSchema)
      .default([])
      .describe('What agents may do, relation by relation, beyond their profiles. The first matching rule decides.'),
    canary_tables: z
      .array(
        z.string().regex(/^[a-z_*][a-z0-9_$*]*\.[a-z_*][a-z0-9_$*]*$/, {
          error: 'must be a schema-qualified, lower-case table name or pattern such as public.payroll_backup or honeypot.*',
        }),
      )
      .default([])
      .describe(
        'Tables no agent has any business touching (honeytokens), as schema.table with * wildcards. A statement that reads or writes one is refused and trips the tripwire at once.',
      ),
    undo: z
      .strictObject({
        optional_tables: z
          .array(
            z.string().regex(/^[a-z_*][a-z0-9_$*]*\.[a-z_*][a-z0-9_$*]*$/, {
              error: 'must be a schema-qualified, lower-case table name or pattern such as public.scratch_*',
            }),
          )
          .default([])
          .describe(
            'Tables agents may write without the undo journal (schema.table with * wildcards): writes there are kept even where capture is missing (a table without a key, say), and cannot be undone. Every other write whose rows were not all captured is refused (rule no-journal).',
          ),
      })
      .prefault({})
      .describe('Undo: every agent write is journalled before it commits, and `airlock undo` puts it back.'),
    admin: z
      .strictObject({
        listen: z
          .string()
          .default(DEFAULTS.adminListen)
          .transform(parsedField(parseListen))
          .describe('Where the admin API listens (freeze, unfreeze, status), for the airlock CLI with an admin token. Keep it on loopback or a private network.'),
        totp_secret: z
          .string()
          .regex(/^[A-Z2-7]{16,}=*$/i, { error: 'must be a base32 TOTP secret of at least 16 characters (from the environment, e.g. ${AIRLOCK_TOTP_SECRET})' })
          .optional()
          .describe('A TOTP secret (base32, as authenticator apps take it): approve and unfreeze then also need a current code, so an admin token alone is not enough.'),
        tls: z
          .strictObject({
            cert: z.string().min(1, { error: 'must not be empty' }).describe('PEM certificate file, relative to the config file.'),
            key: z.string().min(1, { error: 'must not be empty' }).describe('PEM private key file (unencrypted), relative to the config file.'),
          })
          .optional()
          .describe('HTTPS for the admin API and the dashboard; the session cookie is then Secure. Without it the admin listener speaks plain HTTP: keep it on loopback.'),
      })
      .prefault({})
      .describe("Airlock's admin API."),
    mcp: z
      .strictObject({
        listen: z
          .string()
          .transform(parsedField(parseListen))
          .describe('Where the MCP server listens for Streamable HTTP at /mcp; each agent authenticates with Authorization: Bearer <agent name>:<agent password>. Left out: no HTTP MCP server (airlock mcp on stdio needs none).'),
        approval_wait_seconds: z
          .number()
          .int()
          .min(0)
          .max(3600)
          .default(15)
          .describe("How long the execute tool lets a statement wait for a human's approval before it answers that the statement is held (the request stays pending; the identical call runs it once approved)."),
      })
      .optional()
      .describe("Airlock's MCP server over Streamable HTTP, for MCP clients that connect to a URL. Its SQL runs through the same gate as the agent's."),
    freeze_windows: z
      .array(
        z.union([
          z.strictObject({
            name: z.string().regex(/^[a-z0-9_.-]{1,64}$/i, { error: 'must be 1-64 letters, digits, _ . or -' }),
            reason: z.string().min(1, { error: 'must not be empty' }),
            agents: z.array(z.string()).min(1, { error: 'must name at least one agent (leave it out for all agents)' }).optional().describe('Agents the window freezes; all when left out.'),
            weekly: z.strictObject({
              days: z.array(z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'])).min(1, { error: 'must name at least one day' }),
              start: z.string().regex(/^([01][0-9]|2[0-3]):[0-5][0-9]$/, { error: 'must be HH:MM' }),
              end: z.string().regex(/^([01][0-9]|2[0-3]):[0-5][0-9]$/, { error: 'must be HH:MM' }),
              timezone: z.string().min(1).describe('An IANA time zone such as Europe/Berlin or UTC.'),
            }),
          }),
          z.strictObject({
            name: z.string().regex(/^[a-z0-9_.-]{1,64}$/i, { error: 'must be 1-64 letters, digits, _ . or -' }),
            reason: z.string().min(1, { error: 'must not be empty' }),
            agents: z.array(z.string()).min(1, { error: 'must name at least one agent (leave it out for all agents)' }).optional().describe('Agents the window freezes; all when left out.'),
            from: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with a time zone offset' }),
            to: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with a time zone offset' }),
          }),
        ]),
      )
      .default([])
      .describe('Scheduled freezes: weekly windows in a time zone, or date ranges (a release freeze).'),
    tripwire: z
      .strictObject({
        refusals: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(DEFAULTS.tripwireRefusals)
          .describe('Refused destructive statements (writes, DDL, privilege changes, utilities) by one agent that trip the tripwire...'),
        window_seconds: z
          .number()
          .int()
          .min(1)
          .max(86_400)
          .default(DEFAULTS.tripwireWindowSeconds)
          .describe('...within this many seconds.'),
        webhook: z
          .strictObject({
            url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).describe('Where Airlock POSTs a JSON body when the tripwire trips.'),
            format: z.enum(WEBHOOK_FORMATS).default('json').describe('json: Airlock\'s own body; slack: a Slack-compatible {"text": ...} body.'),
          })
          .optional()
          .describe('A webhook to notify when the tripwire trips.'),
      })
      .prefault({})
      .describe('When an agent keeps running into its limits, or touches a canary table.'),
    approvals: z
      .strictObject({
        wait_seconds: z
          .number()
          .int()
          .min(0)
          .max(86_400)
          .default(DEFAULTS.approvalWaitSeconds)
          .describe(
            "How long a statement that needs a human's approval waits for one on its connection, in seconds; then it fails, and the request stays pending. " +
              '0: no waiting and no requests: what needs approval is refused at once (rule approval-required).',
          ),
        expire_seconds: z
          .number()
          .int()
          .min(60)
          .max(30 * 86_400)
          .default(DEFAULTS.approvalExpireSeconds)
          .describe('How long a request (and its approval, until used) stays good, in seconds.'),
        webhook: z
          .strictObject({
            url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).describe('Where Airlock POSTs a JSON body when the tripwire trips.'),
            format: z.enum(WEBHOOK_FORMATS).default('json').describe('json: Airlock\'s own body; slack: a Slack-compatible {"text": ...} body.'),
          })
          .optional()
          .describe('A webhook to notify of each new request, with its statement, impact, reason and the approve/deny commands.'),
      })
      .prefault({})
      .describe("Statements that need a human's approval (rules with decision: approve, agents of profile writes-need-approval)."),
    audit: z
      .strictObject({
        flush_ms: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(DEFAULTS.flushMs)
          .describe('Group-commit interval of the audit log for reads, in milliseconds.'),
        checkpoint_file: z
          .string()
          .min(1, { error: 'must not be empty' })
          .optional()
          .describe(
            "Where Airlock keeps a signed checkpoint of the audit chain's head, so that `airlock audit verify` notices records cut off the log's end. Outside state_dir (ideally another volume or host); relative to the config file.",
          ),
        checkpoint_key: z
          .string()
          .min(16, { error: 'must be at least 16 characters (use a long random secret, e.g. ${AIRLOCK_AUDIT_KEY})' })
          .optional()
          .describe('The secret the checkpoint is signed with; from the environment, never kept in the state directory.'),
      })
      .prefault({})
      .describe('The audit log.'),
    limits: z
      .strictObject({
        max_message_bytes: z
          .number()
          .int()
          .min(1024)
          .max(1024 * 1024 * 1024)
          .default(DEFAULTS.maxMessageBytes)
          .describe('Largest protocol message Airlock accepts from a client, in bytes (1 KiB to 1 GiB).'),
        max_clients: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(DEFAULTS.maxClients)
          .describe('Most logged-in agent sessions at once (connections still logging in are counted apart: max_pending_logins).'),
        max_pending_logins: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(DEFAULTS.maxPendingLogins)
          .describe(
            'Most connections at once that have not logged in yet. More are refused at once (53300), so that silent or slow ' +
              'connections cannot take the places of agents that log in.',
          ),
        login_timeout_ms: z
          .number()
          .int()
          .min(100)
          .max(300_000)
          .default(DEFAULTS.loginTimeoutMs)
          .describe('How long a connection may take to log in (start-up and password exchange), in milliseconds; then it is closed.'),
        max_sessions_per_agent: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(DEFAULTS.maxSessionsPerAgent)
          .describe(
            "Most sessions one agent may hold at once, unless agents[].max_sessions says otherwise; further logins are refused (53300). " +
              'A session of an agent that may write can hold two upstream connections (its read role and its write role).',
          ),
        connect_timeout_ms: z
          .number()
          .int()
          .min(100)
          .max(300_000)
          .default(DEFAULTS.connectTimeoutMs)
          .describe('How long to wait for the upstream PostgreSQL to accept a connection, in milliseconds.'),
        statement_timeout_ms: z
          .number()
          .int()
          .min(0)
          .max(86_400_000)
          .default(DEFAULTS.statementTimeoutMs)
          .describe("Longest an agent's statement may run before PostgreSQL cancels it, in milliseconds (0: no limit)."),
        lock_timeout_ms: z
          .number()
          .int()
          .min(0)
          .max(86_400_000)
          .default(DEFAULTS.lockTimeoutMs)
          .describe("Longest an agent's statement may wait for a lock, in milliseconds (0: no limit)."),
        idle_in_transaction_ms: z
          .number()
          .int()
          .min(0)
          .max(86_400_000)
          .default(DEFAULTS.idleInTransactionMs)
          .describe(
            "Longest an agent's transaction may sit idle before PostgreSQL ends its session, in milliseconds (0: no limit); " +
              'set on the read and write roles (idle_in_transaction_session_timeout).',
          ),
        max_statement_bytes: z
          .number()
          .int()
          .min(1024)
          .max(1024 * 1024 * 1024)
          .default(DEFAULTS.maxStatementBytes)
          .describe('Largest statement Airlock parses, in bytes (1 KiB to 1 GiB); a larger one is refused unread (SQLSTATE 54000).'),
        classify_timeout_ms: z
          .number()
          .int()
          .min(10)
          .max(600_000)
          .default(DEFAULTS.classifyTimeoutMs)
          .describe('Longest the SQL parser may take over one statement, in milliseconds; a statement it cannot finish in time is refused (SQLSTATE 54001).'),
        classifier_workers: z
          .number()
          .int()
          .min(1)
          .max(64)
          .default(DEFAULTS.classifierWorkers)
          .describe('Worker threads that parse statements, off the thread that serves connections.'),
        classifier_memory_bytes: z
          .number()
          .int()
          .min(16 * 1024 * 1024)
          .max(64 * 1024 * 1024 * 1024)
          .default(DEFAULTS.classifierMemoryBytes)
          .describe("Memory a parser worker may keep outside its JavaScript heap (the parser's WebAssembly memory, which never shrinks), in bytes; past it the worker is replaced after its statement."),
        statement_cache_bytes: z
          .number()
          .int()
          .min(0)
          .max(64 * 1024 * 1024 * 1024)
          .default(DEFAULTS.statementCacheBytes)
          .describe("Memory for the cache of statements' classifications, in bytes (an estimate: text plus a fixed cost per entry); least recently used entries go first. 0: no cache."),
        max_memory_bytes: z
          .number()
          .int()
          .min(0)
          .max(1024 * 1024 * 1024 * 1024)
          .refine((n) => n === 0 || n >= 64 * 1024 * 1024, { error: 'must be 0 (no budget) or at least 67108864 (64 MiB)' })
          .default(DEFAULTS.maxMemoryBytes)
          .describe(
            "The process's memory budget (resident memory), in bytes; 0: none. While Airlock is over it, new connections are refused " +
              'and statements not judged before are refused unread (SQLSTATE 53200); sessions go on with statements already judged.',
          ),
      })
      .prefault({})
      .describe('Resource limits.'),
  })
  .meta({
    title: 'Airlock configuration',
    description: 'airlock.yaml: see docs/config.md. ${VAR} in any string is taken from the environment; $${ is a literal ${.',
  });

/** The file as written. */
export type ConfigFileInput = z.input<typeof configFileSchema>;
/** The file after validation: defaults filled in, listen and upstream parsed; paths still as written. */
export type ConfigFile = z.output<typeof configFileSchema>;

/** A path into the file: keys and list indexes, as in `['agents', 0, 'profile']`. */
export type KeyPath = readonly (string | number)[];

export interface KeyProblem {
  path: KeyPath;
  message: string;
}

export interface FileCheck {
  /** Every problem in the file, in document order of the schema's walk. */
  problems: KeyProblem[];
  /**
   * Each top-level section that is valid on its own, so checks that span
   * sections (read roles against the upstream user) can still run and be
   * reported alongside problems elsewhere in the file.
   */
  sections: Partial<ConfigFile>;
  /** The top-level keys in `sections` that are valid (an absent optional key is valid and undefined). */
  validSections: ReadonlySet<keyof ConfigFile>;
}

/** Validates parsed YAML (after environment interpolation) against the file format. */
export function checkConfigFile(data: unknown): FileCheck {
  const whole = configFileSchema.safeParse(data, { error: explainIssue });
  const keys = Object.keys(configFileSchema.shape) as (keyof ConfigFile)[];
  if (whole.success) return { problems: [], sections: whole.data, validSections: new Set(keys) };

  const problems: KeyProblem[] = [];
  for (const issue of whole.error.issues) {
    const path = issue.path.map((k) => (typeof k === 'number' ? k : String(k)));
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(path);
      for (const key of issue.keys) {
        const guess = closestKey(key, known);
        const hint = guess ? `did you mean ${guess}?` : `known keys here: ${known.join(', ')}`;
        problems.push({ path: [...path, key], message: `is not a known key (${hint})` });
      }
    } else {
      problems.push({ path, message: issue.message });
    }
  }

  const sections: Record<string, unknown> = {};
  const validSections = new Set<keyof ConfigFile>();
  if (isRecord(data)) {
    for (const key of keys) {
      const result = (configFileSchema.shape[key] as z.ZodType).safeParse(data[key]);
      if (result.success) {
        sections[key] = result.data;
        validSections.add(key);
      }
    }
  }
  return { problems, sections: sections as Partial<ConfigFile>, validSections };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Plain-words messages for zod's issues. Schema-level messages (`error:`
 * above) take precedence. Text values are not echoed here: a mistyped field
 * may hold a secret.
 */
function explainIssue(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.input === undefined) return 'is required';
      const expected = EXPECTED_WORDS[issue.expected] ?? `a ${issue.expected}`;
      // YAML reads 12345678 or yes as a number or boolean; quoting makes it text.
      const quote = issue.expected === 'string' && ['number', 'boolean'].includes(typeof issue.input);
      return `must be ${expected} (got ${describeValue(issue.input)}${quote ? '; put the value in quotes' : ''})`;
    }
    case 'invalid_value':
      if (issue.input === undefined) return 'is required';
      return `must be one of: ${issue.values.map(String).join(', ')} (got ${describeValue(issue.input, true)})`;
    case 'too_small':
    case 'too_big': {
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      const word = issue.code === 'too_small' ? 'at least' : 'at most';
      if (issue.origin === 'string') return `must be ${word} ${bound} characters long`;
      if (issue.origin === 'array') return `must have ${word} ${bound} entries`;
      return `must be ${word} ${bound} (got ${describeValue(issue.input, true)})`;
    }
    default:
      return undefined;
  }
}

const EXPECTED_WORDS: Record<string, string> = {
  string: 'text',
  number: 'a number',
  int: 'a whole number',
  object: 'a mapping of keys to values',
  array: 'a list',
  boolean: 'true or false',
};

function describeValue(value: unknown, quote = false): string {
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return quote ? JSON.stringify(value) : 'text';
  if (typeof value === 'number') return quote || !Number.isInteger(value) ? String(value) : 'a number';
  return String(value);
}

/** The keys the schema knows for the mapping at `path`, for "did you mean" hints. */
function knownKeysAt(path: KeyPath): string[] {
  let schema: z.core.$ZodType = configFileSchema;
  for (const step of [...path, null]) {
    // Unwrap the wrappers the schema uses, to reach the object or array inside.
    for (;;) {
      if (schema instanceof z.ZodPipe) schema = schema.in;
      else if (schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault || schema instanceof z.ZodOptional) {
        schema = schema.unwrap();
      } else break;
    }
    if (step === null) break;
    if (schema instanceof z.ZodArray && typeof step === 'number') schema = schema.element;
    else if (schema instanceof z.ZodObject && typeof step === 'string' && step in schema.shape) {
      schema = schema.shape[step] as z.core.$ZodType;
    } else return [];
  }
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

/** A known key the unknown one was probably meant to be: same letters but case and _/-, or a small edit away. */
function closestKey(key: string, known: readonly string[]): string | null {
  const squash = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = squash(candidate) === squash(key) ? 0 : editDistance(key.toLowerCase(), candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= Math.max(1, Math.floor(key.length / 3)) ? best : null;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** The JSON Schema for editors, as `scripts/write-schema.ts` writes it to schema/airlock.schema.json. */
export function renderConfigJsonSchema(): string {
  // io: 'input' describes the file as written: defaulted keys are optional,
  // and listen/upstream are the strings before their transforms.
  const jsonSchema = z.toJSONSchema(configFileSchema, { io: 'input', target: 'draft-2020-12' });
  return `${JSON.stringify(jsonSchema, null, 2)}\n`;
}
