/**
 * A session's entries on the audit record: one builder for statements that
 * ran (reads and writes alike), one for refusals, one for breaches.
 */
import type { Classification } from '../sql/facts.js';
import type { Denial } from '../policy/decision.js';
import type { AuditEntry, AuditLog } from '../state/audit-log.js';

export interface SessionIdentity {
  agent: string;
  profile: string;
  session: string;
  client: string;
}

/** A statement sent upstream whose outcome is not known yet. */
export interface InFlight {
  text: string;
  fingerprint: string | undefined;
  params: (string | null)[] | undefined;
  rule: string;
  started: number;
  /** It runs by a human's approval: the request, and who approved it. */
  approval?: { request: number; by: string | null };
}

/** Marks a statement the server skipped because an earlier one in its cycle failed. */
export const SKIPPED = 'skipped';

export class SessionAudit {
  constructor(
    private readonly log: AuditLog,
    private readonly who: SessionIdentity,
    private readonly report: (line: string) => void,
  ) {}

  /** The entry for a statement that was allowed and sent: `sqlstate` is its error, or SKIPPED. */
  entry(s: InFlight, rows: number | null, sqlstate: string | undefined, detail?: Record<string, unknown>): AuditEntry {
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
    if (s.approval !== undefined) entry.detail = { ...entry.detail, approval: s.approval };
    if (detail !== undefined) entry.detail = { ...entry.detail, ...detail };
    return entry;
  }

  statement(s: InFlight, rows: number | null, sqlstate: string | undefined, detail?: Record<string, unknown>): void {
    this.append(this.entry(s, rows, sqlstate, detail));
  }

  refusal(d: Denial, text: string, classification: Classification | undefined, params: (string | null)[] | undefined, detail?: Record<string, unknown>): void {
    const entry: AuditEntry = {
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
    };
    if (detail !== undefined) entry.detail = detail;
    this.append(entry);
  }

  breach(what: string, detail?: Record<string, unknown>): void {
    this.append({ event: 'breach', agent: this.who.agent, session: this.who.session, client: this.who.client, reason: what, detail });
  }

  append(entry: AuditEntry): void {
    try {
      this.log.append(entry);
    } catch (err) {
      // The log went unhealthy between judging and recording: statements from
      // now on are refused (see the relay's judge); this one is reported loudly instead.
      this.report(`audit: could not record a statement of session ${this.who.session}: ${(err as Error).message}`);
    }
  }

  durable(entry: AuditEntry): Promise<unknown> {
    return this.log.appendDurable(entry);
  }
}
