/**
 * The relay between one agent's client connection and its upstream
 * connections: every statement is judged before any byte of it reaches the
 * database, and the upstream's answers are passed through, followed step by
 * step (answer-tracker.ts) so that Airlock's picture of each connection's
 * statements, portals and transaction is the server's own.
 *
 * A session that may write has a second connection for its write
 * transactions (executor/); a write runs alone, between Airlock's own
 * transaction boundaries, measured, and is kept only once it is on the record.
 */
import { randomBytes } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import type net from 'node:net';
import { BACKEND, errorResponse, noticeResponse, parseErrorFields, parseParameterStatus, readyForQuery } from '../protocol/backend.js';
import type { ErrorFields, TransactionStatus } from '../protocol/backend.js';
import {
  FRONTEND,
  encodeClose,
  encodeDescribe,
  encodeExecute,
  encodeParse,
  encodeParseMessage,
  encodeQuery,
  encodeSync,
  parseBind,
  parseExecute,
  parseParse,
  parseQuery,
  parseTarget,
  renameBind,
} from '../protocol/frontend.js';
import { MessageReader, ProtocolViolation } from '../protocol/message-reader.js';
import type { Message } from '../protocol/message-reader.js';
import type { Classification, StatementFacts } from '../sql/facts.js';
import type { Decision, Denial } from '../policy/decision.js';
import { judgeClassification } from '../policy/read-only.js';
import { rowLimitDenial } from '../policy/limits.js';
import type { WriteBudget } from '../policy/limits.js';
import type { AgentPolicy } from '../policy/rules.js';
import type { PolicySubject } from '../policy/read-only.js';
import type { SchemaKnowledge } from '../policy/schema-knowledge.js';
import type { TablePattern } from '../policy/table-pattern.js';
import {
  freezeCommitDenial,
  freezeWriteDenial,
  readOnlyTransactionDenial,
  truncateCascadeDenial,
  unrecoverableDenial,
  unallowedChangeDenial,
  unattributableDenial,
  writeShapeDenial,
} from '../policy/write-denials.js';
import type { FreezeCause } from '../state/freeze-store.js';
import { statedReason, statementHash } from '../state/approval-store.js';
import type { ApprovalRequest, ApprovedBound } from '../state/approval-store.js';
import {
  DRY_RUN,
  beforeDigests,
  boundDenial,
  rowsBeyondDenial,
  sampleOf,
  cancelledWaitDenial,
  deniedDenial,
  dryRunFailedDenial,
  expiredDenial,
  inTransactionDenial,
  stillWaitingDenial,
  tooManyPendingDenial,
  usedDenial,
  waitingNotice,
} from './approval-gate.js';
import type { ApprovalSettings } from './approval-gate.js';
import type { AuditLog } from '../state/audit-log.js';
import type { StatementCache } from './statement-cache.js';
import { statementSizeRefusal } from '../sql/statement-size.js';
import { unjudgedDenial } from '../policy/unjudged.js';
import { judgeResolving } from './overload-resolver.js';
import type { OverloadResolver } from './overload-resolver.js';
import type { ResolvedCalls } from '../policy/overloads.js';
import { Cycle, CycleQueue, LostTrack } from './answer-tracker.js';
import type { AnswerAction, RunStatement, Step } from './answer-tracker.js';
import { ClientNamespace, ConnectionObjects, NameAllocator, isReservedName } from './statement-registry.js';
import type { ConnectionName, Portal, Prepared } from './statement-registry.js';
import { SessionAudit } from './session-audit.js';
import type { InFlight, SessionIdentity } from './session-audit.js';
import { PREAMBLE, WriteEscaped, WriteExecutor, WriteOutcomeUnknown, denialFields } from '../executor/write-executor.js';
import type { CaptureOptions, WriteImpact } from '../executor/write-executor.js';
import { WriteConnectionLost } from '../executor/write-connection.js';
import type { WriteConnection } from '../executor/write-connection.js';
import type { Journal, RowImage } from '../state/journal.js';
import type { ReadEstimate } from './read-plan.js';
import type { ParseMessage } from '../protocol/frontend.js';

/** What the relay needs from the gateway. */
export interface RelayContext {
  /** Statements that need a human's approval wait for one (absent: they are refused, rule approval-required). */
  approvals?: ApprovalSettings;
  cache: StatementCache;
  audit: AuditLog;
  maxMessageBytes: number;
  /** limits.max_statement_bytes: longer statements are refused before they are even decoded. */
  maxStatementBytes: number;
  /** The upstream's schema as last read (functions, views), or null if it could not be read. */
  schema: () => SchemaKnowledge | null;
  /** Asks the server which functions a statement really calls, when a user function shares a name with a built-in; null: judge by name. */
  resolverFor: (agent: string) => OverloadResolver | null;
  /** The planner's estimate for a read held for approval, asked as the agent's read role (read-plan.ts). */
  estimateRead: (agent: string, parse: ParseMessage, bind: Buffer | null) => Promise<ReadEstimate | { error: string }>;
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
  /** Opens a session's write connection (the agent's write role, read-write), for agents that may write. */
  openWriteConnection: (who: RelayIdentity) => Promise<WriteConnection>;
  /** Every agent's write budgets, over all its sessions. */
  budget: WriteBudget;
  /** The undo journal: every kept write's row images, recorded before COMMIT. */
  journal: Journal;
  /** Tables the config lets agents write without a journal (undo.optional_tables). */
  undoOptional: (schema: string, name: string) => boolean;
  log: (line: string) => void;
}

export type RelayIdentity = SessionIdentity;

const EMPTY_PARAMS: (string | null)[] = [];

/**
 * Cycles a session may have sent on its read connection and not yet seen
 * answered before Airlock stops reading and handling its input (until half
 * are answered). It bounds what one read of the database's answers can hold,
 * and so how long one session's turn lasts.
 */
const MAX_CYCLES_IN_FLIGHT = 256;

/**
 * Messages one session has handled in one turn of the event loop before it
 * yields to the others: a client that pipelines thousands of statements in
 * one read gets its turn, not the whole thread.
 */
const TURN_MESSAGES = 64;

/** Requests one agent may have waiting for a human at once: each costs a dry run and a human's attention. */
const MAX_PENDING_APPROVALS = 20;

/** Resolves after the event loop has served other connections' I/O. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

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

/**
 * Thrown while judging a message whose judgement needs a round trip (a
 * parse off the event loop, a question to the server): the session holds
 * its input, and handles the message again once `ready` has settled.
 */
class NotYet {
  constructor(readonly ready: Promise<void>) {}
}

/** What judging one text came to. */
interface Judged {
  classification: Classification;
  decision: Decision;
  resolutions: ReadonlyMap<number, ResolvedCalls> | undefined;
}

/** A judged client message, waiting for its batch to be sent to a connection. */
interface Item {
  kind: 'parse' | 'bind' | 'describe' | 'execute' | 'close' | 'query' | 'sync' | 'refusal' | 'flush';
  /** The message as the server receives it (Airlock's names). */
  raw: Buffer;
  /** What the server's answer completes; none for a Flush, which has no answer of its own. */
  step?: Step;
  /** parse: the statement it creates; bind, describe: the statement it needs on the connection. */
  prepared?: Prepared;
  /** parse of a name already taken: the statement that must exist on the connection for the server to say so. */
  needs?: Prepared;
  /** bind: the portal it creates; execute, describe: the portal it uses. */
  portal?: Portal;
  /** close: the statement it closes. */
  closes?: Prepared;
  /** The client statement name whose existence this message's answer decides. */
  touches?: string;
  /** query: its statements' facts (DEALLOCATE ALL and the like change what the connection holds). */
  facts?: readonly StatementFacts[];
  /** Takes back what judging it did to the client's names, when it is never sent. */
  undo?: () => void;
}

/** Everything the client sends up to a Sync (or one Query), judged message by message. */
interface Batch {
  items: Item[];
  bytes: number;
  /** Statements it runs: Executes, and the statements of a Query. */
  executes: number;
  /** Statements in it that are not plain reads (transaction control, settings, writes): a write runs with none of them. */
  unsafe: number;
  /** Binds and Executes in it (a Flush before any of them only describes). */
  runs: number;
  /** Allowed writes in it (at most one, alone). */
  writes: number;
  /** `approval`: it needs a human's approval first (approval-gate.ts). */
  write: { statement: InFlight; facts: StatementFacts | undefined; approval?: boolean; portal?: Portal } | null;
  /** A read a rule holds for a human's approval (at most one, alone): the batch waits for the decision, then runs on the read path. */
  heldRead: HeldRead | null;
  /** It starts a transaction block. */
  begins: boolean;
  /** It ends a transaction block with COMMIT. */
  commits: boolean;
  /** Transaction control statements in it (BEGIN, COMMIT, SAVEPOINT, ROLLBACK TO, …). */
  control: number;
  /** It asks for a read-write transaction (BEGIN/SET TRANSACTION ... READ WRITE): never on the read path. */
  readWrite: boolean;
  /** The whole batch is refused: none of it is sent, the client gets this error. */
  whole: { denial: Denial } | null;
  /** Part of it already went to the read connection (a Flush); the rest must follow it there. */
  cycle: Cycle | null;
}

/** A read waiting for approval: the statement, and what it takes to plan it (the Parse, and the client's Bind unless a simple query). */
interface HeldRead {
  statement: InFlight;
  parse: ParseMessage;
  bind: Buffer | null;
}

function newBatch(): Batch {
  return { items: [], bytes: 0, executes: 0, unsafe: 0, runs: 0, writes: 0, write: null, heldRead: null, begins: false, commits: false, control: 0, readWrite: false, whole: null, cycle: null };
}

/** Where a session's current transaction runs. */
type Home = ConnectionName;

export class Relay {
  private readonly reader: MessageReader;
  private readonly subject: PolicySubject;
  private readonly audit: SessionAudit;
  private readonly names = new NameAllocator();
  private readonly ns = new ClientNamespace();
  private readonly objects: Record<ConnectionName, ConnectionObjects> = { read: new ConnectionObjects(), write: new ConnectionObjects() };
  private readonly seq: Record<ConnectionName, number> = { read: 0, write: 0 };
  /** The unnamed portal last bound on each connection. */
  private readonly unnamedPortal: Record<ConnectionName, Portal | null> = { read: null, write: null };
  private batch: Batch = newBatch();
  /** After a refusal in the extended protocol, the upstream skips to Sync; so does Airlock. */
  private skipping = false;
  /** Cycles sent on the read connection and not yet answered to their end. */
  private readonly readCycles = new CycleQueue();
  /** Upstream bytes of an uninteresting message still to pass through unscanned. */
  private passRemaining = 0;
  private upstreamHeld: Buffer | null = null;
  /** Messages for the read connection, gathered while a turn handles the client's input (flushUpstream sends them). */
  private toUpstream: Buffer[] = [];
  private gathering = false;
  private closed = false;
  txStatus: TransactionStatus = 'I';

