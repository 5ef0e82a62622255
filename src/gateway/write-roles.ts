/**
 * The write path's second wall: each agent that may write runs its writes as
 * a role of its own, which holds exactly the table privileges its rules could
 * allow and nothing else that writes. A classification mistake on the write
 * path then meets PostgreSQL's own refusal (42501), as it does on the read
 * path (read-roles.ts).
 *
 * What a write role holds:
 * - LOGIN, a derived password (read-role-password.ts, under its own label),
 *   none of ROLE_POWERS (no SUPERUSER, CREATEDB, CREATEROLE, REPLICATION,
 *   BYPASSRLS); member of pg_read_all_data only, for the reads inside a
 *   write transaction.
 * - On every table, view and foreign table: INSERT, UPDATE, DELETE, TRUNCATE
 *   each exactly when the agent's policy could decide GRANTING_DECISIONS for
 *   that kind on that relation. Every other privilege granted to it directly
 *   (on relations, columns, sequences, schemas) is revoked.
 * - USAGE on the sequences owned by `serial` columns of tables it may insert
 *   into (identity columns need none: PostgreSQL does not check the privilege
 *   of an identity column's sequence).
 * - CREATE on the schemas where its rules could allow `create`.
 * - ALTER and DROP need ownership, which Airlock never hands out: the role may
 *   alter or drop only what it owns (what it created itself, or what an
 *   operator gives it with ALTER TABLE … OWNER TO). PostgreSQL refuses the
 *   rest (42501 "must be owner"), whatever the rules say.
 * - Role settings: statement_timeout, lock_timeout and
 *   idle_in_transaction_session_timeout from the config's limits,
 *   search_path = public, default_transaction_read_only = off.
 *
 * https://www.postgresql.org/docs/current/ddl-priv.html
 */
import type pg from 'pg';
import type { AgentPolicy, PolicyKind, RuleDecision } from '../policy/rules.js';
import { createScramVerifier, formatScramVerifier } from '../protocol/auth/scram-verifier.js';
import { ensureLoginRole, ident, READ_ROLE_GRANTS } from './read-roles.js';
import { TRASH_SCHEMA } from '../executor/trash.js';
import type { RoleLimits } from './read-roles.js';

/** The only role a write role may be a member of (reads inside a write transaction). */
export const WRITE_ROLE_GRANTS = READ_ROLE_GRANTS;

/** Decisions that earn the privilege behind them: statements a human approved run on this role too. */
export const GRANTING_DECISIONS: readonly RuleDecision[] = ['allow', 'approve'];

/** Table privileges a write role may hold, each with the policy kind that needs it. */
export const WRITE_PRIVILEGES = [
  { privilege: 'INSERT', kind: 'insert' },
  { privilege: 'UPDATE', kind: 'update' },
  { privilege: 'DELETE', kind: 'delete' },
  { privilege: 'TRUNCATE', kind: 'truncate' },
] as const satisfies readonly { privilege: string; kind: PolicyKind }[];
export type WritePrivilege = (typeof WRITE_PRIVILEGES)[number]['privilege'];

/** Privileges that change data or schema, checked by doctor and after each repair (has_table_privilege's names). */
const TABLE_WRITE_POWERS = ['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] as const;

/** Relation kinds grants are decided for: tables, partitioned tables, views, foreign tables. */
const GRANTABLE_RELKINDS = ['r', 'p', 'v', 'f'];

/** Thrown when a write role cannot be made safe; the message says what a human must do. */
export class WriteRoleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WriteRoleError';
  }
}

export interface WriteRoleSettings extends RoleLimits {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
}

/** One privilege on one object, as GRANT and REVOKE name it. */
export interface ObjectPrivilege {
  /** 'TABLE', 'SEQUENCE', 'SCHEMA' or 'COLUMN'. */
  on: 'TABLE' | 'SEQUENCE' | 'SCHEMA' | 'COLUMN';
  /** Quoted, qualified name (for a column: the table's). */
  object: string;
  privilege: string;
  /** Quoted column name, for on = 'COLUMN'. */
  column?: string;
}

