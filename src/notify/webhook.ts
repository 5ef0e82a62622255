/**
 * Tells humans, through a channel no agent holds, that something happened:
 * an HTTP POST with a JSON body (Airlock's own, or Slack-compatible).
 * Delivery is best effort and never holds up an agent's statement.
 */
import type { WebhookFormat } from '../config/schema.js';
import { impactText } from '../state/approval-store.js';

/** A statement waits for a human's approval: what it would do, and the commands that decide it. */
export interface ApprovalEvent {
  event: 'approval-request';
  id: number;
  agent: string;
  statement: string;
  params: (string | null)[];
  /** What the agent says it is for: shown, never trusted. */
  reason: string | null;
  /** Rows per table its dry run changed (a read: the rows the plan expects each table's scans to yield). */
  impact: Record<string, number>;
  /** A read: the rows the plan expects it to return. */
  read?: { rows: number | null };
  expires: string;
  approve: string;
  deny: string;
  at: string;
}

export type NotifyEvent = AlarmEvent | ApprovalEvent;

export interface AlarmEvent {
  event: 'tripwire';
  agent: string;
  /** Why, in words: 'touched a canary table (...)', 'had 3 destructive statements refused within 600 s'. */
  reason: string;
  /** The statement that tripped it. */
  statement: string;
  rule: string;
  session: string;
  at: string;
}

/** The body POSTed for an event, in the configured format. */
export function webhookBody(event: NotifyEvent, format: WebhookFormat): unknown {
  if (event.event === 'approval-request') {
    if (format !== 'slack') return event;
    const impact = impactText(event);
    return {
      text:
        `:raised_hand: Airlock: agent "${event.agent}" waits for approval #${event.id}.\nStatement: \`${event.statement.slice(0, 500)}\`` +
        `${event.params.length > 0 ? ` with ${JSON.stringify(event.params).slice(0, 200)}` : ''}\nImpact (${event.read === undefined ? 'dry run' : 'plan'}): ${impact}. Reason given: ${event.reason ?? '(none)'}.\n` +
        `Approve: \`${event.approve}\`  Deny: \`${event.deny}\`  (expires ${event.expires})`,
    };
  }
  if (format === 'slack') {
    return {
      text: `:rotating_light: Airlock tripwire: agent "${event.agent}" ${event.reason}.\nStatement: \`${event.statement.slice(0, 500)}\`\nRule: ${event.rule}, session ${event.session}, at ${event.at}.`,
    };
  }
  return event;
}

/** POSTs the event; resolves once delivered, rejects with a plain message if not (within `timeoutMs`). */
export async function postWebhook(url: string, format: WebhookFormat, event: NotifyEvent, timeoutMs = 5000): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'airlock' },
    body: JSON.stringify(webhookBody(event, format)),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!response.ok) throw new Error(`the webhook answered ${response.status} ${response.statusText}`);
}
