/**
 * The relay between one agent's client connection and its upstream
 * connection: every statement is judged before any byte of it reaches the
 * database, and the upstream's answers are passed through, scanned only for
 * the few messages Airlock must see.
 */
import { randomBytes } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import type net from 'node:net';
import {
  BACKEND,
  commandTagRows,
  errorResponse,
  parseErrorFields,
  parseParameterStatus,
  readyForQuery,
} from '../protocol/backend.js';
import type { ErrorFields, TransactionStatus } from '../protocol/backend.js';
import {
  FRONTEND,
  encodeClose,
  encodeParse,
  encodeQuery,
  parseBind,
  parseExecute,
  parseParse,
  parseQuery,
  parseTarget,
} from '../protocol/frontend.js';
import { MessageReader, ProtocolViolation } from '../protocol/message-reader.js';
import type { Message } from '../protocol/message-reader.js';
import type { Classification, StatementFacts } from '../sql/facts.js';
import type { Decision, Denial } from '../policy/decision.js';
import { describeFreeze, judgeClassification } from '../policy/read-only.js';
import { rowLimitDenial } from '../policy/limits.js';
import type { WriteBudget } from '../policy/limits.js';
import type { AgentPolicy } from '../policy/rules.js';
import type { PolicySubject } from '../policy/read-only.js';
import type { SchemaKnowledge } from '../policy/schema-knowledge.js';
import type { TablePattern } from '../policy/table-pattern.js';
import type { FreezeCause } from '../state/freeze-store.js';
import type { AuditEntry, AuditLog } from '../state/audit-log.js';
import type { StatementCache } from './statement-cache.js';
import { WriteExecutor, denialFields } from '../executor/write-executor.js';
import type { WriteImpact, WriteResult } from '../executor/write-executor.js';
import { WriteConnectionLost } from '../executor/write-connection.js';
import type { WriteConnection } from '../executor/write-connection.js';

/** What the relay needs from the gateway. */
export interface RelayContext {
  cache: StatementCache;
  audit: AuditLog;
  maxMessageBytes: number;
  /** The upstream's schema as last read (functions, views), or null if it could not be read. */
  schema: () => SchemaKnowledge | null;
  trustedFunctions: ReadonlySet<string>;
  canaryTables: readonly TablePattern[];
  /** Why an agent is frozen now, or null. */
  freezeCause: (agent: string) => FreezeCause | null;
  /** Told of every refusal, after it is on the record (the tripwire listens here). */
  onRefusal: (who: RelayIdentity, denial: Denial, text: string) => void;
  /** Settings the upstream reports (ParameterStatus) and the only values they may take. */
  pinnedParameters: ReadonlyMap<string, string>;
  /** The agent's compiled policy; undefined for a plain read-only agent. */
  policyFor: (agent: string) => AgentPolicy | undefined;
  /** Opens a session's write connection (the service account, read-write), for agents that may write. */
  openWriteConnection: (who: RelayIdentity) => Promise<WriteConnection>;
  /** Every agent's write budgets, over all its sessions. */
  budget: WriteBudget;
  log: (line: string) => void;
}

export interface RelayIdentity {
  agent: string;
  profile: string;
  session: string;
  client: string;
}

/** A statement sent upstream whose outcome is not known yet. */
interface InFlight {
  text: string;
  fingerprint: string | undefined;
  params: (string | null)[] | undefined;
  rule: string;
  started: number;
  /** An allowed write: it runs measured on the write connection. */
  write?: boolean;
  /** For a write: what it is. */
  facts?: StatementFacts;
}

/** Everything between two ReadyForQuery messages. */
interface Cycle {
  statements: InFlight[];
  /** Statements answered so far. */
  done: number;
  /** A refusal injected into this cycle: the upstream's syntax error for `token` is replaced by `denial`. */
  refusal: { token: string; denial: Denial } | null;
  /** ParseComplete/CloseComplete answers to statements Airlock itself re-prepared on this connection, not to be passed on. */
  swallow: number;
}

/** A prepared statement as Airlock judged it. */
interface Prepared {
  text: string;
  classification: Classification;
  /** The client's Parse message, kept (sessions that may write) to prepare it again on the other connection. */
  parse?: Buffer;
}

/** Where a session's current transaction runs. */
type Home = 'read' | 'write';

/** What a cycle (up to Sync or a Query) of a session that may write needs, as it was judged message by message. */
interface Routing {
  /** Allowed writes in it. */
  writes: number;
  /** It starts a transaction block. */
  begins: boolean;
  /** It ends a transaction block with COMMIT. */
  commits: boolean;
  /** It asks for a read-write transaction (BEGIN/SET TRANSACTION ... READ WRITE): never on the read path. */
  readWrite: boolean;
  /** Prepared statements named in the batch, by position, so each connection can be given the ones it lacks. */
  events: StatementEvent[];
}

interface StatementEvent {
  /** Index of the message in the batch. */
  index: number;
  kind: 'parse' | 'close' | 'use';
  name: string;
  prepared: Prepared | undefined;
}

/** A cycle bound for the write connection. */
interface WriteJob {
  cycle: Cycle;
  batch: Buffer[];
  routing: Routing;
}

function newRouting(): Routing {
  return { writes: 0, begins: false, commits: false, readWrite: false, events: [] };
}

const EMPTY_PARAMS: (string | null)[] = [];

/** Marks a statement the server skipped because an earlier one in its cycle failed. */
const SKIPPED = 'skipped';

function newCycle(): Cycle {
  return { statements: [], done: 0, refusal: null, swallow: 0 };
}

const EMPTY = Buffer.alloc(0);