/** What a write role should hold and what it holds, in the current database. */
export interface WriteGrantPlan {
  grant: ObjectPrivilege[];
  revoke: ObjectPrivilege[];
}

function describe(p: ObjectPrivilege): string {
  return p.on === 'COLUMN' ? `${p.privilege} (${p.column}) ON ${p.object}` : `${p.privilege} ON ${p.on} ${p.object}`;
}

function key(p: ObjectPrivilege): string {
  return `${p.on}\0${p.object}\0${p.privilege}\0${p.column ?? ''}`;
}

/** The privileges `policy` earns on the current database: tables, sequences, schemas. */
export async function desiredWritePrivileges(service: pg.Client, policy: AgentPolicy): Promise<ObjectPrivilege[]> {
  const relations = await service.query<{ oid: number; nspname: string; relname: string; name: string; relkind: string }>(
    `SELECT c.oid, n.nspname, c.relname, c.relkind, format('%I.%I', n.nspname, c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = ANY($1) AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${TRASH_SCHEMA}') AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY 5`,
    [GRANTABLE_RELKINDS],
  );
  // A view runs with its owner's privileges on what it reads (unless
  // security_invoker): a grant on a view is a grant on its base relations.
  // So a view earns a privilege only when every relation under it does too.
  const edges = await service.query<{ view: number; rel: number; nspname: string; relname: string }>(
    `SELECT DISTINCT r.ev_class AS view, d.refobjid AS rel, n.nspname, c.relname
       FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
       JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE d.refobjid <> r.ev_class AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`,
  );
  const under = new Map<number, { oid: number; schema: string; name: string }[]>();
  for (const e of edges.rows) {
    const list = under.get(e.view) ?? [];
    list.push({ oid: e.rel, schema: e.nspname, name: e.relname });
    under.set(e.view, list);
  }
  const earns = (kind: PolicyKind, ref: { schema: string; name: string }): boolean => GRANTING_DECISIONS.includes(policy.decide(kind, ref).decision);
  const earnsThrough = (kind: PolicyKind, oid: number, ref: { schema: string; name: string }, seen: Set<number>): boolean => {
    if (!earns(kind, ref)) return false;
    if (seen.has(oid)) return true;
    seen.add(oid);
    return (under.get(oid) ?? []).every((base) => earnsThrough(kind, base.oid, base, seen));
  };
  const out: ObjectPrivilege[] = [];
  const insertable = new Set<number>();
  for (const r of relations.rows) {
    const ref = { schema: r.nspname, name: r.relname };
    for (const { privilege, kind } of WRITE_PRIVILEGES) {
      if (!earnsThrough(kind, r.oid, ref, new Set())) continue;
      out.push({ on: 'TABLE', object: r.name, privilege });
      if (privilege === 'INSERT') insertable.add(r.oid);
    }
  }
  if (insertable.size > 0) {
    // Sequences a serial column owns (deptype 'a'); an identity column's ('i') needs no privilege.
    const sequences = await service.query<{ name: string }>(
      `SELECT DISTINCT format('%I.%I', n.nspname, s.relname) AS name
         FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace n ON n.oid = s.relnamespace
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
          AND d.refobjid = ANY($1::oid[])
        ORDER BY 1`,
      [[...insertable]],
    );
    for (const s of sequences.rows) out.push({ on: 'SEQUENCE', object: s.name, privilege: 'USAGE' });
  }
  const schemas = await service.query<{ nspname: string; quoted: string }>(
    `SELECT nspname, quote_ident(nspname) AS quoted FROM pg_namespace
      WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%' ORDER BY 1`,
  );
  for (const s of schemas.rows) {
    if (s.nspname === TRASH_SCHEMA) continue;
    if (policy.couldDecideInSchema('create', s.nspname, GRANTING_DECISIONS)) out.push({ on: 'SCHEMA', object: s.quoted, privilege: 'CREATE' });
  }
  // A DROP TABLE the rules allow moves the table into the trash, as this role (executor/trash.ts): SET SCHEMA needs CREATE there.
  const trash = schemas.rows.find((s) => s.nspname === TRASH_SCHEMA);
  if (trash !== undefined && schemas.rows.some((s) => s.nspname !== TRASH_SCHEMA && policy.couldDecideInSchema('drop', s.nspname, GRANTING_DECISIONS))) {
    out.push({ on: 'SCHEMA', object: trash.quoted, privilege: 'CREATE' });
  }
  return out;
}

