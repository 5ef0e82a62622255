/**
 * An agent's node-postgres session through Airlock that remembers whether
 * the gateway ended it, so that a test can tell "refused" from "cut off"
 * and still check the session's state when it is alive.
 */
import pg from 'pg';

/** How a statement is sent: simple protocol for a string, extended for an object (named when `name` is given). */
export type Sendable = string | { text: string; values?: unknown[]; name?: string };

export interface AgentSession {
  client: pg.Client;
  /** False once the connection ended or failed. */
  readonly alive: boolean;
  /** Sends one statement; resolves to its result or to the error it raised (never rejects). */
  send(what: Sendable): Promise<{ ok: true; result: pg.QueryResult } | { ok: false; error: Error }>;
  close(): Promise<void>;
}

export async function openAgentSession(config: pg.ClientConfig): Promise<AgentSession> {
  const client = new pg.Client(config);
  let alive = true;
  // A FATAL from the gateway arrives as an 'error' event on an idle client; it is recorded, not thrown.
  client.on('error', () => {
    alive = false;
  });
  client.on('end', () => {
    alive = false;
  });
  await client.connect();
  return {
    client,
    get alive() {
      return alive;
    },
    async send(what) {
      try {
        const result = typeof what === 'string' ? await client.query(what) : await client.query(what);
        return { ok: true, result };
      } catch (error) {
        return { ok: false, error: error as Error };
      }
    },
    async close() {
      if (!alive) return;
      alive = false;
      await client.end();
    },
  };
}
