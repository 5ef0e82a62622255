/**
 * A snapshot of everything an adversarial agent could change in a database
 * (and in its cluster), so that security tests judge "untouched" by state,
 * not by the text of an error. Two snapshots compare with `diffFingerprints`.
 *
 * Connect as a superuser: the snapshot reads pg_authid, pg_largeobject and the
 * server's configuration files. It runs in one REPEATABLE READ READ ONLY
 * transaction and changes nothing itself.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import pg from 'pg';
import { UNIQUE_NAME_PATTERN } from './postgres-servers.js';

export const FINGERPRINT_SECTIONS = [
  'database',
  'tables',
  'objects',
  'columns',
  'sequences',
  'roles',
  'memberships',
  'settings',
  'large objects',
  'locks',
  'prepared transactions',
  'replication slots',
  'comments',
  'files',
] as const;
export type FingerprintSection = (typeof FINGERPRINT_SECTIONS)[number];

/** One thing's properties, each as text. */
export type FingerprintEntry = Record<string, string>;

export interface DbFingerprint {
  database: string;
  /** Per section, entries keyed by a readable name ("public.companies", "role agent_ro"). */
  sections: Record<FingerprintSection, Record<string, FingerprintEntry>>;
}

export interface FingerprintOptions {
  /** A directory the server can write to (COPY … TO, lo_export); its files are part of the snapshot. */
  scratchDir?: string;
  /**
   * Roles and databases are cluster-wide, and test files running in parallel
   * create and drop their own. Names this returns true for are left out.
   * Default: names made by `uniqueName()` (airlock_t_ + 12 hex digits), except
   * the fingerprinted database's own name and names that begin with it.
   */
  ignoreName?: (name: string) => boolean;
}

/**
 * Catalog columns that change without anyone changing the object (VACUUM,
 * ANALYZE, freezing), or that lag behind the truth until a VACUUM: left out.
 * @see https://www.postgresql.org/docs/current/catalog-pg-class.html
 */
const VOLATILE_COLUMNS: Record<string, readonly string[]> = {
  pg_class: [
    'relpages',
    'reltuples',
    'relallvisible',
    'relallfrozen',
    'relfrozenxid',
    'relminmxid',
    'relhasindex',
    'relhastriggers',
    'relhasrules',
    'relhassubclass',
  ],
  pg_database: ['datfrozenxid', 'datminmxid'],
};

/** Catalogs with their own section, or whose rows are cluster-wide and churn while tests run in parallel. */
const CATALOGS_ELSEWHERE = ['pg_authid', 'pg_auth_members', 'pg_database', 'pg_largeobject_metadata'];

/** Objects made after initdb have oids from here on (FirstNormalObjectId in PostgreSQL's transam.h). */
const FIRST_NORMAL_OBJECT_ID = 16384;

/** Values longer than this are kept as an md5 (view and function bodies, expression trees). */
const LONG_VALUE = 120;

/** Fields naming a role by oid, shown by name instead. */
const ROLE_FIELD = /(owner|^datdba|^defaclrole|^umuser|^grantor)$/;