/**
 * Every privilege granted to `role` itself on this database's relations,
 * columns, sequences and schemas (an owner's implicit privileges included),
 * as GRANT would name it. PUBLIC's and memberships' are not here: see
 * `writeRoleExcess`.
 */
export async function heldWritePrivileges(service: pg.Client, role: string): Promise<ObjectPrivilege[]> {
  const held = await service.query<{ kind: string; object: string; privilege: string; col: string | null }>(
    `WITH me AS (SELECT oid FROM pg_roles WHERE rolname = $1)
     SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind,
            format('%I.%I', n.nspname, c.relname) AS object, a.privilege_type AS privilege, NULL AS col
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
            aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
      WHERE a.grantee = (SELECT oid FROM me) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     UNION ALL
     SELECT 'COLUMN', format('%I.%I', n.nspname, c.relname), a.privilege_type, quote_ident(att.attname)
       FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
            aclexplode(att.attacl) a
      WHERE a.grantee = (SELECT oid FROM me) AND att.attacl IS NOT NULL AND NOT att.attisdropped
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     UNION ALL
     SELECT 'SCHEMA', quote_ident(n.nspname), a.privilege_type, NULL
       FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
      WHERE a.grantee = (SELECT oid FROM me) AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     ORDER BY 1, 2, 3, 4`,
    [role],
  );
  return held.rows.map((r) =>
    r.kind === 'COLUMN'
      ? { on: 'COLUMN', object: r.object, privilege: r.privilege, column: r.col ?? '' }
      : { on: r.kind as ObjectPrivilege['on'], object: r.object, privilege: r.privilege },
  );
}

/** What to GRANT and REVOKE so that `role` holds exactly what `policy` earns. */
export async function planWriteGrants(service: pg.Client, role: string, policy: AgentPolicy): Promise<WriteGrantPlan> {
  const desired = await desiredWritePrivileges(service, policy);
  const held = await heldWritePrivileges(service, role);
  const heldKeys = new Set(held.map(key));
  const desiredKeys = new Set(desired.map(key));
  return { grant: desired.filter((p) => !heldKeys.has(key(p))), revoke: held.filter((p) => !desiredKeys.has(key(p))) };
}

function grantSql(p: ObjectPrivilege, role: string): string {
  return p.on === 'COLUMN'
    ? `GRANT ${p.privilege} (${p.column}) ON TABLE ${p.object} TO ${ident(role)}`
    : `GRANT ${p.privilege} ON ${p.on} ${p.object} TO ${ident(role)}`;
}

function revokeSql(p: ObjectPrivilege, role: string): string {
  return p.on === 'COLUMN'
    ? `REVOKE ${p.privilege} (${p.column}) ON TABLE ${p.object} FROM ${ident(role)}`
    : `REVOKE ${p.privilege} ON ${p.on} ${p.object} FROM ${ident(role)}`;
}

/** The advisory lock every change to write roles' grants in this database takes (GRANTs on one table race on its catalog row). */
const GRANTS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('airlock read role'), hashtext('airlock write grants'))";

/**
 * Brings `role`'s privileges in this database to exactly what `policy` earns,
 * in one transaction under the grants lock. A GRANT the service account may
 * not make (PostgreSQL only warns) and a REVOKE it may not make are not
 * fatal here: `writeRoleExcess`/`writeRoleShortfall` report what is left.
 */
