/**
 * schema.table patterns with * wildcards (canary tables; later, policy
 * rules), matched against the relations a statement names.
 */
import type { RelationRef } from '../sql/facts.js';

export interface TablePattern {
  /** The pattern as written. */
  source: string;
  matches(schema: string, name: string): boolean;
}

function globPart(part: string): RegExp {
  const body = part
    .split('*')
    .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

/** Compiles `schema.table` (either part may hold `*`). Matching ignores case: refusing more is the safe side. */
export function compileTablePattern(source: string): TablePattern {
  const dot = source.indexOf('.');
  const schema = globPart(source.slice(0, dot).toLowerCase());
  const table = globPart(source.slice(dot + 1).toLowerCase());
  return { source, matches: (s, n) => schema.test(s.toLowerCase()) && table.test(n.toLowerCase()) };
}

/** The schema-qualified name of a relation as written; unqualified names resolve to public. */
export function qualifiedRelation(r: RelationRef): string {
  return `${r.schema ?? 'public'}.${r.name}`;
}

/** The first pattern that matches the relation, or undefined. */
export function matchingPattern(patterns: readonly TablePattern[], r: RelationRef): TablePattern | undefined {
  const schema = r.schema ?? 'public';
  return patterns.find((p) => p.matches(schema, r.name));
}