const TEMP_SCHEMA = /(^|[\s.("])pg_(toast_)?temp_\d+(\.|$)/;

export async function dbFingerprint(url: string, options: FingerprintOptions = {}): Promise<DbFingerprint> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // Row text depends on these; fix them so that two snapshots compare.
    await client.query("SET LOCAL TimeZone = 'UTC'");
    await client.query("SET LOCAL DateStyle = 'ISO, YMD'");
    await client.query("SET LOCAL IntervalStyle = 'postgres'");
    await client.query('SET LOCAL extra_float_digits = 1');
    await client.query("SET LOCAL bytea_output = 'hex'");
    const database = await one<{ db: string }>(client, 'SELECT current_database() AS db').then((r) => r.db);
    const ignoreName =
      options.ignoreName ??
      ((name: string) => UNIQUE_NAME_PATTERN.test(name) && name !== database && !name.startsWith(`${database}_`));
    const roleNames = await roleNamesByOid(client);
    const context: Context = { client, database, ignoreName, roleNames };
    const sections: DbFingerprint['sections'] = {
      database: await databaseSection(context),
      tables: await tablesSection(context),
      objects: await objectsSection(context),
      columns: await columnsSection(context),
      sequences: await sequencesSection(context),
      roles: await rolesSection(context),
      memberships: await membershipsSection(context),
      settings: await settingsSection(context),
      'large objects': await largeObjectsSection(context),
      locks: await locksSection(context),
      'prepared transactions': await preparedSection(context),
      'replication slots': await slotsSection(context),
      comments: await commentsSection(context),
      files: options.scratchDir === undefined ? {} : await filesSection(options.scratchDir),
    };
    await client.query('COMMIT');
    return { database, sections };
  } finally {
    await client.end();
  }
}

/** What changed from `before` to `after`, one sentence-like line per difference; empty when nothing did. */
export function diffFingerprints(before: DbFingerprint, after: DbFingerprint): string[] {
  const lines: string[] = [];
  for (const section of FINGERPRINT_SECTIONS) {
    const a = before.sections[section];
    const b = after.sections[section];
    for (const key of Object.keys(a).sort()) {
      const old = a[key];
      const now = b[key];
      if (old === undefined) continue;
      if (now === undefined) {
        lines.push(`${section}: ${key} was removed (it had ${summarize(old)}).`);
        continue;
      }
      const changes: string[] = [];
      for (const field of [...new Set([...Object.keys(old), ...Object.keys(now)])].sort()) {
        if (old[field] !== now[field]) changes.push(`${field} ${old[field] ?? '(none)'} → ${now[field] ?? '(none)'}`);
      }
      if (changes.length > 0) lines.push(`${section}: ${key} changed: ${changes.join('; ')}.`);
    }
    for (const key of Object.keys(b).sort()) {
      const now = b[key];
      if (a[key] === undefined && now !== undefined) lines.push(`${section}: ${key} was added (${summarize(now)}).`);
    }
  }
  return lines;
}

interface Context {
  client: pg.Client;
  database: string;
  ignoreName: (name: string) => boolean;
  roleNames: Map<string, string>;
}

type Section = Record<string, FingerprintEntry>;

function summarize(entry: FingerprintEntry): string {
  const text = Object.entries(entry)
    .map(([field, value]) => `${field} ${value}`)
    .join(', ');
  return text.length > 300 ? `${text.slice(0, 300)}…` : text || 'no properties';
}

async function one<T extends pg.QueryResultRow>(client: pg.Client, sql: string): Promise<T> {
  const result = await client.query<T>(sql);
  const row = result.rows[0];
  if (row === undefined) throw new Error(`The fingerprint query returned no row: ${sql}`);
  return row;
}

function md5(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** A JSON object's fields as text; long ones as their md5; role oids as role names. */
function fields(json: Record<string, unknown>, context: Context, drop: readonly string[] = []): FingerprintEntry {
  const entry: FingerprintEntry = {};
  for (const [field, value] of Object.entries(json)) {
    if (drop.includes(field)) continue;
    let text = typeof value === 'string' ? value : JSON.stringify(value);
    if (ROLE_FIELD.test(field) && (typeof value === 'number' || typeof value === 'string')) {
      text = context.roleNames.get(String(value)) ?? `role oid ${String(value)}`;
    }
    entry[field] = text.length > LONG_VALUE ? `md5:${md5(text)}` : text;
  }
  return entry;
}

async function roleNamesByOid(client: pg.Client): Promise<Map<string, string>> {
  const result = await client.query<{ oid: string; rolname: string }>('SELECT oid::text, rolname FROM pg_authid');
  return new Map(result.rows.map((r) => [r.oid, r.rolname]));
}

/** This database's own catalog row, and which other databases exist. */
async function databaseSection(context: Context): Promise<Section> {
  const section: Section = {};
  const result = await context.client.query<{ datname: string; row: Record<string, unknown> }>(
    'SELECT datname, to_jsonb(d) AS row FROM pg_database d',
  );
  for (const { datname, row } of result.rows) {
    if (datname === context.database) {
      section[`database ${datname}`] = fields(row, context, VOLATILE_COLUMNS['pg_database']);
    } else if (!context.ignoreName(datname)) {
      section[`other database ${datname}`] = { exists: 'yes' };
    }
  }
  return section;
}

/** Every user table's and materialized view's row count and content hash. */
async function tablesSection(context: Context): Promise<Section> {
  const tables = await context.client.query<{ name: string; populated: boolean }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relispopulated AS populated
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast_)?temp_'
     ORDER BY 1`,
  );
  const section: Section = {};
  const readable = tables.rows.filter((t) => t.populated);
  for (const t of tables.rows) if (!t.populated) section[t.name] = { populated: 'no' };
  if (readable.length === 0) return section;
  // One statement for all tables: a UNION of per-table aggregates, ONLY so that
  // an inheritance parent counts its own rows.
  const sql = readable
    .map(
      (t, i) =>
        `SELECT ${i} AS i, count(*)::text AS rows, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS hash FROM ONLY ${t.name} t`,
    )
    .join(' UNION ALL ');
  const result = await context.client.query<{ i: number; rows: string; hash: string }>(sql);
  for (const row of result.rows) {
    const table = readable[row.i];
    if (table !== undefined) section[table.name] = { rows: row.rows, content: row.hash };
  }
  return section;
}

/**
 * Every row of every catalog whose rows are objects (pg_class, pg_proc,
 * pg_type, pg_trigger, pg_policy, pg_event_trigger, pg_extension, pg_rewrite,
 * pg_default_acl, …): built-in ones too, so that a GRANT on a built-in
 * function or the public schema shows. Named by pg_identify_object.
 * @see https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-INFO-OBJECT
 */
async function objectsSection(context: Context): Promise<Section> {
  const catalogs = await context.client.query<{ relname: string; columns: string[] }>(
    `SELECT c.relname,
            array(SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND (a.attnum > 0 OR a.attname = 'oid') AND NOT a.attisdropped
                  ORDER BY a.attnum) AS columns
     FROM pg_class c
     WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
       AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'oid')
       AND c.relname <> ALL ($1)
     ORDER BY 1`,
    [CATALOGS_ELSEWHERE],
  );
  const parts = catalogs.rows.map(({ relname, columns }) => {
    // pg_enum rows are not objects of their own, and pg_identify_object refuses them.
    const identity =
      relname === 'pg_enum'
        ? `SELECT 'enum label' AS type, format('%I.%I.%I', n.nspname, ty.typname, t.enumlabel) AS identity
           FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace WHERE ty.oid = t.enumtypid`
        : `SELECT i.type, i.identity FROM pg_identify_object('pg_catalog.${relname}'::regclass, t.oid, 0) i`;
    const exposed = columns.filter((c) => /(owner|acl)$/.test(c));
    const hashed = columns.filter((c) => !exposed.includes(c) && !(VOLATILE_COLUMNS[relname] ?? []).includes(c));
    // Built-in rows (thousands) travel as their owner, ACL and a hash of the rest:
    // a GRANT on one reads plainly, any other change still shows. (Row text is
    // several times cheaper to make than jsonb.)
    const builtIn = `jsonb_build_object(${exposed.map((c) => `'${c}', t.${c}, `).join('')}
                       'definition', 'md5:' || md5(ROW(${hashed.map((c) => `t.${c}`).join(', ')})::text))`;
    return `SELECT '${relname}' AS catalog, x.type, x.identity, t.oid >= ${FIRST_NORMAL_OBJECT_ID} AS made,
                   CASE WHEN t.oid >= ${FIRST_NORMAL_OBJECT_ID} THEN to_jsonb(t) ELSE ${builtIn} END AS row
            FROM pg_catalog.${relname} t CROSS JOIN LATERAL (${identity}) x`;
  });
  // Long values of objects made after initdb (view trees, function bodies) are hashed by the server.
  const result = await context.client.query<{ catalog: string; type: string; identity: string; row: Record<string, unknown> }>(
    `SELECT catalog, type, identity,
            CASE WHEN NOT made THEN row
                 ELSE (SELECT jsonb_object_agg(key, CASE WHEN length(value::text) > ${LONG_VALUE}
                                                    THEN to_jsonb('md5:' || md5(value::text)) ELSE value END)
                       FROM jsonb_each(row)) END AS row
     FROM (${parts.join(' UNION ALL ')}) objects`,
  );
  const section: Section = {};
  for (const { catalog, type, identity, row } of result.rows) {
    if (TEMP_SCHEMA.test(identity) || (type === 'schema' && /^pg_(toast_)?temp_\d+$/.test(identity))) continue;
    section[`${type} ${identity}`] = fields(row, context, VOLATILE_COLUMNS[catalog]);
  }
  return section;
}

/** Columns of user relations (pg_attribute has no oid of its own). */
async function columnsSection(context: Context): Promise<Section> {
  const result = await context.client.query<{ name: string; row: Record<string, unknown> }>(
    `SELECT format('%s.%I', a.attrelid::regclass, a.attname) AS name, to_jsonb(a) - 'attrelid' AS row
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE a.attnum > 0 AND c.oid >= ${FIRST_NORMAL_OBJECT_ID} AND n.nspname !~ '^pg_(toast_)?temp_'`,
  );
  const section: Section = {};
  for (const { name, row } of result.rows) section[name] = fields(row, context);
  return section;
}

/** Each sequence's position and parameters. */
async function sequencesSection(context: Context): Promise<Section> {
  const sequences = await context.client.query<{ name: string; params: Record<string, unknown> }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name, to_jsonb(s) - 'seqrelid' AS params
     FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relpersistence <> 't' ORDER BY 1`,
  );
  const section: Section = {};
  if (sequences.rows.length === 0) return section;
  const positions = await context.client.query<{ i: number; last_value: string; is_called: boolean }>(
    sequences.rows
      .map((s, i) => `SELECT ${i} AS i, last_value::text, is_called FROM ${s.name}`)
      .join(' UNION ALL '),
  );
  for (const p of positions.rows) {
    const s = sequences.rows[p.i];
    if (s === undefined) continue;
    section[s.name] = { ...fields(s.params, context), last_value: p.last_value, is_called: String(p.is_called) };
  }
  return section;
}

