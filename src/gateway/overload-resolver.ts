/**
 * Asks the upstream which functions and operators a statement really calls,
 * without planning or running it (policy/overloads.ts says when, and judges
 * the answer).
 *
 * How: on a connection of the agent's own read role (same search_path as
 * its sessions), `SET client_min_messages = log` and `SET debug_print_parse
 * = on` (both user-settable, https://www.postgresql.org/docs/current/runtime-config-logging.html#RUNTIME-CONFIG-LOGGING-WHAT),
 * then an extended-protocol Parse of the statement, with the parameter
 * types the agent gave, and a Sync. exec_parse_message runs parse analysis
 * and rewrite, which logs the analysed Query tree; with client_min_messages
 * at log it arrives as a NoticeResponse. Parse analysis resolves every name
 * to an OID (`:funcid`, `:opno`, ...) and runs no function: constant folding
 * and inlining are the planner's, and nothing is planned or executed. (A
 * literal of a base type goes through its input function at parse time;
 * only a superuser can create a base type, and the statement would run it
 * anyway.) The settings are reset in the same round trip.
 *
 * Cost on the server: the parse tree is also written to the server's log
 * (log_min_messages cannot be lowered by a non-superuser), once per distinct
 * ambiguous statement and schema version, thanks to the cache below.
 */
import type { Classification } from '../sql/facts.js';
import type { Decision } from '../policy/decision.js';
import { judgeClassification } from '../policy/read-only.js';
import type { PolicySubject, PreparedLookup } from '../policy/read-only.js';
import type { ResolvedCalls } from '../policy/overloads.js';
import { statementsToResolve } from '../policy/overloads.js';
import { BACKEND, parseErrorFields } from '../protocol/backend.js';
import { encodeParse, encodeQuery, encodeSync, encodeTerminate } from '../protocol/frontend.js';
import { MessageReader } from '../protocol/message-reader.js';
import type { Message } from '../protocol/message-reader.js';
import type { SchemaKnowledge } from '../policy/schema-knowledge.js';
import { BoundedMap } from './bounded-map.js';
import { connectUpstream } from './upstream.js';
import type { UpstreamLogin } from './upstream.js';

/** A connection to the upstream that answers one batch of messages at a time. */
export interface ProbeChannel {
  /** Sends `messages` at once and resolves with everything the server answered up to the `readyCount`th ReadyForQuery. */
  exchange(messages: readonly Buffer[], readyCount: number): Promise<Message[]>;
  /** Ends the connection. */
  close(): void;
}

const SETTINGS_ON = 'SET client_min_messages = log; SET debug_pretty_print = off; SET debug_print_parse = on';
const SETTINGS_OFF = 'RESET debug_print_parse; RESET debug_pretty_print; RESET client_min_messages';

/** Node fields (outfuncs.c names) that hold the OID of a function called. */
const FUNCTION_FIELDS = ['funcid', 'aggfnoid', 'winfnoid', 'opfuncid', 'hashfuncid', 'negfuncid', 'tsmhandler', 'startInRangeFunc', 'endInRangeFunc'] as const;
/** Node fields that hold the OID (or a list of OIDs) of an operator used. */
const OPERATOR_FIELDS = ['opno', 'opnos', 'sortop', 'eqop'] as const;

/**
 * The field is preceded by whitespace (or a node's opening brace): in the
 * dump a name or string that contains `:funcid` is written with escapes
 * (`\:funcid\ 5`), so it never matches; and a real field is never missed,
 * since the dump only breaks lines at whitespace. Values: an integer, or an
 * OID list `(o 96 97)`.
 */
const FIELD = new RegExp(`(?<=[\\s{(]):(${[...FUNCTION_FIELDS, ...OPERATOR_FIELDS].join('|')})\\s+(\\(o[\\s\\d]*\\)|-?\\d+)`, 'g');
const FUNCTION_FIELD_SET: ReadonlySet<string> = new Set(FUNCTION_FIELDS);