  // ---- sessions that may write (policy.mayWrite) --------------------------
  /** The agent's policy when it may write; null for a read-only session, which never uses what follows. */
  private readonly policy: AgentPolicy | null;
  /** Some of this agent's reads wait for a human's approval: they are judged again at every Execute, as writes are. */
  private readonly holdsReads: boolean;
  private writer: WriteExecutor | null = null;
  private home: Home = 'read';
  /** The write transaction now open has kept a write: its COMMIT is refused under a freeze. */
  private txWrote = false;
  /** Writes released into the agent's open transaction: journalled at its COMMIT, forgotten at its ROLLBACK. */
  private txChanges: { changeId: string; txid: string; text: string }[] = [];
  /**
   * Client messages waiting while the write connection works or the session
   * has had its share of the turn; handled, in order, from `heldAt` on. A
   * queue that waits again is kept with a new start, never copied: a
   * pipelined chunk of thousands of messages, 64 a turn, would otherwise be
   * copied once a turn.
   */
  private held: Message[] | null = null;
  private heldAt = 0;
  private heldBytes = 0;
  /** Messages handled in this turn of the event loop (TURN_MESSAGES). */
  private turnMessages = 0;
  /** While a statement waits for a human's approval: whether the client cancelled the wait. */
  private approvalWait: { cancelled: boolean } | null = null;
  /** Resolved when the read connection has answered everything sent to it. */
  private drainWaiters: (() => void)[] = [];
  /** Resolved once the read connection has answered enough of what was sent (MAX_CYCLES_IN_FLIGHT). */
  private roomWaiter: (() => void) | null = null;
  /** A batch is on the write path now. */
  private jobRunning = false;

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
    this.reader = new MessageReader(ctx.maxMessageBytes, statementMessageLimit(ctx.maxStatementBytes));
    this.audit = new SessionAudit(ctx.audit, who, ctx.log);
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
    this.holdsReads = ctx.approvals !== undefined && policy?.readsHeld === true;
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
    this.turnMessages = 0;
    // What this chunk's messages send upstream leaves in one write, not one a message.
    this.gathering = true;
    try {
      for (const m of this.reader.push(chunk)) {
        this.onClientMessage(m);
        if (this.closed) return;
      }
    } catch (err) {
      this.failSession(err);
      return;
    } finally {
      this.flushUpstream();
    }
    // A client that pipelines without reading answers is read no further
    // until the database has answered most of what it sent: its backlog
    // costs memory and time that belong to every session.
    if (this.readCycles.length > MAX_CYCLES_IN_FLIGHT) this.client.pause();
    if (this.batch.bytes > this.ctx.maxMessageBytes) {
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
      // the refusal); they are never judged nor forwarded.
      return;
    }
    if (++this.turnMessages > TURN_MESSAGES) {
      // This session has had its share of the turn: the rest waits for the next.
      this.suspend(m, nextTurn());
      return;
    }
    if (this.readCycles.length > MAX_CYCLES_IN_FLIGHT) {
      // The database has not answered most of what this session sent (it
      // pipelines without reading, most likely): what it sent after waits,
      // so that its answers arrive a bounded batch at a time.
      this.suspend(m, new Promise((resolve) => (this.roomWaiter = resolve)));
      return;
    }
    try {
      this.handle(m);
    } catch (err) {
      if (!(err instanceof NotYet)) throw err;
      this.suspend(m, err.ready);
    }
  }

  /** Holds the client's input until `ready`, then handles `m` again, and what came after it, in order. */
  private suspend(m: Message, ready: Promise<void>): void {
    this.held = [m];
    this.heldAt = 0;
    this.heldBytes = 0;
    this.client.pause();
    ready.then(
      () => {
        if (this.closed) return;
        this.client.resume();
        this.release();
      },
      (err: unknown) => this.failSession(err),
    );
  }

  private handle(m: Message): void {
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
      case FRONTEND.describe:
        this.onDescribe(m);
        return;
      case FRONTEND.close:
        this.onClose(m);
        return;
      case FRONTEND.flush:
        this.onFlush(m);
        return;
      case FRONTEND.sync:
        this.skipping = false;
        this.add({ kind: 'sync', raw: m.raw, step: { kind: 'sync' } });
        this.dispatch();
        return;
      case FRONTEND.functionCall:
        this.outsideBatch('FunctionCall');
        this.refuseQuery(
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
        this.end('client terminated');
        return;
      default:
        throw new ProtocolViolation(`invalid frontend message type ${m.type} ('${String.fromCharCode(m.type)}')`);
    }
  }

  private add(item: Item): void {
    this.batch.items.push(item);
    this.batch.bytes += item.raw.length;
  }

  /**
   * A Query or FunctionCall answers with a ReadyForQuery of its own. In the
   * middle of an unfinished extended-protocol batch, the server would run it
   * inside that batch's implicit transaction, or skip it after an error, and
   * no answer would tell which: the session ends instead, and nothing of the
   * batch is kept.
   */
  private outsideBatch(what: string): void {
    if (this.batch.items.length === 0 && this.batch.cycle === null) return;
    throw new ProtocolViolation(`a ${what} message arrived before the Sync that ends the extended-protocol messages sent before it`);
  }

  /** Decodes statement text exactly as the server will read it, or explains why it can't be judged. */
  private statementText(bytes: Buffer): string | Denial {
    // The cheapest limit first: a text too long to parse is refused unread, undecoded.
    const tooLarge = statementSizeRefusal(bytes.length, this.ctx.maxStatementBytes);
    if (tooLarge !== null) return unjudgedDenial(tooLarge.unjudged!, tooLarge.error);
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

  /** A judgement that needed a round trip, kept for the message it was made for. */
  private ready: { text: string; types: string; classification: Classification; judged?: Judged } | null = null;

  /**
   * Classifies (cache hit on this thread, a miss in the classifier pool)
   * and judges a text; asks the server what it calls when a user function
   * shares a name with a built-in. Throws NotYet when either needs a round trip.
   */
  private judge(text: string, paramTypes: readonly number[] = []): Judged {
    const types = paramTypes.join(',');
    const ready = this.ready !== null && this.ready.text === text && this.ready.types === types ? this.ready : null;
    if (ready?.judged !== undefined) {
      this.ready = null;
      return ready.judged;
    }
    const classification = ready?.classification ?? this.ctx.cache.lookup(text);
    if (classification === undefined) {
      throw new NotYet(
        this.ctx.cache.classifyAsync(text, this.who.agent).then((c) => {
          this.ready = { text, types, classification: c };
        }),
      );
    }
    this.ready = null;
    const unhealthy = this.auditDenial();
    if (unhealthy !== null) return { classification, decision: unhealthy, resolutions: undefined };
    const schema = this.ctx.schema();
    // A read's verdict hangs only on the facts, this session's rules and the schema Airlock knows (as in judgePrepared):
    // the same facts (one cached classification: the same text, or a plain SELECT of the same shape) are judged once per schema.
    const known = this.readVerdicts.get(classification);
    if (known !== undefined && known.schema === schema) return known.judged;
    this.subject.schema = schema;
    const r = judgeResolving(this.ctx.resolverFor(this.who.agent), classification, this.subject, (name) => this.sqlPreparedFacts(name), text, paramTypes);
    if (r instanceof Promise) {
      throw new NotYet(
        r.then((resolved) => {
          this.ready = { text, types, classification, judged: { classification, decision: this.namesChecked(classification, resolved.decision), resolutions: resolved.resolutions } };
        }),
      );
    }
    const judged: Judged = { classification, decision: this.namesChecked(classification, r.decision), resolutions: r.resolutions };
    // Only a verdict reached without asking the server (no overload to resolve), on facts that name no prepared statement or cursor.
    if (judged.decision.kind === 'allow-read' && verdictKeepable(classification)) this.readVerdicts.set(classification, { schema, judged });
    return judged;
  }

  /** Verdicts of reads judged in this session, by the classification judged (see judge). */
  private readonly readVerdicts = new WeakMap<Classification, { schema: SchemaKnowledge | null; judged: Judged }>();

  private auditDenial(): Denial | null {
    if (this.ctx.audit.healthy) return null;
    return {
      kind: 'deny',
      rule: 'audit-unavailable',
      message: 'airlock: the audit log cannot be written, so no statement is served until it can',
      hint: "A human must check Airlock's state directory (disk space, permissions) and its log.",
      sqlstate: '58030',
    };
  }

  /** Judges a prepared statement again as it runs, with what the server said it calls when it was prepared. */
  private judgePrepared(prepared: Prepared): Decision {
    const unhealthy = this.auditDenial();
    if (unhealthy !== null) return unhealthy;
    const schema = this.ctx.schema();
    // A read's verdict hangs only on the rules and the schema Airlock knows (freezes and budgets bind writes):
    // an unchanged statement is not judged again while the schema stands.
    if (prepared.read !== undefined && prepared.read.schema === schema) return prepared.read.decision;
    this.subject.schema = schema;
    const decision = this.namesChecked(
      prepared.classification,
      judgeClassification(prepared.classification, this.subject, (name) => this.sqlPreparedFacts(name), prepared.resolutions),
    );
    if (decision.kind === 'allow-read' && verdictKeepable(prepared.classification)) {
      prepared.read = { schema, decision };
    }
    return decision;
  }

  /**
   * Whether a refusal is only for want of a human's approval, which this
   * session can wait for: approvals are on, the agent may write, and the
   * text is one write (DML or DDL) that can run alone on the write path.
   */
  private heldForApproval(decision: Decision, classification: Classification | undefined): boolean {
    if (decision.kind !== 'deny' || decision.rule !== 'approval-required') return false;
    if (this.ctx.approvals === undefined || this.policy === null || classification === undefined || !classification.ok) return false;
    return classification.statements.length === 1 && (classification.statements[0]!.kind === 'write' || classification.statements[0]!.kind === 'ddl');
  }

  /**
   * Whether a refusal is only for want of a human's approval of a read,
   * which this session can wait for: approvals are on and the text is one
   * plain read (no row locks, cursors or prepared statements) that can run
   * on the read path once approved.
   */
  private readHeld(decision: Decision, classification: Classification | undefined): boolean {
    if (decision.kind !== 'deny' || decision.rule !== 'approval-required') return false;
    if (!this.holdsReads || classification === undefined || !classification.ok) return false;
    if (classification.statements.length !== 1) return false;
    const facts = classification.statements[0]!;
    return facts.kind === 'read' && !facts.locking && facts.cursor === undefined && facts.prepared === undefined && facts.transaction === undefined && facts.setting === undefined;
  }

  /** The decision, unless a statement names Airlock's own objects or an undeclared cursor. */
  private namesChecked(classification: Classification, decision: Decision): Decision {
    if (decision.kind === 'deny' || !classification.ok) return decision;
    const declared = new Set<string>();
    for (const facts of classification.statements) {
      const refused = this.objectNameDenial(facts, declared);
      if (refused !== null) return refused;
      if (facts.cursor?.action === 'declare' && facts.cursor.name !== null) declared.add(facts.cursor.name);
    }
    return decision;
  }

  private sqlPreparedFacts(name: string): StatementFacts | undefined {
    const c = this.ns.sqlPrepared.get(name);
    if (c === undefined || !c.ok || c.statements.length !== 1) return undefined;
    return c.statements[0];
  }

  /**
   * SQL names of prepared statements and cursors: Airlock's own (the
   * server-side names of protocol-level objects) are never reachable from
   * SQL, and FETCH or MOVE may only run a cursor this session declared.
   */
  private objectNameDenial(facts: StatementFacts, declaredHere: ReadonlySet<string>): Denial | null {
    const names = [facts.prepared?.name, facts.cursor?.name, facts.inner?.prepared?.name, facts.inner?.cursor?.name];
    for (const name of names) {
      if (name != null && isReservedName(name)) return unattributableDenial(this.who, `name ${name}, one of Airlock's own statements or portals`);
    }
    const cursor = facts.cursor;
    if (cursor !== undefined && (cursor.action === 'fetch' || cursor.action === 'move') && (cursor.name === null || (!this.ns.sqlCursors.has(cursor.name) && !declaredHere.has(cursor.name)))) {
      return unattributableDenial(this.who, `${cursor.action.toUpperCase()} from cursor ${cursor.name ?? '(none)'}, which this session did not declare`);
    }
    return null;
  }

  /** What a statement does to SQL-level prepared statements and cursors (and, for DEALLOCATE ALL / CLOSE ALL, to protocol-level ones). */
  private trackSqlObjects(classification: Classification): void {
    if (!classification.ok) return;
    for (const facts of classification.statements) {
      const p = facts.prepared;
      if (p?.action === 'prepare' && p.name !== null && facts.inner !== undefined) {
        this.ns.sqlPrepared.set(p.name, { ok: true, statements: [facts.inner], fingerprint: classification.fingerprint });
      } else if (p?.action === 'deallocate' && p.name !== null) {
        this.ns.sqlPrepared.delete(p.name);
      }
      const c = facts.cursor;
      if (c?.action === 'declare' && c.name !== null) this.ns.sqlCursors.add(c.name);
      else if (c?.action === 'close' && c.name !== null) this.ns.sqlCursors.delete(c.name);
      if (dropsAllStatements(facts)) {
        this.ns.sqlPrepared.clear();
        for (const name of [...this.ns.statements.keys()]) if (name !== '') this.ns.statements.delete(name);
      }
      if (closesAllPortals(facts)) {
        this.ns.sqlCursors.clear();
        for (const name of [...this.ns.portals.keys()]) if (name !== '') this.ns.portals.delete(name);
      }
    }
  }

  // ---- judging, message by message ------------------------------------------

  private onQuery(m: Message): void {
    this.outsideBatch('Query');
    const text = m.dropped !== undefined ? droppedDenial(m.dropped, this.ctx.maxStatementBytes) : this.statementText(parseQuery(m.body));
    if (typeof text !== 'string') {
      this.refuseQuery(text, unreadLabel(text));
      return;
    }
    const judged = this.judge(text);
    const classification = judged.classification;
    const approval = this.heldForApproval(judged.decision, classification);
    const held = !approval && this.readHeld(judged.decision, classification);
    const decision: Decision = approval ? { kind: 'allow-write', rule: 'approval' } : held ? { kind: 'allow-read', rule: 'approval' } : judged.decision;
    if (decision.kind === 'deny') {
      this.refuseQuery(decision, text, classification);
      return;
    }
    const write = decision.kind === 'allow-write';
    if (this.policy !== null && classification.ok) {
      if (write && classification.statements.length > 1) {
        this.refuseQuery(writeShapeDenial(this.who, 'multi-statement-write', 'send a write together with other statements in one query string'), text, classification);
        return;
      }
      for (const facts of classification.statements) this.noteTransaction(facts);
    }
    const started = Date.now();
    const statements: RunStatement[] = [];
    if (classification.ok) {
      // One statement: record the text as sent (a cache hit by shape carries
      // another text of the same shape); several: each one's own slice.
      const single = classification.statements.length === 1;
      for (const facts of classification.statements) {
        const s: InFlight = { text: single ? text : facts.text, fingerprint: classification.fingerprint, params: undefined, rule: decision.rule, started };
        if (write) {
          this.batch.writes++;
          this.batch.write = { statement: s, facts, approval };
        }
        if (held) this.batch.heldRead = { statement: s, parse: { name: '', query: Buffer.from(text, 'utf8'), paramTypes: [] }, bind: null };
        statements.push(this.recorder(s, write, facts));
      }
      this.batch.executes += classification.statements.length;
      this.trackSqlObjects(classification);
    }
    // A simple Query drops the unnamed statement and portal (PostgreSQL's exec_simple_query).
    this.ns.statements.delete('');
    this.ns.portals.delete('');
    this.add({ kind: 'query', raw: m.raw, step: { kind: 'query', statements }, facts: classification.ok ? classification.statements : [] });
    this.dispatch();
  }

  /** Records a statement when its answer comes; a write's record is the write path's. */
  private recorder(s: InFlight, write: boolean, facts?: StatementFacts): RunStatement {
    return {
      settle: (rows, sqlstate, command) => {
        if (write) return;
        // PostgreSQL answers the COMMIT of a failed transaction with ROLLBACK, and no error: the record says so.
        const rolledBack = command === 'ROLLBACK' && facts?.transaction?.action === 'commit';
        this.audit.statement(s, rows, sqlstate, rolledBack ? { outcome: 'rolled back' } : undefined);
      },
    };
  }

  /** Refuses a Query (or FunctionCall): the upstream fails an injected statement, and its error is replaced. */
  private refuseQuery(denial: Denial, text: string, classification?: Classification): void {
    this.recordDenial(denial, text, classification, undefined);
    const token = refusalToken();
    this.add({ kind: 'query', raw: encodeQuery(token), step: { kind: 'query', statements: [], refusal: { token, denial } }, facts: [] });
    this.dispatch();
  }

  /**
   * Refuses an extended-protocol message where it stands: a Parse that fails
   * takes its place, and the server (and Airlock) skip to the Sync. In a
   * batch that holds a write, the whole batch is refused instead, unsent.
   */
  private refuseHere(denial: Denial, text: string, classification: Classification | undefined, params: (string | null)[] | undefined, opts: { unnamedParse?: boolean; record?: boolean } = {}): void {
    if (opts.record !== false) this.recordDenial(denial, text, classification, params);
    else this.audit.refusal(denial, text, classification, params);
    this.skipping = true;
    if (this.batch.writes > 0 && this.batch.cycle === null) {
      this.batch.whole = { denial };
      return;
    }
    const token = refusalToken();
    // A failed Parse of the unnamed statement drops it, as the refused one's
    // would have (unless the server skipped it after an earlier error).
    const unnamed = opts.unnamedParse === true;
    const name = unnamed ? '' : this.names.statement();
    const dropped = unnamed ? this.ns.statements.get('') : undefined;
    if (dropped !== undefined) this.ns.statements.delete('');
    // Skipped after an earlier error, it dropped nothing.
    const onFail = (failed: boolean): void => {
      if (!failed && dropped !== undefined && !this.ns.statements.has('')) this.ns.statements.set('', dropped);
    };
    this.add({ kind: 'refusal', raw: encodeParse(name, token), touches: unnamed ? '' : undefined, step: { kind: 'parse', refusal: { token, denial }, onFail } });
  }

  /** Whether statement `name` exists hangs on an answer still to come (of an earlier batch): the message waits for it. */
  private awaitCertain(name: string): void {
    if (this.ns.isUncertain(name)) throw new NotYet(this.waitUntil(() => !this.ns.isUncertain(name)));
  }

  /** An error PostgreSQL itself would give (a name that exists, or does not): Airlock gives it, since the server never sees the client's names. */
  private protocolError(code: string, message: string, text: string): void {
    this.refuseHere({ kind: 'deny', rule: 'protocol', message, hint: 'This is what PostgreSQL answers too.', sqlstate: code }, text, undefined, undefined, { record: false });
  }

  private onParse(m: Message): void {
    if (m.dropped !== undefined) {
      // Too long to be worth reading: its bytes were dropped as they came. A failed Parse of the unnamed statement drops it.
      const denial = droppedDenial(m.dropped, this.ctx.maxStatementBytes);
      this.refuseHere(denial, unreadLabel(denial), undefined, undefined, { unnamedParse: m.body[0] === 0 });
      return;
    }
    const parse = parseParse(m.body);
    const text = this.statementText(parse.query);
    let classification: Classification | undefined;
    let decision: Decision;
    let resolutions: Judged['resolutions'];
    if (typeof text === 'string') {
      ({ classification, decision, resolutions } = this.judge(text, parse.paramTypes));
      // Prepared like any write (or read): it waits for the human when it runs.
      if (this.heldForApproval(decision, classification)) decision = { kind: 'allow-write', rule: 'approval' };
      else if (this.readHeld(decision, classification)) decision = { kind: 'allow-read', rule: 'approval' };
    } else {
      decision = text;
    }
    if (decision.kind === 'deny') {
      this.refuseHere(decision, typeof text === 'string' ? text : unreadLabel(text), classification, undefined, { unnamedParse: parse.name === '' });
      return;
    }
    // Whether the name is taken depends on an answer still to come: wait for it.
    if (parse.name !== '') this.awaitCertain(parse.name);
    const existing = this.ns.statements.get(parse.name);
    if (parse.name !== '' && existing !== undefined) {
      // The name is taken. Sent under the statement's own server name (made
      // sure to exist there first), the server answers exactly as it would
      // the client: a parse error first, else 42P05. Nothing changes either way.
      this.add({ kind: 'parse', raw: encodeParseMessage({ ...parse, name: existing.serverName }), needs: existing, touches: parse.name, step: { kind: 'parse' } });
      return;
    }
    const serverName = parse.name === '' ? '' : this.names.statement();
    const raw = parse.name === '' ? m.raw : encodeParseMessage({ ...parse, name: serverName });
    const prepared: Prepared = {
      name: parse.name,
      text: text as string,
      classification: classification!,
      resolutions,
      serverName,
      parse: parse.name === '' ? Buffer.from(m.raw) : raw,
      state: 'batched',
    };
    const before = this.ns.statements.get(parse.name);
    this.ns.statements.set(parse.name, prepared);
    const undo = (): void => {
      if (this.ns.statements.get(parse.name) !== prepared) return;
      if (before === undefined) this.ns.statements.delete(parse.name);
      else this.ns.statements.set(parse.name, before);
    };
    this.add({
      kind: 'parse',
      raw,
      prepared,
      touches: parse.name,
      undo,
      step: {
        kind: 'parse',
        // A failed Parse of the unnamed statement has dropped the old one; a skipped one left it.
        onFail: (failed) => {
          if (failed && parse.name === '') {
            if (this.ns.statements.get('') === prepared) this.ns.statements.delete('');
          } else {
            undo();
          }
        },
      },
    });
  }

  private onBind(m: Message): void {
    const bind = parseBind(m.body);
    this.awaitCertain(bind.statement);
    const prepared = this.ns.statements.get(bind.statement);
    if (prepared === undefined) {
      this.protocolError('26000', bind.statement === '' ? 'unnamed prepared statement does not exist' : `prepared statement "${bind.statement}" does not exist`, `(Bind of "${bind.statement}")`);
      return;
    }
    const existing = this.ns.portals.get(bind.portal);
    if (bind.portal !== '' && existing?.state === 'sent') throw new NotYet(this.waitUntil(() => existing.state !== 'sent'));
    if (bind.portal !== '' && existing !== undefined) {
      // PostgreSQL checks the Bind itself (its parameters) before the name:
      // the server tries it under a name of Airlock's, closed at once, and
      // only if it binds does the client hear that the name is taken.
      const trial = this.names.portal();
      this.add({ kind: 'bind', raw: renameBind(m.body, trial, prepared.serverName), prepared, step: { kind: 'bind', own: true } });
      this.add({ kind: 'close', raw: encodeClose('portal', trial), step: { kind: 'close', own: true } });
      this.protocolError('42P03', `portal "${bind.portal}" already exists`, prepared.text);
      return;
    }
    const serverName = bind.portal === '' ? '' : this.names.portal();
    const portal: Portal = { name: bind.portal, prepared, params: bind.params, serverName, conn: null, cycle: 0, state: 'batched' };
    if (this.ctx.approvals !== undefined && (this.policy !== null || this.holdsReads)) portal.bind = m.body;
    const before = this.ns.portals.get(bind.portal);
    this.ns.portals.set(bind.portal, portal);
    const undo = (): void => {
      if (this.ns.portals.get(bind.portal) !== portal) return;
      if (before === undefined || before.ended === true) this.ns.portals.delete(bind.portal);
      else this.ns.portals.set(bind.portal, before);
    };
    const raw = bind.portal === '' && bind.statement === '' ? m.raw : renameBind(m.body, serverName, prepared.serverName);
    this.batch.runs++;
    // Once sent (materialize), the server's answer settles the portal: made, or not (and then forgotten).
    const step: Step = {
      kind: 'bind',
      onDone: () => {
        portal.state = 'done';
      },
      onFail: () => {
        portal.state = 'failed';
        undo();
      },
    };
    this.add({ kind: 'bind', raw, prepared, portal, undo, step });
  }

  private onDescribe(m: Message): void {
    const t = parseTarget(m.body, 'Describe');
    if (t.target === 'statement') {
      this.awaitCertain(t.name);
      const prepared = this.ns.statements.get(t.name);
      if (prepared === undefined) {
        this.protocolError('26000', t.name === '' ? 'unnamed prepared statement does not exist' : `prepared statement "${t.name}" does not exist`, `(Describe of "${t.name}")`);
        return;
      }
      const raw = t.name === '' ? m.raw : encodeDescribe('statement', prepared.serverName);
      this.add({ kind: 'describe', raw, prepared, step: { kind: 'describe' } });
      return;
    }
    const portal = this.ns.portals.get(t.name);
    if (portal?.state === 'sent') throw new NotYet(this.waitUntil(() => portal.state !== 'sent'));
    if (portal === undefined) {
      this.protocolError('34000', `portal "${t.name}" does not exist`, `(Describe of portal "${t.name}")`);
      return;
    }
    const raw = t.name === '' ? m.raw : encodeDescribe('portal', portal.serverName);
    this.add({ kind: 'describe', raw, portal, step: { kind: 'describe' } });
  }

  private onClose(m: Message): void {
    const t = parseTarget(m.body, 'Close');
    if (t.target === 'statement') {
      const prepared = this.ns.statements.get(t.name);
      // Closing what does not exist is no error in PostgreSQL: close a name nothing holds.
      const raw = prepared === undefined ? encodeClose('statement', this.names.statement()) : t.name === '' ? m.raw : encodeClose('statement', prepared.serverName);
      if (prepared !== undefined) this.ns.statements.delete(t.name);
      const undo = (): void => {
        if (prepared !== undefined && !this.ns.statements.has(t.name)) this.ns.statements.set(t.name, prepared);
      };
      this.add({ kind: 'close', raw, closes: prepared, touches: t.name, undo, step: { kind: 'close', onFail: () => undo() } });
      return;
    }
    const portal = this.ns.portals.get(t.name);
    const raw = portal === undefined ? encodeClose('portal', this.names.portal()) : t.name === '' ? m.raw : encodeClose('portal', portal.serverName);
    if (portal !== undefined) this.ns.portals.delete(t.name);
    const undo = (): void => {
      if (portal !== undefined && portal.ended !== true && !this.ns.portals.has(t.name)) this.ns.portals.set(t.name, portal);
    };
    this.add({ kind: 'close', raw, undo, step: { kind: 'close', onFail: () => undo() } });
  }

  private onExecute(m: Message): void {
    const exec = parseExecute(m.body);
    const portal = this.ns.portals.get(exec.portal);
    // Which statement the portal holds, if any, depends on an answer still to come: wait for it.
    if (portal?.state === 'sent') throw new NotYet(this.waitUntil(() => portal.state !== 'sent'));
    if (portal === undefined) {
      this.protocolError('34000', `portal "${exec.portal}" does not exist`, `(Execute of portal "${exec.portal}")`);
      return;
    }
    const prepared = portal.prepared;
    let rule = 'read';
    let write = false;
    let approval = false;
    let held = false;
    if (this.policy !== null || this.holdsReads) {
      // Judged again as it runs: a freeze or a spent budget since the Parse counts.
      const judged = this.judgePrepared(prepared);
      approval = this.heldForApproval(judged, prepared.classification);
      held = !approval && this.readHeld(judged, prepared.classification);
      const decision: Decision = approval ? { kind: 'allow-write', rule: 'approval' } : held ? { kind: 'allow-read', rule: 'approval' } : judged;
      rule = decision.rule;
      write = decision.kind === 'allow-write';
      const refusal = decision.kind === 'deny' ? decision : this.executeShapeDenial(decision, held, prepared, portal);
      if (refusal !== null) {
        this.refuseHere(refusal, prepared.text, prepared.classification, portal.params);
        return;
      }
      if (prepared.classification.ok) for (const facts of prepared.classification.statements) this.noteTransaction(facts);
    }
    this.trackSqlObjects(prepared.classification);
    const s: InFlight = {
      text: prepared.text,
      fingerprint: prepared.classification.ok ? prepared.classification.fingerprint : undefined,
      params: portal.params ?? EMPTY_PARAMS,
      rule,
      started: Date.now(),
    };
    this.batch.executes++;
    this.batch.runs++;
    // A held read counts as unsafe: no write may run in its batch.
    if (held || (this.policy !== null && !plainRead({ kind: write ? 'allow-write' : 'allow-read', rule }, prepared.classification))) this.batch.unsafe++;
    if (held) this.batch.heldRead = { statement: s, parse: parseParse(prepared.parse.subarray(5)), bind: portal.bind! };
    if (write) {
      this.batch.writes++;
      this.batch.write = { statement: s, facts: prepared.classification.ok ? prepared.classification.statements[0] : undefined, approval, portal };
    }
    const raw = exec.portal === '' ? m.raw : encodeExecute(portal.serverName, exec.maxRows);
    const facts = prepared.classification.ok && prepared.classification.statements.length === 1 ? prepared.classification.statements[0] : undefined;
    this.add({ kind: 'execute', raw, portal, step: { kind: 'execute', statements: [this.recorder(s, write, facts)] } });
  }

  /** Why an allowed Execute cannot run where it stands in its batch, or null. */
  private executeShapeDenial(decision: Decision, held: boolean, prepared: Prepared, portal: Portal): Denial | null {
    const write = decision.kind === 'allow-write';
    if (held && (this.batch.cycle !== null || this.batch.writes > 0 || this.batch.heldRead !== null || portal.bind === undefined)) {
      // It waits with its whole batch, which nothing may have left before it, and which holds nothing else that waits.
      return writeShapeDenial(this.who, 'approval-not-alone', 'run a statement that needs approval in a batch (up to Sync) with a write, another such statement, or a Flush before it', 'Send it in a batch of its own, as drivers do.');
    }
    if (write && this.batch.cycle !== null) {
      return writeShapeDenial(this.who, 'flush-before-write', 'write in a batch part of which was already sent with Flush', 'Send Sync before the write, and no Flush between a write and its Sync.');
    }
    if ((write && this.batch.unsafe > 0) || (this.batch.writes > 0 && (write || !plainRead(decision, prepared.classification)))) {
      return writeShapeDenial(this.who, 'write-not-alone', 'run a write in the same batch (up to Sync) as another statement');
    }
    return null;
  }

  private onFlush(m: Message): void {
    if (this.batch.whole !== null) return;
    if ((this.policy !== null || this.holdsReads) && this.batch.cycle === null && this.batch.runs === 0) {
      // Parse and Describe only (drivers ask what a statement takes and
      // returns before they bind it): answered now, on the connection the
      // transaction is on, closed with a Sync of Airlock's own, so that what
      // follows can still go to either connection.
      this.describeNow();
      return;
    }
    // A session that may write sends a batch bound for the write connection
    // only at Sync: its answers come then.
    if (this.batch.heldRead !== null || (this.policy !== null && this.needsWriter(this.batch))) return;
    this.add({ kind: 'flush', raw: m.raw });
    this.sendRead(this.batch, false);
  }

  private describeNow(): void {
    const batch = this.batch;
    this.batch = newBatch();
    if (batch.items.length === 0) return;
    batch.items.push({ kind: 'sync', raw: encodeSync(), step: { kind: 'sync', own: true } });
    // Input waits for the answers: after an error the server would skip
    // what the client sends up to its Sync, and so must Airlock.
    this.runJob(async () => {
      let cycle: Cycle | null;
      if (this.home === 'read') {
        cycle = this.sendRead(batch, true);
        await this.readDrained();
      } else {
        await this.readDrained();
        if (this.closed) return;
        cycle = await this.passOnWriter(await this.openWriter(), batch);
      }
      if (cycle?.failed === true) this.skipping = true;
    });
  }

  /** Notes what a statement does to the transaction, for routing. */
  private noteTransaction(facts: StatementFacts): void {
    const t = facts.transaction;
    if (t === undefined) return;
    // Whatever could turn read-only off goes to the write connection or nowhere.
    if (t.readWrite) this.batch.readWrite = true;
    if (facts.kind !== 'transaction') return;
    this.batch.control++;
    if (t.action === 'begin') this.batch.begins = true;
    if (t.action === 'commit') this.batch.commits = true;
  }

  /** Whether a batch must go to the write connection (or wait to know). */
  private needsWriter(batch: Batch): boolean {
    if (batch.cycle !== null) return false;
    return this.home === 'write' || batch.writes > 0 || batch.begins || batch.readWrite;
  }

  // ---- sending batches ---------------------------------------------------------

  /** The batch is complete (Sync, or a Query): send it where it belongs. */
  private dispatch(): void {
    const batch = this.batch;
    this.batch = newBatch();
    if (batch.heldRead !== null || (this.policy !== null && this.needsWriter(batch))) {
      this.runJob(() => this.job(batch));
      return;
    }
    if (batch.whole !== null) this.replaceWithRefusal(batch, batch.whole.denial);
    this.sendRead(batch, true);
  }

  /** Drops a batch's messages (taking back what judging them did) for a refusal and its Sync. */
  private replaceWithRefusal(batch: Batch, denial: Denial, detail?: string): void {
    const ending = batch.items.at(-1);
    for (let i = batch.items.length - 1; i >= 0; i--) batch.items[i]!.undo?.();
    const token = refusalToken();
    const refusal = { token, denial, detail };
    batch.items =
      ending?.kind === 'query'
        ? [{ kind: 'query', raw: encodeQuery(token), step: { kind: 'query', statements: [], refusal }, facts: [] }]
        : [{ kind: 'refusal', raw: encodeParse(this.names.statement(), token), step: { kind: 'parse', refusal } }, ...(ending === undefined ? [] : [ending])];
    batch.writes = 0;
    batch.write = null;
    batch.heldRead = null;
    batch.begins = false;
    batch.commits = false;
    batch.control = 0;
    batch.readWrite = false;
    batch.whole = null;
  }

  /** Sends a batch's judged messages to the read connection; `complete` when it ends with its Sync or Query. */
  private sendRead(batch: Batch, complete: boolean): Cycle | null {
    if (batch.items.length === 0) return null;
    let cycle = batch.cycle;
    if (cycle === null) {
      cycle = new Cycle(this.seq.read++);
      this.readCycles.push(cycle);
      if (!complete) batch.cycle = cycle;
    }
    const out = this.materialize(batch.items, 'read', cycle);
    batch.items = [];
    batch.bytes = 0;
    for (const b of out) this.toUpstream.push(b);
    if (!this.gathering) this.flushUpstream();
    return cycle;
  }

  /**
   * Sends what this turn gathered for the read connection in one write: the
   * messages as one buffer (the client's own bytes when they are one run of
   * them, else small ones copied together), so a turn costs one socket
   * write, never a gathered write of many pieces.
   */
  private flushUpstream(): void {
    this.gathering = false;
    const out = this.toUpstream;
    if (out.length === 0) return;
    this.toUpstream = [];
    if (this.closed) return;
    let ok = true;
    const whole = contiguous(out) ?? joinSmall(out);
    if (whole !== null) {
      ok = this.upstream.write(whole);
    } else {
      this.upstream.cork();
      for (const b of out) ok = this.upstream.write(b);
      this.upstream.uncork();
    }
    if (!ok) this.client.pause();
  }

  /**
   * The messages one connection must receive for these items, each with its
   * step in `cycle`: a statement the client prepared on the other connection
   * is prepared here first (answers swallowed), and what each message does
   * to the connection's statements is noted, and taken back if the server
   * refuses or skips it. A portal bound on the other connection cannot be
   * used here: the rest of the batch is refused.
   */
  private materialize(items: readonly Item[], conn: ConnectionName, cycle: Cycle): Buffer[] {
    const here = this.objects[conn];
    const other = this.objects[conn === 'read' ? 'write' : 'read'];
    const out: Buffer[] = [];
    while (here.toClose.length > 0) {
      const name = here.toClose.pop()!;
      here.named.delete(name);
      out.push(encodeClose('statement', name));
      cycle.add({ kind: 'close', own: true });
    }
    // A statement whose own Parse failed is not prepared again: the server must say it does not exist, as it would have.
    const ensure = (p: Prepared): void => {
      if (!here.holds(p) && p.state !== 'failed') ensurePrepared(here, p, out, cycle);
    };
    let dropping = false;
    for (const item of items) {
      if (dropping && item.kind !== 'sync') {
        item.undo?.();
        continue;
      }
      const step = item.step;
      if (item.touches !== undefined && step !== undefined) {
        const settled = this.ns.pending(item.touches);
        around(step, settled, settled);
      }
      switch (item.kind) {
        case 'parse': {
          if (item.needs !== undefined) {
            ensure(item.needs);
            break;
          }
          const p = item.prepared!;
          const before = here.unnamed;
          if (p.serverName === '') here.unnamed = p;
          else here.named.add(p.serverName);
          p.state = 'sent';
          around(
            step!,
            () => (p.state = 'done'),
            (failed) => {
              p.state = 'failed';
              if (p.serverName !== '') here.named.delete(p.serverName);
              else if (here.unnamed === p) here.unnamed = failed ? null : before;
            },
          );
          break;
        }
        case 'refusal':
          if (item.raw.readUInt8(5) === 0) here.unnamed = null;
          break;
        case 'bind': {
          ensure(item.prepared!);
          const portal = item.portal;
          if (portal === undefined) break;
          portal.conn = conn;
          portal.cycle = cycle.seq;
          // Its step's answer settles it (done, or failed) as onBind set it up.
          portal.state = 'sent';
          this.ns.bound.add(portal);
          if (portal.name === '') {
            // A Bind of the unnamed portal replaces the one before it on this connection.
            const previous = this.unnamedPortal[conn];
            if (previous !== null && previous !== portal) this.ns.bound.delete(previous);
            this.unnamedPortal[conn] = portal;
          }
          break;
        }
        case 'describe':
        case 'execute': {
          if (item.prepared !== undefined) ensure(item.prepared);
          const portal = item.portal;
          if (portal !== undefined && portal.conn !== conn) {
            const denial = unattributableDenial(this.who, `use portal "${portal.name}" here: it was bound in another transaction, on another connection`);
            this.recordDenial(denial, portal.prepared.text, portal.prepared.classification, portal.params);
            const token = refusalToken();
            out.push(encodeParse(this.names.statement(), token));
            cycle.add({ kind: 'parse', refusal: { token, denial } });
            item.undo?.();
            dropping = true;
            continue;
          }
          break;
        }
        case 'close': {
          const p = item.closes;
          if (p !== undefined) {
            const wasHere = here.holds(p);
            const wasThere = p.serverName !== '' && other.named.has(p.serverName);
            if (p.serverName === '') {
              if (here.unnamed === p) here.unnamed = null;
            } else {
              here.named.delete(p.serverName);
              if (wasThere) other.toClose.push(p.serverName);
            }
            // Skipped (or refused), the Close closed nothing.
            around(
              step!,
              () => undefined,
              () => {
                if (wasHere) {
                  if (p.serverName === '') here.unnamed ??= p;
                  else here.named.add(p.serverName);
                }
                if (wasThere) {
                  const i = other.toClose.indexOf(p.serverName);
                  if (i >= 0) other.toClose.splice(i, 1);
                }
              },
            );
          }
          break;
        }
        case 'query':
          here.querySent();
          for (const facts of item.facts ?? []) if (dropsAllStatements(facts)) here.named.clear();
          break;
        case 'sync':
        case 'flush':
          break;
      }
      out.push(item.raw);
      if (step !== undefined) cycle.add(step);
    }
    return out;
  }

  // ---- the write path (sessions that may write) ------------------------------

  /** Runs work on the write path; client input waits until it is answered. */
  private runJob(work: () => Promise<void>): void {
    this.held = [];
    this.heldAt = 0;
    this.heldBytes = 0;
    this.client.pause();
    this.jobRunning = true;
    work().then(
      () => {
        this.jobRunning = false;
        if (this.closed) {
          this.writer?.connection.close();
          return;
        }
        this.client.resume();
        this.release();
      },
      (err: unknown) => {
        this.jobRunning = false;
        this.jobFailed(err);
        if (this.closed) this.writer?.connection.close();
      },
    );
  }

  private jobFailed(err: unknown): void {
    if (err instanceof WriteOutcomeUnknown) {
      this.audit.append({
        event: 'statement',
        agent: this.who.agent,
        session: this.who.session,
        client: this.who.client,
        decision: 'allow',
        rule: 'write',
        reason: err.message,
        rows: err.impact.rows,
        detail: { changeId: err.changeId, txid: err.txid, tables: err.impact.tables, outcome: 'unknown' },
      });
      this.fatal({
        severity: 'FATAL',
        code: '08006',
        message: `airlock: the connection to the database was lost while the write was being committed; whether it was kept is not known yet (transaction ${err.txid})`,
        hint: `A human can check with: SELECT pg_xact_status('${err.txid}'). Reconnect before sending anything else.`,
      });
      return;
    }
    if (err instanceof WriteEscaped || err instanceof LostTrack) {
      this.breach(err.message);
      return;
    }
    if (this.closed) {
      this.ctx.log(`session ${this.who.session}: the write path failed after the client left: ${(err as Error).message}`);
      return;
    }
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
  }

  /** Handles, in order, what the client sent while the write connection worked. */
  private release(): void {
    const queue = this.held ?? [];
    const start = this.heldAt;
    this.held = null;
    this.heldAt = 0;
    this.heldBytes = 0;
    this.processQueue(queue, start);
  }

  /** Handles held messages in order from `start`; if one of them holds input again, the rest wait with it. */
  private processQueue(queue: Message[], start: number): void {
    this.turnMessages = 0;
    this.gathering = true;
    try {
      for (let i = start; i < queue.length; i++) {
        // onClientMessage may have started another write, or ended the turn, which holds input again.
        const held = this.held as Message[] | null;
        if (held !== null) {
          let bytes = 0;
          for (let j = i; j < queue.length; j++) bytes += queue[j]!.raw.length;
          if (held.length === 1 && held[0] === queue[i - 1]) {
            // The message before waits alone (the common case): the queue itself waits, from it on.
            this.held = queue;
            this.heldAt = i - 1;
          } else {
            for (let j = i; j < queue.length; j++) held.push(queue[j]!);
          }
          this.heldBytes += bytes;
          return;
        }
        this.onClientMessage(queue[i]!);
        if (this.closed) return;
      }
    } catch (err) {
      this.failSession(err);
    } finally {
      this.flushUpstream();
    }
  }

  /** A CancelRequest ends the wait of a statement waiting for approval (its request stays pending). */
  cancelWait(): void {
    if (this.approvalWait !== null) this.approvalWait.cancelled = true;
  }

  /** The write connection while the agent's own statement runs on it (what a CancelRequest should reach), else null. */
  get writeConnection(): WriteConnection | null {
    return this.writer?.cancellable ?? null;
  }

  /** Waiting for answers that settle a statement's or portal's state. */
  private waiters: { until: () => boolean; resolve: () => void }[] = [];

  /** Resolves once `until()` holds, checked as answers arrive (a write job holds input itself, so only the read connection's matter). */
  private waitUntil(until: () => boolean): Promise<void> {
    if (until()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ until, resolve }));
  }

  private checkWaiters(): void {
    if (this.waiters.length === 0) return;
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) {
      if (this.closed || w.until()) w.resolve();
      else this.waiters.push(w);
    }
  }

  private readDrained(): Promise<void> {
    if (this.readCycles.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private async openWriter(): Promise<WriteExecutor> {
    if (this.writer !== null && this.writer.connection.broken) {
      this.writer = null;
      this.objects.write = new ConnectionObjects();
    }
    if (this.writer === null) {
      try {
        const conn = await this.ctx.openWriteConnection(this.who);
        const writer = new WriteExecutor(conn);
        try {
          await writer.verifyMeasurable();
          const problem = await writer.prepareCapture();
          if (problem !== null) this.ctx.log(`session ${this.who.session}: the write connection has no capture table (${problem}); its writes will be refused (no-journal) unless undo-optional`);
        } catch (err) {
          conn.close();
          throw err;
        }
        conn.onLost = (why) => this.writerLost(why);
        this.writer = writer;
      } catch (err) {
        throw new WriteConnectionLost(`could not open it: ${(err as Error).message}`);
      }
    }
    return this.writer;
  }

  /** The server ended the write connection between statements (an idle-in-transaction timeout, say). */
  private writerLost(why: string): void {
    if (this.closed) return;
    if (this.home === 'write') {
      this.fatal({ severity: 'FATAL', code: '08006', message: `airlock: ${why}; the transaction was rolled back`, hint: 'Reconnect; keep transactions short (limits.idle_in_transaction_ms).' });
      return;
    }
    this.ctx.log(`session ${this.who.session}: ${why}`);
  }

  /** Sends a refusal (and the batch's Sync) to the connection the transaction is on, as an ordinary cycle. */
  private async refuseBatch(batch: Batch, denial: Denial, record: boolean): Promise<void> {
    const w = batch.write?.statement ?? batch.heldRead?.statement;
    if (record) this.recordDenial(denial, w?.text ?? '(batch)', undefined, w?.params);
    this.replaceWithRefusal(batch, denial);
    if (this.home === 'read') {
      this.sendRead(batch, true);
      return;
    }
    await this.passOnWriter(this.writer!, batch);
  }

  private async job(batch: Batch): Promise<void> {
    // Answers go back in order: what is in flight on the read connection first.
    await this.readDrained();
    if (this.closed) return;
    if (batch.whole !== null) {
      if (this.home === 'write' && this.writer === null) await this.openWriter();
      await this.refuseBatch(batch, batch.whole.denial, false);
      return;
    }
    if (batch.heldRead !== null) {
      await this.runHeldRead(batch, batch.heldRead);
      return;
    }
    if (this.home === 'read') {
      const frozen = this.ctx.freezeCause(this.who.agent);
      const toWriter = batch.writes > 0 || (batch.begins && this.txStatus === 'I' && frozen === null);
      if ((batch.writes > 0 && this.txStatus !== 'I') || (batch.readWrite && (!toWriter || this.txStatus !== 'I'))) {
        // The transaction began on the read path (read-only, or under a freeze): it stays read-only.
        const denial = frozen !== null && this.txStatus === 'I' ? freezeWriteDenial(this.who, frozen, 'begin a read-write transaction') : readOnlyTransactionDenial(this.who);
        await this.refuseBatch(batch, denial, true);
        return;
      }
      if (!toWriter) {
        // Nothing for the write connection after all (a BEGIN while frozen): the read path takes it.
        this.sendRead(batch, true);
        return;
      }
    }
    const writer = await this.openWriter();
    if (this.closed) return;
    const cause = batch.commits && this.txWrote ? this.ctx.freezeCause(this.who.agent) : null;
    if (cause !== null) {
      await this.refuseCommit(writer, batch, cause);
      return;
    }
    if (batch.write !== null && writer.status !== 'E') {
      if (batch.write.approval === true) await this.runApproved(writer, batch, batch.write);
      else await this.runWrite(writer, batch, batch.write);
      return;
    }
    if (batch.commits && this.txChanges.length > 0 && writer.status === 'T') {
      await this.commitJournalled(writer, batch);
      return;
    }
    // Reads, transaction control, refusals inside the write transaction:
    // answered as the read path answers, through the same bookkeeping.
    await this.passOnWriter(writer, batch);
  }

  /**
   * The agent's COMMIT of a transaction that kept writes: what its
   * savepoints left captured is journalled, durably, before the COMMIT is
   * sent, and marked committed (or aborted) by what the server says of the
   * transaction afterwards. If the journal cannot be written, the
   * transaction is rolled back instead.
   */
  private async commitJournalled(writer: WriteExecutor, batch: Batch): Promise<void> {
    const changes = this.txChanges;
    const txid = changes[0]!.txid;
    let denial: Denial | null = null;
    if (batch.control > 1) {
      // Something else in the batch (ROLLBACK TO SAVEPOINT, say) could change what the COMMIT keeps after the rows were read.
      denial = {
        kind: 'deny',
        rule: 'write-not-alone',
        message: "airlock: a COMMIT of a transaction that wrote must be sent alone, so that exactly what it commits is journalled; the transaction was rolled back",
        hint: 'Send COMMIT on its own.',
        sqlstate: '0A000',
      };
    }
    const ids: string[] = [];
    if (denial === null) {
      try {
        const captured = await writer.capturedInTransaction();
        const entries = changes
          .filter((c) => captured.has(c.changeId))
          .map((c) => ({ id: c.changeId, txid: c.txid, kind: 'write' as const, agent: this.who.agent, by: null, statement: c.text, rows: captured.get(c.changeId)! }));
        await this.ctx.journal.record(entries);
        ids.push(...entries.map((e) => e.id));
      } catch (err) {
        denial = {
          kind: 'deny',
          rule: 'journal-unavailable',
          message: `airlock: the transaction's writes could not be journalled for undo, so it was rolled back: ${(err as Error).message}`,
          hint: "A human must check Airlock's state directory (disk space, permissions) and its log.",
          sqlstate: '58030',
        };
      }
    }
    if (denial !== null) {
      for (let i = batch.items.length - 1; i >= 0; i--) batch.items[i]!.undo?.();
      await writer.rollback();
      this.objects.write.querySent();
      this.recordDenial(denial, 'COMMIT', undefined, undefined);
      this.toClient(Buffer.concat([errorResponse(denialFields(denial, 'The transaction was rolled back.')), readyForQuery('I')]));
      this.settle('I', null);
      return;
    }
    await this.passOnWriter(writer, batch);
    if (ids.length === 0) return;
    // Settled by the server's word on the transaction, not by the answers the agent saw.
    let state: string | null = null;
    if (writer.status === 'I') {
      this.objects.write.querySent();
      state = await writer.transactionStatus(txid).catch(() => null);
    }
    if (state === 'committed' || state === 'aborted') {
      // Not awaited: a mark lost is settled at the next look with pg_xact_status().
      void this.ctx.journal.settle(ids, state).catch((err: Error) => this.ctx.log(`journal: could not mark ${ids.join(', ')} ${state}: ${err.message}`));
    }
  }

  /** Runs a batch on the write connection unmeasured (nothing in it writes), answers streamed to the client. */
  private async passOnWriter(writer: WriteExecutor, batch: Batch): Promise<Cycle> {
    const cycle = new Cycle(this.seq.write++);
    const messages = this.materialize(batch.items, 'write', cycle);
    const status = await writer.pass(messages, (m) => {
      const action = cycle.answer(m.type, m.body);
      if (!this.closed) this.forward(m.raw, action);
    });
    this.settle(status, cycle);
    return cycle;
  }

  /** A transaction that wrote cannot commit under a freeze: it is rolled back instead. */
  private async refuseCommit(writer: WriteExecutor, batch: Batch, cause: FreezeCause): Promise<void> {
    for (let i = batch.items.length - 1; i >= 0; i--) batch.items[i]!.undo?.();
    await writer.rollback();
    this.objects.write.querySent();
    const denial = freezeCommitDenial(this.who, cause);
    this.recordDenial(denial, 'COMMIT', undefined, undefined);
    this.toClient(Buffer.concat([errorResponse(denialFields(denial, 'The transaction was rolled back.')), readyForQuery('I')]));
    this.settle('I', null);
  }

  /**
   * A write that needs a human's approval. With an approval of exactly this
   * agent, text and parameters waiting to be used, it runs at once, within
   * the approved impact. Otherwise it is tried in a transaction that is
   * rolled back (its impact measured: cascades and triggers included), put
   * to a human as a request, and waited for on this connection, with
   * notices, until a decision, a freeze, the wait's end or a hang-up.
   */
  private async runApproved(writer: WriteExecutor, batch: Batch, write: NonNullable<Batch['write']>): Promise<void> {
    const store = this.ctx.approvals!.store;
    const s = write.statement;
    const params = s.params ?? [];
    const hash = statementHash(s.text, params);
    const ready = await store.take(this.who.agent, hash);
    if (ready !== null) return this.runWrite(writer, batch, write, ready);
    if (this.txStatus !== 'I') return this.refuseBatch(batch, inTransactionDenial(this.who.agent), true);
    // What would be refused anyway is refused now, not put to a human.
    const early = this.earlyDenial(write.facts, false);
    if (early !== null) return this.refuseBatch(batch, early, true);
    let request = store.pendingFor(this.who.agent, hash);
    if (request === undefined && this.pendingFull()) return this.refuseBatch(batch, tooManyPendingDenial(this.who.agent, MAX_PENDING_APPROVALS), true);
    if (request === undefined) {
      const tried = await this.dryRun(writer, batch, write);
      if (this.closed) return;
      if ('denial' in tried) return this.refuseBatch(batch, tried.denial, true);
      request = await this.fileRequest(
        s,
        hash,
        { impact: tried.impact.tables, ...(tried.rows === null ? {} : { sample: sampleOf(tried.rows), before: beforeDigests(tried.rows) }) },
        tried.impact.rows,
        { tables: tried.impact.tables },
      );
    }
    const decided = await this.awaitDecision(request, hash, true);
    if (decided === null) return;
    if ('kind' in decided) return this.refuseBatch(batch, decided, true);
    return this.runWrite(writer, batch, write, decided);
  }

  /**
   * A read that a rule holds for a human's approval. With an approval of
   * exactly this agent, text and parameters waiting to be used, it runs at
   * once on the read path. Otherwise it is planned (never run) for the
   * human to see how many rows it would return, put to a human as a
   * request, and waited for on this connection like a write.
   */
  private async runHeldRead(batch: Batch, held: HeldRead): Promise<void> {
    const store = this.ctx.approvals!.store;
    const s = held.statement;
    const params = s.params ?? [];
    const hash = statementHash(s.text, params);
    // A transaction would stay open while a human decides: the statement must come alone, outside one.
    if (this.home !== 'read' || this.txStatus !== 'I' || batch.begins || batch.readWrite) return this.refuseBatch(batch, inTransactionDenial(this.who.agent), true);
    if (batch.unsafe > 1) {
      return this.refuseBatch(batch, writeShapeDenial(this.who, 'approval-not-alone', 'run a statement that needs approval in the same batch as transaction control or settings'), true);
    }
    let bound = await store.take(this.who.agent, hash);
    if (bound === null) {
      let request = store.pendingFor(this.who.agent, hash);
      if (request === undefined && this.pendingFull()) return this.refuseBatch(batch, tooManyPendingDenial(this.who.agent, MAX_PENDING_APPROVALS), true);
      if (request === undefined) {
        const estimate = await this.ctx.estimateRead(this.who.agent, held.parse, held.bind).catch((err: Error) => ({ error: err.message }));
        if (this.closed) return;
        // Shown to the human, not to the agent (what the planner says comes of a statement not yet approved).
        if ('error' in estimate) this.ctx.log(`session ${this.who.session}: no plan estimate for agent "${this.who.agent}"'s read held for approval: ${estimate.error}`);
        const planned = 'error' in estimate ? null : estimate;
        const tables = planned?.tables ?? {};
        request = await this.fileRequest(s, hash, { impact: tables, read: { rows: planned?.rows ?? null } }, planned?.rows ?? null, { read: true, tables });
      }
      // A freeze binds writes, not reads: it does not end a read's wait (though no request is approved while it holds).
      const decided = await this.awaitDecision(request, hash, false);
      if (decided === null) return;
      if ('kind' in decided) return this.refuseBatch(batch, decided, true);
      bound = decided;
    }
    if (this.closed) return;
    s.approval = { request: bound.request.id, by: bound.request.decidedBy ?? null };
    this.sendRead(batch, true);
  }

  /** Whether the agent has as many requests waiting as it may. */
  private pendingFull(): boolean {
    return this.ctx.approvals!.store.list().filter((r) => r.agent === this.who.agent).length >= MAX_PENDING_APPROVALS;
  }

  /** A new request for a human: on disk, then on the audit record (`rows`, `detail`), then told to whoever listens (the webhook). */
  private async fileRequest(
    s: InFlight,
    hash: string,
    impact: Pick<ApprovalRequest, 'impact' | 'read' | 'sample' | 'before'>,
    rows: number | null,
    detail: Record<string, unknown>,
  ): Promise<ApprovalRequest> {
    const settings = this.ctx.approvals!;
    const params = s.params ?? [];
    const request = await settings.store.create({ agent: this.who.agent, session: this.who.session, text: s.text, params, hash, reason: statedReason(s.text), ...impact });
    await this.audit.durable({
      event: 'approval-request',
      agent: this.who.agent,
      session: this.who.session,
      client: this.who.client,
      text: s.text,
      params: params.length > 0 ? params : undefined,
      rows,
      detail: { request: request.id, ...detail, reason: request.reason },
    });
    settings.onRequest?.(request);
    return request;
  }

  /**
   * Waits on this connection, with notices, for a human's decision on
   * `request`: the approval (now used), or the refusal the agent gets (a
   * denial, the wait's end, a cancel, and with `freezeEnds` a freeze);
   * null if the session ended meanwhile.
   */
  private async awaitDecision(request: ApprovalRequest, hash: string, freezeEnds: boolean): Promise<ApprovedBound | Denial | null> {
    const settings = this.ctx.approvals!;
    const store = settings.store;
    const wait = { cancelled: false };
    this.approvalWait = wait;
    try {
      const started = Date.now();
      let noticed = 0;
      for (;;) {
        if (this.closed) return null;
        if (wait.cancelled) return cancelledWaitDenial(request);
        if (Date.now() - noticed >= settings.noticeEveryMs) {
          noticed = Date.now();
          this.toClient(noticeResponse({ severity: 'NOTICE', code: '00000', message: waitingNotice(request) }));
        }
        const frozen = freezeEnds ? this.ctx.freezeCause(this.who.agent) : null;
        if (frozen !== null) return freezeWriteDenial(this.who, frozen);
        const left = started + settings.waitMs - Date.now();
        if (left <= 0) return stillWaitingDenial(request, settings.waitMs);
        const state = await store.waitForDecision(request.id, Math.min(left, 250));
        if (state === 'pending') continue;
        const decided = store.get(request.id) ?? request;
        if (state === 'denied') return deniedDenial(decided);
        if (state !== 'approved') return state === 'expired' ? expiredDenial(decided) : usedDenial(decided);
        if (this.closed) return null;
        return (await store.take(this.who.agent, hash)) ?? usedDenial(decided);
      }
    } finally {
      this.approvalWait = null;
    }
  }

  /** Runs the write in a transaction that is rolled back, with Airlock's own messages: its impact, or why it failed. */
  private async dryRun(
    writer: WriteExecutor,
    batch: Batch,
    write: NonNullable<Batch['write']>,
  ): Promise<{ impact: WriteImpact; rows: readonly RowImage[] | null } | { denial: Denial }> {
    const messages = dryRunMessages(batch, write);
    if (messages === null) {
      return {
        denial: writeShapeDenial(
          this.who,
          'approval-required',
          'run a statement that needs approval from a portal bound before this batch',
          'Send Bind and Execute together (as drivers do), or send it as a simple query.',
        ),
      };
    }
    let error: ErrorFields | null = null;
    let measured: WriteImpact | null = null;
    // Airlock's own unnamed statement and portal replace the client's on the write connection.
    this.objects.write.querySent();
    this.unnamedPortal.write = null;
    const result = await writer.write(
      messages,
      (m) => {
        if (m.type === BACKEND.errorResponse && error === null) error = errorFieldsOf(m.body);
      },
      (impact) => {
        measured = impact;
        return DRY_RUN;
      },
      () => Promise.reject(new Error('a dry run is never recorded as kept')),
      emptiedBy(write.facts),
      { optional: this.ctx.undoOptional },
    );
    this.objects.write.querySent();
    this.settle(result.status, null);
    const o = result.outcome;
    if (o.kind === 'refused' && o.denial === DRY_RUN && measured !== null) return { impact: measured, rows: o.rows ?? null };
    // Whatever stopped it (the database, or Airlock's own checks: no journal, a failed measurement) is
    // told to the log, not to the agent: its words and counts come of what the statement read unapproved.
    const fields = (o.kind === 'failed' ? o.error : null) ?? (error as ErrorFields | null);
    const why = o.kind === 'refused' ? `${o.denial.rule}: ${o.denial.message}` : `${fields?.code ?? 'XX000'} ${fields?.message ?? 'the database refused it'}`;
    this.ctx.log(`session ${this.who.session}: the dry run for approval of agent "${this.who.agent}"'s statement failed: ${why}`);
    return { denial: dryRunFailedDenial() };
  }

  /**
   * What refuses a write before it runs: a TRUNCATE … CASCADE, what undo
   * could not put back, and (`budget`: which counts the write) a spent budget.
   */
  private earlyDenial(facts: StatementFacts | undefined, budget = true): Denial | null {
    const truncates = facts?.changes.some((c) => c.action === 'truncate') === true;
    if (truncates && facts?.cascade === true) return truncateCascadeDenial(this.who);
    const unrecoverable = facts === undefined ? null : unrecoverableDenial(this.who, facts, this.unrecoverableAllowed());
    return unrecoverable ?? (budget ? this.ctx.budget.beforeWrite(this.subject, this.policy!.limits) : null);
  }

  /** Whether a rule allows this agent DDL undo cannot take back (`allow_unrecoverable: true` on the rule deciding drop for any relation). */
  private unrecoverableAllowed(): boolean {
    const decided = this.policy?.decide('drop', null);
    return decided?.decision === 'allow' && decided.unrecoverable === true;
  }

  /**
   * How the write is made recoverable beyond its rows: a DROP TABLE's tables
   * moved into the trash, an ALTER TABLE … DROP COLUMN's values journalled;
   * a statement a rule allows as unrecoverable is journalled as far as it
   * can be, and what it destroys is not asked for.
   */
  private captureOptions(facts: StatementFacts | undefined): CaptureOptions {
    const optional = this.ctx.undoOptional;
    if (facts === undefined) return { optional };
    if (unrecoverableDenial(this.who, facts, false) !== null) {
      // Allowed only by allow_unrecoverable (earlyDenial refused it otherwise): its emptied tables are not journalled.
      const emptied = new Set(emptiedBy(facts).map((t) => `${t.schema}.${t.name}`));
      return { optional: (s, n) => optional(s, n) || emptied.has(`${s}.${n}`) };
    }
    if (facts.command === 'DROP TABLE' && facts.writes.length > 0) return { optional, quarantine: facts.writes };
    const target = facts.writes[0];
    if (facts.droppedColumns !== undefined && facts.command === 'ALTER TABLE' && target !== undefined) {
      return { optional, droppedColumns: { table: target, columns: facts.droppedColumns } };
    }
    return { optional };
  }

  private async runWrite(writer: WriteExecutor, batch: Batch, write: NonNullable<Batch['write']>, approved?: ApprovedBound): Promise<void> {
    const policy = this.policy!;
    const limits = policy.limits;
    const facts = write.facts;
    const early = this.earlyDenial(facts);
    if (early !== null) {
      // Refused before it runs; the refusal fails the agent's transaction, if any, as an error would.
      await this.refuseBatch(batch, early, true);
      return;
    }
    const check = (impact: WriteImpact): Denial | null => {
      const frozen = this.ctx.freezeCause(this.who.agent);
      if (frozen !== null) return freezeWriteDenial(this.who, frozen);
      if (approved !== undefined) {
        const beyond = boundDenial(approved, impact);
        if (beyond !== null) return beyond;
      }
      if (impact.rows > limits.maxRows) return rowLimitDenial(this.subject, impact.rows, limits.maxRows, impact.tables);
      const beyond = unallowedChangeDenial(this.who, policy, impact.changes, approved !== undefined);
      if (beyond !== null) return beyond;
      return this.ctx.budget.afterWrite(this.subject, impact.rows, limits);
    };
    const emptied = emptiedBy(facts);
    // Airlock's own queries around the write drop the unnamed statement.
    this.objects.write.querySent();
    const cycle = new Cycle(this.seq.write++);
    const messages = this.materialize(batch.items, 'write', cycle);
    const answers: { type: number; raw: Buffer }[] = [];
    const s = write.statement;
    /** The change id journalled (pending) before Airlock's own COMMIT, to be settled by its outcome. */
    let journalled: string | null = null;
    const result = await writer.write(
      messages,
      (m) => {
        const action = cycle.answer(m.type, m.body);
        if (action === 'swallow') return;
        answers.push({ type: m.type, raw: Buffer.from(action === 'pass' ? m.raw : action) });
      },
      check,
      async (changeId, impact, txid, rows) => {
        // The journal entry and the audit record, both durable before COMMIT: written side by side.
        const journalling =
          rows !== null && rows.length > 0
            ? this.ctx.journal.record([{ id: changeId, txid, kind: 'write', agent: this.who.agent, by: null, statement: s.text, rows }]).then(() => {
                journalled = changeId;
              })
            : Promise.resolve();
        // Awaited even when the audit record fails: a journal entry is never left unsettled behind Airlock's back.
        const recording = this.audit.durable({
          event: 'write-intent',
          agent: this.who.agent,
          session: this.who.session,
          client: this.who.client,
          text: s.text,
          params: s.params !== undefined && s.params.length > 0 ? s.params : undefined,
          rows: impact.rows,
          detail: { changeId, txid, tables: impact.tables },
        });
        const [journal, audit] = await Promise.allSettled([journalling, recording]);
        if (journal.status === 'rejected') throw journal.reason;
        if (audit.status === 'rejected') throw audit.reason;
      },
      emptied,
      { ...this.captureOptions(facts), ...(approved === undefined ? {} : { rowsCheck: (rows: readonly RowImage[]) => rowsBeyondDenial(approved, rows) }) },
    );
    this.objects.write.querySent();
    const o = result.outcome;
    if (journalled !== null && o.kind === 'kept' && process.env.AIRLOCK_TEST_HOLD_BEFORE_JOURNAL_MARK === '1') {
      // Test hook (test/undo-cli.test.ts): hold between the database's COMMIT and the journal's mark, so a test can kill Airlock there.
      this.ctx.log(`test hook: holding change ${journalled} between its COMMIT and its journal mark`);
      await new Promise<never>(() => undefined);
    }
    if (journalled !== null) {
      const state = o.kind === 'kept' ? 'committed' : 'aborted';
      const id = journalled;
      // Not awaited: a mark lost is settled at the next look with pg_xact_status().
      void this.ctx.journal.settle([id], state).catch((err: Error) => this.ctx.log(`journal: could not mark ${id} ${state} (it is settled at the next look): ${err.message}`));
    }
    if (o.kind === 'kept' && result.status !== 'I') this.txChanges.push({ changeId: o.changeId, txid: o.txid, text: s.text });
    if (o.kind === 'kept') {
      // On the record as kept before the agent hears of it, whatever it does next.
      // Outside a transaction Airlock committed it; inside the agent's, it was
      // released into it, and the agent's COMMIT (or ROLLBACK) is on the record too.
      const outcome = result.status === 'I' ? 'committed' : 'released';
      const approval = approved === undefined ? {} : { approval: { request: approved.request.id, by: approved.request.decidedBy } };
      await this.audit.durable(this.audit.entry(s, o.impact.rows, undefined, { changeId: o.changeId, txid: o.txid, tables: o.impact.tables, outcome, ...approval }));
      if (result.status !== 'I') this.txWrote = true;
    } else if (o.kind === 'refused') {
      this.recordDenial(o.denial, s.text, undefined, s.params, o.impact === null ? undefined : { tables: o.impact.tables, rows: o.impact.rows, outcome: 'rolled back' });
    } else {
      const sqlstate = o.error?.code ?? firstErrorCode(answers) ?? 'XX000';
      this.audit.statement(s, null, sqlstate, { outcome: 'rolled back', ...(o.impact === null ? {} : { tables: o.impact.tables }) });
    }
    if (this.closed) return;
    if (o.kind === 'kept' || (o.kind === 'failed' && o.error === null)) {
      for (const a of answers) this.toClient(a.type === BACKEND.readyForQuery ? readyForQuery(result.status) : a.raw);
    } else {
      const error: ErrorFields = o.kind === 'refused' ? denialFields(o.denial, 'The statement ran and was rolled back; nothing was changed.') : o.error!;
      for (const a of answers) {
        if (!PREAMBLE.has(a.type)) break;
        this.toClient(a.raw);
      }
      this.toClient(Buffer.concat([errorResponse(error), readyForQuery(result.status)]));
    }
    this.settle(result.status, null);
    if (result.status === 'I') this.ns.transactionEnded('write', cycle.seq);
  }

  /** Where the session's transaction is, after the write connection answered with `status`. */
  private settle(status: TransactionStatus, cycle: Cycle | null): void {
    this.txStatus = status;
    this.home = status === 'I' ? 'read' : 'write';
    if (this.home === 'read') {
      this.txWrote = false;
      this.txChanges = [];
    }
    if (cycle !== null && status === 'I') this.ns.transactionEnded('write', cycle.seq);
  }

  // ---- upstream → client -------------------------------------------------

  private fromUpstream(chunk: Buffer): void {
    if (this.closed) return;
    try {
      this.scanUpstream(chunk);
    } catch (err) {
      this.failSession(err);
      return;
    }
    this.checkWaiters();
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
    if (err instanceof LostTrack) {
      this.breach(`Airlock lost track of the database's answers (${err.message})`);
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
      const action = this.inspect(type, BODY_READ[type] ? buf.subarray(at + 5, end) : NO_BODY);
      if (this.closed) return;
      if (action !== 'pass') {
        if (at > from) this.toClient(buf.subarray(from, at));
        if (action !== 'swallow') this.toClient(action);
        from = end;
      }
      at = end;
    }
    if (at < buf.length) this.upstreamHeld = Buffer.from(buf.subarray(at));
    if (at > from) this.toClient(buf.subarray(from, at));
  }

  private forward(raw: Buffer, action: AnswerAction): void {
    if (action === 'swallow') return;
    this.toClient(action === 'pass' ? raw : action);
  }

  private toClient(bytes: Buffer): void {
    if (!this.client.write(bytes)) this.upstream.pause();
  }

  /** Looks at one message of the read connection's; says what the client gets instead. */
  private inspect(type: number, body: Buffer): AnswerAction {
    switch (type) {
      case BACKEND.parameterStatus: {
        const { name, value } = parseParameterStatus(body);
        const pinned = this.ctx.pinnedParameters.get(name);
        if (pinned !== undefined && value !== pinned) {
          this.breach(`the database reported ${name} = ${value}; Airlock requires ${pinned} on the read path`);
        }
        return 'pass';
      }
      case BACKEND.copyInResponse:
      case BACKEND.copyBothResponse:
        // Never allowed on the read path: if the server asks for data anyway,
        // something got past judgement. End the session; the upstream rolls back.
        this.breach('the database started a COPY FROM STDIN or replication stream on the read path');
        return 'pass';
      default: {
        const { action, ended } = this.readCycles.answer(type, body);
        if (ended !== null) this.readCycleEnded(ended);
        return action;
      }
    }
  }

  private readCycleEnded(cycle: Cycle): void {
    const status = cycle.status!;
    if (this.readCycles.length === MAX_CYCLES_IN_FLIGHT >> 1 && this.held === null && !this.closed) this.client.resume();
    if (this.roomWaiter !== null && this.readCycles.length <= MAX_CYCLES_IN_FLIGHT >> 1) {
      const resolve = this.roomWaiter;
      this.roomWaiter = null;
      resolve();
    }
    if (status === 'I') this.ns.transactionEnded('read', cycle.seq);
    if (this.home === 'read') this.txStatus = status;
    if (this.readCycles.length === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  // ---- audit ---------------------------------------------------------------

  private recordDenial(d: Denial, text: string, classification: Classification | undefined, params: (string | null)[] | undefined, detail?: Record<string, unknown>): void {
    this.audit.refusal(d, text, classification, params, detail);
    this.ctx.onRefusal(this.who, d, text);
  }

  // ---- endings ---------------------------------------------------------------

  private breach(what: string): void {
    this.ctx.log(`SECURITY: session ${this.who.session} (agent ${this.who.agent}): ${what}; ending the session`);
    this.audit.breach(what);
    this.fatal({
      severity: 'FATAL',
      code: '42501',
      message: `airlock: session ended: ${what}`,
      hint: 'This is reported to the operators. Reconnect to start a fresh session.',
    });
  }

  /**
   * The client went away. PostgreSQL notices a vanished client only when it
   * next writes to it, so a running query would run on to its end: cancel
   * it first. A write being measured is settled by the write path as if the
   * client were still there: its record tells what happened.
   */
  private clientLeft(): void {
    if (this.closed) return;
    if (this.readCycles.length > 0) this.cancelUpstream();
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
    // A write being measured settles first, as if the client were still
    // there, so that its record says what happened; then its connection closes.
    if (!this.jobRunning) this.writer?.connection.close();
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
    this.checkWaiters();
    this.onEnd(reason);
  }
}

/** What the record shows for a statement refused before it was decoded. */
/**
 * The longest Query or Parse message kept to be read (Int32 length word): a
 * statement of max_statement_bytes, with room in a Parse for a long name and
 * every parameter type. Longer ones are refused unread and never held.
 */
function statementMessageLimit(maxStatementBytes: number): (type: number) => number {
  const query = 4 + maxStatementBytes + 1;
  const parse = query + 64 * 1024 + 2 + 4 * 0xffff;
  return (type) => (type === FRONTEND.query ? query : type === FRONTEND.parse ? parse : Infinity);
}

/** The refusal of a Query or Parse whose `bodyBytes` were dropped unread, being far past max_statement_bytes. */
function droppedDenial(bodyBytes: number, maxStatementBytes: number): Denial {
  const tooLarge = statementSizeRefusal(bodyBytes, maxStatementBytes)!;
  return unjudgedDenial(tooLarge.unjudged!, tooLarge.error);
}

/** TRUNCATE and DROP TABLE change no row counters: the rows they remove are counted before they run. */
function emptiedBy(facts: StatementFacts | undefined): { schema: string; name: string }[] {
  const relations = facts?.command === 'DROP TABLE' ? facts.writes : (facts?.changes ?? []).filter((c) => c.action === 'truncate').map((c) => c.relation);
  return relations.map((r) => ({ schema: r.schema ?? 'public', name: r.name }));
}

/**
 * The write's messages for a dry run, as Airlock's own: a simple Query as it
 * came, or the statement's Parse and the client's Bind (formats and values
 * as sent) under the unnamed statement and portal. Null when the portal's
 * Bind is not at hand.
 */
function dryRunMessages(batch: Batch, write: NonNullable<Batch['write']>): Buffer[] | null {
  const last = batch.items.at(-1);
  if (last?.kind === 'query') return [last.raw];
  const portal = write.portal;
  if (portal?.bind === undefined) return null;
  const parse = parseParse(portal.prepared.parse.subarray(5));
  return [encodeParseMessage({ ...parse, name: '' }), renameBind(portal.bind, '', ''), encodeExecute('', 0), encodeSync()];
}

function errorFieldsOf(body: Buffer): ErrorFields {
  const f = parseErrorFields(body);
  return { severity: 'ERROR', code: f.get('C') ?? 'XX000', message: f.get('M') ?? 'the database refused it' };
}

function unreadLabel(denial: Denial): string {
  return denial.rule === 'encoding' ? '(invalid UTF-8)' : `(statement not read: ${denial.rule})`;
}

/**
 * Puts a statement the client prepared on the other connection (or before
 * this connection's unnamed slot was taken) on `here` too: its Parse again,
 * as Airlock's own message, answered but not passed on. If the server
 * refuses it, `here` does not hold it.
 */
function ensurePrepared(here: ConnectionObjects, p: Prepared, out: Buffer[], cycle: Cycle): void {
  const before = here.unnamed;
  if (p.serverName === '') here.unnamed = p;
  else here.named.add(p.serverName);
  out.push(p.parse);
  cycle.add({
    kind: 'parse',
    own: true,
    onFail: (failed) => {
      if (p.serverName !== '') here.named.delete(p.serverName);
      else if (here.unnamed === p) here.unnamed = failed ? null : before;
    },
  });
}

/** Has `done` / `fail` run, then what the step already does, when the server answers (or skips) it. */
function around(step: Step, done: () => void, fail: (failed: boolean) => void): void {
  const onDone = step.onDone;
  const onFail = step.onFail;
  step.onDone = () => {
    done();
    onDone?.();
  };
  step.onFail = (failed) => {
    fail(failed);
    onFail?.(failed);
  };
}

/**
 * Whether an allow-read verdict of these facts may be kept and reused while
 * the schema stands: none of its statements names a SQL-level prepared
 * statement or cursor, itself or inside (EXPLAIN EXECUTE), whose meaning is
 * the session's state, not the facts'.
 */
function verdictKeepable(classification: Classification): boolean {
  if (!classification.ok) return false;
  for (const f of classification.statements) {
    if (f.prepared !== undefined || f.cursor !== undefined) return false;
    if (f.inner !== undefined && (f.inner.prepared !== undefined || f.inner.cursor !== undefined)) return false;
  }
  return true;
}

/** A statement that only reads: it may share a batch with a write (inside the write's own transaction). */
function plainRead(decision: Decision, classification: Classification): boolean {
  if (decision.kind !== 'allow-read' || !classification.ok) return false;
  return classification.statements.every((f) => f.kind === 'read' && f.transaction === undefined && f.setting === undefined);
}

/** DEALLOCATE ALL and DISCARD ALL drop every named prepared statement, protocol-level ones included. */
function dropsAllStatements(facts: StatementFacts): boolean {
  return facts.prepared?.action === 'deallocate-all' || (facts.command === 'DISCARD' && /^\s*discard\s+all\b/i.test(facts.text));
}

/** CLOSE ALL and DISCARD ALL close every portal, protocol-level ones included. */
function closesAllPortals(facts: StatementFacts): boolean {
  return facts.cursor?.action === 'close-all' || (facts.command === 'DISCARD' && /^\s*discard\s+all\b/i.test(facts.text));
}

function firstErrorCode(answers: readonly { type: number; raw: Buffer }[]): string | undefined {
  const e = answers.find((a) => a.type === BACKEND.errorResponse);
  if (e === undefined) return undefined;
  const body = e.raw.subarray(5);
  for (let i = 0; i < body.length && body[i] !== 0; ) {
    const field = body[i]!;
    const end = body.indexOf(0, i + 1);
    if (field === 0x43) return body.subarray(i + 1, end).toString('utf8');
    i = end + 1;
  }
  return undefined;
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

/** Batches up to this size that are not one run of the client's bytes are copied into one buffer for their write. */
const JOIN_BYTES = 64 * 1024;

/** The pieces copied into one buffer, when they are small; null otherwise. */
function joinSmall(pieces: Buffer[]): Buffer | null {
  let total = 0;
  for (const b of pieces) total += b.length;
  return total <= JOIN_BYTES ? Buffer.concat(pieces, total) : null;
}

/** Inspected messages whose body the relay reads; the others (ParseComplete, BindComplete, RowDescription, …) are followed by their type alone. */
const BODY_READ: boolean[] = [];
for (const t of [BACKEND.commandComplete, BACKEND.errorResponse, BACKEND.readyForQuery, BACKEND.parameterStatus]) BODY_READ[t] = true;
const NO_BODY = Buffer.alloc(0);

/** Backend message types the relay must see whole; all others (DataRow above all) pass through unscanned. */
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
  BACKEND.bindComplete,
  BACKEND.closeComplete,
  BACKEND.noData,
  BACKEND.rowDescription,
]) {
  INSPECTED[t] = true;
}