/** Roles and their attributes (the password as a hash of its hash). */
async function rolesSection(context: Context): Promise<Section> {
  const result = await context.client.query<{ rolname: string; row: Record<string, unknown>; password: string | null }>(
    `SELECT rolname, to_jsonb(a) - 'rolpassword' AS row, md5(rolpassword) AS password FROM pg_authid a`,
  );
  const section: Section = {};
  for (const { rolname, row, password } of result.rows) {
    if (context.ignoreName(rolname)) continue;
    section[`role ${rolname}`] = { ...fields(row, context), password: password ?? 'none' };
  }
  return section;
}

async function membershipsSection(context: Context): Promise<Section> {
  const result = await context.client.query<{ role: string; member: string; grantor: string; row: Record<string, unknown> }>(
    `SELECT r.rolname AS role, m.rolname AS member, coalesce(g.rolname, m_.grantor::text) AS grantor,
            to_jsonb(m_) - 'oid' - 'roleid' - 'member' - 'grantor' AS row
     FROM pg_auth_members m_
     JOIN pg_authid r ON r.oid = m_.roleid JOIN pg_authid m ON m.oid = m_.member
     LEFT JOIN pg_authid g ON g.oid = m_.grantor`,
  );
  const section: Section = {};
  for (const { role, member, grantor, row } of result.rows) {
    if (context.ignoreName(role) || context.ignoreName(member)) continue;
    section[`${member} is a member of ${role} (granted by ${grantor})`] = fields(row, context);
  }
  return section;
}

