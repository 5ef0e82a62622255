/**
 * What a session says and checks while a statement waits for a human's
 * approval (the relay runs the flow; approval-store.ts keeps the requests):
 * the notices, the refusals that end a wait, and the bound an approval puts
 * on the statement's real impact.
 */
import type { Denial } from '../policy/decision.js';
import type { ApprovalRequest, ApprovalStore, ApprovedBound } from '../state/approval-store.js';
import { createHash } from 'node:crypto';
import type { WriteImpact } from '../executor/write-executor.js';
import type { RowImage } from '../state/journal.js';

/** Row images a request shows a human, and how much of each. */
const SAMPLE_ROWS = 10;
const SAMPLE_CHARS = 1000;
/** Before-images kept to bind an approval to its rows; past this many, only their number binds it. */
const MAX_BOUND_ROWS = 100_000;

/** Image kinds that show a row as it was before the statement (journal.ts). */
const BEFORE_KINDS: ReadonlySet<string> = new Set(['d', 'o', 't']);

/** The first rows a dry run changed, for the human (before and after). */
export function sampleOf(rows: readonly RowImage[]): { table: string; kind: string; image: string }[] {
  return rows.slice(0, SAMPLE_ROWS).map((r) => ({ table: r.table, kind: r.kind, image: r.image.length > SAMPLE_CHARS ? `${r.image.slice(0, SAMPLE_CHARS)}…` : r.image }));
}

function digest(r: RowImage): string {
  return createHash('sha256').update(`${r.table}\0${r.image}`).digest('hex');
}

/** The digests of the rows a dry run changed or removed, as they were before; undefined past MAX_BOUND_ROWS. */
export function beforeDigests(rows: readonly RowImage[]): string[] | undefined {
  const before = rows.filter((r) => BEFORE_KINDS.has(r.kind));
  return before.length > MAX_BOUND_ROWS ? undefined : before.map(digest).sort();
}

/**
 * The refusal when the approved statement changed or removed rows its dry
 * run did not (the same number of other rows: the data it selects on
 * changed since), or null. Rows it inserts are bound by their number only.
 */
export function rowsBeyondDenial(bound: ApprovedBound, rows: readonly RowImage[]): Denial | null {
  if (bound.before === null) return null;
  const left = new Map<string, number>();
  for (const d of bound.before) left.set(d, (left.get(d) ?? 0) + 1);
  for (const r of rows) {
    if (!BEFORE_KINDS.has(r.kind)) continue;
    const d = digest(r);
    const n = left.get(d) ?? 0;
    if (n === 0) {
      return {
        kind: 'deny',
        rule: 'approval-exceeded',
        message: `airlock: the statement approved in request #${bound.request.id} changed a row of ${r.table} that its dry run did not (or one that changed since), so it was rolled back`,
        hint: 'Nothing was changed. An approval binds the rows the human saw; sending the statement again makes a new request with its rows now.',
        sqlstate: '42501',
      };
    }
    left.set(d, n - 1);
  }
  return null;
}

export interface ApprovalSettings {
  store: ApprovalStore;
  /** How long a statement waits on its connection (approvals.wait_seconds), in milliseconds. */
  waitMs: number;
  /** How often the waiting notice is repeated, in milliseconds. */
  noticeEveryMs: number;
  /** Called once a request is made (the webhook, the log). */
  onRequest?: (request: ApprovalRequest) => void;
}

/** The refusal the dry run ends with: it measured, then rolled back. */
export const DRY_RUN: Denial = {
  kind: 'deny',
  rule: 'dry-run',
  message: 'airlock: dry run for approval',
  hint: 'Nothing was changed.',
  sqlstate: '00000',
};

/**
 * The notice a waiting statement gets. It says nothing of the dry run: the
 * statement ran there before anyone approved it, and what it read (rows of
 * a table a rule holds for approval, say) must not reach the agent through
 * counts or errors. The human sees the impact; the agent, the request.
 */
export function waitingNotice(request: ApprovalRequest): string {
  return `airlock: waiting for approval #${request.id} (approve with: airlock approve ${request.id})`;
}

function who(agent: string): string {
  return `agent "${agent}"`;
}

