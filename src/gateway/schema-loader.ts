/**
 * Reads the upstream's catalog (as the service account) into the plain
 * SchemaKnowledge the policy judges with, and keeps it fresh.
 */
import type pg from 'pg';
import type { SchemaKnowledge, UserFunction } from '../policy/schema-knowledge.js';
import { untrustedCall } from '../policy/schema-knowledge.js';
import { classify } from '../sql/classify.js';
import { matchingPattern, qualifiedRelation } from '../policy/table-pattern.js';
import type { TablePattern } from '../policy/table-pattern.js';

const USER_SCHEMA_FILTER = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'`;

export async function loadSchemaKnowledge(
  service: pg.Client,
  trustedFunctions: readonly string[],
  canaryTables: readonly TablePattern[] = [],
): Promise<SchemaKnowledge> {
  const trusted = new Set(trustedFunctions);
  const relations = await service.query<{ name: string }>(
    `SELECT format('%s.%s', lower(n.nspname), lower(c.relname)) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ${USER_SCHEMA_FILTER} ORDER BY 1`,
  );
  const catalog = await service.query<{ name: string }>(
    `SELECT DISTINCT lower(proname) AS name FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace`,
  );
  const functions = await service.query<{ schema: string; name: string; ext: boolean }>(
    `SELECT lower(n.nspname) AS schema, lower(p.proname) AS name,
            (p.provolatile <> 'v' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
               AND d.objid = p.oid AND d.deptype = 'e')) AS ext
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_SCHEMA_FILTER}`,
  );
  const catalogNames = new Set(catalog.rows.map((r) => r.name));
  const userFunctions = new Map<string, UserFunction[]>();
  for (const r of functions.rows) {
    const f: UserFunction = { schema: r.schema, name: r.name, extensionNonVolatile: r.ext };
    const list = userFunctions.get(r.name) ?? [];
    list.push(f);
    userFunctions.set(r.name, list);
  }

  // What each view runs: its definition, judged with the same parser as an
  // agent's statement (pg_depend records no dependency on built-in
  // functions, so the catalog alone cannot say a view calls lo_creat).
  const defs = await service.query<{ name: string; def: string }>(
    `SELECT format('%s.%s', lower(n.nspname), lower(v.relname)) AS name, pg_get_viewdef(v.oid) AS def
       FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
      WHERE v.relkind = 'v' AND ${USER_SCHEMA_FILTER}`,
  );
  const partial: SchemaKnowledge = {
    catalogFunctions: catalogNames,
    userFunctions,
    unsafeViews: new Map(),
    canaryViews: new Map(),
    relations: [],
  };
  const views = new Map<string, { reasons: string[]; reads: string[]; canary: string | null }>();
  for (const { name, def } of defs.rows) {
    const facts = classify(def);
    const reasons: string[] = [];
    const reads: string[] = [];
    let canary: string | null = null;
    if (!facts.ok) {
      reasons.push('Airlock could not parse its definition');
    } else {
      for (const statement of facts.statements) {
        for (const fn of statement.sideEffectFunctions) reasons.push(`it calls ${fn}()`);
        for (const fn of statement.functions) {
          const why = untrustedCall(fn, partial, trusted);
          if (why !== null) reasons.push(`it calls ${fn}(), which ${why.replace(/^\S+ is /, 'is ')}`);
        }
        for (const r of statement.reads) {
          reads.push(qualifiedRelation(r).toLowerCase());
          if (canary === null && matchingPattern(canaryTables, r) !== undefined) canary = qualifiedRelation(r);
        }
      }
    }
    views.set(name, { reasons, reads, canary });
  }
  // A view over an unsafe view is unsafe: follow reads until nothing changes.
  let changed = true;
  while (changed) {
    changed = false;
    for (const view of views.values()) {
      if (view.reasons.length === 0) {
        const bad = view.reads.find((r) => (views.get(r)?.reasons.length ?? 0) > 0);
        if (bad !== undefined) {
          view.reasons.push(`it reads the view ${bad}, which is unsafe too`);
          changed = true;
        }
      }
      if (view.canary === null) {
        const over = view.reads.map((r) => views.get(r)?.canary).find((c) => c !== null && c !== undefined);
        if (over !== undefined) {
          view.canary = over;
          changed = true;
        }
      }
    }
  }
  const unsafeViews = new Map<string, string>();
  const canaryViews = new Map<string, string>();
  for (const [name, v] of views) {
    if (v.reasons.length > 0) unsafeViews.set(name, v.reasons[0]!);
    if (v.canary !== null) canaryViews.set(name, v.canary);
  }

  return { catalogFunctions: catalogNames, userFunctions, unsafeViews, canaryViews, relations: relations.rows.map((r) => r.name) };
}
