/**
 * PostgreSQL built-in (and common contrib) functions that do more than compute
 * a value: they write, take locks, signal other backends, touch server files,
 * change settings, run SQL given as text, or reach outside the database.
 *
 * A SELECT that calls one of these is not a plain read, whatever it looks like.
 * Matching is on the last component of the name only, so `nextval`,
 * `pg_catalog.nextval`, `"NEXTVAL"` (lower-cased by the classifier) and
 * `myschema.nextval` are all caught: a same-named function in another schema
 * is treated as suspect too, which is the conservative side to err on.
 *
 * Sources: the PostgreSQL 15–18 "System Administration Functions" and
 * "Sequence Manipulation Functions" chapters
 * (https://www.postgresql.org/docs/current/functions-admin.html,
 * https://www.postgresql.org/docs/current/functions-sequence.html,
 * https://www.postgresql.org/docs/current/lo-funcs.html,
 * https://www.postgresql.org/docs/current/functions-xml.html#FUNCTIONS-XML-MAPPING).
 */

/** Exact function names, grouped by why they are not plain reads. */
export const SIDE_EFFECT_FUNCTION_GROUPS = {
  /**
   * Sequences advance outside any transaction and never roll back.
   * `currval` and `lastval` only read this session's state, so they are left out.
   */
  sequences: ['nextval', 'setval'],
  /** Settings: `set_config(..., false)` changes the session, e.g. `transaction_read_only`. */
  settings: ['set_config'],
  /** Notifications reach other sessions. */
  notifications: ['pg_notify'],
  /** Large objects: create, write, unlink, and read/write server files (`lo_import`, `lo_export`). */
  largeObjects: ['loread', 'lowrite'],
  /** Server files: read the server's file system, bypassing table privileges and policy. */
  serverFiles: [
    'pg_read_file',
    'pg_read_binary_file',
    'pg_stat_file',
    'pg_logdir_ls',
    'pg_current_logfile',
    'pg_show_all_file_settings',
    'pg_wal_summary_contents',
    // Write files: a snapshot file in pg_snapshots, autoprewarm's block list.
    'pg_export_snapshot',
    'autoprewarm_dump_now',
    'autoprewarm_start_worker',
  ],
  /** Signals and server control. */
  signalling: [
    'pg_terminate_backend',
    'pg_cancel_backend',
    'pg_reload_conf',
    'pg_rotate_logfile',
    'pg_rotate_logfile_old',
    'pg_log_backend_memory_contexts',
    'pg_promote',
    'pg_log_standby_snapshot',
  ],
  /** Functions that run SQL given to them as text (tablefunc's crosstab and connectby, xml2's xpath_table too). */
  dynamicSql: ['ts_stat', 'ts_rewrite', 'xpath_table'],
  /** Replication, WAL and backup control. */
  replication: [
    'pg_drop_replication_slot',
    'pg_switch_wal',
    'pg_switch_xlog',
    'pg_backup_start',
    'pg_backup_stop',
    'pg_start_backup',
    'pg_stop_backup',
    'pg_sync_replication_slots',
  ],
  /** Assign a transaction id, which a read-only transaction never does. */
  transactionIds: ['txid_current', 'pg_current_xact_id'],
  /** Catalog and index changes made by a function call. */
  catalogChanges: [
    'pg_import_system_collations',
    'pg_nextoid',
    'pg_extension_config_dump',
    'gin_clean_pending_list',
    'pg_truncate_visibility_map',
    'heap_force_kill',
    'heap_force_freeze',
    'pg_stat_statements_reset',
    'pg_prewarm',
  ],
} as const;

/** Name prefixes of families of functions with side effects. */
export const SIDE_EFFECT_FUNCTION_PREFIXES = [
  // Advisory locks: pg_advisory_lock, pg_advisory_xact_lock_shared, pg_advisory_unlock_all, ...
  'pg_advisory_',
  'pg_try_advisory_',
  // Large objects: lo_creat, lo_create, lo_open, lo_put, lo_import, lo_export, lo_unlink, lo_from_bytea, ...
  'lo_',
  // Server directory listings: pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, ...
  'pg_ls_',
  // adminpack: pg_file_write, pg_file_rename, pg_file_unlink, pg_file_sync.
  'pg_file_',
  // Run a query given as text (or fetch a cursor) and return it as XML.
  'query_to_xml',
  'cursor_to_xml',
  'table_to_xml',
  'schema_to_xml',
  'database_to_xml',
  // dblink runs arbitrary SQL on another (or this) server.
  'dblink',
  // pg_background runs SQL in a background worker; tablefunc runs the query text it is given.
  'pg_background',
  'crosstab',
  'connectby',
  // Replication slots and origins, logical decoding, restore points.
  'pg_create_',
  'pg_copy_',
  'pg_replication_',
  'pg_logical_',
  'pg_wal_replay_',
  'pg_xlog_replay_',
  // pg_walinspect reads WAL files from the server's disk (pg_get_wal_replay_pause_state is harmless and not matched).
  'pg_get_wal_record',
  'pg_get_wal_stats',
  'pg_get_wal_block_info',
  // Statistics: reset counters; PostgreSQL 18's pg_restore_*_stats / pg_clear_*_stats write pg_statistic.
  'pg_stat_reset',
  'pg_restore_',
  'pg_clear_',
  'pg_set_relation_stats',
  'pg_set_attribute_stats',
  // BRIN summaries change the index.
  'brin_summarize',
  'brin_desummarize',
  // pg_buffercache_evict, _evict_relation, _evict_all.
  'pg_buffercache_evict',
  // Helpers for pg_upgrade that write catalogs directly.
  'binary_upgrade_',
] as const;

const EXACT_NAMES: ReadonlySet<string> = new Set(Object.values(SIDE_EFFECT_FUNCTION_GROUPS).flat());

/**
 * Whether a function, named as the classifier records it (lower-case, qualified as
 * written: 'pg_catalog.set_config'), is known to have side effects.
 */
export function isSideEffectFunction(qualifiedLowerName: string): boolean {
  // The last component decides: a schema (or a quoted name with a dot in it) never hides a match.
  const lower = qualifiedLowerName.toLowerCase();
  const name = lower.slice(lower.lastIndexOf('.') + 1);
  if (EXACT_NAMES.has(name)) return true;
  return SIDE_EFFECT_FUNCTION_PREFIXES.some((prefix) => name.startsWith(prefix));
}
