/**
 * Request/response cycles on one upstream connection, followed from the
 * server's own answers. Every message Airlock sends that the server answers
 * (Parse, Bind, Close, Describe, Execute, Query, Sync) is a step; each
 * answer completes the step it belongs to, an ErrorResponse fails the
 * current step and skips the rest up to the Sync, and ReadyForQuery ends the
 * cycle. What Airlock believes about the connection's prepared statements
 * and portals is confirmed or taken back here, step by step, so it is what
 * the server did rather than what was sent.
 *
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
import { BACKEND, commandTagRows, errorResponse, parseErrorFields } from '../protocol/backend.js';
import type { TransactionStatus } from '../protocol/backend.js';
import type { Denial } from '../policy/decision.js';

export const STEP_KINDS = ['parse', 'bind', 'close', 'describe', 'execute', 'query', 'sync'] as const;
export type StepKind = (typeof STEP_KINDS)[number];

/** A statement run by an Execute or a Query, for the record. */
export interface RunStatement {
  /** Called with the rows the command tag reports (null when it reports none) and the tag's command, or with the SQLSTATE it failed with, or 'skipped'. */
  settle(rows: number | null, sqlstate: string | undefined, command?: string): void;
}

export interface Step {
  kind: StepKind;
  /** Airlock's own message (a statement prepared again on this connection): its answer is not passed on. */
  own?: boolean;
  /** The statements an Execute (one) or a Query (one per statement) runs. */
  statements?: RunStatement[];
  /** How many of `statements` have completed. */
  settled?: number;
  /** A refusal: the server's syntax error for `token` is replaced by Airlock's `denial`. */
  refusal?: { token: string; denial: Denial; detail?: string };
  /** The server did what the step asked. */
  onDone?: () => void;
  /** The server refused the step (`failed`), or skipped it after an earlier error in its cycle. */
  onFail?: (failed: boolean) => void;
}

/** A step's answer: pass the message on, swallow it, or send these bytes instead. */
export type AnswerAction = 'pass' | 'swallow' | Buffer;

/** Thrown when the server's answers do not fit the steps Airlock sent: its picture of the connection cannot be trusted. */
export class LostTrack extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LostTrack';
  }
}

// The steps each answer may complete (hoisted: an array literal in `answer` would be allocated for every message).
const PARSE: readonly StepKind[] = ['parse'];
const BIND: readonly StepKind[] = ['bind'];
const CLOSE: readonly StepKind[] = ['close'];
const DESCRIBE: readonly StepKind[] = ['describe'];
const EXECUTE: readonly StepKind[] = ['execute'];
const RUNS: readonly StepKind[] = ['execute', 'query'];
const ROWS_OF: readonly StepKind[] = ['describe', 'execute', 'query'];

export class Cycle {
  readonly steps: Step[] = [];

  /** `seq`: the cycle's number on its connection. */
  constructor(readonly seq = 0) {}

  private at = 0;
  /** Set once the server answered ReadyForQuery. */
  status: TransactionStatus | null = null;
  /** An ErrorResponse arrived in this cycle. */
  failed = false;

  /** An error arrived and the server now skips everything up to the Sync. */
  private skipping = false;

  /** A step sent after an error of the cycle is skipped by the server: it is settled as skipped at once. */
  add(step: Step): void {
    if (this.skipping && step.kind !== 'sync') {
      if (step.kind === 'execute') this.settleNext(step, null, 'skipped');
      step.onFail?.(false);
      return;
    }
    this.steps.push(step);
  }

  get ended(): boolean {
    return this.status !== null;
  }

  private current(what: string): Step {
    const step = this.steps[this.at];
    if (step === undefined) throw new LostTrack(`the database answered ${what} to nothing Airlock sent`);
    return step;
  }

  private finish(step: Step): void {
    this.at++;
    step.onDone?.();
  }

  private expect(kinds: readonly StepKind[], what: string): Step {
    const step = this.current(what);
    if (!kinds.includes(step.kind)) throw new LostTrack(`the database answered ${what} where Airlock expected the answer to ${step.kind}`);
    return step;
  }

  /** Handles one answer of the server's; returns what to send the client. */
  answer(type: number, body: Buffer): AnswerAction {
    switch (type) {
      case BACKEND.parseComplete: {
        const step = this.expect(PARSE, 'ParseComplete');
        this.finish(step);
        return step.own === true ? 'swallow' : 'pass';
      }
      case BACKEND.bindComplete: {
        const step = this.expect(BIND, 'BindComplete');
        this.finish(step);
        return step.own === true ? 'swallow' : 'pass';
      }
      case BACKEND.closeComplete: {
        const step = this.expect(CLOSE, 'CloseComplete');
        this.finish(step);
        return step.own === true ? 'swallow' : 'pass';
      }
      case BACKEND.noData:
        this.finish(this.expect(DESCRIBE, 'NoData'));
        return 'pass';
      case BACKEND.rowDescription: {
        const step = this.expect(ROWS_OF, 'RowDescription');
        if (step.kind === 'describe') this.finish(step);
        return 'pass';
      }
      case BACKEND.commandComplete:
      case BACKEND.emptyQueryResponse: {
        const step = this.expect(RUNS, type === BACKEND.commandComplete ? 'CommandComplete' : 'EmptyQueryResponse');
        const rows = type === BACKEND.commandComplete ? commandTagRows(body) : null;
        this.settleNext(step, rows, undefined, type === BACKEND.commandComplete ? tagCommand(body) : undefined);
        // A Query's step lasts until its ReadyForQuery (it may hold several statements).
        if (step.kind === 'execute') this.finish(step);
        return 'pass';
      }
      case BACKEND.portalSuspended: {
        const step = this.expect(EXECUTE, 'PortalSuspended');
        this.settleNext(step, null, undefined);
        this.finish(step);
        return 'pass';
      }
      case BACKEND.errorResponse:
        return this.error(body);
      case BACKEND.readyForQuery: {
        const step = this.current('ReadyForQuery');
        if (step.kind !== 'sync' && step.kind !== 'query') throw new LostTrack(`the database answered ReadyForQuery where Airlock expected the answer to ${step.kind}`);
        if (step.kind === 'query') {
          // Statements of the query string after a failed one were not run.
          while ((step.settled ?? 0) < (step.statements?.length ?? 0)) this.settleNext(step, null, 'skipped');
        }
        this.at++;
        if (this.at !== this.steps.length) throw new LostTrack('the database ended a cycle before answering everything in it');
        step.onDone?.();
        this.status = String.fromCharCode(body[0]!) as TransactionStatus;
        return step.own === true ? 'swallow' : 'pass';
      }
      default:
        return 'pass';
    }
  }

