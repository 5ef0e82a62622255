/**
 * Refusals of the write path that depend on where a statement stands in the
 * session (its batch, its transaction, a freeze that arrived meanwhile)
 * rather than on the statement alone: plain data, one function each.
 */
import type { Denial } from './decision.js';
import { describeFreeze } from './read-only.js';
import type { FreezeCause } from '../state/freeze-store.js';
import type { AgentPolicy } from './rules.js';

interface Who {
  agent: string;
  profile: string;
}

const FREEZE_HINT = 'Reads go on. Only a human with an admin token can lift the freeze (airlock unfreeze); nothing sent over this connection can.';

/** The one freeze refusal of the write path; `what` completes "may not …". */
export function freezeWriteDenial(who: Who, cause: FreezeCause, what = 'write', hint = FREEZE_HINT): Denial {
  return {
    kind: 'deny',
    rule: 'freeze',
    message: `airlock: agent "${who.agent}" may not ${what}: ${describeFreeze(cause)}`,
    hint,
    sqlstate: '25006',
  };
}

/** A COMMIT of a transaction that kept writes, under a freeze: it is rolled back. */
export function freezeCommitDenial(who: Who, cause: FreezeCause): Denial {
  return freezeWriteDenial(
    who,
    cause,
    'commit a transaction that wrote',
    'The transaction was rolled back; nothing it wrote was kept. Only a human with an admin token can lift the freeze.',
  );
}

/** A write that would not run alone between Airlock's own boundaries. */
export function writeShapeDenial(who: Who, rule: string, what: string, hint?: string): Denial {
  return {
    kind: 'deny',
    rule,
    message: `airlock: agent "${who.agent}" may not ${what}: each write runs on its own, measured and limited`,
    hint: hint ?? 'Send each write as a statement of its own (one per query string, or one Execute per Sync), and transaction control (BEGIN, COMMIT, SAVEPOINT, ...) in batches of its own.',
    sqlstate: '0A000',
  };
}

/** A write in a transaction that began on the read path. */
export function readOnlyTransactionDenial(who: Who): Denial {
  return {
    kind: 'deny',
    rule: 'read-only-transaction',
    message: `airlock: agent "${who.agent}" may not write in this transaction: it began on the read path, where PostgreSQL refuses writes`,
    hint: 'End the transaction and begin a new one for the write (a transaction begun while the agent was frozen, or READ ONLY, stays read-only).',
    sqlstate: '25006',
  };
}

export function truncateCascadeDenial(who: Who): Denial {
  return {
    kind: 'deny',
    rule: 'truncate-cascade',
    message: `airlock: agent "${who.agent}" may not run TRUNCATE ... CASCADE: Airlock cannot count beforehand the rows it would remove from the tables it reaches`,
    hint: 'Truncate the tables by name (without CASCADE), or DELETE, which is measured; or a human runs it.',
    sqlstate: '0A000',
  };
}

/**
 * Destructive DDL whose loss the undo journal cannot take back: DROP SCHEMA,
 * and DROP … CASCADE (it removes what depends on the objects named, which no
 * fact lists). DROP TABLE (moved into the trash) and ALTER TABLE … DROP
 * COLUMN (its values journalled) are made recoverable on the write path
 * instead. `explicitlyAllowed`: a rule with `allow_unrecoverable: true`
 * allows it. Null for anything else.
 */
export function unrecoverableDenial(
  who: Who,
  facts: { command: string; drops: boolean; cascade: boolean },
  explicitlyAllowed: boolean,
): Denial | null {
  let what: string | null = null;
  if (facts.command === 'DROP SCHEMA') what = 'DROP SCHEMA';
  else if (facts.drops && facts.cascade) what = `${facts.command} … CASCADE`;
  if (what === null || explicitlyAllowed) return null;
  return {
    kind: 'deny',
    rule: 'unrecoverable',
    message: `airlock: agent "${who.agent}" may not run ${what}: what it destroys could not be put back by undo`,
    hint: 'A human can run it directly, or allow it with a rule that says so (allow_unrecoverable: true). DROP TABLE and ALTER TABLE … DROP COLUMN without CASCADE are recoverable.',
    sqlstate: '0A000',
  };
}

/** Rows changed per table and kind, as measured. */
export interface MeasuredChange {
  schema: string;
  name: string;
  insert: number;
  update: number;
  delete: number;
}

/**
 * Rows changed where the statement did not say (cascades, triggers, rules)
 * must be rows the agent may change there too: no table is written behind
 * the policy's back.
 */
export function unallowedChangeDenial(who: Who, policy: AgentPolicy, changes: readonly MeasuredChange[], approved = false): Denial | null {
  for (const change of changes) {
    for (const action of ['insert', 'update', 'delete'] as const) {
      if (change[action] === 0) continue;
      const { decision, by } = policy.decide(action, { schema: change.schema, name: change.name });
      // An approved statement's changes where rules say approve are what the human approved (its dry run showed them).
      if (decision === 'allow' || (approved && decision === 'approve')) continue;
      return {
        kind: 'deny',
        rule: 'write',
        message:
          `airlock: agent "${who.agent}" may not ${action} rows of ${change.schema}.${change.name} ` +
          `(the statement did so through a cascade, trigger or rule: ${change[action]} rows; ${by} says ${decision}); it was rolled back (profile ${who.profile})`,
        hint: 'A human can run the statement directly, or allow that table in the Airlock rules.',
        sqlstate: '42501',
      };
    }
  }
  return null;
}

/** A statement, portal or cursor Airlock cannot tie to exactly what it judged. */
export function unattributableDenial(who: Who, what: string): Denial {
  return {
    kind: 'deny',
    rule: 'unattributable',
    message: `airlock: agent "${who.agent}" may not ${what}: Airlock cannot tell with certainty which statement it would run`,
    hint: 'Use statements and cursors this session prepared or declared itself, in the transaction where they were made.',
    sqlstate: '42501',
  };
}
