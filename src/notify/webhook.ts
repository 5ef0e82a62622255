/**
 * Tells humans, through a channel no agent holds, that something happened:
 * an HTTP POST with a JSON body (Airlock's own, or Slack-compatible).
 * Delivery is best effort and never holds up an agent's statement.
 */
import type { WebhookFormat } from '../config/schema.js';

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
export function webhookBody(event: AlarmEvent, format: WebhookFormat): unknown {
  if (format === 'slack') {
    return {
      text: `:rotating_light: Airlock tripwire: agent "${event.agent}" ${event.reason}.\nStatement: \`${event.statement.slice(0, 500)}\`\nRule: ${event.rule}, session ${event.session}, at ${event.at}.`,
    };
  }
  return event;
}

/** POSTs the event; resolves once delivered, rejects with a plain message if not (within `timeoutMs`). */
export async function postWebhook(url: string, format: WebhookFormat, event: AlarmEvent, timeoutMs = 5000): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'airlock' },
    body: JSON.stringify(webhookBody(event, format)),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!response.ok) throw new Error(`the webhook answered ${response.status} ${response.statusText}`);
}