/**
 * Per-database and per-role settings, the server's non-default settings (an
 * ALTER SYSTEM after a reload), and the configuration files as the server
 * would read them now (an ALTER SYSTEM before one).
 */
async function settingsSection(context: Context): Promise<Section> {
  const { client } = context;
  const section: Section = {};
  const dbRole = await client.query<{ db: string | null; role: string | null; config: string[] }>(
    `SELECT d.datname AS db, r.rolname AS role, s.setconfig AS config
     FROM pg_db_role_setting s
     LEFT JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_authid r ON r.oid = s.setrole
     WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))`,
  );
  for (const { db, role, config } of dbRole.rows) {
    if (role !== null && context.ignoreName(role)) continue;
    section[`ALTER ${role === null ? 'DATABASE' : `ROLE ${role}`}${db === null ? '' : ` IN DATABASE ${db}`} SET`] = {
      config: config.join(', '),
    };
  }
  // 'session' and 'client' are this snapshot's own connection.
  const settings = await client.query<{ name: string; setting: string; source: string; pending_restart: boolean }>(
    `SELECT name, setting, source, pending_restart FROM pg_settings
     WHERE source NOT IN ('default', 'session', 'client')`,
  );
  for (const s of settings.rows) {
    section[`setting ${s.name}`] = { value: s.setting, source: s.source, pending_restart: String(s.pending_restart) };
  }
  const files = await client.query<{ sourcefile: string | null; name: string | null; setting: string | null; applied: boolean; error: string | null }>(
    'SELECT sourcefile, name, setting, applied, error FROM pg_file_settings',
  );
  const seen = new Map<string, number>();
  for (const f of files.rows) {
    const base = `file setting ${f.name ?? '(unreadable)'} in ${f.sourcefile ?? '(unknown file)'}`;
    const count = (seen.get(base) ?? 0) + 1;
    seen.set(base, count);
    section[count === 1 ? base : `${base} #${count}`] = {
      value: f.setting ?? 'null',
      applied: String(f.applied),
      error: f.error ?? 'none',
    };
  }
  const hba = await client.query<{ row: Record<string, unknown> }>(
    `SELECT to_jsonb(h) - 'line_number' - 'rule_number' AS row FROM pg_hba_file_rules h`,
  );
  hba.rows.forEach(({ row }, i) => {
    section[`pg_hba.conf rule ${i + 1}`] = fields(row, context);
  });
  return section;
}

