/**
 * Plain facts about one SQL statement, as the real PostgreSQL parser read it.
 * Facts carry no judgement: the policy turns them into a decision.
 */

export const STATEMENT_KINDS = [
  'read',
  'write',
  'ddl',
  'privilege',
  'session',
  'transaction',
  'utility',
  'unknown',
] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

/** A relation as written in the statement; `schema` is null when unqualified. */
export interface RelationRef {
  schema: string | null;
  name: string;
}

export const TRANSACTION_ACTIONS = [
  'begin',
  'commit',
  'rollback',
  'savepoint',
  'release',
  'rollback-to',
  'prepare-transaction',
  'commit-prepared',
  'rollback-prepared',
  /** SET TRANSACTION ... (and SET transaction_read_only): the current transaction's characteristics. */
  'set-transaction',
  /** SET SESSION CHARACTERISTICS AS TRANSACTION ... (and SET/RESET default_transaction_read_only, RESET ALL): later transactions'. */
  'set-session-characteristics',
] as const;
export type TransactionAction = (typeof TRANSACTION_ACTIONS)[number];

/** What a statement does to a relation's rows; the policy judges each one (docs/config.md, `rules`). */
export const CHANGE_ACTIONS = ['insert', 'update', 'delete', 'merge', 'truncate'] as const;
export type ChangeAction = (typeof CHANGE_ACTIONS)[number];

/** One relation whose rows a statement changes, and how. */
export interface RowChange {
  relation: RelationRef;
  action: ChangeAction;
}

export interface TransactionFacts {
  action: TransactionAction;
  /**
   * BEGIN/START TRANSACTION/SET TRANSACTION/SET SESSION CHARACTERISTICS asked for READ WRITE,
   * or a SET/RESET of transaction_read_only or default_transaction_read_only may turn read-only off
   * (any value but on/true/yes/1, a reset, RESET ALL).
   */
  readWrite: boolean;
  /** COMMIT AND CHAIN / ROLLBACK AND CHAIN: a new transaction starts at once, with the same characteristics. */
  chain?: boolean;
}

export const SETTING_ACTIONS = ['set', 'reset', 'reset-all'] as const;
export type SettingAction = (typeof SETTING_ACTIONS)[number];

export interface SettingFacts {
  action: SettingAction;
  /** Lower-cased parameter name (`role`, `session_authorization`, `transaction_read_only`, ...); '' for RESET ALL. */
  name: string;
  /** Values as text, lower-cased for keywords/identifiers, as given for strings. Empty for RESET / SET ... TO DEFAULT. */
  values: string[];
  /** SET LOCAL. */
  local: boolean;
}

export interface PreparedFacts {
  action: 'prepare' | 'execute' | 'deallocate' | 'deallocate-all';
  /** Statement name (lower-cased as PostgreSQL folds it); null for DEALLOCATE ALL. */
  name: string | null;
}

export interface CursorFacts {
  action: 'declare' | 'fetch' | 'move' | 'close' | 'close-all';
  name: string | null;
}

export interface CopyFacts {
  direction: 'from' | 'to';
  /** stdio: COPY ... FROM STDIN / TO STDOUT; file: a server file; program: a server shell command. */
  target: 'stdio' | 'file' | 'program';
}

