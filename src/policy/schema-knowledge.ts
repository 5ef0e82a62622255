/**
 * What Airlock knows about the upstream's schema that the parser cannot see:
 * which names are functions outside pg_catalog, and which views call
 * functions. PostgreSQL lets a few side effects through a READ ONLY
 * transaction (NOTIFY, advisory locks, large objects before 16), so a call
 * into code Airlock cannot read is not provably a read.
 */
import { isSideEffectFunction } from '../sql/side-effect-functions.js';

/** A function outside pg_catalog and information_schema. */
export interface UserFunction {
  schema: string;
  name: string;
  /** Installed by an extension (CREATE EXTENSION), and declared IMMUTABLE or STABLE. */
  extensionNonVolatile: boolean;
}

export interface SchemaKnowledge {
  /** Lower-case names of the functions in pg_catalog. */
  catalogFunctions: ReadonlySet<string>;
  /** Functions outside the system schemas, by lower-case name. */
  userFunctions: ReadonlyMap<string, readonly UserFunction[]>;
  /** Views (schema.name) that cannot be read safely, with the reason in words. */
  unsafeViews: ReadonlyMap<string, string>;
  /** Operators outside the system schemas whose function Airlock cannot vouch for, by name, with the reason. */
  unsafeOperators: ReadonlyMap<string, string>;
  /** Tables (schema.name) whose row-level security policies call what Airlock cannot vouch for, with the reason. */
  unsafePolicies: ReadonlyMap<string, string>;
  /** Views (schema.name) that read a canary table, directly or through other views, with that table. */
  canaryViews: ReadonlyMap<string, string>;
  /** Every relation (schema.name, lower-case) each view reads, directly or through other views: rules about a table hold for views over it. */
  viewReads: ReadonlyMap<string, readonly string[]>;
  /** Every table, view and materialized view outside the system schemas (schema.name, lower-case). */
  relations: readonly string[];
  /**
   * Every function created after initdb (OID at or above FirstNormalObjectId, 16384), by OID: what a call
   * PostgreSQL resolved (overload-resolver.ts) may reach. Functions below that OID are built in.
   */
  functionsByOid: ReadonlyMap<number, UserFunction>;
  /** Operators created after initdb, by OID, with the OID of the function each runs (pg_operator.oprcode). */
  operatorFunctions: ReadonlyMap<number, number>;
  /** Names of the operators in pg_catalog: a user operator of one of these names makes the name ambiguous. */
  catalogOperators: ReadonlySet<string>;
  /**
   * Changes whenever something that decides what a name resolves to changes (functions, operators, casts,
   * types, columns): what the server said a statement calls is cached under it.
   */
  version: string;
}

/** PostgreSQL's FirstNormalObjectId: every object below it was made by initdb (transam.h). */
export const FIRST_NORMAL_OBJECT_ID = 16384;

export const SYSTEM_SCHEMAS: ReadonlySet<string> = new Set(['pg_catalog', 'information_schema']);

/** Whether an operator trusts this function, or it is an extension's non-volatile function without side effects. */
export function functionIsTrusted(f: UserFunction, trusted: ReadonlySet<string>): boolean {
  if (trusted.has(`${f.schema}.${f.name}`)) return true;
  return f.extensionNonVolatile && !isSideEffectFunction(f.name);
}

/**
 * Why a call to `qualifiedName` (lower-case, as written) may not be made on
 * the read path, or null when it may. Unknown names are refused too: a
 * function created after Airlock last looked is code it has not seen.
 */
export function untrustedCall(qualifiedName: string, knowledge: SchemaKnowledge, trusted: ReadonlySet<string>): string | null {
  const dot = qualifiedName.lastIndexOf('.');
  const name = dot < 0 ? qualifiedName : qualifiedName.slice(dot + 1);
  const schema = dot < 0 ? null : qualifiedName.slice(0, dot);
  const candidates = (knowledge.userFunctions.get(name) ?? []).filter((f) => schema === null || f.schema === schema);
  if (schema !== null && SYSTEM_SCHEMAS.has(schema)) {
    return knowledge.catalogFunctions.has(name) || schema === 'information_schema' ? null : `${qualifiedName}() is not a known function`;
  }
  if (candidates.length === 0) {
    if (schema === null && knowledge.catalogFunctions.has(name)) return null;
    return `${qualifiedName}() is not a function Airlock knows`;
  }
  // An unqualified name may resolve to any of them (overloads across schemas on the search path).
  const untrusted = candidates.find((f) => !functionIsTrusted(f, trusted));
  return untrusted === undefined ? null : `${untrusted.schema}.${untrusted.name}() is a function Airlock cannot see inside`;
}

/**
 * Why an operator (as written: '###' or 'public.###') may not be used on the
 * read path, or null. An operator named with pg_catalog is a built-in; any
 * other name is refused if some schema has an unsafe operator of that name,
 * since resolution may pick it.
 */
export function unsafeOperator(written: string, knowledge: SchemaKnowledge): string | null {
  const dot = written.lastIndexOf('.');
  if (dot >= 0 && written.slice(0, dot) === 'pg_catalog') return null;
  return knowledge.unsafeOperators.get(dot < 0 ? written : written.slice(dot + 1)) ?? null;
}