  private settleNext(step: Step, rows: number | null, sqlstate: string | undefined, command?: string): void {
    const i = step.settled ?? 0;
    const s = step.statements?.[i];
    if (s === undefined) return;
    step.settled = i + 1;
    s.settle(rows, sqlstate, command);
  }

  /**
   * The current step failed; the server skips what follows up to the Sync
   * (or, in a Query, the rest of the query string).
   */
  private error(body: Buffer): AnswerAction {
    const fields = parseErrorFields(body);
    const step = this.steps[this.at];
    if (step === undefined) {
      // An error outside any step (a FATAL as the server ends the connection): passed on as it is.
      return 'pass';
    }
    this.failed = true;
    let replacement: AnswerAction = 'pass';
    const refusal = step.refusal;
    if (refusal !== undefined && (fields.get('M') ?? '').includes(refusal.token)) {
      replacement = errorResponse({
        severity: 'ERROR',
        code: refusal.denial.sqlstate,
        message: refusal.denial.message,
        detail: refusal.detail ?? `Rule: ${refusal.denial.rule}. The statement was not sent to the database.`,
        hint: refusal.denial.hint,
      });
    }
    const code = fields.get('C') ?? 'XX000';
    if (step.kind === 'query') {
      this.settleNext(step, null, code);
      // The Query step itself ends at its ReadyForQuery.
      return replacement;
    }
    if (step.kind === 'execute') this.settleNext(step, null, code);
    this.at++;
    this.skipping = true;
    // Everything up to the Sync is skipped by the server. What the steps did
    // to Airlock's picture is taken back newest first, the failed step last,
    // as a stack unwinds.
    const skipped: Step[] = [];
    while (this.at < this.steps.length && this.steps[this.at]!.kind !== 'sync') {
      const later = this.steps[this.at]!;
      if (later.kind === 'execute') this.settleNext(later, null, 'skipped');
      skipped.push(later);
      this.at++;
    }
    for (let i = skipped.length - 1; i >= 0; i--) skipped[i]!.onFail?.(false);
    step.onFail?.(true);
    if (step.own === true && replacement === 'pass') {
      // Airlock's own re-prepare failed: the client's next step (which needed it) is what fails in its eyes.
      return 'pass';
    }
    return replacement;
  }
}

/** The command word of a CommandComplete tag ('ROLLBACK' of 'ROLLBACK', 'INSERT' of 'INSERT 0 1'). */
function tagCommand(body: Buffer): string {
  const end = body.indexOf(0);
  const tag = body.subarray(0, end < 0 ? body.length : end).toString('utf8');
  const space = tag.indexOf(' ');
  return space < 0 ? tag : tag.slice(0, space);
}

const PASSED: Readonly<{ action: AnswerAction; ended: Cycle | null }> = Object.freeze({ action: 'pass', ended: null });

/** Cycles sent on one connection, answered in order. */
export class CycleQueue {
  /** A queue with a moving head: Array.shift is linear in the length, and a client may pipeline hundreds of thousands of cycles. */
  private cycles: (Cycle | undefined)[] = [];
  private head = 0;

  push(cycle: Cycle): void {
    this.cycles.push(cycle);
  }

  get length(): number {
    return this.cycles.length - this.head;
  }

  /** The cycle the next answer belongs to, or undefined. */
  get first(): Cycle | undefined {
    return this.cycles[this.head];
  }

  /** Handles one answer; a cycle that ended leaves the queue. */
  answer(type: number, body: Buffer): Readonly<{ action: AnswerAction; ended: Cycle | null }> {
    const cycle = this.cycles[this.head];
    if (cycle === undefined) {
      if (type === BACKEND.errorResponse || type === BACKEND.noticeResponse || type === BACKEND.notificationResponse) return PASSED;
      if (type === BACKEND.parameterStatus) return PASSED;
      throw new LostTrack(`the database sent message '${String.fromCharCode(type)}' when nothing was asked`);
    }
    const action = cycle.answer(type, body);
    // The usual answer (passed on, the cycle goes on) costs no allocation: this runs for every message the server sends.
    if (!cycle.ended) return action === 'pass' ? PASSED : { action, ended: null };
    this.cycles[this.head++] = undefined;
    if (this.head === this.cycles.length) {
      this.cycles = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.cycles.length) {
      this.cycles = this.cycles.slice(this.head);
      this.head = 0;
    }
    return { action, ended: cycle };
  }
}