export async function syncWriteGrants(service: pg.Client, role: string, policy: AgentPolicy, inTransaction = false): Promise<WriteGrantPlan> {
  if (!inTransaction) await service.query('BEGIN');
  try {
    await service.query(GRANTS_LOCK);
    const plan = await planWriteGrants(service, role, policy);
    for (const p of plan.revoke) await tolerating(service, revokeSql(p, role));
    for (const p of plan.grant) await tolerating(service, grantSql(p, role));
    if (!inTransaction) await service.query('COMMIT');
    return plan;
  } catch (err) {
    if (!inTransaction) await service.query('ROLLBACK');
    throw err;
  }
}

/**
 * Runs one GRANT or REVOKE in a savepoint. A refusal (42501: the service
 * account holds no grant option on the object) is left for the checks that
 * follow to report, with what a human must do; anything else is thrown.
 */
async function tolerating(service: pg.Client, sql: string): Promise<void> {
  await service.query('SAVEPOINT airlock_grant');
  try {
    await service.query(sql);
    await service.query('RELEASE SAVEPOINT airlock_grant');
  } catch (err) {
    await service.query('ROLLBACK TO SAVEPOINT airlock_grant');
    if ((err as { code?: string }).code !== '42501') throw err;
  }
}

/** A privilege beyond what the rules allow, and how the role comes to hold it. */
export interface ExcessPrivilege {
  /** Qualified relation name, or `schema <name>`. */
  object: string;
  privilege: string;
  /** PUBLIC holds it too. */
  viaPublic: boolean;
  /** The role owns the object (it created it, or an operator gave it): an owner may grant itself anything there. */
  owned: boolean;
}

/** Write-ish privileges `role` holds by any route (directly, as owner, through PUBLIC) beyond what `policy` earns. */
export async function writeRoleExcess(
  service: pg.Client,
  role: string,
  policy: AgentPolicy,
): Promise<ExcessPrivilege[]> {
  const desired = new Set((await desiredWritePrivileges(service, policy)).map(key));
  const rows = await service.query<{ object: string; privilege: string; via_public: boolean; seq: boolean; owned: boolean }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS object, p.privilege, c.relkind = 'S' AS seq,
            has_table_privilege('public', c.oid, p.privilege) AS via_public, pg_get_userbyid(c.relowner) = $1 AS owned
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
            unnest($2::text[]) AS p(privilege)
      WHERE c.relkind IN ('r', 'p', 'v', 'f')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
        AND has_table_privilege($1, c.oid, p.privilege)
     UNION ALL
     SELECT format('%I.%I', n.nspname, c.relname), p.privilege, true,
            has_sequence_privilege('public', c.oid, p.privilege), pg_get_userbyid(c.relowner) = $1
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, unnest(ARRAY['USAGE', 'UPDATE']) AS p(privilege)
      WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
        AND has_sequence_privilege($1, c.oid, p.privilege)
     ORDER BY 1, 2`,
    [role, TABLE_WRITE_POWERS],
  );
  const schemas = await service.query<{ object: string; via_public: boolean; owned: boolean }>(
    `SELECT quote_ident(nspname) AS object, has_schema_privilege('public', oid, 'CREATE') AS via_public,
            pg_get_userbyid(nspowner) = $1 AS owned FROM pg_namespace
      WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
        AND has_schema_privilege($1, oid, 'CREATE') ORDER BY 1`,
    [role],
  );
  const excess = rows.rows
    .filter((r) => !desired.has(key({ on: r.seq ? 'SEQUENCE' : 'TABLE', object: r.object, privilege: r.privilege })))
    .map((r) => ({ object: r.object, privilege: r.privilege, viaPublic: r.via_public, owned: r.owned }));
  for (const s of schemas.rows) {
    if (!desired.has(key({ on: 'SCHEMA', object: s.object, privilege: 'CREATE' }))) {
      excess.push({ object: `schema ${s.object}`, privilege: 'CREATE', viaPublic: s.via_public, owned: s.owned });
    }
  }
  return excess;
}

/** Privileges `policy` earns that `role` does not hold (the service account could not grant them). */
export async function writeRoleShortfall(service: pg.Client, role: string, policy: AgentPolicy): Promise<ObjectPrivilege[]> {
  const desired = await desiredWritePrivileges(service, policy);
  if (desired.length === 0) return [];
  // One round trip for the lot; CASE evaluates only the branch of each row's kind.
  const r = await service.query<{ i: number; ok: boolean }>(
    `SELECT t.i, CASE t.kind
              WHEN 'SCHEMA' THEN has_schema_privilege($1, (SELECT oid FROM pg_namespace WHERE quote_ident(nspname) = t.object), t.privilege)
              WHEN 'SEQUENCE' THEN has_sequence_privilege($1, t.object, t.privilege)
              ELSE has_table_privilege($1, t.object, t.privilege) END AS ok
       FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS t(kind, object, privilege, i)`,
    [role, desired.map((p) => p.on), desired.map((p) => p.object), desired.map((p) => p.privilege)],
  );
  const held = new Set(r.rows.filter((row) => row.ok).map((row) => Number(row.i) - 1));
  return desired.filter((_p, i) => !held.has(i));
}

/**
 * A digest of what write roles' grants depend on in this database: every
 * relation's and schema's identity, owner and ACL. The gateway re-syncs the
 * write roles when it changes (a table created, dropped, recreated under the
 * same name, or its grants changed behind Airlock's back).
 */
export async function writeGrantsFingerprint(service: pg.Client): Promise<string> {
  const r = await service.query<{ digest: string | null }>(
    `SELECT md5(string_agg(x, E'\\n' ORDER BY x)) AS digest FROM (
       SELECT concat_ws(' ', c.oid, c.relkind, c.relowner, c.relacl::text) AS x
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
       UNION ALL
       SELECT concat_ws(' ', 'n', n.oid, n.nspowner, n.nspacl::text) FROM pg_namespace n
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%') s`,
  );
  return r.rows[0]?.digest ?? '';
}