export interface StatementFacts {
  kind: StatementKind;
  /** Human label of the statement, PostgreSQL-style: 'SELECT', 'DELETE', 'CREATE TABLE', 'SET', 'BEGIN', ... */
  command: string;
  /** This statement's own text, sliced from the original string (trimmed). */
  text: string;
  /** Relations read (FROM, JOIN, subqueries, USING, COPY ... TO). */
  reads: RelationRef[];
  /** Relations written or changed (INSERT/UPDATE/DELETE/MERGE/TRUNCATE targets, DDL targets, COPY FROM, SELECT INTO). */
  writes: RelationRef[];
  /** Every function called anywhere in the statement, lower-case, qualified as written: 'pg_catalog.set_config', 'nextval'. */
  functions: string[];
  /**
   * Functions from `functions` known to have side effects (writes, locks, signals, server files, settings, dynamic SQL).
   * A statement that would otherwise be a read but calls one of these is kind 'utility', never 'read'.
   */
  sideEffectFunctions: string[];
  /**
   * Names selected as `x.name` or `(x).name`, lower-case: a column of x, or a
   * call name(x) in attribute notation, which the parser cannot tell apart.
   */
  fieldSelections: string[];
  /** Every operator used, lower-case, qualified as written ('=', '###', 'public.###'): each runs a function. */
  operators: string[];
  /**
   * For UPDATE and DELETE (and for a data-modifying CTE's statements): whether every one has a WHERE clause
   * (WHERE CURRENT OF counts). False for TRUNCATE, which removes every row. Null otherwise.
   */
  hasWhere: boolean | null;
  /**
   * Rows this statement changes, per target: INSERT/UPDATE/DELETE/MERGE targets (data-modifying CTEs included),
   * TRUNCATE's tables, COPY FROM's table (insert). INSERT ... ON CONFLICT DO UPDATE is an insert and an update
   * of its table; a MERGE is a merge and also the insert, update or delete its WHEN clauses do. EXPLAIN ANALYZE, PREPARE and DECLARE carry their statement's; EXPLAIN without ANALYZE, which
   * only plans, has none. Empty for anything else: DML written inside DDL (CREATE RULE, a function's body) runs
   * later, if ever, and is not this statement's.
   */
  changes: RowChange[];
  /** DROP of anything, or ALTER ... DROP (column, constraint, default, NOT NULL, ...): destroys something. */
  drops: boolean;
  /**
   * DROP / TRUNCATE / ALTER ... CASCADE: also removes what depends on the relations named (other tables' rows
   * for TRUNCATE, views and constraints for DROP), which no fact lists.
   */
  cascade: boolean;
  /** ALTER TABLE ... DROP COLUMN: the column's values go with it (the write path journals them first). */
  dropsColumn: boolean;
  /** The columns an ALTER TABLE ... DROP COLUMN names (of the relation in `writes`), when it does. */
  droppedColumns?: string[];
  /** A WITH clause anywhere holds INSERT/UPDATE/DELETE/MERGE. */
  modifyingCte: boolean;
  /** EXPLAIN ANALYZE (which executes its statement). */
  explainAnalyze: boolean;
  /** SELECT ... INTO (creates a table). */
  selectInto: boolean;
  /** FOR UPDATE / FOR NO KEY UPDATE / FOR SHARE / FOR KEY SHARE anywhere. */
  locking: boolean;
  /**
   * For kind 'transaction'; also on kind 'session' statements that change transaction
   * characteristics (SET SESSION CHARACTERISTICS, SET default_transaction_read_only, RESET ALL, ...).
   */
  transaction?: TransactionFacts;
  /** For SET / RESET / SET TRANSACTION / SET SESSION CHARACTERISTICS (kind 'session' or 'transaction'). */
  setting?: SettingFacts;
  /** For PREPARE / EXECUTE / DEALLOCATE. For PREPARE, `inner` holds the prepared statement's facts. */
  prepared?: PreparedFacts;
  /** For DECLARE / FETCH / MOVE / CLOSE. For DECLARE, `inner` holds the query's facts. */
  cursor?: CursorFacts;
  /** For COPY. */
  copy?: CopyFacts;
  /** The statement inside PREPARE, DECLARE CURSOR, EXPLAIN, CREATE TABLE AS. */
  inner?: StatementFacts;
}

/**
 * Why a statement was not read at all (so it is not a syntax error): it is
 * larger than limits.max_statement_bytes ('too-large'), the parser did not
 * finish it within limits.classify_timeout_ms or ran out of memory on it
 * ('too-complex'), every parser was busy and the queue full ('too-busy'),
 * Airlock is over its memory budget, limits.max_memory_bytes ('no-memory'), or
 * the parser is not running ('unavailable': Airlock is closing, or its
 * workers could not start). The policy refuses each with its own SQLSTATE.
 */
export const UNJUDGED_REASONS = ['too-large', 'too-complex', 'too-busy', 'no-memory', 'unavailable'] as const;
export type UnjudgedReason = (typeof UNJUDGED_REASONS)[number];

/** The result of reading one SQL string, which may hold several statements. */
export type Classification =
  | { ok: true; statements: StatementFacts[]; fingerprint: string }
  | {
      ok: false;
      /** A full sentence: PostgreSQL's syntax error, or why the statement was not read. */
      error: string;
      /** 1-based character position of the syntax error, when known. */
      position?: number;
      /** Set when the text was not read at all; absent for a syntax error. */
      unjudged?: UnjudgedReason;
    };
