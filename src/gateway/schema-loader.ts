/**
 * Reads the upstream's catalog (as the service account) into the plain
 * SchemaKnowledge the policy judges with, and keeps it fresh.
 */
import type pg from 'pg';
import type { SchemaKnowledge, UserFunction } from '../policy/schema-knowledge.js';
import { untrustedCall } from '../policy/schema-knowledge.js';
import { classify } from '../sql/classify.js';

const USER_SCHEMA_FILTER = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'`;

export async function loadSchemaKnowledge(service: pg.Client, trustedFunctions: readonly string[]): Promise<SchemaKnowledge> {
  const trusted = new Set(trustedFunctions);
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
  const partial: SchemaKnowledge = { catalogFunctions: catalogNames, userFunctions, unsafeViews: new Map() };
  const views = new Map<string, { reasons: string[]; reads: string[] }>();
  for (const { name, def } of defs.rows) {
    const facts = classify(def);
    const reasons: string[] = [];
    const reads: string[] = [];
    if (!facts.ok) {
      reasons.push('Airlock could not parse its definition');
    } else {
      for (const statement of facts.statements) {
        for (const fn of statement.sideEffectFunctions) reasons.push(`it calls ${fn}()`);
        for (const fn of statement.functions) {
          const why = untrustedCall(fn, partial, trusted);
          if (why !== null) reasons.push(`it calls ${fn}(), which ${why.replace(/^\S+ is /, 'is ')}`);
        }
        for (const r of statement.reads) reads.push(`${r.schema ?? 'public'}.${r.name}`.toLowerCase());
      }
    }
    views.set(name, { reasons, reads });
  }
  // A view over an unsafe view is unsafe: follow reads until nothing changes.
  let changed = true;
  while (changed) {
    changed = false;
    for (const view of views.values()) {
      if (view.reasons.length > 0) continue;
      const bad = view.reads.find((r) => (views.get(r)?.reasons.length ?? 0) > 0);
      if (bad !== undefined) {
        view.reasons.push(`it reads the view ${bad}, which is unsafe too`);
        changed = true;
      }
    }
  }
  const unsafeViews = new Map<string, string>();
  for (const [name, v] of views) if (v.reasons.length > 0) unsafeViews.set(name, v.reasons[0]!);

  return { catalogFunctions: catalogNames, userFunctions, unsafeViews };
}
