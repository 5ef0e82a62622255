/**
 * From a YAML file to an `AirlockConfig`: parse the YAML, fill in `${VAR}`
 * from the environment, check the file against the schema, then resolve
 * what spans keys or touches the disk (paths, TLS files, read roles). Every
 * problem found is reported at once, each as "<source>: <key.path>: <what>".
 *
 * Secrets (the upstream password, agents' passwords, TLS keys) never appear
 * in a problem or a warning: these end up in terminals and logs.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { DEFAULT_WRITE_LIMITS, POLICY_KIND_ALIASES, shadowedRules } from '../policy/rules.js';
import type { PolicyKind, RuleConfig, WriteLimits } from '../policy/rules.js';
import { DEFAULTS, checkConfigFile, defaultReadRole, defaultWriteRole, isLoopbackHost } from './schema.js';
import type { ConfigFile, KeyPath, KeyProblem, Profile, RuleKindName, UpstreamTarget, WebhookFormat } from './schema.js';

export type { Profile, RuleConfig, SslMode, UpstreamTarget, WriteLimits } from './schema.js';

export interface AgentConfig {
  name: string;
  password: string;
  profile: Profile;
  /** Groups the agent belongs to, as rules name them. */
  groups: string[];
  /** Its write limits: agents[].write_limits over the top-level write_limits over the defaults. */
  writeLimits: WriteLimits;
  /** The database name the agent must ask for in its startup message. */
  database: string;
  /** The upstream role this agent's reads run as. */
  readRole: string;
  /** Most sessions it may hold at once: agents[].max_sessions, else limits.max_sessions_per_agent. */
  maxSessions: number;
  /** The upstream role this agent's writes run as (created only when its policy may write). */
  writeRole: string;
}

export interface AirlockConfig {
  listen: { host: string; port: number };
  upstream: UpstreamTarget;
  /** Absolute. */
  stateDir: string;
  /** PEM contents, not paths. */
  tls: { cert: string; key: string } | null;
  agents: AgentConfig[];
  /** The policy rules in file order: kind aliases expanded, table patterns as written, each with its index. */
  rules: RuleConfig[];
  /** Functions outside pg_catalog that agents may call in reads, as schema.name. */
  trustedFunctions: string[];
  /** tls: PEM contents (admin.tls), or null for plain HTTP. */
  admin: { listen: { host: string; port: number }; totpSecret: string | null; tls: { cert: string; key: string } | null };
  /** The MCP server over Streamable HTTP (`mcp.listen`); null when not configured. */
  mcp: { listen: { host: string; port: number }; approvalWaitSeconds: number } | null;
  /** Scheduled freeze windows, as written (validated again, with time zones, by the freeze store). */
  freezeWindows: FreezeWindowConfig[];
  /** Honeytoken tables, as schema.table patterns with * wildcards. */
  canaryTables: string[];
  /** Undo: tables agents may write without the journal (undo.optional_tables), as schema.table patterns. */
  undo: { optionalTables: string[] };
  tripwire: {
    refusals: number;
    windowSeconds: number;
    webhook: { url: string; format: WebhookFormat } | null;
  };
  approvals: { waitSeconds: number; expireSeconds: number; webhook: { url: string; format: WebhookFormat } | null };
  audit: {
    flushMs: number;
    /** Signed head checkpoints (audit.checkpoint_file / checkpoint_key), or null when not configured. */
    checkpoint: { file: string; key: string } | null;
  };
  limits: {
    maxMessageBytes: number;
    /** Most logged-in sessions at once. */
    maxClients: number;
    /** Most connections at once that have not logged in yet. */
    maxPendingLogins: number;
    /** How long a connection may take to log in. */
    loginTimeoutMs: number;
    connectTimeoutMs: number;
    /** Applied to every agent session by the server (statement_timeout); 0 for none. */
    statementTimeoutMs: number;
    /** Applied to every agent session by the server (lock_timeout); 0 for none. */
    lockTimeoutMs: number;
    /** Set on the read and write roles (idle_in_transaction_session_timeout); 0 for none. */
    idleInTransactionMs: number;
    /** Longer statements are refused before parsing (SQLSTATE 54000). */
    maxStatementBytes: number;
    /** Deadline of one statement's classification in a worker (SQLSTATE 54001 past it). */
    classifyTimeoutMs: number;
    /** Worker threads of the classifier pool. */
    classifierWorkers: number;
    /** A classifier worker holding more memory than this outside its JS heap is replaced. */
    classifierMemoryBytes: number;
    /** Byte budget of the statement cache (an estimate). */
    statementCacheBytes: number;
    /** The process's memory budget (resident bytes); 0: none. */
    maxMemoryBytes: number;
  };
}

