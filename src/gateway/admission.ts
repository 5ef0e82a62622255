/**
 * Who gets a place at the door. Connections that have not logged in are
 * counted apart from logged-in sessions (limits.max_pending_logins against
 * limits.max_clients), so that silent sockets cannot take the places of
 * agents that log in; and each agent holds at most its own number of
 * sessions (agents[].max_sessions), so that one agent never costs the
 * others their connections (DESIGN.md).
 */
import type { ErrorFields } from '../protocol/backend.js';

export interface AdmissionLimits {
  maxClients: number;
  maxPendingLogins: number;
}

/** One connection's place: waiting to log in, then logged in as an agent, then gone. */
export interface AdmissionTicket {
  /** Moves from waiting to logged in as `agent`; null when admitted, else the refusal to send. */
  login(agent: string, maxSessions: number): ErrorFields | null;
  /** Gives the place back (idempotent). */
  release(): void;
}

export class Admission {
  /** Tickets waiting to log in, oldest first (a Set keeps insertion order). */
  readonly #pending = new Set<{ evict: () => void }>();
  #active = 0;
  readonly #perAgent = new Map<string, number>();

  constructor(private readonly limits: AdmissionLimits) {}

  /** Connections waiting to log in. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Logged-in sessions. */
  get active(): number {
    return this.#active;
  }

  /** Sessions `agent` holds. */
  sessionsOf(agent: string): number {
    return this.#perAgent.get(agent) ?? 0;
  }

  /**
   * A place for a new connection to log in. When limits.max_pending_logins
   * connections wait already, the one that has waited longest is let go
   * (`onEvicted` of its ticket is called): a real client logs in within
   * milliseconds, so silent or slow connections, not newcomers, give way.
   */
  arrive(onEvicted: () => void): AdmissionTicket {
    if (this.#pending.size >= this.limits.maxPendingLogins) {
      const oldest = this.#pending.values().next().value;
      if (oldest !== undefined) {
        this.#pending.delete(oldest);
        oldest.evict();
      }
    }
    let state: 'pending' | 'active' | 'gone' = 'pending';
    let agentName = '';
    const waiting = {
      evict: () => {
        state = 'gone';
        onEvicted();
      },
    };
    this.#pending.add(waiting);
    return {
      login: (agent, maxSessions) => {
        if (state !== 'pending') {
          return { severity: 'FATAL', code: '08006', message: 'airlock: the connection was closed while it was logging in' };
        }
        if (this.#active >= this.limits.maxClients) {
          return {
            severity: 'FATAL',
            code: '53300',
            message: `airlock: too many clients (limits.max_clients is ${this.limits.maxClients})`,
            hint: 'Try again when other sessions have ended, or ask an operator to raise limits.max_clients.',
          };
        }
        const held = this.sessionsOf(agent);
        if (held >= maxSessions) {
          return {
            severity: 'FATAL',
            code: '53300',
            message: `airlock: agent "${agent}" already holds ${held} sessions, its limit (max_sessions is ${maxSessions})`,
            hint: 'Close one of its sessions first, or ask an operator to raise agents[].max_sessions (or limits.max_sessions_per_agent).',
          };
        }
        this.#pending.delete(waiting);
        this.#active++;
        this.#perAgent.set(agent, held + 1);
        state = 'active';
        agentName = agent;
        return null;
      },
      release: () => {
        if (state === 'pending') this.#pending.delete(waiting);
        else if (state === 'active') {
          this.#active--;
          const held = this.sessionsOf(agentName) - 1;
          if (held > 0) this.#perAgent.set(agentName, held);
          else this.#perAgent.delete(agentName);
        }
        state = 'gone';
      },
    };
  }
}
