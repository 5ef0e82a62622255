/**
 * Reads SQL with the real PostgreSQL parser and turns each statement into plain
 * facts (see `facts.ts`). Security code: default deny. A statement is `read`
 * only when its whole tree proves it is a plain read; anything unrecognised is
 * `unknown`. The policy, not this module, turns facts into decisions.
 *
 * The tree is libpg-query's JSON: a node is `{ TypeName: {...fields} }` where a
 * field may hold any node, but fields of a fixed struct type are bare
 * (`relation: { relname }`, `larg: { targetList }`, `withClause: { ctes }`).
 * The walk below visits every value of every node, so nothing nested is missed
 * whatever its field is called; it only needs to recognise the few bare structs
 * that matter (RangeVar by shape, the halves of a set operation by field name).
 */
import type {
  ChangeAction,
  Classification,
  CopyFacts,
  CursorFacts,
  PreparedFacts,
  RelationRef,
  RowChange,
  SettingFacts,
  StatementFacts,
  StatementKind,
  TransactionAction,
  TransactionFacts,
} from './facts.js';
import { byteSlicer, loadParser as loadParserModule, parseSql } from './parser.js';
import { isSideEffectFunction } from './side-effect-functions.js';

/** Loads the parser's WASM module; call (and await) once before `classify`. Idempotent. */
export async function loadParser(): Promise<void> {
  await loadParserModule();
}

/**
 * Classifies every statement of `sql`. Synchronous; needs `loadParser()` first.
 * Never throws for any input: a syntax error (or text the server would not read
 * as we do) comes back as `{ ok: false }` with PostgreSQL's message and position.
 */