async function largeObjectsSection(context: Context): Promise<Section> {
  const result = await context.client.query<{ oid: string; owner: string; acl: string | null; data: string }>(
    `SELECT m.oid::text, m.lomowner::text AS owner, m.lomacl::text AS acl,
            md5(coalesce((SELECT string_agg(l.data, ''::bytea ORDER BY l.pageno) FROM pg_largeobject l WHERE l.loid = m.oid), ''::bytea)) AS data
     FROM pg_largeobject_metadata m`,
  );
  const section: Section = {};
  for (const lo of result.rows) {
    section[`large object ${lo.oid}`] = {
      owner: context.roleNames.get(lo.owner) ?? lo.owner,
      acl: lo.acl ?? 'default',
      content: lo.data,
    };
  }
  return section;
}

/**
 * Locks held (or awaited) in this database by other client sessions, and any
 * advisory lock, prepared transactions' included. Background workers
 * (autovacuum) are left out: they come and go on their own.
 * @see https://www.postgresql.org/docs/current/view-pg-locks.html
 */
async function locksSection(context: Context): Promise<Section> {
  const result = await context.client.query<{ lock: string; holder: string; state: string; application: string }>(
    `SELECT concat_ws(' ', l.locktype,
              CASE WHEN l.relation IS NOT NULL THEN 'on ' || l.relation::regclass::text END,
              CASE WHEN l.locktype = 'advisory' THEN format('key %s/%s/%s', l.classid, l.objid, l.objsubid) END,
              CASE WHEN l.locktype = 'transactionid' THEN 'of a transaction' END,
              l.mode, CASE WHEN NOT l.granted THEN '(waiting)' END) AS lock,
            CASE WHEN l.pid IS NOT NULL THEN 'pid ' || l.pid
                 ELSE 'prepared transaction ' || coalesce(
                   -- A prepared transaction holds the lock on its own xid under the same virtual transaction id.
                   (SELECT p.gid FROM pg_prepared_xacts p JOIN pg_locks x
                      ON x.locktype = 'transactionid' AND x.transactionid = p.transaction AND x.pid IS NULL
                    WHERE x.virtualtransaction = l.virtualtransaction), l.virtualtransaction)
            END AS holder,
            coalesce(a.state, 'prepared') AS state, coalesce(a.application_name, '') AS application
     FROM pg_locks l
     LEFT JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.pid IS DISTINCT FROM pg_backend_pid()
       AND ((a.datname = current_database() AND a.backend_type = 'client backend')
            OR (l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
            OR (l.pid IS NULL AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())))`,
  );
  const section: Section = {};
  for (const l of result.rows) {
    section[`${l.lock} held by ${l.holder}`] = {
      state: l.state,
      application: l.application,
    };
  }
  return section;
}