/** Memberships of `role` beyond WRITE_ROLE_GRANTS. */
async function extraMemberships(service: pg.Client, role: string): Promise<string[]> {
  const memberships = await service.query<{ rolname: string }>(
    `SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
      WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
    [role],
  );
  return memberships.rows.map((r) => r.rolname).filter((r) => !(WRITE_ROLE_GRANTS as readonly string[]).includes(r));
}

/**
 * Creates or repairs `role` for an agent whose policy may write: attributes,
 * password, membership, settings and exactly the privileges its rules could
 * allow. Throws WriteRoleError when what is left would let the role write
 * beyond its rules (a membership, or a privilege the service account could
 * not revoke); returns warnings for what only weakens the wall (PUBLIC's
 * grants) or makes allowed writes fail (privileges it could not grant).
 */
export async function prepareWriteRole(
  service: pg.Client,
  role: string,
  password: string,
  policy: AgentPolicy,
  settings: WriteRoleSettings,
): Promise<{ warnings: string[] }> {
  const me = await service.query<{ rolsuper: boolean; rolcreaterole: boolean }>(
    'SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user',
  );
  const self = me.rows[0];
  if (self === undefined || (!self.rolsuper && !self.rolcreaterole)) {
    throw new WriteRoleError(
      `Airlock's service account cannot create the write role "${role}": it needs SUPERUSER or CREATEROLE. ` +
        'Grant it CREATEROLE (and ADMIN OPTION on pg_read_all_data), and the table privileges the rules allow WITH GRANT OPTION (see the README).',
    );
  }
  const verifier = formatScramVerifier(createScramVerifier(password));
  await service.query('BEGIN');
  try {
    // The read roles' lock space: one gateway at a time changes a role.
    await service.query("SELECT pg_advisory_xact_lock(hashtext('airlock read role'), hashtext($1))", [role]);
    await ensureLoginRole(service, role, verifier);
    const set = (name: string, value: string) => service.query(`ALTER ROLE ${ident(role)} SET ${name} = ${value}`);
    await set('default_transaction_read_only', 'off');
    await set('search_path', 'public');
    await set('statement_timeout', String(Math.trunc(settings.statementTimeoutMs)));
    await set('lock_timeout', String(Math.trunc(settings.lockTimeoutMs)));
    await set('idle_in_transaction_session_timeout', String(Math.trunc(settings.idleInTransactionMs)));
    for (const grant of WRITE_ROLE_GRANTS) await service.query(`GRANT ${grant} TO ${ident(role)}`);
    await syncWriteGrants(service, role, policy, true);
    await service.query('COMMIT');
  } catch (err) {
    await service.query('ROLLBACK');
    throw err;
  }
  const extra = await extraMemberships(service, role);
  if (extra.length > 0) {
    throw new WriteRoleError(
      `The write role "${role}" is a member of ${extra.map((r) => `"${r}"`).join(', ')}, which may carry privileges its rules do not allow. ` +
        `Airlock's write roles must hold only pg_read_all_data and their own table privileges: REVOKE ${extra.map(ident).join(', ')} FROM ${ident(role)};`,
    );
  }
  return { warnings: await checkWriteRole(service, role, policy) };
}

