/**
 * Classification is the costly step on the read path (tens of microseconds a
 * statement), so each distinct text is parsed once. The key is the exact
 * text, so what is judged is byte for byte what runs.
 */
import { classify } from '../sql/classify.js';
import type { Classification } from '../sql/facts.js';

export class StatementCache {
  private readonly entries = new Map<string, Classification>();

  constructor(private readonly maxEntries = 20_000) {}

  /** The facts for this text, parsing it on first sight. */
  classify(text: string): Classification {
    const hit = this.entries.get(text);
    if (hit !== undefined) return hit;
    const facts = classify(text);
    if (this.entries.size >= this.maxEntries) {
      // Maps iterate in insertion order: drop the oldest entry.
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
    }
    this.entries.set(text, facts);
    return facts;
  }

  get size(): number {
    return this.entries.size;
  }
}
