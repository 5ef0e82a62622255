/**
 * The dashboard's sign-in sessions: a random id in an HttpOnly cookie, and
 * everything else on the server, in memory. A session holds the SHA-256 of
 * the admin token it was opened with, never the token, so that revoking the
 * token (`airlock admin token revoke`) ends its sessions at their next
 * request: every request checks the digest against the tokens file again.
 *
 * Sessions end when signed out, after `idleMs` without a request, or
 * `lifetimeMs` after sign-in, whichever comes first; a restart ends them all
 * (they are kept in memory only, on purpose: nothing on disk to steal).
 */
import { createHash, randomBytes } from 'node:crypto';

export interface DashboardSession {
  /** The random id the cookie carries (32 bytes, base64url). */
  id: string;
  /** The admin token's name, as the audit record says who. */
  admin: string;
  /** SHA-256 of the admin token it was opened with. */
  tokenDigest: Buffer;
  /** Milliseconds since the epoch. */
  created: number;
  lastSeen: number;
}

export interface DashboardSessionsOptions {
  /** A session unused this long ends (default 1 hour). */
  idleMs?: number;
  /** A session ends this long after sign-in, used or not (default 12 hours). */
  lifetimeMs?: number;
  /** Most sessions at once; the least recently used ends first (default 1000). */
  max?: number;
  now?: () => number;
}

const DEFAULT_IDLE_MS = 60 * 60_000;
const DEFAULT_LIFETIME_MS = 12 * 60 * 60_000;
const DEFAULT_MAX = 1000;
/** The id's form: 32 random bytes in base64url. Anything else is not looked up. */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

/** The SHA-256 of an admin token, as the tokens file keeps it. */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class DashboardSessions {
  /** In insertion order, refreshed on use: the first is the least recently used. */
  private readonly sessions = new Map<string, DashboardSession>();
  private readonly idleMs: number;
  private readonly lifetimeMs: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(options: DashboardSessionsOptions = {}) {
    this.idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    this.lifetimeMs = options.lifetimeMs ?? DEFAULT_LIFETIME_MS;
    this.max = options.max ?? DEFAULT_MAX;
    this.now = options.now ?? Date.now;
  }

  /** How long a new session's cookie should live, in seconds. */
  get cookieMaxAgeSeconds(): number {
    return Math.floor(this.lifetimeMs / 1000);
  }

  /** Opens a session for the admin who showed the token with this digest. */
  open(admin: string, digest: Buffer): DashboardSession {
    const now = this.now();
    while (this.sessions.size >= this.max) {
      const oldest = this.sessions.keys().next();
      if (oldest.done === true) break;
      this.sessions.delete(oldest.value);
    }
    const session: DashboardSession = { id: randomBytes(32).toString('base64url'), admin, tokenDigest: digest, created: now, lastSeen: now };
    this.sessions.set(session.id, session);
    return { ...session };
  }

  /** The live session with this id, now marked used; null when there is none (unknown, ended or expired). */
  use(id: string | undefined): DashboardSession | null {
    if (id === undefined || !SESSION_ID.test(id)) return null;
    const session = this.sessions.get(id);
    if (session === undefined) return null;
    const now = this.now();
    if (now - session.lastSeen >= this.idleMs || now - session.created >= this.lifetimeMs) {
      this.sessions.delete(id);
      return null;
    }
    session.lastSeen = now;
    // Move to the end: least recently used first.
    this.sessions.delete(id);
    this.sessions.set(id, session);
    return { ...session };
  }

  /** Ends the session; true if there was one. */
  end(id: string | undefined): boolean {
    return id !== undefined && this.sessions.delete(id);
  }

  /** Open sessions (expired ones not yet looked at included). */
  get size(): number {
    return this.sessions.size;
  }
}
