/**
 * Prepared statements and portals: the names the client uses, and the names
 * the server holds. Airlock owns the server-side namespace: every statement
 * or portal a client names gets a server name of Airlock's (random per
 * session, never reused), so a name always means exactly the text Airlock
 * judged for it, on whichever connection it is used, and no SQL-level
 * FETCH, MOVE, CLOSE, EXECUTE or DEALLOCATE can reach a protocol-level
 * object (names with Airlock's prefix are refused in SQL). The unnamed
 * statement and portal stay unnamed (what drivers use most), tracked per
 * connection by identity.
 *
 * pgbouncer (since 1.21) and PgDog rename clients' prepared statements the
 * same way.
 */
import { randomBytes } from 'node:crypto';
import type { Classification } from '../sql/facts.js';
import type { ResolvedCalls } from '../policy/overloads.js';
import type { Decision } from '../policy/decision.js';
import type { SchemaKnowledge } from '../policy/schema-knowledge.js';

/** Every server-side name Airlock gives a client's statement or portal begins with this; SQL may not name such objects. */
export const RESERVED_PREFIX = '_airlock_';

/** Whether a name (as PostgreSQL folded it) is in Airlock's namespace. */
export function isReservedName(name: string): boolean {
  return name.toLowerCase().startsWith(RESERVED_PREFIX);
}

/** A client's prepared statement, as Airlock judged it. */
export interface Prepared {
  /** The client's name for it ('' for the unnamed statement). */
  name: string;
  text: string;
  classification: Classification;
  /** What the server said its statements call (user functions sharing a built-in's name), to judge it again at Execute. */
  resolutions?: ReadonlyMap<number, ResolvedCalls>;
  /** Its name on the server: '' for the unnamed statement, else one of Airlock's. */
  serverName: string;
  /** The Parse message that creates it on a connection under `serverName`. */
  parse: Buffer;
  /** Where its Parse is: still in the batch being collected, sent and unanswered, or answered. */
  state: ObjectState;
  /**
   * Its verdict as a read, and the schema knowledge it was reached with: kept
   * for statements whose verdict hangs on nothing else (no SQL-level prepared
   * statement or cursor named), so an unchanged statement is judged once per schema.
   */
  read?: { schema: SchemaKnowledge | null; decision: Decision };
}

/**
 * A client's statement or portal: created by a message still in the batch,
 * sent and not yet answered, made by the server, or not made (refused or
 * skipped): such an object is never made again behind the client's back.
 */
export type ObjectState = 'batched' | 'sent' | 'done' | 'failed';

export const CONNECTIONS = ['read', 'write'] as const;
export type ConnectionName = (typeof CONNECTIONS)[number];

/** A client's portal. */
export interface Portal {
  name: string;
  prepared: Prepared;
  params: (string | null)[];
  serverName: string;
  /** The connection it was bound on; null until its Bind is sent. */
  conn: ConnectionName | null;
  /** The number of the cycle its Bind was sent in, on `conn`. */
  cycle: number;
  state: ObjectState;
  /** Its transaction ended: it is gone, and nothing taken back may bring it back. */
  ended?: boolean;
  /** Its Bind's body as the client sent it (formats and values), for a dry run of a write held for approval. */
  bind?: Buffer;
}

/** Hands out server-side names no agent can predict. */
export class NameAllocator {
  private readonly prefix = RESERVED_PREFIX + randomBytes(6).toString('hex') + '_';
  private next = 0;

  statement(): string {
    return `${this.prefix}s${this.next++}`;
  }

  portal(): string {
    return `${this.prefix}p${this.next++}`;
  }
}

/**
 * What one upstream connection holds of the client's statements: the named
 * ones by server name, and which statement its unnamed slot holds.
 */
export class ConnectionObjects {
  readonly named = new Set<string>();
  unnamed: Prepared | null = null;
  /** Server names to close here when a batch next goes this way (closed by the client on the other connection). */
  readonly toClose: string[] = [];

  /** Whether `p` is there under its server name. */
  holds(p: Prepared): boolean {
    return p.serverName === '' ? this.unnamed === p : this.named.has(p.serverName);
  }

  /** A simple Query (the client's or Airlock's own) drops the unnamed statement and portal. */
  querySent(): void {
    this.unnamed = null;
  }
}

/** The client's view: its statements and portals by the names it uses. */
export class ClientNamespace {
  readonly statements = new Map<string, Prepared>();
  readonly portals = new Map<string, Portal>();
  /** Portals whose Bind was sent, by the client's name or not (closed ones too), until their transaction ends. */
  readonly bound = new Set<Portal>();
  /** SQL-level prepared statements (PREPARE), by name, for judging EXECUTE. */
  readonly sqlPrepared = new Map<string, Classification>();
  /** SQL-level cursors declared (DECLARE), by name; FETCH and MOVE may name only these. */
  readonly sqlCursors = new Set<string>();
  /**
   * Statement names whose existence hangs on answers still to come (a Parse,
   * Close or failing Parse sent and not yet answered), with how many.
   */
  readonly uncertain = new Map<string, number>();

  isUncertain(name: string): boolean {
    return (this.uncertain.get(name) ?? 0) > 0;
  }

  /** Notes a message sent whose answer decides whether `name` exists; returns what to call once it is answered. */
  pending(name: string): () => void {
    this.uncertain.set(name, (this.uncertain.get(name) ?? 0) + 1);
    let settled = false;
    return () => {
      if (settled) return;
      settled = true;
      const left = (this.uncertain.get(name) ?? 1) - 1;
      if (left <= 0) this.uncertain.delete(name);
      else this.uncertain.set(name, left);
    };
  }

  /**
   * The transaction on `conn` ended with cycle number `cycle`: the portals
   * bound there up to that cycle are gone (later cycles may already have bound new ones).
   */
  transactionEnded(conn: ConnectionName, cycle: number): void {
    // Called at every ReadyForQuery outside a transaction: most often nothing is bound.
    if (this.bound.size === 0) return;
    for (const portal of this.bound) {
      if (portal.conn !== conn || portal.cycle > cycle) continue;
      portal.ended = true;
      this.bound.delete(portal);
      if (this.portals.get(portal.name) === portal) this.portals.delete(portal.name);
    }
  }
}