async function preparedSection(context: Context): Promise<Section> {
  const result = await context.client.query<{ gid: string; owner: string; prepared: string }>(
    `SELECT gid, owner, prepared::text FROM pg_prepared_xacts WHERE database = current_database()`,
  );
  const section: Section = {};
  for (const p of result.rows) section[`prepared transaction ${p.gid}`] = { owner: p.owner, prepared: p.prepared };
  return section;
}

async function slotsSection(context: Context): Promise<Section> {
  const result = await context.client.query<{ slot_name: string; slot_type: string; plugin: string | null; database: string | null; temporary: boolean }>(
    `SELECT slot_name, slot_type, plugin, database, temporary FROM pg_replication_slots
     WHERE database IS NULL OR database = current_database()`,
  );
  const section: Section = {};
  for (const s of result.rows) {
    section[`replication slot ${s.slot_name}`] = {
      type: s.slot_type,
      plugin: s.plugin ?? 'none',
      database: s.database ?? 'none',
      temporary: String(s.temporary),
    };
  }
  return section;
}

/** COMMENT ON anything in this database, and on roles, this database and tablespaces. */
async function commentsSection(context: Context): Promise<Section> {
  const local = await context.client.query<{ object: string; description: string }>(
    // The thousands of comments initdb wrote travel as one hash.
    `SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid) AS object, d.description
     FROM pg_description d WHERE d.objoid >= ${FIRST_NORMAL_OBJECT_ID}
     UNION ALL
     SELECT 'built-in objects', count(*) || ' comments, md5 ' || md5(string_agg(d::text, ',' ORDER BY d::text))
     FROM pg_description d WHERE d.objoid < ${FIRST_NORMAL_OBJECT_ID}`,
  );
  const shared = await context.client.query<{ object: string; name: string; description: string }>(
    `SELECT pg_describe_object(d.classoid, d.objoid, 0) AS object,
            coalesce(r.rolname, db.datname, t.spcname) AS name, d.description
     FROM pg_shdescription d
     LEFT JOIN pg_authid r ON d.classoid = 'pg_authid'::regclass AND r.oid = d.objoid
     LEFT JOIN pg_database db ON d.classoid = 'pg_database'::regclass AND db.oid = d.objoid
     LEFT JOIN pg_tablespace t ON d.classoid = 'pg_tablespace'::regclass AND t.oid = d.objoid`,
  );
  const section: Section = {};
  for (const c of local.rows) section[`comment on ${c.object}`] = { text: c.description };
  for (const c of shared.rows) {
    if (c.name !== null && c.name !== context.database && context.ignoreName(c.name)) continue;
    section[`comment on ${c.object}`] = { text: c.description };
  }
  return section;
}

/** Files under the scratch directory: size and content hash. */
async function filesSection(root: string): Promise<Section> {
  const section: Section = {};
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const name = relative(root, path);
      if (entry.isDirectory()) {
        section[`${name}/`] = { type: 'directory' };
        await walk(path);
      } else if (entry.isFile()) {
        const info = await stat(path);
        section[name] = { type: 'file', size: String(info.size), content: md5(await readFile(path)) };
      } else {
        section[name] = { type: 'other' };
      }
    }
  };
  try {
    await stat(root);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return { '(the scratch directory)': { exists: 'no' } };
  }
  await walk(root);
  return section;
}
