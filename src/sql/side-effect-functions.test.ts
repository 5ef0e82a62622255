import { describe, expect, it } from 'vitest';
import { isSideEffectFunction, SIDE_EFFECT_FUNCTION_GROUPS, SIDE_EFFECT_FUNCTION_PREFIXES } from './side-effect-functions.js';

const SIDE_EFFECTS: readonly string[] = [
  'nextval',
  'setval',
  'pg_catalog.nextval',
  'myschema.nextval',
  'NEXTVAL',
  'set_config',
  'pg_catalog.set_config',
  'pg_advisory_lock',
  'pg_advisory_xact_lock_shared',
  'pg_advisory_unlock_all',
  'pg_try_advisory_lock',
  'lo_import',
  'lo_export',
  'lo_unlink',
  'lo_from_bytea',
  'lo_put',
  'loread',
  'lowrite',
  'pg_read_file',
  'pg_read_binary_file',
  'pg_stat_file',
  'pg_ls_dir',
  'pg_ls_waldir',
  'pg_file_write',
  'pg_terminate_backend',
  'pg_cancel_backend',
  'pg_reload_conf',
  'pg_rotate_logfile',
  'pg_log_backend_memory_contexts',
  'pg_promote',
  'pg_notify',
  'query_to_xml',
  'query_to_xml_and_xmlschema',
  'query_to_xmlschema',
  'cursor_to_xml',
  'table_to_xmlschema',
  'schema_to_xml',
  'database_to_xml_and_xmlschema',
  'ts_stat',
  'ts_rewrite',
  'dblink',
  'dblink_exec',
  'crosstab',
  'pg_create_physical_replication_slot',
  'pg_create_logical_replication_slot',
  'pg_create_restore_point',
  'pg_drop_replication_slot',
  'pg_replication_slot_advance',
  'pg_replication_origin_create',
  'pg_logical_slot_get_changes',
  'pg_logical_emit_message',
  'pg_switch_wal',
  'pg_backup_start',
  'pg_backup_stop',
  'pg_start_backup',
  'pg_wal_replay_pause',
  'pg_wal_replay_resume',
  'txid_current',
  'pg_current_xact_id',
  'pg_stat_reset',
  'pg_stat_reset_shared',
  'pg_stat_reset_single_table_counters',
  'pg_stat_statements_reset',
  'pg_restore_relation_stats',
  'pg_clear_attribute_stats',
  'pg_import_system_collations',
  'binary_upgrade_set_next_pg_type_oid',
  'brin_summarize_new_values',
  'gin_clean_pending_list',
  'pg_export_snapshot',
  // A quoted name with a dot in it is judged by its last part: conservative.
  'pg_catalog.set_config.nextval',
];

const HARMLESS: readonly string[] = [
  'currval',
  'lastval',
  'pg_sleep',
  'now',
  'count',
  'lower',
  'lo',
  'log',
  'lower_inc',
  'pg_get_userbyid',
  'pg_table_is_visible',
  'pg_get_wal_replay_pause_state',
  'txid_current_if_assigned',
  'pg_current_xact_id_if_assigned',
  'current_setting',
  'pg_stat_get_numscans',
  'generate_series',
  'json_agg',
  'set_configuration',
  'my_nextval',
  'nextval.x',
];

describe('isSideEffectFunction', () => {
  it.each(SIDE_EFFECTS)('%s has side effects', (name) => {
    expect(isSideEffectFunction(name)).toBe(true);
  });

  it.each(HARMLESS)('%s is harmless', (name) => {
    expect(isSideEffectFunction(name)).toBe(false);
  });

  it('lists each exact name once, in lower case', () => {
    const exact = Object.values(SIDE_EFFECT_FUNCTION_GROUPS).flat();
    expect(new Set(exact).size).toBe(exact.length);
    for (const name of [...exact, ...SIDE_EFFECT_FUNCTION_PREFIXES]) expect(name).toBe(name.toLowerCase());
  });
});
