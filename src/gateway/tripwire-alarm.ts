/**
 * What happens when the tripwire trips: the agent is frozen at once (from
 * its very next statement, while the freeze is being persisted), the trip
 * goes on the audit record and into Airlock's log, and the webhook is told.
 */
import type { WebhookFormat } from '../config/schema.js';
import { postWebhook } from '../notify/webhook.js';
import type { AlarmEvent } from '../notify/webhook.js';
import type { Denial } from '../policy/decision.js';
import type { Tripwire } from '../policy/tripwire.js';
import type { AuditEntry, AuditLog } from '../state/audit-log.js';
import type { FreezeCause, FreezeStore, ManualFreeze } from '../state/freeze-store.js';
import type { RelayIdentity } from './relay.js';

/** The admin name the tripwire's freezes carry. */
export const TRIPWIRE_ADMIN = 'airlock-tripwire';

export class TripwireAlarm {
  private readonly notYetStored = new Map<string, ManualFreeze>();

  constructor(
    private readonly tripwire: Tripwire,
    private readonly freezes: FreezeStore,
    private readonly audit: AuditLog,
    private readonly webhook: { url: string; format: WebhookFormat } | null,
    private readonly log: (line: string) => void,
  ) {}

  /** Why `agent` is frozen now, counting a trip whose freeze is still being written. */
  freezeCause(agent: string): FreezeCause | null {
    const stored = this.freezes.causeFor(agent);
    if (stored !== null) return stored;
    const pending = this.notYetStored.get(agent);
    return pending === undefined ? null : { kind: 'manual', freeze: pending };
  }

  /** Told of every refusal (after it is on the record). */
  onRefusal(who: RelayIdentity, denial: Denial, text: string): void {
    const reason = this.tripwire.record(who.agent, denial);
    if (reason === null) return;
    this.log(`TRIPWIRE: agent "${who.agent}" ${reason} (session ${who.session}); it is frozen until a human unfreezes it.`);
    this.record({ event: 'tripwire', agent: who.agent, session: who.session, client: who.client, text, rule: denial.rule, reason });
    this.freeze(who.agent, reason);
    if (this.webhook !== null) {
      const event: AlarmEvent = { event: 'tripwire', agent: who.agent, reason, statement: text, rule: denial.rule, session: who.session, at: new Date().toISOString() };
      postWebhook(this.webhook.url, this.webhook.format, event).catch((err: Error) =>
        this.log(`TRIPWIRE: the webhook could not be told: ${err.message}`),
      );
    }
  }

  private freeze(agent: string, reason: string): void {
    const freeze: ManualFreeze = { scope: { kind: 'agent', agent }, reason: `tripwire: ${reason}`, by: TRIPWIRE_ADMIN, at: new Date().toISOString(), until: null };
    this.notYetStored.set(agent, freeze);
    this.freezes
      .freeze(freeze.scope, freeze.reason, freeze.by, null)
      .then(
        () => this.record({ event: 'freeze', agent, session: null, client: null, reason: freeze.reason, detail: { by: freeze.by } }),
        (err: Error) => this.log(`TRIPWIRE: could not persist the freeze of agent "${agent}" (it holds until Airlock restarts): ${err.message}`),
      )
      .finally(() => {
        if (this.notYetStored.get(agent) === freeze) this.notYetStored.delete(agent);
      });
  }

  private record(entry: AuditEntry): void {
    try {
      this.audit.append(entry);
    } catch (err) {
      this.log(`audit: could not record the ${entry.event} of agent ${entry.agent ?? '?'}: ${(err as Error).message}`);
    }
  }
}