export function classify(sql: string): Classification {
  let outcome: ReturnType<typeof parseSql>;
  try {
    outcome = parseSql(sql);
  } catch (error) {
    // Only an unloaded parser (or a WASM fault) gets here; it is still an answer, not a crash.
    return { ok: false, error: `The SQL parser failed: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (!outcome.ok) return outcome;
  const slice = byteSlicer(sql);
  try {
    const statements = outcome.statements.map((raw) => classifyStatement(raw.stmt, trimSql(slice(raw.byteStart, raw.byteEnd))));
    return { ok: true, statements, fingerprint: outcome.fingerprint };
  } catch (error) {
    // The walk recurses: a tree deep enough to exhaust the stack (thousands of nested
    // operators, which no real query has) is refused rather than half-judged.
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, error: `The statement is too deeply nested to classify safely (${reason}); simplify it.` };
  }
}

// PostgreSQL's own whitespace (scan.l: space, tab, newline, carriage return, form feed, vertical tab).
function trimSql(text: string): string {
  return text.replace(/^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$/g, '');
}

// ---------------------------------------------------------------------------
// JSON tree helpers

type JsonObject = { readonly [key: string]: unknown };

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asArray(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : [];
}

function asString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** `{ SelectStmt: {...} }` → ['SelectStmt', {...}]; undefined for a bare struct or a scalar. */
function unwrap(value: unknown): [string, JsonObject] | undefined {
  if (!isObject(value)) return undefined;
  const keys = Object.keys(value);
  if (keys.length !== 1) return undefined;
  const type = keys[0] as string;
  // Node type names start with an upper-case letter; struct fields never do.
  const first = type.charCodeAt(0);
  if (first < 65 || first > 90) return undefined;
  const body = value[type];
  return isObject(body) ? [type, body] : undefined;
}

/** The `sval`s of a list of `{ String: { sval } }`, e.g. a funcname or a qualified name. */
function nameParts(list: unknown): string[] {
  return asArray(list).map((item) => {
    const node = unwrap(item);
    return node && node[0] === 'String' ? (asString(node[1].sval) ?? '') : '';
  });
}

/**
 * The text of a constant, as SET and DefElem options carry them. libpg-query omits
 * zero values: `{ ival: {} }` is the integer 0 and `{ boolval: {} }` is false.
 */
function constantText(value: unknown): string | undefined {
  const node = unwrap(value);
  if (!node) return undefined;
  const [type, body] = node;
  if (type === 'A_Const') {
    if (body.isnull === true) return 'null';
    if (isObject(body.ival)) return String(body.ival.ival ?? 0);
    if (isObject(body.fval)) return asString(body.fval.fval);
    if (isObject(body.boolval)) return body.boolval.boolval === true ? 'true' : 'false';
    if (isObject(body.sval)) return asString(body.sval.sval) ?? '';
    if (isObject(body.bsval)) return asString(body.bsval.bsval);
    return undefined;
  }
  if (type === 'String') return asString(body.sval) ?? '';
  if (type === 'Integer') return String(body.ival ?? 0);
  if (type === 'Float') return asString(body.fval);
  if (type === 'Boolean') return body.boolval === true ? 'true' : 'false';
  // SET TIME ZONE INTERVAL '...' HOUR TO MINUTE and the like: the constant inside the cast.
  if (type === 'TypeCast') return constantText(body.arg);
  return undefined;
}

// ---------------------------------------------------------------------------
// The walk

/** CTE names visible at a point of the tree, innermost WITH first. */
interface Scope {
  names: ReadonlySet<string>;
  parent: Scope | null;
}

function inScope(scope: Scope | null, name: string): boolean {
  for (let s = scope; s; s = s.parent) if (s.names.has(name)) return true;
  return false;
}

/** What the walk of one statement found. */
interface Collector {
  reads: RelationRef[];
  writes: RelationRef[];
  functions: string[];
  fieldSelections: string[];
  operators: string[];
  /** Rows changed, per target relation and action. */
  changes: RowChange[];
  /** A DROP, ALTER ... DROP or OPTIONS (DROP ...) somewhere in the statement. */
  drops: boolean;
  /** CASCADE behaviour somewhere in the statement. */
  cascade: boolean;
  /** ALTER TABLE ... DROP COLUMN. */
  dropsColumn: boolean;
  droppedColumns: string[];
  /** INSERT/UPDATE/DELETE/MERGE nodes anywhere, the statement itself included. */
  modifying: number;
  updateOrDelete: number;
  updateOrDeleteWithoutWhere: boolean;
  modifyingCte: boolean;
  selectInto: boolean;
  locking: boolean;
  /** RangeVar objects already recorded as targets, so the walk does not count them as reads too. */
  claimed: Set<object>;
}

function newCollector(): Collector {
  return {
    reads: [],
    writes: [],
    functions: [],
    fieldSelections: [],
    operators: [],
    changes: [],
    drops: false,
    cascade: false,
    dropsColumn: false,
    droppedColumns: [],
    modifying: 0,
    updateOrDelete: 0,
    updateOrDeleteWithoutWhere: false,
    modifyingCte: false,
    selectInto: false,
    locking: false,
    claimed: new Set(),
  };
}

const MODIFYING_STATEMENTS: ReadonlySet<string> = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

function addRelation(list: RelationRef[], ref: RelationRef): void {
  if (!list.some((r) => r.schema === ref.schema && r.name === ref.name)) list.push(ref);
}

function addChange(c: Collector, relation: RelationRef, action: ChangeAction): void {
  const same = (r: RowChange) => r.action === action && r.relation.schema === relation.schema && r.relation.name === relation.name;
  if (!c.changes.some(same)) c.changes.push({ relation, action });
}

function relationOf(rangeVar: JsonObject): RelationRef {
  return { schema: asString(rangeVar.schemaname) ?? null, name: asString(rangeVar.relname) ?? '' };
}

/** A RangeVar, wrapped or bare, or undefined. */
function rangeVarOf(value: unknown): JsonObject | undefined {
  const node = unwrap(value);
  if (node) return node[0] === 'RangeVar' ? node[1] : undefined;
  return isObject(value) && typeof value.relname === 'string' ? value : undefined;
}

/** Records a statement's target relation as written (never as a CTE: targets are always real relations). */
function claimTarget(value: unknown, c: Collector): RelationRef | undefined {
  const rangeVar = rangeVarOf(value);
  if (!rangeVar) return undefined;
  c.claimed.add(rangeVar);
  const ref = relationOf(rangeVar);
  addRelation(c.writes, ref);
  return ref;
}

function walk(value: unknown, scope: Scope | null, c: Collector, key?: string): void {
  if (Array.isArray(value)) {
    for (const item of value) walk(item, scope, c);
    return;
  }
  if (!isObject(value)) {
    // Enum fields, wherever they sit: CASCADE (DROP, ALTER TABLE ... DROP, ALTER DOMAIN, ...) and OPTIONS (DROP x).
    if (key === 'behavior' && value === 'DROP_CASCADE') c.cascade = true;
    else if (key === 'defaction' && value === 'DEFELEM_DROP') c.drops = true;
    return;
  }
  const node = unwrap(value);
  if (node) {
    visitNode(node[0], node[1], scope, c);
    return;
  }
  // Bare structs that matter.
  if (typeof value.relname === 'string') {
    visitRangeVar(value, scope, c);
    return;
  }
  if (key === 'larg' || key === 'rarg') {
    visitSelect(value, scope, c);
    return;
  }
  if (key === 'funccall') {
    visitFuncCall(value, scope, c);
    return;
  }
  walkFields(value, scope, c);
}

function walkFields(body: JsonObject, scope: Scope | null, c: Collector, skip?: ReadonlySet<string>): void {
  for (const key in body) {
    if (skip?.has(key)) continue;
    walk(body[key], scope, c, key);
  }
}

function visitNode(type: string, body: JsonObject, scope: Scope | null, c: Collector): void {
  switch (type) {
    case 'SelectStmt':
      visitSelect(body, scope, c);
      return;
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      visitModifying(type, body, scope, c);
      return;
    case 'RangeVar':
      visitRangeVar(body, scope, c);
      return;
    case 'FuncCall':
      visitFuncCall(body, scope, c);
      return;
    case 'ColumnRef':
    case 'A_Indirection':
      visitFieldSelection(type, body, c);
      walkFields(body, scope, c);
      return;
    case 'A_Expr':
    case 'SubLink':
    case 'SortBy':
      visitOperator(body[type === 'A_Expr' ? 'name' : type === 'SubLink' ? 'operName' : 'useOp'], c);
      walkFields(body, scope, c);
      return;
    case 'LockingClause':
      // Only reached outside a SELECT's own lockingClause list; the relations named are aliases, not reads.
      c.locking = true;
      return;
    default:
      walkFields(body, scope, c);
  }
}

function visitRangeVar(rangeVar: JsonObject, scope: Scope | null, c: Collector): void {
  if (c.claimed.has(rangeVar)) return;
  const ref = relationOf(rangeVar);
  // An unqualified name that matches a CTE in scope is that CTE, not a relation.
  if (ref.schema === null && inScope(scope, ref.name)) return;
  addRelation(c.reads, ref);
}

function visitFuncCall(call: JsonObject, scope: Scope | null, c: Collector): void {
  const name = nameParts(call.funcname).join('.').toLowerCase();
  if (!c.functions.includes(name)) c.functions.push(name);
  walkFields(call, scope, c, FUNC_CALL_SKIP);
}
const FUNC_CALL_SKIP: ReadonlySet<string> = new Set(['funcname']);

/**
 * `x.name` and `(x).name` may select a column, or call a function name(x)
 * in attribute notation (https://www.postgresql.org/docs/current/xfunc-sql.html#XFUNC-SQL-COMPOSITE-FUNCTIONS):
 * the parser cannot tell which, so the name is recorded for the policy.
 */
function visitFieldSelection(type: string, body: JsonObject, c: Collector): void {
  const parts = type === 'ColumnRef' ? asArray(body.fields) : asArray(body.indirection);
  if (type === 'ColumnRef' && parts.length < 2) return;
  const last = unwrap(parts[parts.length - 1]);
  const name = last?.[0] === 'String' ? asString(last[1].sval) : undefined;
  const lower = name?.toLowerCase();
  if (lower !== undefined && !c.fieldSelections.includes(lower)) c.fieldSelections.push(lower);
}

/**
 * An operator is a function call in disguise (CREATE OPERATOR ... FUNCTION =
 * ...): its name, qualified as written (OPERATOR(schema.op)), is recorded.
 */
function visitOperator(nameList: unknown, c: Collector): void {
  if (nameList === undefined) return;
  const name = nameParts(nameList).join('.').toLowerCase();
  if (name !== '' && !c.operators.includes(name)) c.operators.push(name);
}

/**
 * Visits a WITH clause's queries and returns the scope its statement's body sees.
 * Non-recursive: each CTE sees the ones before it. RECURSIVE: every CTE sees all
 * of them (https://www.postgresql.org/docs/current/queries-with.html).
 */
function visitWith(withClause: unknown, scope: Scope | null, c: Collector): Scope | null {
  if (!isObject(withClause)) return scope;
  const ctes = asArray(withClause.ctes).map((item) => unwrap(item)?.[1] ?? {});
  const names = ctes.map((cte) => asString(cte.ctename) ?? '');
  const full: Scope = { names: new Set(names), parent: scope };
  const recursive = withClause.recursive === true;
  ctes.forEach((cte, index) => {
    const bodyScope = recursive ? full : index === 0 ? scope : { names: new Set(names.slice(0, index)), parent: scope };
    const query = unwrap(cte.ctequery);
    if (query && MODIFYING_STATEMENTS.has(query[0])) c.modifyingCte = true;
    walkFields(cte, bodyScope, c, CTE_SKIP);
  });
  return full;
}
const CTE_SKIP: ReadonlySet<string> = new Set(['ctename', 'aliascolnames']);

function visitSelect(select: JsonObject, scope: Scope | null, c: Collector): void {
  const inner = visitWith(select.withClause, scope, c);
  const into = select.intoClause;
  if (isObject(into)) {
    c.selectInto = true;
    claimTarget(into.rel, c);
    walkFields(into, inner, c, INTO_SKIP);
  }
  if (asArray(select.lockingClause).length > 0) c.locking = true;
  walkFields(select, inner, c, SELECT_SKIP);
}
const SELECT_SKIP: ReadonlySet<string> = new Set(['withClause', 'intoClause', 'lockingClause']);
const INTO_SKIP: ReadonlySet<string> = new Set(['rel']);

/** What each modifying statement does to its target's rows. */
const MODIFYING_ACTIONS: Readonly<Record<string, ChangeAction>> = {
  InsertStmt: 'insert',
  UpdateStmt: 'update',
  DeleteStmt: 'delete',
  MergeStmt: 'merge',
};

/** What a MERGE's WHEN clause does to the target's rows (DO NOTHING: nothing). */
const MERGE_COMMANDS: Readonly<Record<string, ChangeAction>> = {
  CMD_INSERT: 'insert',
  CMD_UPDATE: 'update',
  CMD_DELETE: 'delete',
};

function visitModifying(type: string, statement: JsonObject, scope: Scope | null, c: Collector): void {
  c.modifying += 1;
  const inner = visitWith(statement.withClause, scope, c);
  const target = claimTarget(statement.relation, c);
  const action = MODIFYING_ACTIONS[type];
  if (target !== undefined && action !== undefined) {
    addChange(c, target, action);
    // https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT: DO UPDATE updates the rows that conflict.
    if (isObject(statement.onConflictClause) && statement.onConflictClause.action === 'ONCONFLICT_UPDATE') addChange(c, target, 'update');
    // A MERGE also does what its WHEN clauses do (https://www.postgresql.org/docs/current/sql-merge.html),
    // so a MERGE ... THEN DELETE is a delete too, not only a merge.
    for (const clause of asArray(statement.mergeWhenClauses)) {
      const when = unwrap(clause);
      const merged = when && when[0] === 'MergeWhenClause' ? MERGE_COMMANDS[asString(when[1].commandType) ?? ''] : undefined;
      if (merged !== undefined) addChange(c, target, merged);
    }
  }
  if (type === 'UpdateStmt' || type === 'DeleteStmt') {
    c.updateOrDelete += 1;
    // WHERE CURRENT OF arrives as a CurrentOfExpr whereClause, so it counts as a WHERE.
    if (statement.whereClause === undefined) c.updateOrDeleteWithoutWhere = true;
  }
  walkFields(statement, inner, c, MODIFYING_SKIP);
}
const MODIFYING_SKIP: ReadonlySet<string> = new Set(['withClause', 'relation']);

// ---------------------------------------------------------------------------
// Statements

interface Draft {
  kind: StatementKind;
  command: string;
  explainAnalyze?: boolean;
  transaction?: TransactionFacts;
  setting?: SettingFacts;
  prepared?: PreparedFacts;
  cursor?: CursorFacts;
  copy?: CopyFacts;
  inner?: StatementFacts;
}

function finish(text: string, c: Collector, draft: Draft): StatementFacts {
  const facts: StatementFacts = {
    kind: draft.kind,
    command: draft.command,
    text,
    reads: c.reads,
    writes: c.writes,
    functions: c.functions,
    fieldSelections: c.fieldSelections,
    operators: c.operators,
    sideEffectFunctions: c.functions.filter(isSideEffectFunction),
    changes: c.changes,
    drops: c.drops,
    cascade: c.cascade,
    dropsColumn: c.dropsColumn,
    hasWhere: c.updateOrDelete > 0 ? !c.updateOrDeleteWithoutWhere : null,
    modifyingCte: c.modifyingCte,
    explainAnalyze: draft.explainAnalyze ?? false,
    selectInto: c.selectInto,
    locking: c.locking,
  };
  if (c.droppedColumns.length > 0) facts.droppedColumns = c.droppedColumns;
  if (draft.transaction) facts.transaction = draft.transaction;
  if (draft.setting) facts.setting = draft.setting;
  if (draft.prepared) facts.prepared = draft.prepared;
  if (draft.cursor) facts.cursor = draft.cursor;
  if (draft.copy) facts.copy = draft.copy;
  if (draft.inner) facts.inner = draft.inner;
  return facts;
}

/**
 * The kind of a statement that executes a query: a read only if nothing in its
 * tree writes, creates, locks rows or calls a function with side effects.
 */
function queryKind(c: Collector): StatementKind {
  if (c.modifying > 0 || c.selectInto || c.locking) return 'write';
  if (c.functions.some(isSideEffectFunction)) return 'utility';
  return 'read';
}

/** A collector that starts from an inner statement's facts (EXPLAIN, PREPARE, DECLARE, COPY, CREATE TABLE AS). */
function collectorFrom(inner: StatementFacts): Collector {
  const c = newCollector();
  c.reads = [...inner.reads];
  c.writes = [...inner.writes];
  c.functions = [...inner.functions];
  c.fieldSelections = [...inner.fieldSelections];
  c.operators = [...inner.operators];
  c.changes = [...inner.changes];
  c.drops = inner.drops;
  c.cascade = inner.cascade;
  c.dropsColumn = inner.dropsColumn;
  c.modifyingCte = inner.modifyingCte;
  c.selectInto = inner.selectInto;
  c.locking = inner.locking;
  if (inner.hasWhere !== null) {
    c.updateOrDelete = 1;
    c.updateOrDeleteWithoutWhere = !inner.hasWhere;
  }
  return c;
}

function classifyStatement(statement: unknown, text: string): StatementFacts {
  const node = unwrap(statement);
  const c = newCollector();
  if (!node) return finish(text, c, { kind: 'unknown', command: 'UNKNOWN' });
  const [type, body] = node;
  switch (type) {
    case 'SelectStmt': {
      visitSelect(body, null, c);
      return finish(text, c, { kind: queryKind(c), command: c.selectInto ? 'SELECT INTO' : 'SELECT' });
    }
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt': {
      visitModifying(type, body, null, c);
      return finish(text, c, { kind: 'write', command: type.slice(0, -'Stmt'.length).toUpperCase() });
    }
    case 'TruncateStmt': {
      for (const relation of asArray(body.relations)) {
        const target = claimTarget(relation, c);
        if (target !== undefined) addChange(c, target, 'truncate');
      }
      // TRUNCATE ... CASCADE also empties every table with a foreign key to these.
      if (body.behavior === 'DROP_CASCADE') c.cascade = true;
      // TRUNCATE removes every row: report it as the unfiltered delete it is.
      c.updateOrDelete += 1;
      c.updateOrDeleteWithoutWhere = true;
      return finish(text, c, { kind: 'write', command: 'TRUNCATE TABLE' });
    }
    case 'VariableShowStmt':
      return finish(text, c, { kind: 'read', command: 'SHOW' });
    case 'ExplainStmt':
      return classifyExplain(body, text);
    case 'DeclareCursorStmt': {
      const inner = classifyStatement(body.query, text);
      const cursor: CursorFacts = { action: 'declare', name: asString(body.portalname) ?? null };
      return finish(text, collectorFrom(inner), { kind: inner.kind, command: 'DECLARE CURSOR', cursor, inner });
    }
    case 'FetchStmt': {
      const move = body.ismove === true;
      const cursor: CursorFacts = { action: move ? 'move' : 'fetch', name: asString(body.portalname) ?? null };
      return finish(text, c, { kind: 'read', command: move ? 'MOVE' : 'FETCH', cursor });
    }
    case 'ClosePortalStmt': {
      const name = asString(body.portalname) ?? null;
      const cursor: CursorFacts = { action: name === null ? 'close-all' : 'close', name };
      return finish(text, c, { kind: 'read', command: name === null ? 'CLOSE CURSOR ALL' : 'CLOSE CURSOR', cursor });
    }
    case 'CopyStmt':
      return classifyCopy(body, text);
    case 'PrepareStmt': {
      const inner = classifyStatement(body.query, text);
      const prepared: PreparedFacts = { action: 'prepare', name: asString(body.name) ?? null };
      return finish(text, collectorFrom(inner), { kind: inner.kind, command: 'PREPARE', prepared, inner });
    }
    case 'ExecuteStmt': {
      walkFields(body, null, c);
      const prepared: PreparedFacts = { action: 'execute', name: asString(body.name) ?? null };
      // What runs is whatever was prepared under that name: only the gateway knows.
      const kind: StatementKind = c.functions.some(isSideEffectFunction) ? 'utility' : 'unknown';
      return finish(text, c, { kind, command: 'EXECUTE', prepared });
    }
    case 'DeallocateStmt': {
      const all = body.isall === true;
      const prepared: PreparedFacts = { action: all ? 'deallocate-all' : 'deallocate', name: all ? null : (asString(body.name) ?? null) };
      return finish(text, c, { kind: 'session', command: all ? 'DEALLOCATE ALL' : 'DEALLOCATE', prepared });
    }
    case 'TransactionStmt':
      return classifyTransaction(body, text);
    case 'VariableSetStmt':
      return classifySet(body, text);
    case 'DiscardStmt':
      return finish(text, c, { kind: 'session', command: 'DISCARD' });
    case 'ConstraintsSetStmt':
      return finish(text, c, { kind: 'session', command: 'SET CONSTRAINTS' });
    case 'CreateTableAsStmt': {
      const inner = classifyStatement(body.query, text);
      const outer = collectorFrom(inner);
      outer.selectInto = false;
      if (isObject(body.into)) claimTarget(body.into.rel, outer);
      const command = body.objtype === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS';
      return finish(text, outer, { kind: 'ddl', command, inner });
    }
    case 'CallStmt': {
      walkFields(body, null, c);
      return finish(text, c, { kind: 'utility', command: 'CALL' });
    }
    default:
      return classifyOther(type, body, text, c);
  }
}

/** EXPLAIN runs its statement only with ANALYZE (https://www.postgresql.org/docs/current/sql-explain.html). */
function classifyExplain(body: JsonObject, text: string): StatementFacts {
  const inner = classifyStatement(body.query, text);
  const analyze = asArray(body.options).some((option) => {
    const def = unwrap(option);
    if (!def || def[0] !== 'DefElem' || def[1].defname !== 'analyze') return false;
    // No argument means true; anything but an explicit false/off/0 counts as ANALYZE.
    const value = def[1].arg === undefined ? 'true' : constantText(def[1].arg)?.toLowerCase();
    return !(value === 'false' || value === 'off' || value === '0');
  });
  const c = collectorFrom(inner);
  if (analyze) return finish(text, c, { kind: inner.kind, command: 'EXPLAIN', explainAnalyze: true, inner });
  // Planned, not run: nothing is written, but everything the plan shows is read.
  for (const ref of c.writes) addRelation(c.reads, ref);
  c.writes = [];
  c.changes = [];
  return finish(text, c, { kind: 'read', command: 'EXPLAIN', inner });
}

/** https://www.postgresql.org/docs/current/sql-copy.html */
function classifyCopy(body: JsonObject, text: string): StatementFacts {
  const from = body.is_from === true;
  // STDIN and STDOUT both leave `filename` unset; PROGRAM puts its command there.
  const copy: CopyFacts = {
    direction: from ? 'from' : 'to',
    target: body.is_program === true ? 'program' : body.filename !== undefined ? 'file' : 'stdio',
  };
  const toClient = copy.target === 'stdio';
  if (from) {
    const c = newCollector();
    const target = claimTarget(body.relation, c);
    if (target !== undefined) addChange(c, target, 'insert');
    walkFields(body, null, c, COPY_SKIP);
    return finish(text, c, { kind: 'write', command: 'COPY', copy });
  }
  if (body.query !== undefined) {
    const inner = classifyStatement(body.query, text);
    const c = collectorFrom(inner);
    // A server file or program is written by the server itself, whatever the query.
    return finish(text, c, { kind: toClient ? inner.kind : 'utility', command: 'COPY', copy, inner });
  }
  const c = newCollector();
  walkFields(body, null, c);
  return finish(text, c, { kind: toClient ? queryKind(c) : 'utility', command: 'COPY', copy });
}
const COPY_SKIP: ReadonlySet<string> = new Set(['relation']);

const TRANSACTION_KINDS: Readonly<Record<string, [TransactionAction, string]>> = {
  TRANS_STMT_BEGIN: ['begin', 'BEGIN'],
  TRANS_STMT_START: ['begin', 'START TRANSACTION'],
  TRANS_STMT_COMMIT: ['commit', 'COMMIT'],
  TRANS_STMT_ROLLBACK: ['rollback', 'ROLLBACK'],
  TRANS_STMT_SAVEPOINT: ['savepoint', 'SAVEPOINT'],
  TRANS_STMT_RELEASE: ['release', 'RELEASE'],
  TRANS_STMT_ROLLBACK_TO: ['rollback-to', 'ROLLBACK TO SAVEPOINT'],
  TRANS_STMT_PREPARE: ['prepare-transaction', 'PREPARE TRANSACTION'],
  TRANS_STMT_COMMIT_PREPARED: ['commit-prepared', 'COMMIT PREPARED'],
  TRANS_STMT_ROLLBACK_PREPARED: ['rollback-prepared', 'ROLLBACK PREPARED'],
};

function classifyTransaction(body: JsonObject, text: string): StatementFacts {
  const c = newCollector();
  const known = TRANSACTION_KINDS[asString(body.kind) ?? ''];
  if (!known) return finish(text, c, { kind: 'unknown', command: 'UNKNOWN' });
  const [action, command] = known;
  const transaction: TransactionFacts = { action, readWrite: optionsAskReadWrite(body.options) };
  if (body.chain === true) transaction.chain = true;
  return finish(text, c, { kind: 'transaction', command, transaction });
}

/**
 * Whether transaction modes (BEGIN, SET TRANSACTION, SET SESSION CHARACTERISTICS)
 * ask for READ WRITE. The parser gives READ WRITE as `transaction_read_only = 0`;
 * any value that is not plainly "read only" counts as READ WRITE.
 */
function optionsAskReadWrite(options: unknown): boolean {
  return asArray(options).some((option) => {
    const def = unwrap(option);
    if (!def || def[0] !== 'DefElem' || def[1].defname !== 'transaction_read_only') return false;
    return !isTrue(constantText(def[1].arg));
  });
}

/** PostgreSQL's boolean spellings of true (https://www.postgresql.org/docs/current/config-setting.html). */
function isTrue(value: string | undefined): boolean {
  if (value === undefined) return false;
  // No trimming: PostgreSQL rejects ' on', so anything padded is not "plainly true" here either.
  const v = value.toLowerCase();
  return v === '1' || (v.length > 0 && ('true'.startsWith(v) || 'yes'.startsWith(v))) || v === 'on';
}

/** Settings whose change can lift read-only mode. */
const READ_ONLY_SETTINGS: Readonly<Record<string, TransactionAction>> = {
  transaction_read_only: 'set-transaction',
  default_transaction_read_only: 'set-session-characteristics',
};

/** https://www.postgresql.org/docs/current/sql-set.html, sql-reset.html, sql-set-transaction.html */
function classifySet(body: JsonObject, text: string): StatementFacts {
  const c = newCollector();
  const local = body.is_local === true;
  const name = (asString(body.name) ?? '').toLowerCase();
  switch (body.kind) {
    case 'VAR_SET_MULTI': {
      // SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ..., SET TRANSACTION SNAPSHOT '...'.
      const args = asArray(body.args);
      const values = args.map((arg) => {
        const def = unwrap(arg);
        if (def && def[0] === 'DefElem') return `${asString(def[1].defname) ?? ''}=${constantText(def[1].arg) ?? ''}`;
        return constantText(arg) ?? '';
      });
      const setting: SettingFacts = { action: 'set', name, values, local };
      const readWrite = optionsAskReadWrite(args);
      if (name === 'transaction' || name === 'transaction snapshot') {
        return finish(text, c, { kind: 'transaction', command: 'SET', setting, transaction: { action: 'set-transaction', readWrite } });
      }
      if (name === 'session characteristics') {
        return finish(text, c, { kind: 'session', command: 'SET', setting, transaction: { action: 'set-session-characteristics', readWrite } });
      }
      return finish(text, c, { kind: 'unknown', command: 'SET', setting });
    }
    case 'VAR_SET_VALUE': {
      const values = asArray(body.args).map((arg) => constantText(arg) ?? '');
      const setting: SettingFacts = { action: 'set', name, values, local };
      const guard = READ_ONLY_SETTINGS[name];
      const transaction = guard ? { action: guard, readWrite: !(values.length === 1 && isTrue(values[0])) } : undefined;
      return finish(text, c, { kind: 'session', command: 'SET', setting, transaction });
    }
    case 'VAR_SET_DEFAULT':
    case 'VAR_RESET':
    case 'VAR_SET_CURRENT': {
      // SET x TO DEFAULT is RESET x; SET x FROM CURRENT keeps the current value. Both carry no values.
      const action = body.kind === 'VAR_SET_CURRENT' ? 'set' : 'reset';
      const setting: SettingFacts = { action, name, values: [], local };
      const guard = READ_ONLY_SETTINGS[name];
      // The default may well be read-write.
      const transaction = guard ? { action: guard, readWrite: true } : undefined;
      return finish(text, c, { kind: 'session', command: body.kind === 'VAR_RESET' ? 'RESET' : 'SET', setting, transaction });
    }
    case 'VAR_RESET_ALL': {
      const setting: SettingFacts = { action: 'reset-all', name: '', values: [], local: false };
      // RESET ALL resets default_transaction_read_only, whatever a SET made it.
      const transaction: TransactionFacts = { action: 'set-session-characteristics', readWrite: true };
      return finish(text, c, { kind: 'session', command: 'RESET', setting, transaction });
    }
    default:
      return finish(text, c, { kind: 'unknown', command: 'SET' });
  }
}

// ---------------------------------------------------------------------------
// DDL, privileges and utilities

/**
 * Kinds and command labels of the remaining statements. VACUUM, ANALYZE, CLUSTER,
 * REINDEX and CHECKPOINT are 'utility' (maintenance a human schedules: they change
 * no data but take heavy locks or rewrite files), as are statements that run code
 * or reach outside the database (DO, CALL, LOAD, ALTER SYSTEM, subscriptions).
 */
const OTHER_STATEMENTS: Readonly<Record<string, readonly [StatementKind, string]>> = {
  // ddl
  CreateSchemaStmt: ['ddl', 'CREATE SCHEMA'],
  AlterCollationStmt: ['ddl', 'ALTER COLLATION'],
  AlterDomainStmt: ['ddl', 'ALTER DOMAIN'],
  CreateStmt: ['ddl', 'CREATE TABLE'],
  CreateTableSpaceStmt: ['ddl', 'CREATE TABLESPACE'],
  DropTableSpaceStmt: ['ddl', 'DROP TABLESPACE'],
  AlterTableSpaceOptionsStmt: ['ddl', 'ALTER TABLESPACE'],
  AlterTableMoveAllStmt: ['ddl', 'ALTER TABLE'],
  CreateExtensionStmt: ['ddl', 'CREATE EXTENSION'],
  AlterExtensionStmt: ['ddl', 'ALTER EXTENSION'],
  AlterExtensionContentsStmt: ['ddl', 'ALTER EXTENSION'],
  CreateFdwStmt: ['ddl', 'CREATE FOREIGN DATA WRAPPER'],
  AlterFdwStmt: ['ddl', 'ALTER FOREIGN DATA WRAPPER'],
  CreateForeignServerStmt: ['ddl', 'CREATE SERVER'],
  AlterForeignServerStmt: ['ddl', 'ALTER SERVER'],
  CreateForeignTableStmt: ['ddl', 'CREATE FOREIGN TABLE'],
  ImportForeignSchemaStmt: ['ddl', 'IMPORT FOREIGN SCHEMA'],
  CreateAmStmt: ['ddl', 'CREATE ACCESS METHOD'],
  CreateTrigStmt: ['ddl', 'CREATE TRIGGER'],
  CreateEventTrigStmt: ['ddl', 'CREATE EVENT TRIGGER'],
  AlterEventTrigStmt: ['ddl', 'ALTER EVENT TRIGGER'],
  CreatePLangStmt: ['ddl', 'CREATE LANGUAGE'],
  CreateSeqStmt: ['ddl', 'CREATE SEQUENCE'],
  AlterSeqStmt: ['ddl', 'ALTER SEQUENCE'],
  CreateDomainStmt: ['ddl', 'CREATE DOMAIN'],
  CreateOpClassStmt: ['ddl', 'CREATE OPERATOR CLASS'],
  CreateOpFamilyStmt: ['ddl', 'CREATE OPERATOR FAMILY'],
  AlterOpFamilyStmt: ['ddl', 'ALTER OPERATOR FAMILY'],
  CommentStmt: ['ddl', 'COMMENT'],
  SecLabelStmt: ['ddl', 'SECURITY LABEL'],
  IndexStmt: ['ddl', 'CREATE INDEX'],
  CreateStatsStmt: ['ddl', 'CREATE STATISTICS'],
  AlterStatsStmt: ['ddl', 'ALTER STATISTICS'],
  AlterOperatorStmt: ['ddl', 'ALTER OPERATOR'],
  AlterTypeStmt: ['ddl', 'ALTER TYPE'],
  RuleStmt: ['ddl', 'CREATE RULE'],
  CompositeTypeStmt: ['ddl', 'CREATE TYPE'],
  CreateEnumStmt: ['ddl', 'CREATE TYPE'],
  CreateRangeStmt: ['ddl', 'CREATE TYPE'],
  AlterEnumStmt: ['ddl', 'ALTER TYPE'],
  ViewStmt: ['ddl', 'CREATE VIEW'],
  CreatedbStmt: ['ddl', 'CREATE DATABASE'],
  AlterDatabaseStmt: ['ddl', 'ALTER DATABASE'],
  AlterDatabaseRefreshCollStmt: ['ddl', 'ALTER DATABASE'],
  AlterDatabaseSetStmt: ['ddl', 'ALTER DATABASE'],
  DropdbStmt: ['ddl', 'DROP DATABASE'],
  RefreshMatViewStmt: ['ddl', 'REFRESH MATERIALIZED VIEW'],
  CreateConversionStmt: ['ddl', 'CREATE CONVERSION'],
  CreateCastStmt: ['ddl', 'CREATE CAST'],
  CreateTransformStmt: ['ddl', 'CREATE TRANSFORM'],
  AlterTSDictionaryStmt: ['ddl', 'ALTER TEXT SEARCH DICTIONARY'],
  AlterTSConfigurationStmt: ['ddl', 'ALTER TEXT SEARCH CONFIGURATION'],
  CreatePublicationStmt: ['ddl', 'CREATE PUBLICATION'],
  AlterPublicationStmt: ['ddl', 'ALTER PUBLICATION'],
  AlterTableStmt: ['ddl', 'ALTER TABLE'],
  DropStmt: ['ddl', 'DROP'],
  RenameStmt: ['ddl', 'ALTER'],
  AlterObjectDependsStmt: ['ddl', 'ALTER'],
  AlterObjectSchemaStmt: ['ddl', 'ALTER'],
  DefineStmt: ['ddl', 'CREATE'],
  CreateFunctionStmt: ['ddl', 'CREATE FUNCTION'],
  AlterFunctionStmt: ['ddl', 'ALTER FUNCTION'],
  // privilege
  GrantStmt: ['privilege', 'GRANT'],
  GrantRoleStmt: ['privilege', 'GRANT ROLE'],
  AlterDefaultPrivilegesStmt: ['privilege', 'ALTER DEFAULT PRIVILEGES'],
  CreateRoleStmt: ['privilege', 'CREATE ROLE'],
  AlterRoleStmt: ['privilege', 'ALTER ROLE'],
  AlterRoleSetStmt: ['privilege', 'ALTER ROLE'],
  DropRoleStmt: ['privilege', 'DROP ROLE'],
  CreatePolicyStmt: ['privilege', 'CREATE POLICY'],
  AlterPolicyStmt: ['privilege', 'ALTER POLICY'],
  AlterOwnerStmt: ['privilege', 'ALTER'],
  ReassignOwnedStmt: ['privilege', 'REASSIGN OWNED'],
  DropOwnedStmt: ['privilege', 'DROP OWNED'],
  CreateUserMappingStmt: ['privilege', 'CREATE USER MAPPING'],
  AlterUserMappingStmt: ['privilege', 'ALTER USER MAPPING'],
  DropUserMappingStmt: ['privilege', 'DROP USER MAPPING'],
  // utility
  DoStmt: ['utility', 'DO'],
  LockStmt: ['utility', 'LOCK TABLE'],
  NotifyStmt: ['utility', 'NOTIFY'],
  ListenStmt: ['utility', 'LISTEN'],
  UnlistenStmt: ['utility', 'UNLISTEN'],
  LoadStmt: ['utility', 'LOAD'],
  CheckPointStmt: ['utility', 'CHECKPOINT'],
  AlterSystemStmt: ['utility', 'ALTER SYSTEM'],
  VacuumStmt: ['utility', 'VACUUM'],
  ClusterStmt: ['utility', 'CLUSTER'],
  ReindexStmt: ['utility', 'REINDEX'],
  CreateSubscriptionStmt: ['utility', 'CREATE SUBSCRIPTION'],
  AlterSubscriptionStmt: ['utility', 'ALTER SUBSCRIPTION'],
  DropSubscriptionStmt: ['utility', 'DROP SUBSCRIPTION'],
};

/** Object types a DROP can name that are relations (so they belong in `writes`). */
const RELATION_OBJECTS: ReadonlySet<string> = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_INDEX',
  'OBJECT_SEQUENCE',
  'OBJECT_FOREIGN_TABLE',
]);

/** ALTER TABLE subcommands that change who may see or own the data. */
const PRIVILEGE_SUBCOMMANDS: ReadonlySet<string> = new Set([
  'AT_EnableRowSecurity',
  'AT_DisableRowSecurity',
  'AT_ForceRowSecurity',
  'AT_NoForceRowSecurity',
  'AT_ChangeOwner',
]);

/** Fields holding a statement's own target relation (bare RangeVars). */
const TARGET_FIELDS = ['relation', 'view', 'sequence', 'table'] as const;

/**
 * Whether an ALTER destroys something: ALTER TABLE ... DROP COLUMN / CONSTRAINT / DEFAULT /
 * NOT NULL / EXPRESSION / IDENTITY ..., ALTER DOMAIN ... DROP ..., and the ALTERs that
 * take something out of a publication, an extension, an operator family or a text search
 * configuration. (OPTIONS (DROP x) is caught by the walk, anywhere.)
 */
function alterDrops(type: string, body: JsonObject): boolean {
  switch (type) {
    case 'AlterTableStmt':
      return asArray(body.cmds).some((cmd) => {
        const sub = unwrap(cmd)?.[1];
        const subtype = asString(sub?.subtype) ?? '';
        // ALTER COLUMN ... DROP DEFAULT is AT_ColumnDefault without a new default.
        return subtype.startsWith('AT_Drop') || (subtype === 'AT_ColumnDefault' && sub?.def === undefined);
      });
    case 'AlterDomainStmt':
      // https://www.postgresql.org/docs/current/sql-alterdomain.html: X = DROP CONSTRAINT, N = DROP NOT NULL, T without a default = DROP DEFAULT.
      return body.subtype === 'X' || body.subtype === 'N' || (body.subtype === 'T' && body.def === undefined);
    case 'AlterPublicationStmt':
      return body.action === 'AP_DropObjects';
    case 'AlterExtensionContentsStmt':
      return body.action === -1;
    case 'AlterOpFamilyStmt':
      return body.isDrop === true;
    case 'AlterTSConfigurationStmt':
      return body.kind === 'ALTER_TSCONFIG_DROP_MAPPING';
    case 'AlterSubscriptionStmt':
      return body.kind === 'ALTER_SUBSCRIPTION_DROP_PUBLICATION';
    default:
      return false;
  }
}

function classifyOther(type: string, body: JsonObject, text: string, c: Collector): StatementFacts {
  const known = OTHER_STATEMENTS[type];
  if (!known) {
    walkFields(body, null, c);
    c.changes = [];
    return finish(text, c, { kind: 'unknown', command: commandFromType(type) });
  }
  let [kind, command] = known;
  for (const field of TARGET_FIELDS) claimTarget(body[field], c);
  // DropStmt, DropdbStmt, DropTableSpaceStmt, DropRoleStmt, DropOwnedStmt, DropSubscriptionStmt, ...
  if (type.startsWith('Drop') || alterDrops(type, body)) c.drops = true;
  switch (type) {
    case 'AlterTableStmt': {
      command = `ALTER ${objectWords(body.objtype, 'TABLE')}`;
      const subcommands = asArray(body.cmds).map((cmd) => asString(unwrap(cmd)?.[1].subtype) ?? '');
      if (subcommands.some((sub) => PRIVILEGE_SUBCOMMANDS.has(sub))) kind = 'privilege';
      if (subcommands.includes('AT_DropColumn')) c.dropsColumn = true;
      for (const cmd of asArray(body.cmds)) {
        const sub = unwrap(cmd)?.[1];
        const column = asString(sub?.name);
        if (asString(sub?.subtype) === 'AT_DropColumn' && column !== undefined) c.droppedColumns.push(column);
      }
      break;
    }
    case 'DropStmt': {
      const removeType = asString(body.removeType) ?? '';
      command = `DROP ${objectWords(removeType, '')}`.trim();
      // Dropping a policy widens what roles may see.
      if (removeType === 'OBJECT_POLICY') kind = 'privilege';
      if (RELATION_OBJECTS.has(removeType)) {
        for (const object of asArray(body.objects)) {
          const list = unwrap(object);
          const parts = list && list[0] === 'List' ? nameParts(list[1].items) : [];
          const name = parts[parts.length - 1];
          if (name !== undefined) addRelation(c.writes, { schema: parts.length > 1 ? (parts[parts.length - 2] ?? null) : null, name });
        }
      }
      break;
    }
    case 'RenameStmt': {
      const renameType = asString(body.renameType) ?? '';
      // Renaming a column or constraint is an ALTER of the relation that holds it.
      const objectType = renameType === 'OBJECT_COLUMN' || renameType === 'OBJECT_TABCONSTRAINT' ? body.relationType : renameType;
      command = `ALTER ${objectWords(objectType, '')}`.trim();
      if (renameType === 'OBJECT_ROLE') kind = 'privilege';
      break;
    }
    case 'AlterObjectDependsStmt':
    case 'AlterObjectSchemaStmt':
    case 'AlterOwnerStmt':
      command = `ALTER ${objectWords(body.objectType, '')}`.trim();
      break;
    case 'DefineStmt':
      command = `CREATE ${objectWords(body.kind, '')}`.trim();
      break;
    case 'CreateFunctionStmt':
      if (body.is_procedure === true) command = 'CREATE PROCEDURE';
      break;
    case 'AlterFunctionStmt':
      command = `ALTER ${objectWords(body.objtype, 'FUNCTION')}`;
      break;
    case 'GrantStmt':
    case 'GrantRoleStmt':
      if (body.is_grant !== true) command = command.replace('GRANT', 'REVOKE');
      if (type === 'GrantStmt' && body.targtype === 'ACL_TARGET_OBJECT' && RELATION_OBJECTS.has(asString(body.objtype) ?? '')) {
        for (const object of asArray(body.objects)) claimTarget(object, c);
      }
      break;
    case 'CreateForeignTableStmt':
      if (isObject(body.base)) claimTarget(body.base.relation, c);
      break;
    case 'LockStmt':
      for (const relation of asArray(body.relations)) claimTarget(relation, c);
      break;
    case 'VacuumStmt':
      if (body.is_vacuumcmd !== true) command = 'ANALYZE';
      for (const rel of asArray(body.rels)) {
        const vacuumRelation = unwrap(rel);
        if (vacuumRelation) claimTarget(vacuumRelation[1].relation, c);
      }
      break;
    default:
      break;
  }
  walkFields(body, null, c);
  // DML written inside DDL (CREATE RULE ... DO DELETE, a function's BEGIN ATOMIC body) does not run now.
  c.changes = [];
  return finish(text, c, { kind, command });
}

/** 'OBJECT_MATVIEW' → 'MATERIALIZED VIEW', as PostgreSQL names object types in its commands. */
function objectWords(objectType: unknown, fallback: string): string {
  const raw = asString(objectType);
  if (raw === undefined || !raw.startsWith('OBJECT_')) return fallback;
  const key = raw.slice('OBJECT_'.length);
  return OBJECT_WORDS[key] ?? key.replace(/_/g, ' ');
}
const OBJECT_WORDS: Readonly<Record<string, string>> = {
  MATVIEW: 'MATERIALIZED VIEW',
  FDW: 'FOREIGN DATA WRAPPER',
  FOREIGN_SERVER: 'SERVER',
  TSCONFIGURATION: 'TEXT SEARCH CONFIGURATION',
  TSDICTIONARY: 'TEXT SEARCH DICTIONARY',
  TSPARSER: 'TEXT SEARCH PARSER',
  TSTEMPLATE: 'TEXT SEARCH TEMPLATE',
  OPCLASS: 'OPERATOR CLASS',
  OPFAMILY: 'OPERATOR FAMILY',
  LARGEOBJECT: 'LARGE OBJECT',
  STATISTIC_EXT: 'STATISTICS',
  TABCONSTRAINT: 'CONSTRAINT',
  DOMCONSTRAINT: 'DOMAIN CONSTRAINT',
  PUBLICATION_NAMESPACE: 'PUBLICATION',
  PUBLICATION_REL: 'PUBLICATION',
};

/** 'AlterTableSpaceOptionsStmt' → 'ALTER TABLE SPACE OPTIONS': a readable label for a statement we do not know. */
function commandFromType(type: string): string {
  return type
    .replace(/Stmt$/, '')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toUpperCase();
}
