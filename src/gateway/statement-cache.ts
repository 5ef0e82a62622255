/**
 * Classification is the costly step on the read path (tens of microseconds a
 * statement), so each distinct text is parsed once, and plain SELECTs that
 * differ only in their literal values share one parse (see
 * sql/literal-mask.ts).
 */
import { classify } from '../sql/classify.js';
import type { Classification } from '../sql/facts.js';
import { maskLiterals } from '../sql/literal-mask.js';

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

/** A Map that forgets its oldest entry when full. */
export class BoundedMap<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(key: string): V | undefined {
    return this.map.get(key);
  }
  set(key: string, value: V): void {
    if (this.map.size >= this.max) {
      // Maps iterate in insertion order: drop the oldest entry.
      const oldest = this.map.keys().next();
      if (oldest.done !== true) this.map.delete(oldest.value);
    }
    this.map.set(key, value);
  }
  get size(): number {
    return this.map.size;
  }
}

export class StatementCache {
  private readonly exact: BoundedMap<Classification>;
  private readonly byShape: BoundedMap<Classification>;

  constructor(maxEntries = 20_000) {
    this.exact = new BoundedMap(maxEntries);
    this.byShape = new BoundedMap(maxEntries);
  }

  /**
   * The facts for this text, parsing it unless this text, or a plain SELECT
   * of the same shape, was seen before. A shape hit's statement `text` is the
   * first text of that shape: callers record the text they were sent.
   */
  classify(text: string): Classification {
    const hit = this.exact.get(text);
    if (hit !== undefined) return hit;
    const shape = maskLiterals(text);
    if (shape !== null) {
      const shaped = this.byShape.get(shape);
      if (shaped !== undefined) return shaped;
    }
    const facts = classify(text);
    this.exact.set(text, facts);
    if (shape !== null && shareableByShape(facts)) this.byShape.set(shape, facts);
    return facts;
  }

  get size(): number {
    return this.exact.size + this.byShape.size;
  }
}
