/**
 * Classification is the costly step on the read path (tens of microseconds a
 * statement, seconds for a hostile one), so each distinct text is parsed
 * once, and plain SELECTs that differ only in their literal values share one
 * parse (see sql/literal-mask.ts). Hits are answered on the main thread
 * (`lookup`); a miss goes to the classifier pool's worker threads
 * (`classifyAsync`), under its deadline. The cache is an LRU bounded in bytes.
 */
import { classify as classifyHere } from '../sql/classify.js';
import type { ClassifierPool } from '../sql/classifier-pool.js';
import type { Classification } from '../sql/facts.js';
import { maskLiterals } from '../sql/literal-mask.js';
import type { MemoryBudget } from './memory-budget.js';
import { DEFAULT_MAX_STATEMENT_BYTES, statementSizeRefusal } from '../sql/statement-size.js';

/** 64 MiB. */
export const DEFAULT_STATEMENT_CACHE_BYTES = 64 * 1024 * 1024;

/**
 * What one entry is reckoned to cost besides its key: the facts object, its
 * arrays and the Map's own slot. An estimate, not a measurement; the
 * statements' own texts inside the facts are counted on top.
 */
export const FACTS_ESTIMATE_BYTES = 1024;

/**
 * Whether facts of this classification hold for every text of the same
 * literal-masked shape: one plain SELECT, whose facts (kind, relations,
 * functions) come from the tree's shape and identifiers, never from a
 * literal's value. SET, transaction options and COPY options do depend on
 * literal values, so they are never shared.
 */
function shareableByShape(c: Classification): boolean {
  if (!c.ok || c.statements.length !== 1) return false;
  const s = c.statements[0]!;
  return (
    s.kind === 'read' &&
    s.command === 'SELECT' &&
    s.sideEffectFunctions.length === 0 &&
    !s.locking &&
    !s.selectInto &&
    !s.modifyingCte &&
    s.inner === undefined &&
    s.setting === undefined &&
    s.transaction === undefined &&
    s.copy === undefined &&
    s.cursor === undefined &&
    s.prepared === undefined
  );
}

/** What an entry of `key` holding `facts` is reckoned to cost, in bytes (a character counted as 2, as UTF-16). */
export function entryBytes(key: string, facts: Classification): number {
  let texts = 0;
  if (facts.ok) for (const s of facts.statements) texts += s.text.length;
  else texts = facts.error.length;
  return 2 * (key.length + texts) + FACTS_ESTIMATE_BYTES;
}

/**
 * How long a 'too-complex' verdict is kept: it may come of a busy machine
 * rather than of the text, so an honest statement refused under load is
 * parsed again later, while a hostile one repeated meanwhile costs nothing.
 */
export const TOO_COMPLEX_TTL_MS = 60_000;

/**
 * Shorter texts' 'too-complex' verdicts are never kept: PostgreSQL's parser
 * needs tens of kilobytes to take seconds (its slow cases are quadratic), so
 * a short statement that ran out of time met a busy machine, not a hostile text.
 */
export const TOO_COMPLEX_MIN_CHARS = 1024;

/** A Map in least-recently-used order whose entries' reckoned bytes stay within a budget. */
class ByteLru {
  private readonly map = new Map<string, { facts: Classification; bytes: number; expires: number }>();
  /** The entry last inserted or re-inserted (the newest in the Map's order), or null when unknown. */
  private newest: { facts: Classification; bytes: number; expires: number } | null = null;
  private used = 0;
  constructor(
    private readonly maxBytes: number,
    private readonly now: () => number,
  ) {}

  get(key: string): Classification | undefined {
    const entry = this.map.get(key);
    if (entry === undefined) return undefined;
    // Most entries never expire: the clock is read only for those that do.
    if (entry.expires !== Infinity && entry.expires <= this.now()) {
      this.map.delete(key);
      this.used -= entry.bytes;
      if (this.newest === entry) this.newest = null;
      return undefined;
    }
    // Maps iterate in insertion order: re-inserting makes this the newest
    // (unless it is already: the same statement over and over costs no re-insertion).
    if (this.newest !== entry) {
      this.map.delete(key);
      this.map.set(key, entry);
      this.newest = entry;
    }
    return entry.facts;
  }

  set(key: string, facts: Classification, ttlMs = Infinity): void {
    const bytes = entryBytes(key, facts);
    const old = this.map.get(key);
    if (old !== undefined) {
      this.map.delete(key);
      this.used -= old.bytes;
    }
    // An entry bigger than the whole budget would only evict everything else.
    if (bytes > this.maxBytes) return;
    for (const [oldest, entry] of this.map) {
      if (this.used + bytes <= this.maxBytes) break;
      this.map.delete(oldest);
      this.used -= entry.bytes;
    }
    const entry = { facts, bytes, expires: ttlMs === Infinity ? Infinity : this.now() + ttlMs };
    this.map.set(key, entry);
    this.newest = entry;
    this.used += bytes;
  }

  get size(): number {
    return this.map.size;
  }

  get bytes(): number {
    return this.used;
  }
}

