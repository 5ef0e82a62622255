/**
 * The refusal for a statement that was not read at all (sql/facts.ts,
 * `unjudged`): not a syntax error, so not 42601, but a limit, each with the
 * SQLSTATE PostgreSQL uses for its own kind of limit.
 * https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
import type { UnjudgedReason } from '../sql/facts.js';
import type { Denial } from './decision.js';

const REFUSALS: Record<UnjudgedReason, { rule: string; sqlstate: string; hint: string }> = {
  // program_limit_exceeded
  'too-large': {
    rule: 'statement-too-large',
    sqlstate: '54000',
    hint: 'Send a shorter statement (a long IN list can be one array parameter: = ANY($1)); an operator can raise limits.max_statement_bytes.',
  },
  // statement_too_complex
  'too-complex': {
    rule: 'statement-too-complex',
    sqlstate: '54001',
    hint: 'Split it into simpler statements (a long IN list can be one array parameter: = ANY($1)); an operator can raise limits.classify_timeout_ms.',
  },
  // configuration_limit_exceeded, as PostgreSQL says for too many connections of a role
  'too-busy': {
    rule: 'classifier-busy',
    sqlstate: '53400',
    hint: 'Wait a moment and send it again; an operator can raise limits.classifier_workers.',
  },
  // out_of_memory: Airlock's own budget, not the statement's fault
  'no-memory': {
    rule: 'memory-budget',
    sqlstate: '53200',
    hint: 'Wait a moment and send it again; an operator can raise limits.max_memory_bytes.',
  },
  // system_error: nothing about the statement, Airlock itself cannot judge now
  unavailable: {
    rule: 'classifier-unavailable',
    sqlstate: '58000',
    hint: "Try again once Airlock is running; a human should check Airlock's log.",
  },
};

/** The denial for a statement not read for `reason`; `error` is the classification's sentence. */
export function unjudgedDenial(reason: UnjudgedReason, error: string): Denial {
  const r = REFUSALS[reason];
  return { kind: 'deny', rule: r.rule, message: `airlock: ${error}`, hint: r.hint, sqlstate: r.sqlstate };
}