export interface ParseOptions {
  /** Names the file in problems and warnings, usually its path. */
  source: string;
  /** Relative paths in the file (state_dir, tls, sslrootcert) are resolved against it. */
  baseDir: string;
  env: Record<string, string | undefined>;
}

export interface LoadedConfig {
  config: AirlockConfig;
  warnings: string[];
}

/** Everything wrong with a configuration, each problem as "<source>: <key.path>: <what is wrong>". */
/** A scheduled freeze window: weekly (local time in an IANA zone) or a date range. */
export type FreezeWindowConfig =
  | { name: string; reason: string; agents: string[] | null; weekly: { days: ('mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun')[]; start: string; end: string; timezone: string } }
  | { name: string; reason: string; agents: string[] | null; from: string; to: string };

export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    const count = problems.length === 1 ? 'a problem' : `${problems.length} problems`;
    super(`The configuration has ${count}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Agents' passwords shorter than this draw a warning. */
const RECOMMENDED_PASSWORD_LENGTH = 16;

/** Parses a configuration file's text. Throws `ConfigError` listing every problem. */
export function parseConfig(text: string, options: ParseOptions): LoadedConfig {
  const { config, warnings } = parse(text, options);
  return { config, warnings };
}

/** Reads and parses a configuration file; relative paths in it are resolved against its directory. */
export async function loadConfig(
  path: string,
  env: Record<string, string | undefined> = process.env,
): Promise<LoadedConfig> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (error) {
    throw new ConfigError([`${path}: ${describeFileError(error, absolute, 'the configuration file')}`]);
  }
  const { config, warnings, literalSecrets } = parse(text, { source: path, baseDir: dirname(absolute), env });
  if (literalSecrets.length > 0 && process.platform !== 'win32') {
    const { mode } = await stat(absolute);
    if (mode & 0o004) {
      warnings.push(
        `${path}: (top level): the file is readable by every user on this machine and holds passwords ` +
          `(${literalSecrets.join(', ')}); an agent with a shell could read them. ` +
          'Make it readable by Airlock\'s user only (chmod 600) or take the passwords from the environment with ${VAR}.',
      );
    }
  }
  return { config, warnings };
}

/** `postgres://user@host:port/database` for logs and messages: never the password. */
export function describeUpstream(u: UpstreamTarget): string {
  const host = u.host.includes(':') ? `[${u.host}]` : u.host;
  const query = u.sslmode === 'prefer' ? '' : `?sslmode=${u.sslmode}`;
  return `postgres://${encodeURIComponent(u.user)}@${host}:${u.port}/${encodeURIComponent(u.database)}${query}`;
}

interface Parsed extends LoadedConfig {
  /** Key paths whose password is written in the file itself rather than taken from the environment. */
  literalSecrets: string[];
}

function parse(text: string, options: ParseOptions): Parsed {
  const { source, env } = options;
  const baseDir = resolve(options.baseDir);

  // prettyErrors is off: its code frame would quote the offending line, which may hold a password.
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${source}:${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${at(e.pos[0])}: YAML syntax: ${e.message}`));
  }
  const warnings = doc.warnings.map((w) => `${at(w.pos[0])}: ${w.message}`);

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // toJS throws on alias bombs and unresolvable aliases; either is a problem with the file, not a crash.
    throw new ConfigError([`${source}: (top level): ${error instanceof Error ? error.message : String(error)}`]);
  }
  if (raw === null || raw === undefined) {
    throw new ConfigError([`${source}: (top level): the file holds no settings; it needs at least upstream and agents.`]);
  }

  const interpolated = interpolate(raw, env);
  const checked = checkConfigFile(interpolated.value);
  // A key whose variable is missing still holds its ${...} text: the schema's view of it would only add noise.
  const schemaProblems = checked.problems.filter(
    (p) => !interpolated.problems.some((e) => isWithin(p.path, e.path)),
  );
  const resolved = resolveSections(checked.sections, checked.validSections, baseDir);
  const problems = [...interpolated.problems, ...schemaProblems, ...resolved.problems];

  const format = (p: KeyProblem) => `${source}: ${formatKeyPath(p.path)}: ${p.message}`;
  if (problems.length > 0 || !resolved.config) {
    throw new ConfigError(sortByPosition(doc, problems).map(format));
  }
  warnings.push(...sortByPosition(doc, resolved.warnings).map(format));

  const literalSecrets: string[] = [];
  if (resolved.config.upstream.password !== null && !passwordFromEnv(raw, ['upstream'], true)) {
    literalSecrets.push('upstream');
  }
  resolved.config.agents.forEach((_, i) => {
    if (!passwordFromEnv(raw, ['agents', i, 'password'], false)) literalSecrets.push(`agents[${i}].password`);
  });
  return { config: resolved.config, warnings, literalSecrets };
}

/** `['agents', 0, 'profile']` → `agents[0].profile`. */
export function formatKeyPath(path: KeyPath): string {
  if (path.length === 0) return '(top level)';
  return path
    .map((step, i) => {
      if (typeof step === 'number') return `[${step}]`;
      if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(step)) return `[${JSON.stringify(step)}]`;
      return i === 0 ? step : `.${step}`;
    })
    .join('');
}

function isWithin(path: KeyPath, prefix: KeyPath): boolean {
  return prefix.length <= path.length && prefix.every((step, i) => path[i] === step);
}

/** Orders problems as their keys appear in the file (missing keys: where their parent is). */
function sortByPosition(doc: Document, problems: KeyProblem[]): KeyProblem[] {
  const offset = (path: KeyPath): number => {
    for (let n = path.length; n > 0; n--) {
      const node: unknown = doc.getIn(path.slice(0, n), true);
      const range = (node as { range?: [number, number, number] } | undefined)?.range;
      if (range) return range[0];
    }
    return 0;
  };
  return problems
    .map((p, i) => ({ p, i, at: offset(p.path) }))
    .sort((a, b) => a.at - b.at || a.i - b.i)
    .map(({ p }) => p);
}

// ---------------------------------------------------------------------------
// Environment interpolation

const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

type Segment = { kind: 'text'; text: string } | { kind: 'variable'; name: string };

interface Interpolated {
  value: unknown;
  problems: KeyProblem[];
}

/**
 * Replaces `${VAR}` in every string of the parsed YAML. It runs on values,
 * after parsing, so a variable's value is a string and nothing more: it
 * cannot add keys or change the file's structure.
 */
function interpolate(value: unknown, env: Record<string, string | undefined>): Interpolated {
  const problems: KeyProblem[] = [];
  // YAML lets an alias point at its own ancestor (`a: &x [*x]`), which toJS turns into a cycle.
  const ancestors = new Set<object>();
  const walk = (node: unknown, path: (string | number)[]): unknown => {
    if (typeof node === 'string') {
      const result = interpolateString(node, env, path.length === 1 && path[0] === 'upstream');
      if (typeof result === 'string') return result;
      problems.push(...result.map((message) => ({ path, message })));
      return node;
    }
    if (typeof node !== 'object' || node === null) return node;
    if (ancestors.has(node)) {
      problems.push({ path, message: 'contains itself through a YAML alias' });
      return null;
    }
    ancestors.add(node);
    const copy = Array.isArray(node)
      ? node.map((item, i) => walk(item, [...path, i]))
      : // fromEntries defines own properties, so a `__proto__` key stays a key (and is then refused as unknown).
        Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v, [...path, k])]));
    ancestors.delete(node);
    return copy;
  };
  return { value: walk(value, []), problems };
}

/** Splits a string into text and `${VAR}` references; `$${` is a literal `${`. */
function tokenize(text: string): Segment[] | string {
  const segments: Segment[] = [];
  let literal = '';
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      literal += '${';
      i += 3;
    } else if (text.startsWith('${', i)) {
      const end = text.indexOf('}', i + 2);
      const name = end < 0 ? '' : text.slice(i + 2, end);
      // The reference's text is not quoted back: a malformed one may sit inside a password.
      if (end < 0) return `has a \${ without a closing } (at character ${i + 1}); write $\${ for a literal \${`;
      if (!VARIABLE_NAME.test(name)) {
        return (
          `has an invalid variable reference at character ${i + 1}: names are letters, digits and _, ` +
          'not starting with a digit, and defaults (${VAR:-x}) are not supported; write $${ for a literal ${'
        );
      }
      if (literal) segments.push({ kind: 'text', text: literal });
      literal = '';
      segments.push({ kind: 'variable', name });
      i = end + 1;
    } else {
      literal += text[i];
      i += 1;
    }
  }
  if (literal) segments.push({ kind: 'text', text: literal });
  return segments;
}

/**
 * Returns the string with its references replaced, or the problems. In the
 * upstream URL, a value substituted into the user or password part is
 * percent-encoded, so a password may hold `@`, `/` or `:`; a URL that is a
 * single `${VAR}` is taken whole, as an already encoded URL.
 */
function interpolateString(text: string, env: Record<string, string | undefined>, isUrl: boolean): string | string[] {
  const segments = tokenize(text);
  if (typeof segments === 'string') return [segments];
  const encodeAt = isUrl && segments.length > 1 ? userinfoSegments(segments) : new Set<number>();
  const problems: string[] = [];
  let out = '';
  segments.forEach((segment, i) => {
    if (segment.kind === 'text') {
      out += segment.text;
      return;
    }
    const value = env[segment.name];
    if (value === undefined) problems.push(`environment variable ${segment.name} is not set`);
    else if (value === '') problems.push(`environment variable ${segment.name} is set but empty`);
    else out += encodeAt.has(i) ? encodeURIComponent(value) : value;
  });
  return problems.length > 0 ? problems : out;
}

/** Indexes of the variables that sit in a URL's user-info part (between `://` and the host's `@`). */
function userinfoSegments(segments: Segment[]): Set<number> {
  // Lay the URL out with each variable as one opaque character, then find the parts in the literal text.
  let skeleton = '';
  const offsets = new Map<number, number>();
  segments.forEach((segment, i) => {
    if (segment.kind === 'variable') {
      offsets.set(i, skeleton.length);
      skeleton += 'v';
    } else {
      skeleton += segment.text;
    }
  });
  const result = new Set<number>();
  const schemeEnd = skeleton.indexOf('://');
  if (schemeEnd < 0) return result;
  const start = schemeEnd + 3;
  const afterAuthority = skeleton.slice(start).search(/[/?#]/);
  const authorityEnd = afterAuthority < 0 ? skeleton.length : start + afterAuthority;
  const atSign = skeleton.lastIndexOf('@', authorityEnd - 1);
  if (atSign < start) return result;
  for (const [i, offset] of offsets) if (offset >= start && offset < atSign) result.add(i);
  return result;
}

/** Whether the password at `path` (in a URL: its user-info part) comes from a variable. */
function passwordFromEnv(raw: unknown, path: (string | number)[], isUrl: boolean): boolean {
  let node = raw;
  for (const step of path) {
    if (typeof node !== 'object' || node === null) return false;
    node = (node as Record<string | number, unknown>)[step];
  }
  if (typeof node !== 'string') return false;
  const segments = tokenize(node);
  if (typeof segments === 'string') return false;
  if (!isUrl || segments.length === 1) return segments.some((s) => s.kind === 'variable');
  return userinfoSegments(segments).size > 0;
}

// ---------------------------------------------------------------------------
// Resolution: what spans keys or touches the disk

interface Resolved {
  problems: KeyProblem[];
  warnings: KeyProblem[];
  config: AirlockConfig | null;
}

function resolveSections(
  sections: Partial<ConfigFile>,
  valid: ReadonlySet<keyof ConfigFile>,
  baseDir: string,
): Resolved {
  const problems: KeyProblem[] = [];
  const warnings: KeyProblem[] = [];
  const problem = (path: KeyPath, message: string) => problems.push({ path, message });
  const warn = (path: KeyPath, message: string) => warnings.push({ path, message });

  let upstream: UpstreamTarget | null = null;
  if (sections.upstream) {
    const u = sections.upstream;
    let sslrootcert: string | null = null;
    if (u.sslrootcert !== null) {
      sslrootcert = resolve(baseDir, u.sslrootcert);
      const unreadable = checkReadableFile(sslrootcert, 'the sslrootcert file');
      if (unreadable) problem(['upstream'], unreadable);
      if (u.sslmode !== 'verify-ca' && u.sslmode !== 'verify-full') {
        warn(['upstream'], `sslrootcert is only used with sslmode=verify-ca or verify-full, and sslmode is ${u.sslmode}.`);
      }
    }
    if (u.sslmode === 'disable' && !isLoopbackHost(u.host)) {
      warn(
        ['upstream'],
        `sslmode=disable sends queries and results to ${u.host} unencrypted, and possibly the password; use sslmode=verify-full.`,
      );
    }
    upstream = { ...u, sslrootcert };
  }

  let stateDir: string | null = null;
  if (sections.state_dir !== undefined) {
    stateDir = resolve(baseDir, sections.state_dir);
    try {
      if (!statSync(stateDir).isDirectory()) problem(['state_dir'], `${stateDir} exists and is not a directory.`);
    } catch (error) {
      // Not existing yet is fine: Airlock creates it on start.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') problem(['state_dir'], describeFileError(error, stateDir, 'the directory'));
    }
  }

  let tls: AirlockConfig['tls'] | undefined;
  if (valid.has('tls')) {
    tls = sections.tls ? loadTls(sections.tls, baseDir, problem, warn) : null;
  }

  if (sections.listen && tls === null && !isLoopbackHost(sections.listen.host)) {
    warn(
      ['listen'],
      `Airlock listens on ${sections.listen.host} without tls: agents' queries and results cross the network unencrypted.`,
    );
  }
  if (sections.mcp && tls === null && !isLoopbackHost(sections.mcp.listen.host)) {
    warn(
      ['mcp', 'listen'],
      `the MCP server listens on ${sections.mcp.listen.host} without tls: agents' credentials, queries and results cross the network unencrypted.`,
    );
  }

  let agents: AgentConfig[] | null = null;
  if (sections.agents) {
    const byName = new Map<string, number>();
    const byRole = new Map<string, { agent: number; kind: 'read' | 'write' }>();
    agents = sections.agents.map((a, i) => {
      const readRole = a.read_role ?? defaultReadRole(a.name);
      const sameName = byName.get(a.name.toLowerCase());
      if (sameName !== undefined) {
        problem(['agents', i, 'name'], `${JSON.stringify(a.name)} is already the name of agents[${sameName}] (names are compared without regard to case).`);
      } else byName.set(a.name.toLowerCase(), i);
      const sameRole = byRole.get(readRole);
      const derived = a.read_role === undefined ? ' (derived from the name; set read_role to choose another)' : '';
      if (sameRole !== undefined) {
        problem(
          ['agents', i, 'read_role'],
          `${readRole}${derived} is already the ${sameRole.kind} role of agents[${sameRole.agent}]; each agent needs its own read role.`,
        );
      } else byRole.set(readRole, { agent: i, kind: 'read' });
      if (upstream && readRole === upstream.user) {
        problem(
          ['agents', i, 'read_role'],
          `${readRole}${derived} is the upstream service account's user; reads must run as a separate role without write grants.`,
        );
      }
      const writeRole = a.write_role ?? defaultWriteRole(a.name);
      const writeDerived = a.write_role === undefined ? ' (derived from the name; set write_role to choose another)' : '';
      const sameWriteRole = byRole.get(writeRole);
      // Two agents of the same name derive the same write role: the name's problem says it already.
      if (sameWriteRole !== undefined && (sameName === undefined || a.write_role !== undefined)) {
        problem(
          ['agents', i, 'write_role'],
          sameWriteRole.agent === i
            ? `${writeRole}${writeDerived} is also this agent's read role; reads and writes run as two different roles.`
            : `${writeRole}${writeDerived} is already the ${sameWriteRole.kind} role of agents[${sameWriteRole.agent}]; each agent needs its own write role.`,
        );
      } else byRole.set(writeRole, { agent: i, kind: 'write' });
      if (upstream && writeRole === upstream.user) {
        problem(
          ['agents', i, 'write_role'],
          `${writeRole}${writeDerived} is the upstream service account's user; writes must run as a separate role holding only the privileges the rules allow.`,
        );
      }
      if (a.password.length < RECOMMENDED_PASSWORD_LENGTH) {
        warn(
          ['agents', i, 'password'],
          `is shorter than ${RECOMMENDED_PASSWORD_LENGTH} characters; a long random one (openssl rand -base64 24) is much harder to guess.`,
        );
      }
      return {
        name: a.name,
        password: a.password,
        profile: a.profile,
        groups: a.groups ?? [],
        writeLimits: resolveWriteLimits(sections.write_limits, a.write_limits),
        database: a.database ?? upstream?.database ?? '',
        readRole,
        maxSessions: a.max_sessions ?? sections.limits?.max_sessions_per_agent ?? DEFAULTS.maxSessionsPerAgent,
        writeRole,
      };
    });
  }

  let rules: RuleConfig[] | null = null;
  if (agents !== null && sections.rules !== undefined && sections.agents !== undefined) {
    rules = resolveRules(sections.rules, sections.agents, problem, warn);
  }

  const { listen, audit, limits, tripwire, admin, approvals } = sections;
  (sections.freeze_windows ?? []).forEach((w, i) => {
    for (const agent of w.agents ?? []) {
      if (agents !== null && !agents.some((a) => a.name === agent)) {
        problem(['freeze_windows', i, 'agents'], `names ${JSON.stringify(agent)}, which is not an agent in this file.`);
      }
    }
    if ('weekly' in w) {
      try {
        new Intl.DateTimeFormat('en-US', { timeZone: w.weekly.timezone });
      } catch {
        problem(['freeze_windows', i, 'weekly', 'timezone'], `${JSON.stringify(w.weekly.timezone)} is not a time zone this machine knows (use an IANA name such as Europe/Berlin or UTC).`);
      }
      if (w.weekly.start === w.weekly.end) problem(['freeze_windows', i, 'weekly', 'end'], 'is the same as start: the window would be empty.');
    } else if (Date.parse(w.from) >= Date.parse(w.to)) {
      problem(['freeze_windows', i, 'to'], 'is not after from.');
    }
  });
  let checkpoint: { file: string; key: string } | null = null;
  if (audit !== undefined) {
    const { checkpoint_file: file, checkpoint_key: key } = audit;
    if ((file === undefined) !== (key === undefined)) {
      problem(['audit', file === undefined ? 'checkpoint_file' : 'checkpoint_key'], 'is needed too: checkpoint_file and checkpoint_key go together.');
    } else if (file !== undefined && key !== undefined) {
      const path = resolve(baseDir, file);
      if (stateDir !== null && (path === stateDir || path.startsWith(stateDir + sep))) {
        problem(['audit', 'checkpoint_file'], `${path} is inside state_dir; the checkpoint must be kept outside the state store, or whoever can cut the log can cut it too.`);
      }
      checkpoint = { file: path, key };
    }
  }
  const adminTls = admin?.tls === undefined ? null : loadTls(admin.tls, baseDir, problem, warn, ['admin', 'tls']);
  if (problems.length > 0 || !listen || !upstream || stateDir === null || tls === undefined || !agents || !rules || !audit || !limits || !tripwire || !admin || !approvals) {
    return { problems, warnings, config: null };
  }
  return {
    problems,
    warnings,
    config: {
      listen,
      upstream,
      stateDir,
      tls,
      agents,
      rules,
      trustedFunctions: sections.trusted_functions ?? [],
      canaryTables: sections.canary_tables ?? [],
      undo: { optionalTables: sections.undo?.optional_tables ?? [] },
      admin: { listen: admin.listen, totpSecret: admin.totp_secret ?? null, tls: adminTls ?? null },
      mcp: sections.mcp === undefined ? null : { listen: sections.mcp.listen, approvalWaitSeconds: sections.mcp.approval_wait_seconds },
      freezeWindows: (sections.freeze_windows ?? []).map((w) => ({ ...w, agents: w.agents ?? null })),
      tripwire: {
        refusals: tripwire.refusals,
        windowSeconds: tripwire.window_seconds,
        webhook: tripwire.webhook ?? null,
      },
      approvals: { waitSeconds: approvals.wait_seconds, expireSeconds: approvals.expire_seconds, webhook: approvals.webhook ?? null },
      audit: { flushMs: audit.flush_ms, checkpoint },
      limits: {
        maxMessageBytes: limits.max_message_bytes,
        maxClients: limits.max_clients,
        maxPendingLogins: limits.max_pending_logins,
        loginTimeoutMs: limits.login_timeout_ms,
        connectTimeoutMs: limits.connect_timeout_ms,
        statementTimeoutMs: limits.statement_timeout_ms,
        lockTimeoutMs: limits.lock_timeout_ms,
        idleInTransactionMs: limits.idle_in_transaction_ms,
        maxStatementBytes: limits.max_statement_bytes,
        classifyTimeoutMs: limits.classify_timeout_ms,
        classifierWorkers: limits.classifier_workers,
        classifierMemoryBytes: limits.classifier_memory_bytes,
        statementCacheBytes: limits.statement_cache_bytes,
        maxMemoryBytes: limits.max_memory_bytes,
      },
    },
  };
}

type WriteLimitsSection = NonNullable<ConfigFile['write_limits']>;
type AgentWriteLimits = NonNullable<ConfigFile['agents'][number]['write_limits']>;

/** An agent's write limits: its own keys, else the top level's (whose keys are defaulted), else the defaults. */
function resolveWriteLimits(global: WriteLimitsSection | undefined, own: AgentWriteLimits | undefined): WriteLimits {
  const base: WriteLimits =
    global === undefined
      ? { ...DEFAULT_WRITE_LIMITS }
      : { maxRows: global.max_rows, requireWhere: global.require_where, rowsPerHour: global.rows_per_hour, writesPerMinute: global.writes_per_minute };
  return {
    maxRows: own?.max_rows ?? base.maxRows,
    requireWhere: own?.require_where ?? base.requireWhere,
    rowsPerHour: own?.rows_per_hour ?? base.rowsPerHour,
    writesPerMinute: own?.writes_per_minute ?? base.writesPerMinute,
  };
}

/** `write` → insert, update, delete, merge; `ddl` → create, alter, drop; in the order written, each once. */
function expandKinds(kinds: readonly RuleKindName[]): PolicyKind[] {
  const out: PolicyKind[] = [];
  for (const k of kinds) {
    const expanded: readonly PolicyKind[] = k === 'write' || k === 'ddl' ? POLICY_KIND_ALIASES[k] : [k];
    for (const e of expanded) if (!out.includes(e)) out.push(e);
  }
  return out;
}

/**
 * Rules as the policy takes them, after the checks that span keys: every
 * agent or group a rule names exists, no group shares an agent's name, and
 * no rule is made unreachable by an earlier one (an error when their
 * decisions differ, which is a contradiction; a warning when they agree).
 */
function resolveRules(
  written: NonNullable<ConfigFile['rules']>,
  agents: ConfigFile['agents'],
  problem: (path: KeyPath, message: string) => void,
  warn: (path: KeyPath, message: string) => void,
): RuleConfig[] {
  const agentNames = new Map(agents.map((a, i) => [a.name.toLowerCase(), i] as const));
  const members = new Map<string, Set<string>>();
  agents.forEach((a, i) => {
    (a.groups ?? []).forEach((group, j) => {
      const key = group.toLowerCase();
      const clash = agentNames.get(key);
      if (clash !== undefined) {
        problem(['agents', i, 'groups', j], `${JSON.stringify(group)} is the name of agents[${clash}]; give the group a name no agent has, so that a rule naming it reads one way.`);
        return;
      }
      const set = members.get(key) ?? new Set<string>();
      set.add(a.name.toLowerCase());
      members.set(key, set);
    });
  });

  const rules: RuleConfig[] = written.map((r, i) => {
    (r.agents ?? []).forEach((name, j) => {
      const key = name.toLowerCase();
      if (agentNames.has(key) || members.has(key)) return;
      const groups = members.size === 0 ? 'no groups' : `groups: ${[...members.keys()].join(', ')}`;
      problem(
        ['rules', i, 'agents', j],
        `names ${JSON.stringify(name)}, which is neither an agent nor a group in this file (agents: ${agents.map((a) => a.name).join(', ')}; ${groups}).`,
      );
    });
    return {
      index: i,
      agents: r.agents ?? null,
      kinds: r.kinds === undefined ? null : expandKinds(r.kinds),
      tables: r.tables ?? null,
      decision: r.decision,
      note: r.note ?? null,
      ...(r.allow_unrecoverable === true ? { allowUnrecoverable: true } : {}),
    };
  });

  const everyone = new Set(agentNames.keys());
  const agentsOf = (rule: RuleConfig): ReadonlySet<string> => {
    if (rule.agents === null) return everyone;
    const set = new Set<string>();
    for (const name of rule.agents) {
      const key = name.toLowerCase();
      if (agentNames.has(key)) set.add(key);
      for (const member of members.get(key) ?? []) set.add(member);
    }
    return set;
  };
  for (const s of shadowedRules(rules, agentsOf)) {
    const earlier = rules[s.by]!;
    if (s.sameDecision) {
      warn(['rules', s.rule], `never applies; rules[${s.by}] already decides it (${earlier.decision}): it comes first and covers all of this rule's agents, kinds and tables.`);
    } else {
      problem(
        ['rules', s.rule],
        `can never apply: rules[${s.by}] comes first, covers all of its agents, kinds and tables, and decides ${earlier.decision} where this rule says ${rules[s.rule]!.decision}. ` +
          `Move this rule above rules[${s.by}], or narrow rules[${s.by}].`,
      );
    }
  }
  return rules;
}

function loadTls(
  files: { cert: string; key: string },
  baseDir: string,
  problem: (path: KeyPath, message: string) => void,
  warn: (path: KeyPath, message: string) => void,
  /** Where the block is in the file: ['tls'] or ['admin', 'tls']. */
  at: KeyPath = ['tls'],
): { cert: string; key: string } | null {
  const certPath = resolve(baseDir, files.cert);
  const keyPath = resolve(baseDir, files.key);
  const cert = readText(certPath, 'the certificate file');
  const key = readText(keyPath, 'the key file');
  if (!cert.ok) problem([...at, 'cert'], cert.problem);
  if (!key.ok) problem([...at, 'key'], key.problem);
  if (!cert.ok || !key.ok) return null;

  let x509: X509Certificate | null = null;
  try {
    x509 = new X509Certificate(cert.text);
  } catch {
    // Node's message ("error:... PEM routines") helps nobody; the decision is: not a certificate.
    problem([...at, 'cert'], `${certPath} does not hold a PEM certificate (-----BEGIN CERTIFICATE-----).`);
  }
  let privateKey: ReturnType<typeof createPrivateKey> | null = null;
  try {
    privateKey = createPrivateKey(key.text);
  } catch {
    // As above: OpenSSL's message says nothing a person can act on.
    problem([...at, 'key'], `${keyPath} does not hold an unencrypted PEM private key.`);
  }
  if (x509 && privateKey) {
    if (!x509.checkPrivateKey(privateKey)) {
      problem([...at, 'key'], `${keyPath} is not the private key of the certificate in ${certPath}.`);
    }
    if (Date.parse(x509.validTo) < Date.now()) {
      warn([...at, 'cert'], `the certificate in ${certPath} expired on ${x509.validTo}; clients that check it will refuse to connect.`);
    }
  }
  if (process.platform !== 'win32' && (key.mode & 0o004) !== 0) {
    warn(
      [...at, 'key'],
      `${keyPath} is readable by every user on this machine (mode ${(key.mode & 0o777).toString(8)}); make it readable by Airlock's user only (chmod 600).`,
    );
  }
  return x509 && privateKey ? { cert: cert.text, key: key.text } : null;
}

function readText(path: string, what: string): { ok: true; text: string; mode: number } | { ok: false; problem: string } {
  try {
    const { mode } = statSync(path);
    return { ok: true, text: readFileSync(path, 'utf8'), mode };
  } catch (error) {
    return { ok: false, problem: describeFileError(error, path, what) };
  }
}

function checkReadableFile(path: string, what: string): string | null {
  try {
    if (!statSync(path).isFile()) return `${what} ${path} is not a regular file.`;
    accessSync(path, constants.R_OK);
    return null;
  } catch (error) {
    return describeFileError(error, path, what);
  }
}

function describeFileError(error: unknown, path: string, what: string): string {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ENOENT':
      return `${what} ${path} does not exist.`;
    case 'EACCES':
    case 'EPERM':
      return `${what} ${path} is not readable by this user (permission denied).`;
    case 'EISDIR':
      return `${what} ${path} is a directory, not a file.`;
    default:
      return `cannot read ${what} ${path}: ${error instanceof Error ? error.message : String(error)}`;
  }
}