/**
 * A token the upstream echoes in its syntax error ('syntax error at or near
 * "airlock_refused_…"'), so the error can be found and replaced. Sending a
 * statement that fails puts the upstream in exactly the state a refused
 * statement must leave: the transaction (if any) failed, the rest of the
 * extended-protocol batch skipped until Sync.
 */
function refusalToken(): string {
  return 'airlock_refused_' + randomBytes(8).toString('hex');
}

export class Relay {
  private readonly reader: MessageReader;
  private readonly subject: PolicySubject;
  private readonly statements = new Map<string, Prepared>();
  private readonly portals = new Map<string, { prepared: Prepared | undefined; params: (string | null)[] }>();
  /** Messages judged but not yet forwarded: they go at the next Sync or Flush. */
  private batch: Buffer[] = [];
  private batchBytes = 0;
  /** After a refusal in the extended protocol, the upstream skips to Sync; so does Airlock. */
  private skipping = false;
  private open: Cycle = newCycle();
  private readonly inflight: Cycle[] = [];
  /** Upstream bytes of an uninteresting message still to pass through unscanned. */
  private passRemaining = 0;
  private upstreamHeld: Buffer | null = null;
  private closed = false;
  txStatus: TransactionStatus = 'I';

  // ---- sessions that may write (policy.mayWrite) --------------------------
  /** The agent's policy when it may write; null for a read-only session, which never uses what follows. */
  private readonly policy: AgentPolicy | null;
  private writer: WriteExecutor | null = null;
  private home: Home = 'read';
  /** The write transaction now open has kept a write: its COMMIT is refused under a freeze. */
  private txWrote = false;
  /** Client messages that arrived while the write connection worked; handled, in order, once it is done. */
  private held: Message[] | null = null;
  private heldBytes = 0;
  private routing: Routing = newRouting();
  /** Which prepared statement each connection holds under each name. */
  private readonly onRead = new Map<string, Prepared>();
  private readonly onWrite = new Map<string, Prepared>();
  /** Resolved when the read connection has answered everything sent to it. */
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly client: net.Socket,
    private readonly upstream: net.Socket,
    private readonly ctx: RelayContext,
    private readonly who: RelayIdentity,
    /** Called once when either side ends. */
    private readonly onEnd: (reason: string) => void,
    /** Sends the upstream a CancelRequest for this session's running query. */
    private readonly cancelUpstream: () => void = () => undefined,
  ) {
    this.reader = new MessageReader(ctx.maxMessageBytes);
    this.subject = {
      agent: who.agent,
      profile: who.profile,
      schema: null,
      trustedFunctions: ctx.trustedFunctions,
      canaryTables: ctx.canaryTables,
      freeze: () => ctx.freezeCause(who.agent),
    };
    const policy = ctx.policyFor(who.agent);
    if (policy !== undefined) this.subject.policy = policy;
    this.policy = policy?.mayWrite === true ? policy : null;
  }

  /** Starts relaying; `leftover` holds client bytes that arrived with the last start-up message. */
  start(leftover: Buffer): void {
    this.client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    this.upstream.on('data', (chunk: Buffer) => this.fromUpstream(chunk));
    this.client.on('close', () => this.clientLeft());
    this.upstream.on('close', () => this.upstreamLost());
    this.client.on('error', (err) => {
      this.ctx.log(`session ${this.who.session}: client error: ${err.message}`);
      this.clientLeft();
    });
    this.upstream.on('error', (err) => this.ctx.log(`session ${this.who.session}: upstream error: ${err.message}`));
    this.client.on('drain', () => this.upstream.resume());
    this.upstream.on('drain', () => this.client.resume());
    this.upstream.resume();
    this.client.resume();
    if (leftover.length > 0) this.fromClient(leftover);
  }

  // ---- client → upstream -------------------------------------------------

  private fromClient(chunk: Buffer): void {
    if (this.closed) return;
    let messages: Message[];
    try {
      messages = this.reader.push(chunk);
      for (const m of messages) {
        this.onClientMessage(m);
        if (this.closed) return;
      }
    } catch (err) {
      this.failSession(err);
      return;
    }
    if (this.batchBytes > this.ctx.maxMessageBytes) {
      this.fatal({
        severity: 'FATAL',
        code: '08P01',
        message: `airlock: the client sent more than ${this.ctx.maxMessageBytes} bytes of messages without a Sync or Flush`,
      });
    }
  }

  private onClientMessage(m: Message): void {
    if (this.held !== null) {
      this.held.push(m);
      this.heldBytes += m.raw.length;
      if (this.heldBytes > this.ctx.maxMessageBytes) throw new ProtocolViolation(`more than ${this.ctx.maxMessageBytes} bytes sent while a write was running`);
      return;
    }
    if (this.skipping && m.type !== FRONTEND.sync) {
      // The upstream would discard these too (it is skipping to Sync after
      // the refusal); they are never forwarded.
      return;
    }
    switch (m.type) {
      case FRONTEND.query:
        this.onQuery(m);
        return;
      case FRONTEND.parse:
        this.onParse(m);
        return;
      case FRONTEND.bind:
        this.onBind(m);
        return;
      case FRONTEND.execute:
        this.onExecute(m);
        return;
      case FRONTEND.describe: {
        const t = parseTarget(m.body, 'Describe');
        if (this.policy !== null && t.target === 'statement') this.statementEvent('use', t.name, this.statements.get(t.name));
        this.queue(m.raw);
        return;
      }
      case FRONTEND.close: {
        const t = parseTarget(m.body, 'Close');
        if (t.target === 'statement') {
          if (this.policy !== null) this.statementEvent('close', t.name, undefined);
          this.statements.delete(t.name);
        } else {
          this.portals.delete(t.name);
        }
        this.queue(m.raw);
        return;
      }
      case FRONTEND.flush:
        this.queue(m.raw);
        // A session that may write sends a batch bound for the write
        // connection only at Sync: its answers come then.
        if (this.policy === null || !this.needsWriter()) this.forwardBatch();
        return;
      case FRONTEND.sync: {
        this.skipping = false;
        this.queue(m.raw);
        if (this.policy !== null && this.needsWriter()) {
          this.routeToWriter(null);
          return;
        }
        const cycle = this.open;
        this.inflight.push(cycle);
        this.open = newCycle();
        this.forwardBatch(cycle);
        return;
      }
      case FRONTEND.functionCall:
        this.refuseSimple(
          {
            kind: 'deny',
            rule: 'function-call-message',
            message: `airlock: agent "${this.who.agent}" may not use the FunctionCall protocol message (profile ${this.who.profile})`,
            hint: 'Call functions from a SELECT instead; Airlock judges statements, and a FunctionCall carries none.',
            sqlstate: '42501',
          },
          '(FunctionCall message)',
        );
        return;
      case FRONTEND.copyData:
      case FRONTEND.copyDone:
      case FRONTEND.copyFail:
        // COPY FROM STDIN is never allowed, so there is no copy to feed;
        // the server ignores these outside COPY, and so does Airlock.
        return;
      case FRONTEND.terminate:
        this.queue(m.raw);
        this.forwardBatch();
        this.end('client terminated');
        return;
      default:
        throw new ProtocolViolation(`invalid frontend message type ${m.type} ('${String.fromCharCode(m.type)}')`);
    }
  }

  private queue(raw: Buffer): void {
    this.batch.push(raw);
    this.batchBytes += raw.length;
  }

  private forwardBatch(cycle: Cycle = this.open): void {
    if (this.batch.length === 0) return;
    let batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    if (this.policy !== null) {
      const routed = this.forConnection(this.onRead, batch, this.takeEvents());
      batch = routed.messages;
      cycle.swallow += routed.swallow;
    }
    let ok = true;
    const whole = contiguous(batch);
    if (whole !== null) {
      ok = this.upstream.write(whole);
    } else {
      this.upstream.cork();
      for (const b of batch) ok = this.upstream.write(b);
      this.upstream.uncork();
    }
    if (!ok) this.client.pause();
  }

  /** Decodes statement text exactly as the server will read it, or explains why it can't be judged. */
  private statementText(bytes: Buffer): string | Denial {
    if (!isUtf8(bytes)) {
      return {
        kind: 'deny',
        rule: 'encoding',
        message: 'airlock: the statement is not valid UTF-8, so it was not run',
        hint: 'Airlock sessions use the UTF8 client encoding; send statements encoded in UTF-8.',
        sqlstate: '22021',
      };
    }
    return bytes.toString('utf8');
  }

  private judge(text: string): { classification: Classification; decision: Decision } {
    const classification = this.ctx.cache.classify(text);
    if (!this.ctx.audit.healthy) {
      return {
        classification,
        decision: {
          kind: 'deny',
          rule: 'audit-unavailable',
          message: 'airlock: the audit log cannot be written, so no statement is served until it can',
          hint: "A human must check Airlock's state directory (disk space, permissions) and its log.",
          sqlstate: '58030',
        },
      };
    }
    this.subject.schema = this.ctx.schema();
    const decision = judgeClassification(classification, this.subject, (name) => this.preparedFacts(name));
    return { classification, decision };
  }

  private preparedFacts(name: string): StatementFacts | undefined {
    const p = this.statements.get(name);
    if (p === undefined || !p.classification.ok || p.classification.statements.length !== 1) return undefined;
    return p.classification.statements[0];
  }

  private onQuery(m: Message): void {
    const text = this.statementText(parseQuery(m.body));
    if (typeof text !== 'string') {
      this.refuseSimple(text, '(invalid UTF-8)');
      return;
    }
    const { classification, decision } = this.judge(text);
    if (decision.kind === 'deny') {
      this.refuseSimple(decision, text, classification);
      return;
    }
    const write = decision.kind === 'allow-write';
    if (this.policy !== null && classification.ok) {
      if (write && classification.statements.length > 1) {
        this.refuseSimple(this.writeShapeDenial('multi-statement-write', 'send a write together with other statements in one query string'), text, classification);
        return;
      }
      for (const facts of classification.statements) this.noteTransaction(facts);
      if (write) this.routing.writes++;
    }
    const cycle = this.closeCycle();
    const started = Date.now();
    if (classification.ok) {
      // One statement: record the text as sent (a cache hit by shape carries
      // another text of the same shape); several: each one's own slice.
      const single = classification.statements.length === 1;
      for (const facts of classification.statements) {
        cycle.statements.push({ text: single ? text : facts.text, fingerprint: classification.fingerprint, params: undefined, rule: decision.rule, started, write, facts });
      }
      this.trackSqlPrepared(classification);
    }
    this.queue(m.raw);
    if (this.policy !== null && this.needsWriter()) {
      this.routeToWriter(cycle);
      return;
    }
    this.inflight.push(cycle);
    this.forwardBatch(cycle);
  }

  /**
   * Ends the open cycle for a message that gets its own ReadyForQuery (Query,
   * FunctionCall). Extended-protocol messages sent before it without a Sync
   * are answered in the same cycle, so they stay in it.
   */
  private closeCycle(): Cycle {
    const cycle = this.open;
    this.open = newCycle();
    return cycle;
  }

  /** SQL-level PREPARE and DEALLOCATE share the namespace of protocol-level statements. */
  private trackSqlPrepared(classification: Extract<Classification, { ok: true }>): void {
    for (const facts of classification.statements) {
      const p = facts.prepared;
      if (p === undefined) continue;
      if (p.action === 'prepare' && p.name !== null && facts.inner !== undefined && !this.statements.has(p.name)) {
        this.statements.set(p.name, {
          text: facts.inner.text,
          classification: { ok: true, statements: [facts.inner], fingerprint: classification.fingerprint },
        });
      } else if (p.action === 'deallocate' && p.name !== null) {
        this.statements.delete(p.name);
      } else if (p.action === 'deallocate-all') {
        this.statements.clear();
      }
    }
  }

  /** Refuses a simple-protocol message: the upstream fails an injected statement, and its error is replaced. */
  private refuseSimple(denial: Denial, text: string, classification?: Classification): void {
    this.recordDenial(denial, text, classification, undefined);
    const token = refusalToken();
    const cycle = this.closeCycle();
    cycle.refusal = { token, denial };
    this.queue(encodeQuery(token));
    if (this.policy !== null && this.needsWriter()) {
      // The agent's transaction is on the write connection: the refusal fails it there.
      this.routeToWriter(cycle);
      return;
    }
    this.inflight.push(cycle);
    this.forwardBatch(cycle);
  }

  private onParse(m: Message): void {
    const parse = parseParse(m.body);
    const text = this.statementText(parse.query);
    let classification: Classification | undefined;
    let decision: Decision;
    if (typeof text === 'string') {
      ({ classification, decision } = this.judge(text));
    } else {
      decision = text;
    }
    if (decision.kind === 'deny') {
      this.recordDenial(decision, typeof text === 'string' ? text : '(invalid UTF-8)', classification, undefined);
      const token = refusalToken();
      this.open.refusal = { token, denial: decision };
      // Same name as the refused statement: a failed Parse of the unnamed
      // statement drops the old one, a failed named Parse changes nothing;
      // the upstream then does to its statements what it would have done.
      this.queue(encodeParse(parse.name, token));
      if (parse.name === '') this.statements.delete('');
      this.skipping = true;
      return;
    }
    // The server refuses to redefine a named statement that exists; keep
    // Airlock's view identical to the server's.
    if (parse.name === '' || !this.statements.has(parse.name)) {
      const prepared: Prepared = { text: text as string, classification: classification! };
      this.statements.set(parse.name, prepared);
      if (this.policy !== null) {
        prepared.parse = Buffer.from(m.raw);
        this.statementEvent('parse', parse.name, prepared);
      }
    }
    this.queue(m.raw);
  }

  private onBind(m: Message): void {
    const bind = parseBind(m.body);
    const prepared = this.statements.get(bind.statement);
    this.portals.set(bind.portal, { prepared, params: bind.params });
    if (this.policy !== null) this.statementEvent('use', bind.statement, prepared);
    this.queue(m.raw);
  }

  private onExecute(m: Message): void {
    const exec = parseExecute(m.body);
    const portal = this.portals.get(exec.portal);
    const prepared = portal?.prepared;
    let rule = 'read';
    let write = false;
    if (this.policy !== null && prepared !== undefined) {
      // Judged again as it runs: a freeze or a spent budget since the Parse counts.
      const decision = this.judgeAgain(prepared);
      if (decision.kind === 'deny' || (decision.kind === 'allow-write' && this.routing.writes > 0)) {
        const denial =
          decision.kind === 'deny'
            ? decision
            : this.writeShapeDenial('pipelined-write', 'send a second write before the Sync that ends the first');
        this.recordDenial(denial, prepared.text, prepared.classification, portal?.params);
        const token = refusalToken();
        this.open.refusal = { token, denial };
        // A named Parse that fails creates nothing; the server skips to Sync.
        this.queue(encodeParse(token, token));
        this.skipping = true;
        return;
      }
      rule = decision.rule;
      write = decision.kind === 'allow-write';
      if (write) this.routing.writes++;
      if (prepared.classification.ok) for (const facts of prepared.classification.statements) this.noteTransaction(facts);
    }
    this.open.statements.push({
      text: prepared?.text ?? `(portal "${exec.portal}")`,
      fingerprint: prepared?.classification.ok === true ? prepared.classification.fingerprint : undefined,
      params: portal?.params ?? EMPTY_PARAMS,
      rule,
      started: Date.now(),
      write,
      facts: write && prepared?.classification.ok === true ? prepared.classification.statements[0] : undefined,
    });
    this.queue(m.raw);
  }

  // ---- the write path (sessions that may write) ------------------------------

  private judgeAgain(prepared: Prepared): Decision {
    if (!this.ctx.audit.healthy) return this.judge(prepared.text).decision;
    this.subject.schema = this.ctx.schema();
    return judgeClassification(prepared.classification, this.subject, (name) => this.preparedFacts(name));
  }

  private writeShapeDenial(rule: string, what: string): Denial {
    return {
      kind: 'deny',
      rule,
      message: `airlock: agent "${this.who.agent}" may not ${what}: each write runs on its own, measured and limited`,
      hint: 'Send each write as a statement of its own (one per query string, or one Execute per Sync).',
      sqlstate: '0A000',
    };
  }

  /** Notes what a statement does to the transaction, for routing. */
  private noteTransaction(facts: StatementFacts): void {
    const t = facts.transaction;
    if (t === undefined) return;
    // Whatever could turn read-only off goes to the write connection or nowhere.
    if (t.readWrite) this.routing.readWrite = true;
    if (facts.kind !== 'transaction') return;
    if (t.action === 'begin') this.routing.begins = true;
    if (t.action === 'commit') this.routing.commits = true;
  }

  private statementEvent(kind: StatementEvent['kind'], name: string, prepared: Prepared | undefined): void {
    this.routing.events.push({ index: this.batch.length, kind, name, prepared });
  }

  private takeEvents(): StatementEvent[] {
    const events = this.routing.events;
    if (events.length > 0) this.routing.events = [];
    return events;
  }

  /** Whether the cycle being collected must go to the write connection (or wait to know). */
  private needsWriter(): boolean {
    return this.home === 'write' || this.routing.writes > 0 || this.routing.begins || this.routing.readWrite;
  }

  /**
   * The batch as one connection must receive it: a statement the client
   * prepared on the other connection is prepared here first (answers
   * swallowed), so named statements work whichever way a cycle goes.
   */
  private forConnection(has: Map<string, Prepared>, batch: Buffer[], events: readonly StatementEvent[]): { messages: Buffer[]; swallow: number } {
    if (events.length === 0) return { messages: batch, swallow: 0 };
    const out: Buffer[] = [];
    let swallow = 0;
    let e = 0;
    for (let i = 0; i < batch.length; i++) {
      for (; e < events.length && events[e]!.index === i; e++) {
        const ev = events[e]!;
        const here = has.get(ev.name);
        if (ev.kind === 'close') {
          has.delete(ev.name);
        } else if (ev.prepared !== undefined && here !== ev.prepared) {
          // The name holds another statement here (closed by the client on the other connection): close it first.
          if (ev.name !== '' && here !== undefined) {
            out.push(encodeClose('statement', ev.name));
            swallow++;
          }
          if (ev.kind === 'use' && ev.prepared.parse !== undefined) {
            out.push(ev.prepared.parse);
            swallow++;
          }
          has.set(ev.name, ev.prepared);
        }
      }
      out.push(batch[i]!);
    }
    return { messages: out, swallow };
  }

  /** Hands the collected cycle to the write connection; client input waits until it is answered. */
  private routeToWriter(cycle: Cycle | null): void {
    const job: WriteJob = { cycle: cycle ?? this.open, batch: this.batch, routing: this.routing };
    if (cycle === null) this.open = newCycle();
    this.batch = [];
    this.batchBytes = 0;
    this.routing = newRouting();
    this.held = [];
    this.heldBytes = 0;
    this.client.pause();
    this.runJob(job).then(
      () => {
        if (this.closed) return;
        this.client.resume();
        this.release();
      },
      (err: unknown) => {
        if (this.closed) return;
        if (err instanceof WriteConnectionLost) {
          this.fatal({
            severity: 'FATAL',
            code: '08006',
            message: `airlock: the write connection to the database was lost (${err.message}); any open transaction was rolled back`,
            hint: 'Reconnect and try again.',
          });
          return;
        }
        this.failSession(err);
      },
    );
  }

  /** Handles, in order, what the client sent while the write connection worked. */
  private release(): void {
    const queue = this.held ?? [];
    this.held = null;
    this.heldBytes = 0;
    try {
      for (let i = 0; i < queue.length; i++) {
        // onClientMessage may have started another write, which holds input again.
        const held = this.held as Message[] | null;
        if (held !== null) {
          // Another write started: the rest waits for it.
          const rest = queue.slice(i);
          held.push(...rest);
          for (const m of rest) this.heldBytes += m.raw.length;
          return;
        }
        this.onClientMessage(queue[i]!);
        if (this.closed) return;
      }
    } catch (err) {
      this.failSession(err);
    }
  }

  /** The write connection while a write runs on it (what a CancelRequest should reach), else null. */
  get writeConnection(): WriteConnection | null {
    return this.held !== null && this.writer !== null ? this.writer.connection : null;
  }

  private readDrained(): Promise<void> {
    if (this.inflight.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private async openWriter(): Promise<WriteExecutor> {
    if (this.writer === null) {
      try {
        const writer = new WriteExecutor(await this.ctx.openWriteConnection(this.who));
        try {
          await writer.verifyMeasurable();
        } catch (err) {
          writer.connection.close();
          throw err;
        }
        this.writer = writer;
      } catch (err) {
        throw new WriteConnectionLost(`could not open it: ${(err as Error).message}`);
      }
    }
    return this.writer;
  }

  private async runJob(job: WriteJob): Promise<void> {
    // Answers go back in order: what is in flight on the read connection first.
    await this.readDrained();
    if (this.closed) return;
    const { cycle, routing } = job;
    if (this.home === 'read') {
      const frozen = this.ctx.freezeCause(this.who.agent);
      const toWriter = routing.writes > 0 || (routing.begins && this.txStatus === 'I' && frozen === null);
      if ((routing.writes > 0 && this.txStatus !== 'I') || (routing.readWrite && (!toWriter || this.txStatus !== 'I'))) {
        // The transaction began on the read path (read-only, or under a freeze): it stays read-only.
        const denial: Denial =
          frozen !== null && this.txStatus === 'I'
            ? {
                kind: 'deny',
                rule: 'freeze',
                message: `airlock: agent "${this.who.agent}" may not begin a read-write transaction: ${describeFreeze(frozen)}`,
                hint: 'Reads go on. Only a human with an admin token can lift the freeze (airlock unfreeze); nothing sent over this connection can.',
                sqlstate: '25006',
              }
            : {
                kind: 'deny',
                rule: 'read-only-transaction',
                message: `airlock: agent "${this.who.agent}" may not write in this transaction: it began on the read path, where PostgreSQL refuses writes`,
                hint: 'End the transaction and begin a new one for the write (a transaction begun while the agent was frozen, or READ ONLY, stays read-only).',
                sqlstate: '25006',
              };
        const w = cycle.statements.find((s) => s.write === true) ?? cycle.statements[0];
        this.recordDenial(denial, w?.text ?? '(write)', undefined, w?.params);
        const token = refusalToken();
        cycle.refusal = { token, denial };
        cycle.statements = [];
        this.inflight.push(cycle);
        this.upstream.write(encodeQuery(token));
        return;
      }
      if (!toWriter) {
        // Nothing for the write connection after all (a BEGIN while frozen): the read path takes it.
        this.inflight.push(cycle);
        this.batch = job.batch;
        this.routing.events = routing.events;
        this.forwardBatch(cycle);
        return;
      }
    }
    const writer = await this.openWriter();
    if (this.closed) return;
    const cause = routing.commits && this.txWrote ? this.ctx.freezeCause(this.who.agent) : null;
    if (cause !== null) {
      await this.refuseCommit(writer, cycle, cause);
      return;
    }
    const routed = this.forConnection(this.onWrite, job.batch, routing.events);
    const write = cycle.statements.find((s) => s.write === true);
    // A cycle with a refusal in it fails as a whole (PostgreSQL aborts the
    // transaction, implicit or not, at the refused statement): nothing in it
    // can be kept, so it needs no measuring.
    if (write !== undefined && writer.status !== 'E' && cycle.refusal === null) {
      await this.runWrite(writer, cycle, write, routed);
      return;
    }
    // Reads, transaction control, refusals inside the write transaction:
    // answered as the read path answers, through the same bookkeeping.
    this.inflight.push(cycle);
    const status = await writer.pass(routed.messages, routed.swallow, (m) => {
      const replacement = this.inspect(m.type, m.body);
      if (!this.closed) this.toClient(replacement ?? m.raw);
    });
    this.settle(status);
  }

  /** A transaction that wrote cannot commit under a freeze: it is rolled back instead. */
  private async refuseCommit(writer: WriteExecutor, cycle: Cycle, cause: FreezeCause): Promise<void> {
    await writer.rollback();
    const denial: Denial = {
      kind: 'deny',
      rule: 'freeze',
      message: `airlock: agent "${this.who.agent}" may not commit a transaction that wrote: ${describeFreeze(cause)}`,
      hint: 'The transaction was rolled back; nothing it wrote was kept. Only a human with an admin token can lift the freeze.',
      sqlstate: '25006',
    };
    const commit = cycle.statements.find((s) => /^\s*(commit|end)\b/i.test(s.text)) ?? cycle.statements[0];
    this.recordDenial(denial, commit?.text ?? 'COMMIT', undefined, undefined);
    this.toClient(Buffer.concat([errorResponse(denialFields(denial, 'The transaction was rolled back.')), readyForQuery('I')]));
    this.settle('I');
  }

  private async runWrite(writer: WriteExecutor, cycle: Cycle, write: InFlight, routed: { messages: Buffer[]; swallow: number }): Promise<void> {
    const policy = this.policy!;
    const limits = policy.limits;
    const facts = write.facts;
    const truncates = facts?.changes.some((c) => c.action === 'truncate') === true;
    const early =
      truncates && facts?.cascade === true
        ? {
            kind: 'deny' as const,
            rule: 'truncate-cascade',
            message: `airlock: agent "${this.who.agent}" may not run TRUNCATE ... CASCADE: Airlock cannot count beforehand the rows it would remove from the tables it reaches`,
            hint: 'Truncate the tables by name (without CASCADE), or DELETE, which is measured; or a human runs it.',
            sqlstate: '0A000',
          }
        : this.ctx.budget.beforeWrite(this.subject, limits);
    if (early !== null) {
      // Refused before it runs; the refusal fails the agent's transaction, if any, as an error would.
      this.recordDenial(early, write.text, undefined, write.params);
      const token = refusalToken();
      cycle.refusal = { token, denial: early };
      cycle.statements = [];
      this.inflight.push(cycle);
      this.settle(await writer.pass([encodeQuery(token)], 0, (m) => {
        const replacement = this.inspect(m.type, m.body);
        if (!this.closed) this.toClient(replacement ?? m.raw);
      }));
      return;
    }
    const check = (impact: WriteImpact): Denial | null => {
      const frozen = this.ctx.freezeCause(this.who.agent);
      if (frozen !== null) {
        return {
          kind: 'deny',
          rule: 'freeze',
          message: `airlock: agent "${this.who.agent}" may not write: ${describeFreeze(frozen)}`,
          hint: 'Reads go on. Only a human with an admin token can lift the freeze (airlock unfreeze); nothing sent over this connection can.',
          sqlstate: '25006',
        };
      }
      if (impact.rows > limits.maxRows) return rowLimitDenial(this.subject, impact.rows, limits.maxRows, impact.tables);
      const beyond = this.unallowedChange(impact);
      if (beyond !== null) return beyond;
      return this.ctx.budget.afterWrite(this.subject, impact.rows, limits);
    };
    // TRUNCATE and DROP TABLE change no row counters: the rows they remove are counted before they run.
    const emptied = (facts?.command === 'DROP TABLE' ? facts.writes : (facts?.changes ?? []).filter((c) => c.action === 'truncate').map((c) => c.relation)).map(
      (r) => ({ schema: r.schema ?? 'public', name: r.name }),
    );
    const result: WriteResult = await writer.write(
      routed.messages,
      routed.swallow,
      check,
      async (changeId, impact) => {
        await this.ctx.audit.appendDurable(this.writeEntry(write, impact.rows, undefined, { changeId, tables: impact.tables }));
      },
      emptied,
    );
    if (this.closed) return;
    for (const b of result.answers) this.toClient(b);
    const o = result.outcome;
    if (o.kind === 'refused') {
      this.recordDenial({ ...o.denial, message: o.denial.message }, write.text, undefined, write.params);
    } else if (o.kind === 'failed') {
      this.audit(this.writeEntry(write, null, o.sqlstate, o.impact === null ? undefined : { tables: o.impact.tables, committed: false }));
    } else if (result.status !== 'I') {
      this.txWrote = true;
    }
    // Other statements of the cycle (a read before the write in one batch) were answered with it.
    for (const s of cycle.statements) if (s !== write) this.record(s, null, undefined);
    this.txStatus = result.status;
    this.settle(result.status);
  }

  /**
   * Rows changed where the statement did not say (cascades, triggers, rules)
   * must be rows the agent may change there too: no table is written behind
   * the policy's back.
   */
  private unallowedChange(impact: WriteImpact): Denial | null {
    const policy = this.policy!;
    for (const change of impact.changes) {
      for (const action of ['insert', 'update', 'delete'] as const) {
        if (change[action] === 0) continue;
        const { decision, by } = policy.decide(action, { schema: change.schema, name: change.name });
        if (decision === 'allow') continue;
        return {
          kind: 'deny',
          rule: 'write',
          message:
            `airlock: agent "${this.who.agent}" may not ${action} rows of ${change.schema}.${change.name} ` +
            `(the statement did so through a cascade, trigger or rule: ${change[action]} rows; ${by} says ${decision}); it was rolled back (profile ${this.who.profile})`,
          hint: 'A human can run the statement directly, or allow that table in the Airlock rules.',
          sqlstate: '42501',
        };
      }
    }
    return null;
  }

  private writeEntry(s: InFlight, rows: number | null, sqlstate: string | undefined, detail: Record<string, unknown> | undefined): AuditEntry {
    const entry: AuditEntry = {
      event: 'statement',
      agent: this.who.agent,
      session: this.who.session,
      client: this.who.client,
      text: s.text,
      fingerprint: s.fingerprint,
      decision: 'allow',
      rule: s.rule,
      durationMs: Date.now() - s.started,
      rows,
    };
    if (s.params !== undefined && s.params.length > 0) entry.params = s.params;
    if (sqlstate !== undefined) entry.sqlstate = sqlstate;
    if (detail !== undefined) entry.detail = detail;
    return entry;
  }

  /** Where the session's transaction is, after the write connection answered with `status`. */
  private settle(status: TransactionStatus): void {
    this.txStatus = status;
    this.home = status === 'I' ? 'read' : 'write';
    if (this.home === 'read') this.txWrote = false;
  }

  // ---- upstream → client -------------------------------------------------

  private fromUpstream(chunk: Buffer): void {
    if (this.closed) return;
    try {
      this.scanUpstream(chunk);
    } catch (err) {
      this.failSession(err);
    }
  }

  /**
   * Ends this session, and only this one, on an error: a protocol violation
   * is the client's, anything else a fault of Airlock's, logged with its
   * stack. An exception must never reach the event loop, where it would end
   * every other agent's session too.
   */
  private failSession(err: unknown): void {
    if (err instanceof ProtocolViolation) {
      this.fatal({ severity: 'FATAL', code: '08P01', message: `airlock: protocol violation: ${err.message}` });
      return;
    }
    this.ctx.log(`session ${this.who.session}: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    this.fatal({ severity: 'FATAL', code: 'XX000', message: 'airlock: internal error; the session was ended and the error logged' });
  }

  private scanUpstream(chunk: Buffer): void {
    let buf = chunk;
    let at = 0;
    if (this.passRemaining > 0) {
      if (chunk.length <= this.passRemaining) {
        this.passRemaining -= chunk.length;
        this.toClient(chunk);
        return;
      }
      at = this.passRemaining;
      this.passRemaining = 0;
    } else if (this.upstreamHeld !== null) {
      buf = Buffer.concat([this.upstreamHeld, chunk]);
      this.upstreamHeld = null;
    }
    let from = 0;
    while (buf.length - at >= 5) {
      const type = buf[at]!;
      const end = at + 1 + buf.readUInt32BE(at + 1);
      if (!INSPECTED[type]) {
        if (end > buf.length) {
          this.passRemaining = end - buf.length;
          at = buf.length;
          break;
        }
        at = end;
        continue;
      }
      if (end > buf.length) break;
      const replacement = this.inspect(type, buf.subarray(at + 5, end));
      if (this.closed) return;
      if (replacement !== null) {
        if (at > from) this.toClient(buf.subarray(from, at));
        this.toClient(replacement);
        from = end;
      }
      at = end;
    }
    if (at < buf.length) this.upstreamHeld = Buffer.from(buf.subarray(at));
    if (at > from) this.toClient(buf.subarray(from, at));
  }

  private toClient(bytes: Buffer): void {
    if (!this.client.write(bytes)) this.upstream.pause();
  }

  private get answering(): Cycle {
    return this.inflight[0] ?? this.open;
  }

  /** Looks at one upstream message; returns bytes to send instead, or null to pass it on. */
  private inspect(type: number, body: Buffer): Buffer | null {
    switch (type) {
      case BACKEND.commandComplete:
        this.complete(commandTagRows(body), undefined);
        return null;
      case BACKEND.emptyQueryResponse:
      case BACKEND.portalSuspended:
        this.complete(null, undefined);
        return null;
      case BACKEND.errorResponse: {
        const cycle = this.answering;
        const refusal = cycle.refusal;
        if (refusal !== null) {
          const fields = parseErrorFields(body);
          if ((fields.get('M') ?? '').includes(refusal.token)) {
            cycle.refusal = null;
            return errorResponse({
              severity: 'ERROR',
              code: refusal.denial.sqlstate,
              message: refusal.denial.message,
              detail: `Rule: ${refusal.denial.rule}. The statement was not sent to the database.`,
              hint: refusal.denial.hint,
            });
          }
        }
        this.complete(null, parseErrorFields(body).get('C') ?? 'XX000');
        return null;
      }
      case BACKEND.readyForQuery: {
        this.txStatus = String.fromCharCode(body[0]!) as TransactionStatus;
        const cycle = this.inflight.shift();
        if (cycle !== undefined) {
          // Statements after an error in the same cycle were skipped by the server.
          while (cycle.done < cycle.statements.length) this.record(cycle.statements[cycle.done++]!, null, SKIPPED);
        }
        if (this.inflight.length === 0 && this.drainWaiters.length > 0) {
          const waiters = this.drainWaiters;
          this.drainWaiters = [];
          for (const resolve of waiters) resolve();
        }
        return null;
      }
      case BACKEND.parseComplete:
      case BACKEND.closeComplete: {
        const cycle = this.answering;
        if (cycle.swallow === 0) return null;
        cycle.swallow--;
        return EMPTY;
      }
      case BACKEND.parameterStatus: {
        const { name, value } = parseParameterStatus(body);
        const pinned = this.ctx.pinnedParameters.get(name);
        if (pinned !== undefined && value !== pinned) {
          this.breach(`the database reported ${name} = ${value}; Airlock requires ${pinned} on the read path`);
        }
        return null;
      }
      case BACKEND.copyInResponse:
      case BACKEND.copyBothResponse:
        // Never allowed on the read path: if the server asks for data anyway,
        // something got past judgement. End the session; the upstream rolls back.
        this.breach('the database started a COPY FROM STDIN or replication stream on the read path');
        return null;
      default:
        return null;
    }
  }

  private complete(rows: number | null, sqlstate: string | undefined): void {
    const cycle = this.answering;
    const s = cycle.statements[cycle.done];
    if (s === undefined) return;
    cycle.done++;
    this.record(s, rows, sqlstate);
  }

  // ---- audit ---------------------------------------------------------------

  private record(s: InFlight, rows: number | null, sqlstate: string | undefined): void {
    const entry: AuditEntry = {
      event: 'statement',
      agent: this.who.agent,
      session: this.who.session,
      client: this.who.client,
      text: s.text,
      fingerprint: s.fingerprint,
      decision: 'allow',
      rule: s.rule,
      durationMs: Date.now() - s.started,
      rows,
    };
    if (s.params !== undefined && s.params.length > 0) entry.params = s.params;
    if (sqlstate === SKIPPED) entry.detail = { skipped: true };
    else if (sqlstate !== undefined) entry.sqlstate = sqlstate;
    this.audit(entry);
  }

  private recordDenial(d: Denial, text: string, classification: Classification | undefined, params: (string | null)[] | undefined): void {
    this.recordRefusal(d, text, classification, params);
    this.ctx.onRefusal(this.who, d, text);
  }

  private recordRefusal(d: Denial, text: string, classification: Classification | undefined, params: (string | null)[] | undefined): void {
    this.audit({
      event: 'statement',
      agent: this.who.agent,
      session: this.who.session,
      client: this.who.client,
      text,
      params,
      fingerprint: classification?.ok === true ? classification.fingerprint : undefined,
      decision: 'deny',
      rule: d.rule,
      reason: d.message,
      sqlstate: d.sqlstate,
    });
  }

  private audit(entry: AuditEntry): void {
    try {
      this.ctx.audit.append(entry);
    } catch (err) {
      // The log went unhealthy between judging and recording: statements from
      // now on are refused (see judge); this one is reported loudly instead.
      this.ctx.log(`audit: could not record a statement of session ${this.who.session}: ${(err as Error).message}`);
    }
  }

  // ---- endings ---------------------------------------------------------------

  private breach(what: string): void {
    this.ctx.log(`SECURITY: session ${this.who.session} (agent ${this.who.agent}): ${what}; ending the session`);
    this.audit({
      event: 'breach',
      agent: this.who.agent,
      session: this.who.session,
      client: this.who.client,
      reason: what,
    });
    this.fatal({
      severity: 'FATAL',
      code: '42501',
      message: `airlock: session ended: ${what}`,
      hint: 'This is reported to the operators. Reconnect to start a fresh read-only session.',
    });
  }

  /**
   * The client went away. PostgreSQL notices a vanished client only when it
   * next writes to it, so a running query would run on to its end: cancel
   * it first.
   */
  private clientLeft(): void {
    if (this.closed) return;
    if (this.inflight.length > 0 || this.open.statements.length > this.open.done) this.cancelUpstream();
    this.end('client disconnected');
  }

  private upstreamLost(): void {
    if (this.closed) return;
    this.fatal({
      severity: 'FATAL',
      code: '08006',
      message: 'airlock: the connection to the database was lost',
      hint: 'Reconnect: Airlock opens a new database connection for each client session.',
    });
  }

  /** Sends a FATAL error to the client and closes both sides. */
  fatal(fields: ErrorFields): void {
    if (this.closed) return;
    this.client.write(errorResponse(fields));
    this.end(fields.message);
  }

  end(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.client.end();
    this.client.destroySoon?.();
    this.upstream.destroy();
    this.writer?.connection.close();
    this.onEnd(reason);
  }
}

/**
 * The batch as one buffer when its messages are back-to-back views of the
 * same chunk (the usual case: a client sends Bind, Execute, Sync in one
 * write), so it goes out in one write rather than a gathered one.
 */
function contiguous(batch: Buffer[]): Buffer | null {
  const first = batch[0]!;
  if (batch.length === 1) return first;
  let end = first.byteOffset + first.length;
  for (let i = 1; i < batch.length; i++) {
    const b = batch[i]!;
    if (b.buffer !== first.buffer || b.byteOffset !== end) return null;
    end += b.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}

/** Backend message types the relay must see whole; all others pass through unscanned. */
const INSPECTED: boolean[] = [];
for (const t of [
  BACKEND.commandComplete,
  BACKEND.emptyQueryResponse,
  BACKEND.portalSuspended,
  BACKEND.errorResponse,
  BACKEND.readyForQuery,
  BACKEND.parameterStatus,
  BACKEND.copyInResponse,
  BACKEND.copyBothResponse,
  BACKEND.parseComplete,
  BACKEND.closeComplete,
]) {
  INSPECTED[t] = true;
}
