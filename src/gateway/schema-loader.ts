/**
 * Reads the upstream's catalog (as the service account) into the plain
 * SchemaKnowledge the policy judges with, and keeps it fresh.
 */
import type pg from 'pg';
import type { SchemaKnowledge, UserFunction } from '../policy/schema-knowledge.js';
import { FIRST_NORMAL_OBJECT_ID, unsafeOperator, untrustedCall } from '../policy/schema-knowledge.js';
import { isSideEffectFunction } from '../sql/side-effect-functions.js';
import { isAmbiguousFunction, isAmbiguousOperator, resolvedCallProblem } from '../policy/overloads.js';
import type { ResolvedCalls } from '../policy/overloads.js';
import { isCredentialFunction } from '../policy/read-only.js';
import type { Classification } from '../sql/facts.js';
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
  // Functions outside the system schemas, and every function made after initdb (wherever it is), by OID.
  const functions = await service.query<{ oid: string; schema: string; name: string; ext: boolean; user: boolean }>(
    `SELECT p.oid::int8 AS oid, lower(n.nspname) AS schema, lower(p.proname) AS name,
            (p.provolatile <> 'v' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
               AND d.objid = p.oid AND d.deptype = 'e')) AS ext,
            (${USER_SCHEMA_FILTER}) AS user
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE (${USER_SCHEMA_FILTER}) OR p.oid >= ${FIRST_NORMAL_OBJECT_ID}`,
  );
  const catalogNames = new Set(catalog.rows.map((r) => r.name));
  const userFunctions = new Map<string, UserFunction[]>();
  const functionsByOid = new Map<number, UserFunction>();
  for (const r of functions.rows) {
    const f: UserFunction = { schema: r.schema, name: r.name, extensionNonVolatile: r.ext };
    if (Number(r.oid) >= FIRST_NORMAL_OBJECT_ID) functionsByOid.set(Number(r.oid), f);
    if (!r.user) continue;
    const list = userFunctions.get(r.name) ?? [];
    list.push(f);
    userFunctions.set(r.name, list);
  }
  const operatorRows = await service.query<{ oid: string; fn: string }>(
    `SELECT o.oid::int8 AS oid, o.oprcode::oid::int8 AS fn FROM pg_operator o WHERE o.oid >= ${FIRST_NORMAL_OBJECT_ID}`,
  );
  const operatorFunctions = new Map(operatorRows.rows.map((r) => [Number(r.oid), Number(r.fn)] as const));
  const catalogOperators = await service.query<{ name: string }>(
    `SELECT DISTINCT oprname AS name FROM pg_operator WHERE oprnamespace = 'pg_catalog'::regnamespace`,
  );
  // What names resolve to depends on functions, operators, casts, types and
  // columns' types: a digest of all of them made after initdb. Resolutions
  // the server gave (overload-resolver.ts) are cached under it.
  const version = await service.query<{ version: string }>(
    `SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) AS version FROM (
       SELECT format('f%s:%s:%s:%s', p.oid, p.proargtypes::text, p.pronargdefaults, p.prorettype) FROM pg_proc p WHERE p.oid >= ${FIRST_NORMAL_OBJECT_ID}
       UNION ALL SELECT format('o%s:%s', o.oid, o.oprcode::oid) FROM pg_operator o WHERE o.oid >= ${FIRST_NORMAL_OBJECT_ID}
       UNION ALL SELECT format('c%s:%s', c.oid, c.castcontext) FROM pg_cast c WHERE c.oid >= ${FIRST_NORMAL_OBJECT_ID}
       UNION ALL SELECT format('t%s:%s', t.oid, t.typbasetype) FROM pg_type t WHERE t.oid >= ${FIRST_NORMAL_OBJECT_ID}
       UNION ALL SELECT format('a%s:%s:%s:%s', a.attrelid, a.attnum, a.attname, a.atttypid) FROM pg_attribute a
         WHERE a.attrelid >= ${FIRST_NORMAL_OBJECT_ID} AND a.attnum > 0 AND NOT a.attisdropped
       UNION ALL SELECT format('r%s:%s:%s', c.oid, c.relnamespace, c.relname) FROM pg_class c WHERE c.oid >= ${FIRST_NORMAL_OBJECT_ID}
     ) s(x)`,
  );

  const partial: SchemaKnowledge = {
    catalogFunctions: catalogNames,
    userFunctions,
    unsafeViews: new Map(),
    unsafeOperators: new Map(),
    unsafePolicies: new Map(),
    canaryViews: new Map(),
    viewReads: new Map(),
    relations: [],
    functionsByOid,
    operatorFunctions,
    catalogOperators: new Set(catalogOperators.rows.map((r) => r.name)),
    version: version.rows[0]?.version ?? '',
  };

  // Operators outside the system schemas run the function they were created
  // with: an operator is as safe as its function.
  const operators = await service.query<{ name: string; fschema: string; fname: string }>(
    `SELECT o.oprname AS name, lower(fn.nspname) AS fschema, lower(p.proname) AS fname
       FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
       JOIN pg_proc p ON p.oid = o.oprcode JOIN pg_namespace fn ON fn.oid = p.pronamespace
      WHERE ${USER_SCHEMA_FILTER}`,
  );
  const unsafeOperators = partial.unsafeOperators as Map<string, string>;
  for (const op of operators.rows) {
    const why = isSideEffectFunction(op.fname) ? 'has side effects' : untrustedCall(`${op.fschema}.${op.fname}`, partial, trusted);
    if (why !== null && !unsafeOperators.has(op.name)) unsafeOperators.set(op.name, `it runs ${op.fschema}.${op.fname}(), which ${why.replace(/^\S+ is /, 'is ')}`);
  }

  // Row-level security policies run their expressions on every read of their table.
  const policies = await service.query<{ name: string; expr: string; oid: string }>(
    `SELECT format('%s.%s', lower(n.nspname), lower(c.relname)) AS name, e.expr, p.oid::int8 AS oid
       FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
            LATERAL (VALUES (pg_get_expr(p.polqual, p.polrelid)), (pg_get_expr(p.polwithcheck, p.polrelid))) AS e(expr)
      WHERE e.expr IS NOT NULL`,
  );
  const unsafePolicies = partial.unsafePolicies as Map<string, string>;
  const policyCalls = await recordedCalls(service, 'pg_policy', 'SELECT oid, oid::int8::text FROM pg_policy');
  for (const { name, expr, oid } of policies.rows) {
    const problems = codeProblems(classify(`SELECT (${expr})`), partial, trusted, policyCalls.get(oid));
    if (problems.length > 0 && !unsafePolicies.has(name)) unsafePolicies.set(name, `its row-level security policy ${problems[0]!.replace(/^it /, '')}`);
  }

  // What each view runs: its definition, judged with the same parser as an
  // agent's statement (pg_depend records no dependency on built-in
  // functions, so the catalog alone cannot say a view calls lo_creat).
  const defs = await service.query<{ name: string; def: string }>(
    `SELECT format('%s.%s', lower(n.nspname), lower(v.relname)) AS name, pg_get_viewdef(v.oid) AS def
       FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
      WHERE v.relkind = 'v' AND ${USER_SCHEMA_FILTER}`,
  );
  const viewCalls = await recordedCalls(
    service,
    'pg_rewrite',
    `SELECT r.oid, format('%s.%s', lower(n.nspname), lower(v.relname)) FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class
       JOIN pg_namespace n ON n.oid = v.relnamespace WHERE v.relkind = 'v' AND ${USER_SCHEMA_FILTER}`,
  );
  const views = new Map<string, { reasons: string[]; reads: string[]; canary: string | null }>();
  for (const { name, def } of defs.rows) {
    const facts = classify(def);
    const reasons = codeProblems(facts, partial, trusted, viewCalls.get(name));
    const reads: string[] = [];
    let canary: string | null = null;
    for (const statement of facts.ok ? facts.statements : []) {
      for (const r of statement.reads) {
        const key = qualifiedRelation(r).toLowerCase();
        reads.push(key);
        const policy = unsafePolicies.get(key);
        if (policy !== undefined) reasons.push(`it reads ${key}, whose ${policy.replace(/^its /, '')}`);
        if (canary === null && matchingPattern(canaryTables, r) !== undefined) canary = qualifiedRelation(r);
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
  const viewReads = new Map<string, readonly string[]>();
  for (const [name, v] of views) {
    if (v.reasons.length > 0) unsafeViews.set(name, v.reasons[0]!);
    if (v.canary !== null) canaryViews.set(name, v.canary);
    // Everything under the view, through views over views.
    const seen = new Set<string>();
    const stack = [...v.reads];
    while (stack.length > 0) {
      const r = stack.pop()!;
      if (seen.has(r)) continue;
      seen.add(r);
      stack.push(...(views.get(r)?.reads ?? []));
    }
    viewReads.set(name, [...seen]);
  }

  return {
    catalogFunctions: catalogNames,
    userFunctions,
    unsafeViews,
    unsafeOperators,
    unsafePolicies,
    canaryViews,
    viewReads,
    relations: relations.rows.map((r) => r.name),
    functionsByOid,
    operatorFunctions,
    catalogOperators: partial.catalogOperators,
    version: partial.version,
  };
}

type Recorded = Extract<ResolvedCalls, { ok: true }>;

/**
 * The functions and operators (not built in) that stored code calls, as
 * PostgreSQL recorded them when it analysed that code: pg_depend holds a
 * dependency of a view's rewrite rule, or of a row-level security policy,
 * on every function and operator its expressions resolved to (built-ins,
 * being pinned, are left out: they are judged by name). Keyed by the key
 * `owners` gives each object (its oid and a key, in that order); an object
 * with no such dependency is there with empty lists.
 */
async function recordedCalls(service: pg.Client, catalog: 'pg_rewrite' | 'pg_policy', owners: string): Promise<Map<string, Recorded>> {
  const rows = await service.query<{ key: string; functions: string[] | null; operators: string[] | null }>(
    `SELECT o.key,
            array_agg(d.refobjid::int8) FILTER (WHERE d.refclassid = 'pg_proc'::regclass) AS functions,
            array_agg(d.refobjid::int8) FILTER (WHERE d.refclassid = 'pg_operator'::regclass) AS operators
       FROM (${owners}) AS o(oid, key)
       LEFT JOIN pg_depend d ON d.classid = '${catalog}'::regclass AND d.objid = o.oid
      GROUP BY o.key`,
  );
  const out = new Map<string, Recorded>();
  for (const r of rows.rows) {
    const known = out.get(r.key);
    const functions = [...(known?.functions ?? []), ...(r.functions ?? []).map(Number)];
    const operators = [...(known?.operators ?? []), ...(r.operators ?? []).map(Number)];
    out.set(r.key, { ok: true, functions, operators });
  }
  return out;
}

/**
 * What in parsed code (a view's definition, a policy's expression) Airlock
 * cannot vouch for, in words. With what PostgreSQL recorded the code calls,
 * names it shares with built-ins are judged by that instead of by name.
 */
function codeProblems(facts: Classification, knowledge: SchemaKnowledge, trusted: ReadonlySet<string>, recorded?: Recorded): string[] {
  if (!facts.ok) return ['Airlock could not parse it'];
  const reasons: string[] = [];
  for (const statement of facts.statements) {
    for (const fn of statement.sideEffectFunctions) reasons.push(`it calls ${fn}()`);
    for (const fn of statement.functions) if (isCredentialFunction(fn)) reasons.push(`it calls ${fn}(), which reads the server's configuration files`);
    for (const fn of statement.functions) {
      const why = untrustedCall(fn, knowledge, trusted);
      if (why !== null && !(recorded !== undefined && isAmbiguousFunction(fn, knowledge, trusted))) {
        reasons.push(`it calls ${fn}(), which ${why.replace(/^\S+ is /, 'is ')}`);
      }
    }
    for (const op of statement.operators) {
      const why = unsafeOperator(op, knowledge);
      if (why !== null && !(recorded !== undefined && isAmbiguousOperator(op, knowledge))) reasons.push(`it uses the operator ${op}: ${why}`);
    }
  }
  if (recorded !== undefined) {
    const why = resolvedCallProblem(recorded, knowledge, trusted);
    if (why !== null) reasons.push(why.replace(/^PostgreSQL resolves/, 'PostgreSQL resolved'));
  }
  return reasons;
}
