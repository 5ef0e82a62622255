/**
 * Cheap checks of what an adversarial agent might have changed, for use
 * after every single attack: `quickState` is a digest of rows (row versions
 * included), relations,
 * sequences, large objects, prepared transactions, slots, the read role and
 * a scratch directory (tens of milliseconds, where a full `dbFingerprint`
 * takes hundreds); `heldLocks` lists locks a role's sessions hold beyond
 * what a plain read takes.
 */
import { readdir, readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type pg from 'pg';

/** One line per thing looked at; two states compare with `toEqual`. */
export async function quickState(admin: pg.Client, options: { readRole: string; scratchDir?: string }): Promise<string[]> {
  const lines: string[] = [];
  const tables = await admin.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast_)?temp_'
       AND n.nspname <> 'pg_toast'
     ORDER BY 1`,
  );
  if (tables.rows.length > 0) {
    const digest = await admin.query<{ name: string; rows: string; content: string | null }>(
      tables.rows
        .map(
          ({ name }) =>
            // An order-free sum of row hashes (no sort: this runs after every attack). The
            // row's ctid and xmin are in it, so a write that left the values as they were shows too.
            `SELECT ${admin.escapeLiteral(name)} AS name, count(*)::text AS rows,
                    sum(hashtextextended(t::text || t.ctid::text || t.xmin::text, 0))::text AS content FROM ${name} t`,
        )
        .join(' UNION ALL '),
    );
    for (const r of digest.rows) lines.push(`table ${r.name}: ${r.rows} rows, hash sum ${r.content ?? 'none'}`);
  }
  const relations = await admin.query<{ line: string }>(
    `SELECT format('relation %s (%s) owner %s acl %s', c.oid::regclass, c.relkind, pg_get_userbyid(c.relowner), c.relacl) AS line
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1`,
  );
  lines.push(...relations.rows.map((r) => r.line));
  const sequences = await admin.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'S' AND c.relpersistence <> 't' ORDER BY 1`,
  );
  for (const { name } of sequences.rows) {
    const s = await admin.query<{ last_value: string; is_called: boolean }>(`SELECT last_value::text, is_called FROM ${name}`);
    lines.push(`sequence ${name}: ${s.rows[0]?.last_value} called ${s.rows[0]?.is_called}`);
  }
  const misc = await admin.query<{ line: string }>(
    `SELECT 'large objects: ' || count(*) AS line FROM pg_largeobject_metadata
     UNION ALL SELECT 'prepared transaction ' || gid FROM pg_prepared_xacts WHERE database = current_database()
     UNION ALL SELECT 'replication slot ' || slot_name FROM pg_replication_slots WHERE database IS NULL OR database = current_database()
     UNION ALL SELECT format('role %s: super %s, createrole %s, createdb %s, replication %s, bypassrls %s, member of %s',
                             r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
                             (SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                              WHERE m.member = r.oid))
               FROM pg_roles r WHERE r.rolname = $1
     UNION ALL SELECT format('role setting %s/%s: %s', coalesce(d.datname, '*'), coalesce(r.rolname, '*'), s.setconfig)
               FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
               WHERE d.datname = current_database() OR r.rolname = $1
     UNION ALL SELECT format('pending setting %s = %s', name, setting) FROM pg_file_settings WHERE NOT applied AND error IS NULL
     ORDER BY 1`,
    [options.readRole],
  );
  lines.push(...misc.rows.map((r) => r.line));
  if (options.scratchDir !== undefined) {
    for (const entry of (await readdir(options.scratchDir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const content = entry.isFile() ? createHash('md5').update(await readFile(join(options.scratchDir, entry.name))).digest('hex') : 'not a file';
      lines.push(`scratch file ${entry.name}: ${content}`);
    }
  }
  return lines;
}

/**
 * Locks held or awaited in the current database by sessions of `role`,
 * other than what any read takes (AccessShareLock on relations, its own
 * virtual transaction id): advisory locks, row or table locks, an assigned
 * transaction id.
 * @see https://www.postgresql.org/docs/current/view-pg-locks.html
 */
export async function heldLocks(admin: pg.Client, role: string): Promise<string[]> {
  const result = await admin.query<{ line: string }>(
    `SELECT concat_ws(' ', l.locktype, l.relation::regclass::text,
                      CASE WHEN l.locktype = 'advisory' THEN format('%s/%s', l.classid, l.objid) END,
                      l.mode, CASE WHEN NOT l.granted THEN '(waiting)' END, 'pid ' || l.pid) AS line
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE a.usename = $1 AND a.datname = current_database()
       AND NOT (l.locktype = 'relation' AND l.mode = 'AccessShareLock')
       AND NOT (l.locktype = 'virtualxid')
     ORDER BY 1`,
    [role],
  );
  return result.rows.map((r) => r.line);
}