export interface StatementCacheOptions {
  /** The byte budget of both maps together (limits.statement_cache_bytes); default 64 MiB. */
  maxBytes?: number;
  /** Longer statements are refused unread (limits.max_statement_bytes); default 1 MiB. */
  maxStatementBytes?: number;
  /** Where `classify` parses a miss; without one it parses on the calling thread. */
  pool?: ClassifierPool;
  /** While it is exceeded, a miss is refused unread ('no-memory') instead of parsed. */
  memory?: MemoryBudget;
  /** The clock of verdicts' expiry, in milliseconds (tests set it). */
  now?: () => number;
}

export class StatementCache {
  /** Facts by exact text: half the budget. */
  private readonly exact: ByteLru;
  /** Facts of plain SELECTs by literal-masked text: the other half. */
  private readonly byShape: ByteLru;
  private readonly maxStatementBytes: number;
  private readonly pool: ClassifierPool | undefined;
  private readonly memory: MemoryBudget | undefined;
  /** Misses being classified: the same text asked twice at once is parsed once. */
  private readonly pending = new Map<string, Promise<Classification>>();

  constructor(options: StatementCacheOptions = {}) {
    const maxBytes = options.maxBytes ?? DEFAULT_STATEMENT_CACHE_BYTES;
    const now = options.now ?? Date.now;
    this.exact = new ByteLru(Math.floor(maxBytes / 2), now);
    this.byShape = new ByteLru(Math.floor(maxBytes / 2), now);
    this.maxStatementBytes = options.maxStatementBytes ?? DEFAULT_MAX_STATEMENT_BYTES;
    this.pool = options.pool;
    this.memory = options.memory;
  }

  /**
   * The cached facts for this text, or for a plain SELECT of the same shape;
   * the too-large refusal for a text over limits.max_statement_bytes (even
   * when a shorter text of its shape is cached); undefined on a miss.
   * Synchronous and cheap: a Map look-up, and a scan of the text for its
   * shape when it is short. A shape hit's statement `text` is the first text
   * of that shape: callers record the text they were sent.
   */
  lookup(text: string): Classification | undefined {
    return this.sizeRefusal(text) ?? this.cached(text);
  }

  /**
   * The facts for this text: from the cache, or from the classifier pool
   * (off the event loop, under its deadline), then cached. Never rejects. A
   * text over limits.max_statement_bytes, or one the pool could not judge
   * (too complex, too busy), comes back as `{ ok: false, unjudged }`, which
   * the policy refuses with its own SQLSTATE. `owner` (the agent's name) is
   * whose queue a miss waits in when every worker is busy.
   */
  classifyAsync(text: string, owner = ''): Promise<Classification> {
    const hit = this.lookup(text);
    if (hit !== undefined) return Promise.resolve(hit);
    const inFlight = this.pending.get(text);
    if (inFlight !== undefined) return inFlight;
    const overBudget = this.memory?.exceeded() ?? null;
    if (overBudget !== null) return Promise.resolve({ ok: false, unjudged: 'no-memory', error: `${overBudget}; the statement was not parsed or run` });
    const parsed = this.pool === undefined ? Promise.resolve(classifyHere(text)) : this.pool.classify(text, owner);
    const stored = parsed.then((facts) => {
      this.pending.delete(text);
      this.store(text, facts);
      return facts;
    });
    this.pending.set(text, stored);
    return stored;
  }

  /**
   * The facts for this text, parsing a miss on the calling thread.
   * @deprecated Kept for callers not yet moved to `lookup` + `classifyAsync`:
   * a hostile statement blocks the event loop here for as long as the parser
   * takes, with no deadline.
   */
  classify(text: string): Classification {
    const hit = this.lookup(text);
    if (hit !== undefined) return hit;
    const facts = classifyHere(text);
    this.store(text, facts);
    return facts;
  }

  get size(): number {
    return this.exact.size + this.byShape.size;
  }

  /** What the entries are reckoned to cost, in bytes (see `entryBytes`). */
  get bytes(): number {
    return this.exact.bytes + this.byShape.bytes;
  }

  private cached(text: string): Classification | undefined {
    const hit = this.exact.get(text);
    if (hit !== undefined) return hit;
    const shape = maskLiterals(text);
    return shape === null ? undefined : this.byShape.get(shape);
  }

  private sizeRefusal(text: string): Classification | null {
    // A string's UTF-8 length is at most 3 bytes a UTF-16 unit and at least 1: count only when it could matter.
    if (text.length * 3 <= this.maxStatementBytes) return null;
    return statementSizeRefusal(Buffer.byteLength(text, 'utf8'), this.maxStatementBytes);
  }

  private store(text: string, facts: Classification): void {
    // Refusals for load or shutdown say nothing about the text: ask again next time.
    if (!facts.ok && (facts.unjudged === 'too-busy' || facts.unjudged === 'no-memory' || facts.unjudged === 'unavailable')) return;
    if (!facts.ok && facts.unjudged === 'too-complex') {
      if (text.length >= TOO_COMPLEX_MIN_CHARS) this.exact.set(text, facts, TOO_COMPLEX_TTL_MS);
      return;
    }
    this.exact.set(text, facts);
    if (shareableByShape(facts)) {
      const shape = maskLiterals(text);
      if (shape !== null) this.byShape.set(shape, facts);
    }
  }
}