/**
 * After a repair: throws on privileges beyond the rules granted to the role
 * itself (the service account could not revoke them), returns warnings for
 * those it holds as an owner, PUBLIC's, and privileges the rules allow that
 * the role lacks.
 */
export async function checkWriteRole(service: pg.Client, role: string, policy: AgentPolicy): Promise<string[]> {
  const excess = await writeRoleExcess(service, role, policy);
  const own = excess.filter((e) => !e.viaPublic && !e.owned);
  if (own.length > 0) {
    const list = own.slice(0, 10).map((e) => `${e.privilege} on ${e.object}`).join(', ');
    throw new WriteRoleError(
      `The write role "${role}" holds ${list}${own.length > 10 ? ` and ${own.length - 10} more` : ''}, which its rules do not allow, ` +
        "and Airlock's service account could not revoke it (it owns the object, or another role granted it). " +
        `Revoke it as the object's owner or a superuser, e.g. REVOKE ${own[0]!.privilege} ON ${own[0]!.object} FROM ${ident(role)}; ` +
        '(an object the role owns: ALTER … OWNER TO another role).',
    );
  }
  const warnings: string[] = [];
  const owned = excess.filter((e) => !e.viaPublic && e.owned);
  if (owned.length > 0) {
    warnings.push(
      `The write role "${role}" owns ${[...new Set(owned.map((e) => e.object))].slice(0, 10).join(', ')} and holds ${owned
        .slice(0, 10)
        .map((e) => `${e.privilege} on ${e.object}`)
        .join(', ')} there beyond its rules, which Airlock's service account could not revoke. ` +
        'Airlock still refuses such statements, but an owner may grant itself anything on what it owns: give those objects to another role (ALTER … OWNER TO) if the agent should not hold them.',
    );
  }
  const pub = excess.filter((e) => e.viaPublic);
  if (pub.length > 0) {
    warnings.push(
      `The write role "${role}" may ${pub.slice(0, 10).map((e) => `${e.privilege} on ${e.object}`).join(', ')} through grants to PUBLIC, beyond its rules. ` +
        'Airlock still refuses such statements, but the role is no longer a wall of its own there: revoke those grants from PUBLIC.',
    );
  }
  const missing = await writeRoleShortfall(service, role, policy);
  if (missing.length > 0) {
    warnings.push(
      `The write role "${role}" lacks ${missing.slice(0, 10).map(describe).join(', ')}, which its rules allow: PostgreSQL will refuse those writes. ` +
        "Airlock's service account could not grant them; give it those privileges WITH GRANT OPTION (or ownership), then restart Airlock.",
    );
  }
  return warnings;
}