export function deniedDenial(request: ApprovalRequest): Denial {
  return {
    kind: 'deny',
    rule: 'approval-denied',
    message: `airlock: request #${request.id} was denied by ${request.decidedBy ?? 'an admin'}: ${request.denyReason ?? '(no reason given)'}`,
    hint: 'Nothing was changed. Sending the same statement again makes a new request.',
    sqlstate: '42501',
  };
}

export function expiredDenial(request: ApprovalRequest): Denial {
  return {
    kind: 'deny',
    rule: 'approval-expired',
    message: `airlock: request #${request.id} expired at ${request.expires} without a decision`,
    hint: 'Nothing was changed. Sending the same statement again makes a new request.',
    sqlstate: '42501',
  };
}

export function stillWaitingDenial(request: ApprovalRequest, waitedMs: number): Denial {
  return {
    kind: 'deny',
    rule: 'approval-pending',
    message:
      `airlock: request #${request.id} is still waiting for a human's approval after ${Math.round(waitedMs / 1000)} s; ` +
      `it stays pending until ${request.expires}`,
    hint: `Nothing was changed. Once a human has run "airlock approve ${request.id}", send the identical statement again: it then runs once.`,
    sqlstate: '57014',
  };
}

export function tooManyPendingDenial(agent: string, max: number): Denial {
  return {
    kind: 'deny',
    rule: 'approval-backlog',
    message: `airlock: ${who(agent)} already has ${max} requests waiting for a human's approval, so this statement was not tried or held`,
    hint: 'Nothing was changed. Wait until a human has decided the pending requests (airlock approvals).',
    sqlstate: '53400',
  };
}

export function cancelledWaitDenial(request: ApprovalRequest): Denial {
  return {
    kind: 'deny',
    rule: 'approval-pending',
    message: `airlock: canceling the wait for approval of request #${request.id}, which stays pending until ${request.expires}`,
    hint: `Nothing was changed. Once a human has run "airlock approve ${request.id}", send the identical statement again: it then runs once.`,
    sqlstate: '57014',
  };
}

export function usedDenial(request: ApprovalRequest): Denial {
  return {
    kind: 'deny',
    rule: 'approval-used',
    message: `airlock: the approval of request #${request.id} was already used by another execution of the same statement`,
    hint: 'An approval is good once. Sending the statement again makes a new request.',
    sqlstate: '42501',
  };
}

export function inTransactionDenial(agent: string): Denial {
  return {
    kind: 'deny',
    rule: 'approval-in-transaction',
    message: `airlock: ${who(agent)} sent a statement that needs a human's approval inside a transaction block, where it cannot wait for one`,
    hint: 'Send it on its own, outside BEGIN … COMMIT: it then waits for the approval and runs in a transaction of its own.',
    sqlstate: '25001',
  };
}

/**
 * The agent's answer when the dry run failed. The database's own error is
 * not passed on: the statement ran unapproved there, and an error (division
 * by zero on some row, say) would tell what it read. Airlock's log has it.
 */
export function dryRunFailedDenial(): Denial {
  return {
    kind: 'deny',
    rule: 'dry-run-failed',
    message: 'airlock: the statement failed when it was tried for approval, so no request was made; what the database said is in Airlock\'s log, for a human',
    hint: 'Nothing was changed. Check the statement (run its parts you may run without approval), or ask a human to look.',
    sqlstate: '42501',
  };
}

/** The refusal when the real impact is beyond what was approved, or null when it is within. */
export function boundDenial(bound: ApprovedBound, impact: WriteImpact): Denial | null {
  const id = bound.request.id;
  if (bound.maxRows !== null) {
    if (impact.rows <= bound.maxRows) return null;
    return beyond(id, `${impact.rows} rows`, `at most ${bound.maxRows} rows`);
  }
  const per = bound.perTable ?? {};
  for (const [table, rows] of Object.entries(impact.tables)) {
    const allowed = per[table] ?? 0;
    if (rows > allowed) return beyond(id, `${rows} rows of ${table}`, `${allowed} (its dry run's)`);
  }
  return null;
}

function beyond(id: number, did: string, approved: string): Denial {
  return {
    kind: 'deny',
    rule: 'approval-exceeded',
    message: `airlock: the statement approved in request #${id} changed ${did}, more than the ${approved} approved, so it was rolled back`,
    hint: 'Nothing was changed. The data changed since the dry run; sending the statement again makes a new request with its impact now.',
    sqlstate: '42501',
  };
}
