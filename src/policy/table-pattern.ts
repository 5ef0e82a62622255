/**
 * schema.table patterns with * wildcards (canary tables; later, policy
 * rules), matched against the relations a statement names.
 */
import type { RelationRef } from '../sql/facts.js';

export interface TablePattern {
  /** The pattern as written. */
  source: string;
  matches(schema: string, name: string): boolean;
  /** Whether some relation in `schema` could match. */
  matchesSchema(schema: string): boolean;
  /** Whether every relation in `schema` matches (the table part is `*`). */
  coversSchema(schema: string): boolean;
}

function globPart(part: string): RegExp {
  const body = part
    .split('*')
    .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

/**
 * Compiles `schema.table` (either part may hold `*`). Matching ignores case by default: for a
 * pattern that refuses (canaries, deny rules) matching more is the safe side. A pattern that
 * grants (an allow rule) passes `ignoreCase: false`, so `public.tasks` does not also grant the
 * quoted `public."Tasks"`, another table.
 */
export function compileTablePattern(source: string, options: { ignoreCase?: boolean } = {}): TablePattern {
  const ignoreCase = options.ignoreCase ?? true;
  const fold = (text: string) => (ignoreCase ? text.toLowerCase() : text);
  const dot = source.indexOf('.');
  const schema = globPart(fold(source.slice(0, dot)));
  const tablePart = source.slice(dot + 1);
  const table = globPart(fold(tablePart));
  return {
    source,
    matches: (s, n) => schema.test(fold(s)) && table.test(fold(n)),
    matchesSchema: (s) => schema.test(fold(s)),
    coversSchema: (s) => schema.test(fold(s)) && /^\*+$/.test(tablePart),
  };
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