/**
 * The functions and operators a parse-tree dump (nodeToString of one analysed
 * Query, as debug_print_parse logs it) calls. Anything but a plain SELECT
 * query is not read: its tree may not show everything that runs.
 */
export function callsInParseTree(dump: string): ResolvedCalls {
  const text = dump.trimStart();
  if (!text.startsWith('{QUERY')) return { ok: false, error: 'the server did not show an analysed query' };
  // CMD_SELECT is 1 in every version since 8.x (nodes.h); a utility statement would hide its query.
  if (!/^\{QUERY\s+:commandType\s+1\s/.test(text)) return { ok: false, error: 'the statement is not a plain SELECT' };
  if (!/\s:utilityStmt\s+<>/.test(text)) return { ok: false, error: 'the statement holds a utility statement' };
  const functions = new Set<number>();
  const operators = new Set<number>();
  for (const m of text.matchAll(FIELD)) {
    const field = m[1]!;
    const values = m[2]!.startsWith('(') ? m[2]!.slice(2, -1).trim().split(/\s+/).filter((v) => v !== '') : [m[2]!];
    for (const v of values) {
      const oid = Number(v);
      if (!Number.isSafeInteger(oid)) return { ok: false, error: `unreadable OID "${v}" in the parse tree` };
      if (oid === 0) continue;
      (FUNCTION_FIELD_SET.has(field) ? functions : operators).add(oid);
    }
  }
  return { ok: true, functions: [...functions], operators: [...operators] };
}

/**
 * Asks the server what `text` (one statement) calls: see the module's
 * comment. A server error (the statement does not analyse: unknown column,
 * no such function, a lock timeout) comes back as `{ ok: false }` with its
 * message, as does any answer Airlock cannot read; the caller refuses then.
 * Rejects only when the channel fails (the connection is then unusable).
 */
export async function resolveCalls(channel: ProbeChannel, text: string, paramTypes: readonly number[] = []): Promise<ResolvedCalls> {
  const answer = await channel.exchange(
    [encodeQuery(SETTINGS_ON), encodeParse('', text, paramTypes), encodeSync(), encodeQuery(SETTINGS_OFF)],
    3,
  );
  // The answer to the Parse sits between the first ReadyForQuery and the second.
  const ready = answer.flatMap((m, i) => (m.type === BACKEND.readyForQuery ? [i] : []));
  if (ready.length !== 3) return { ok: false, error: 'the server answered out of turn' };
  for (const m of answer.slice(0, ready[0])) {
    if (m.type === BACKEND.errorResponse) return { ok: false, error: `the server refused to show parse trees: ${parseErrorFields(m.body).get('M') ?? ''}` };
  }
  const parse = answer.slice(ready[0]! + 1, ready[1]);
  const dumps: string[] = [];
  for (const m of parse) {
    if (m.type === BACKEND.errorResponse) return { ok: false, error: parseErrorFields(m.body).get('M') ?? 'the server refused the statement' };
    if (m.type !== BACKEND.noticeResponse) continue;
    const fields = parseErrorFields(m.body);
    // V is the untranslated severity (9.6+); M is "parse tree:" unless lc_messages translates it.
    if ((fields.get('V') ?? fields.get('S')) === 'LOG' && fields.get('D')?.trimStart().startsWith('{QUERY') === true) dumps.push(fields.get('D')!);
  }
  if (!parse.some((m) => m.type === BACKEND.parseComplete)) return { ok: false, error: 'the server did not complete the Parse' };
  // One statement, one analysed query: anything else is not what was judged.
  if (dumps.length !== 1) return { ok: false, error: `the server showed ${dumps.length} parse trees for one statement` };
  return callsInParseTree(dumps[0]!);
}

/** A ProbeChannel over a fresh upstream connection (as the agent's read role, with its sessions' parameters). */
export async function openProbeChannel(login: UpstreamLogin, options: { timeoutMs?: number; maxMessageBytes?: number } = {}): Promise<ProbeChannel> {
  const conn = await connectUpstream(login);
  const socket = conn.socket;
  const reader = new MessageReader(options.maxMessageBytes ?? 64 << 20);
  const timeoutMs = options.timeoutMs ?? 10_000;
  let turn: Promise<unknown> = Promise.resolve();
  let broken: Error | null = null;
  let current: { onData(chunk: Buffer): void; fail(err: Error): void } | null = null;
  socket.on('data', (chunk: Buffer) => {
    if (current !== null) current.onData(chunk);
    else broken ??= new Error('the database sent a message nobody asked for');
  });
  const end = (err: Error): void => {
    broken ??= err;
    current?.fail(err);
  };
  socket.on('error', (err) => end(new Error(`the probe connection failed: ${err.message}`)));
  socket.on('close', () => end(new Error('the probe connection closed')));
  socket.resume();

  const once = (messages: readonly Buffer[], readyCount: number): Promise<Message[]> =>
    new Promise<Message[]>((resolve, reject) => {
      if (broken !== null) {
        reject(broken);
        return;
      }
      const got: Message[] = [];
      let ready = 0;
      const timer = setTimeout(() => {
        // The connection's state is unknown now: nobody uses it again.
        broken ??= new Error(`the database did not answer within ${timeoutMs} ms`);
        socket.destroy();
        finish(broken);
      }, timeoutMs);
      const finish = (err: Error | null): void => {
        clearTimeout(timer);
        current = null;
        if (err !== null) reject(err);
        else resolve(got);
      };
      current = {
        onData(chunk) {
          try {
            for (const m of reader.push(chunk)) {
              // Views of the chunk: copied, since the answer outlives this callback.
              got.push({ type: m.type, body: Buffer.from(m.body), raw: Buffer.from(m.raw) });
              if (m.type === BACKEND.readyForQuery && ++ready === readyCount) {
                if (reader.buffered > 0) throw new Error('the database sent more than it was asked for');
                finish(null);
                return;
              }
            }
          } catch (err) {
            broken ??= err instanceof Error ? err : new Error(String(err));
            socket.destroy();
            finish(broken);
          }
        },
        fail: (err) => finish(err),
      };
      socket.write(Buffer.concat(messages));
    });

  return {
    exchange(messages, readyCount) {
      // One batch at a time: answers are matched to questions by order.
      const next = turn.then(() => once(messages, readyCount));
      turn = next.catch(() => undefined);
      return next;
    },
    close() {
      if (!socket.destroyed) socket.end(encodeTerminate());
    },
  };
}

/**
 * Resolutions cached per statement text, parameter types and schema
 * version, over one probe channel opened on first use (and again after it
 * failed). One per agent: the probe runs as the agent's read role.
 */
export class OverloadResolver {
  private channel: Promise<ProbeChannel> | null = null;
  private readonly cache: BoundedMap<ResolvedCalls>;
  private readonly inflight = new Map<string, Promise<ResolvedCalls>>();
  private idleTimer: NodeJS.Timeout | null = null;

  /**
   * `open` makes a channel as the agent's read role; it is closed after
   * `idleMs` without questions (ambiguous statements are rare: no need to
   * hold a server connection per agent for them).
   */
  constructor(
    private readonly open: () => Promise<ProbeChannel>,
    options: { maxEntries?: number; idleMs?: number } = {},
  ) {
    this.cache = new BoundedMap(options.maxEntries ?? 5_000);
    this.idleMs = options.idleMs ?? 60_000;
  }

  private readonly idleMs: number;

  /** What `text` calls, as the server resolves it under `schemaVersion`; a failure to ask is `{ ok: false }` (refuse). */
  async resolve(text: string, paramTypes: readonly number[], schemaVersion: string): Promise<ResolvedCalls> {
    const key = `${schemaVersion}\0${paramTypes.join(',')}\0${text}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const pending = this.inflight.get(key);
    if (pending !== undefined) return pending;
    const asked = this.ask(text, paramTypes).then(
      (answer) => {
        this.cache.set(key, answer);
        return answer;
      },
      (err: unknown): ResolvedCalls => {
        // Not cached: the connection failed, not the statement; the next ask opens a new one.
        this.channel?.then((c) => c.close(), () => undefined);
        this.channel = null;
        return { ok: false, error: `Airlock could not ask the database: ${err instanceof Error ? err.message : String(err)}` };
      },
    );
    this.inflight.set(key, asked);
    try {
      return await asked;
    } finally {
      this.inflight.delete(key);
    }
  }

  /**
   * What the server says each statement of `classification` that needs it
   * calls (policy/overloads.ts, statementsToResolve), ready for
   * judgeClassification's `resolutions`; empty (and immediate) when none does.
   * `sentText` is the text as the client sent it: a single statement is
   * asked about in those exact bytes (a classification shared by shape
   * carries another text), several each by their own slice.
   */
  async resolveStatements(
    classification: Classification,
    sentText: string,
    paramTypes: readonly number[],
    schema: SchemaKnowledge | null,
    trusted: ReadonlySet<string>,
  ): Promise<Map<number, ResolvedCalls>> {
    const out = new Map<number, ResolvedCalls>();
    if (!classification.ok) return out;
    const single = classification.statements.length === 1;
    for (const i of statementsToResolve(classification, schema, trusted)) {
      const text = single ? sentText : classification.statements[i]!.text;
      out.set(i, await this.resolve(text, single ? paramTypes : [], schema?.version ?? ''));
    }
    return out;
  }

  /** Closes the probe connection, if open; the next question opens another. */
  close(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    // A channel that failed to open has nothing to close.
    this.channel?.then((c) => c.close(), () => undefined);
    this.channel = null;
  }

  private async ask(text: string, paramTypes: readonly number[]): Promise<ResolvedCalls> {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.channel ??= this.open();
    try {
      const channel = await this.channel;
      return await resolveCalls(channel, text, paramTypes);
    } finally {
      this.idleTimer = setTimeout(() => {
        if (this.inflight.size === 0) this.close();
      }, this.idleMs);
      this.idleTimer.unref();
    }
  }
}

/**
 * The resolver for one agent: its probe connection logs in as the agent's
 * read role with the parameters of the agent's own upstream sessions
 * (search_path above all: names must resolve as they will there).
 */
export function overloadResolverFor(login: UpstreamLogin, options: { timeoutMs?: number; idleMs?: number } = {}): OverloadResolver {
  const probeLogin: UpstreamLogin = { ...login, params: { ...login.params, application_name: 'airlock overload probe' } };
  return new OverloadResolver(() => openProbeChannel(probeLogin, { timeoutMs: options.timeoutMs }), { idleMs: options.idleMs });
}

/** A decision, with what the server said the statements call (keep it with a prepared statement, to judge it again at Execute). */
export interface ResolvedDecision {
  decision: Decision;
  resolutions: ReadonlyMap<number, ResolvedCalls>;
}

const NO_RESOLUTIONS: ReadonlyMap<number, ResolvedCalls> = new Map();

/**
 * judgeClassification, asking the server first when a statement needs it
 * (policy/overloads.ts). On the common path nothing needs asking and the
 * answer is immediate (no Promise, no extra tick); only a statement with a
 * name shared by a user function and a built-in returns a Promise. Without
 * a resolver (no database to ask), the judgement by name stands.
 */
export function judgeResolving(
  resolver: OverloadResolver | null,
  classification: Classification,
  subject: PolicySubject,
  prepared: PreparedLookup,
  sentText: string,
  paramTypes: readonly number[] = [],
): ResolvedDecision | Promise<ResolvedDecision> {
  const trusted = subject.trustedFunctions ?? new Set<string>();
  if (resolver === null || statementsToResolve(classification, subject.schema, trusted).length === 0) {
    return { decision: judgeClassification(classification, subject, prepared), resolutions: NO_RESOLUTIONS };
  }
  // The schema the question is asked under is the one the answer is judged with.
  const schema = subject.schema ?? null;
  return resolver.resolveStatements(classification, sentText, paramTypes, schema, trusted).then((resolutions) => ({
    decision: judgeClassification(classification, { ...subject, schema }, prepared, resolutions),
    resolutions,
  }));
}
