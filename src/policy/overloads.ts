/**
 * Names only the server can resolve. When a user function or operator
 * shares its name with a built-in (a careless `public.lower(varchar)`, a
 * `public.||` on varchar), the name as written does not say which one runs:
 * PostgreSQL picks by argument types (https://www.postgresql.org/docs/current/typeconv-func.html).
 * Judged by name, every `lower()` would be refused. For such statements the
 * gateway asks the server what parse analysis resolved each call to
 * (gateway/overload-resolver.ts), and this module judges the answer: OIDs
 * of the functions and operators the statement really calls.
 */
import type { Classification, StatementFacts } from '../sql/facts.js';
import { isSideEffectFunction } from '../sql/side-effect-functions.js';
import { FIRST_NORMAL_OBJECT_ID, SYSTEM_SCHEMAS, functionIsTrusted, unsafeOperator, untrustedCall } from './schema-knowledge.js';
import type { SchemaKnowledge } from './schema-knowledge.js';

/** What the server resolved one statement's calls to, or why it could not say. */
export type ResolvedCalls =
  | {
      ok: true;
      /** OIDs of the functions called: FuncExpr, Aggref, WindowFunc, operators' functions, ... */
      functions: readonly number[];
      /** OIDs of the operators used: OpExpr, ScalarArrayOpExpr, RowCompareExpr, ORDER BY / DISTINCT / GROUP BY operators, ... */
      operators: readonly number[];
    }
  | { ok: false; error: string };

/**
 * Whether an unqualified function name may resolve to something other than
 * the untrusted function Airlock would refuse it for: a built-in of the same
 * name, a trusted overload, or (search_path being public) a function in a
 * schema the name cannot reach.
 */
export function isAmbiguousFunction(name: string, knowledge: SchemaKnowledge, trusted: ReadonlySet<string>): boolean {
  if (name.includes('.')) return false;
  const candidates = knowledge.userFunctions.get(name) ?? [];
  if (!candidates.some((f) => !functionIsTrusted(f, trusted))) return false;
  return knowledge.catalogFunctions.has(name) || candidates.some((f) => functionIsTrusted(f, trusted) || f.schema !== 'public');
}

/** Whether an operator, as written, may resolve to a built-in although a user operator of its name is unsafe. */
export function isAmbiguousOperator(written: string, knowledge: SchemaKnowledge): boolean {
  return !written.includes('.') && knowledge.catalogOperators.has(written) && unsafeOperator(written, knowledge) !== null;
}

/** Whether `x.name` may be a column rather than a call of an untrusted function `name(x)`: always, when such a function exists. */
export function isAmbiguousFieldSelection(name: string, knowledge: SchemaKnowledge, trusted: ReadonlySet<string>): boolean {
  return (knowledge.userFunctions.get(name) ?? []).some((f) => !functionIsTrusted(f, trusted));
}

/**
 * A statement whose whole tree the server's parse analysis shows: a plain
 * SELECT (VALUES, TABLE). EXPLAIN, COPY, DECLARE and PREPARE carry their
 * query in a utility statement, which parse analysis leaves (partly)
 * untouched: those keep the judgement by name.
 */
function resolvable(facts: StatementFacts): boolean {
  return (
    facts.kind === 'read' &&
    facts.command === 'SELECT' &&
    facts.inner === undefined &&
    !facts.selectInto &&
    !facts.locking &&
    !facts.modifyingCte &&
    facts.sideEffectFunctions.length === 0
  );
}

/**
 * The statements (by index) that the judgement by name would refuse only
 * for ambiguous names: asking the server what they call may let them
 * through. Empty for nearly every statement, which then costs nothing more.
 */
export function statementsToResolve(classification: Classification, knowledge: SchemaKnowledge | null | undefined, trusted: ReadonlySet<string>): number[] {
  if (!classification.ok || knowledge === null || knowledge === undefined) return [];
  const out: number[] = [];
  classification.statements.forEach((facts, i) => {
    if (!resolvable(facts)) return;
    let ambiguous = false;
    for (const fn of facts.functions) {
      if (untrustedCall(fn, knowledge, trusted) === null) continue;
      if (!isAmbiguousFunction(fn, knowledge, trusted)) return;
      ambiguous = true;
    }
    for (const op of facts.operators) {
      if (unsafeOperator(op, knowledge) === null) continue;
      if (!isAmbiguousOperator(op, knowledge)) return;
      ambiguous = true;
    }
    for (const name of facts.fieldSelections) {
      if (isAmbiguousFieldSelection(name, knowledge, trusted)) ambiguous = true;
    }
    if (ambiguous) out.push(i);
  });
  return out;
}

/** Why a function, by OID, may not be called on the read path; null when it may. */
function functionProblem(oid: number, knowledge: SchemaKnowledge, trusted: ReadonlySet<string>): string | null {
  if (oid < FIRST_NORMAL_OBJECT_ID) return null;
  const f = knowledge.functionsByOid.get(oid);
  if (f === undefined) return `a function (OID ${oid}) created since Airlock last read the catalog`;
  if (isSideEffectFunction(f.name)) return `${f.schema}.${f.name}(), which has side effects`;
  if (SYSTEM_SCHEMAS.has(f.schema) || functionIsTrusted(f, trusted)) return null;
  return `${f.schema}.${f.name}(), a function Airlock cannot see inside`;
}

/**
 * Why the calls the server resolved may not be made on the read path, in
 * words ("it calls public.lower(), a function Airlock cannot see inside"),
 * or null when every one is a built-in or trusted. Built-ins with side
 * effects are refused by name before this (sql/side-effect-functions.ts).
 */
export function resolvedCallProblem(resolved: Extract<ResolvedCalls, { ok: true }>, knowledge: SchemaKnowledge, trusted: ReadonlySet<string>): string | null {
  for (const oid of resolved.functions) {
    const why = functionProblem(oid, knowledge, trusted);
    if (why !== null) return `PostgreSQL resolves a call in it to ${why}`;
  }
  for (const oid of resolved.operators) {
    if (oid < FIRST_NORMAL_OBJECT_ID) continue;
    const fn = knowledge.operatorFunctions.get(oid);
    if (fn === undefined) return `PostgreSQL resolves an operator in it to one (OID ${oid}) created since Airlock last read the catalog`;
    const why = functionProblem(fn, knowledge, trusted);
    if (why !== null) return `PostgreSQL resolves an operator in it to one that runs ${why}`;
  }
  return null;
}
