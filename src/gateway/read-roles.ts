/**
 * The read path's second wall: each agent's reads run as a role of its own
 * that holds pg_read_all_data and nothing else, is not a superuser, and
 * starts every transaction READ ONLY. Airlock creates or repairs the role at
 * start-up with its service account and sets its password (derived, see
 * read-role-password.ts; sent as a SCRAM verifier with a fresh salt, so the
 * password itself never reaches the server or its logs).
 * One role per agent, since a role may signal other sessions of the same
 * role.
 */
import type pg from 'pg';
import { createScramVerifier, formatScramVerifier } from '../protocol/auth/scram-verifier.js';

/** The only role a read role may be a member of. */
export const READ_ROLE_GRANTS = ['pg_read_all_data'] as const;

export interface ReadRoleProblem {
  role: string;
  problem: string;
}

/** Attributes a read (or write) role must not have, and how to take each away. */
export const ROLE_POWERS = ['rolsuper', 'rolcreatedb', 'rolcreaterole', 'rolreplication', 'rolbypassrls'] as const;
const ROLE_POWER_OFF: Record<(typeof ROLE_POWERS)[number], string> = {
  rolsuper: 'NOSUPERUSER',
  rolcreatedb: 'NOCREATEDB',
  rolcreaterole: 'NOCREATEROLE',
  rolreplication: 'NOREPLICATION',
  rolbypassrls: 'NOBYPASSRLS',
};

/** Thrown when a read role cannot be made safe; the message says what a human must do. */
export class ReadRoleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReadRoleError';
  }
}

export function ident(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/**
 * Creates `role` (LOGIN) if it is missing and takes away every power in
 * ROLE_POWERS, setting its password from `verifier`. Call inside a
 * transaction holding the role's advisory lock.
 */
export async function ensureLoginRole(service: pg.Client, role: string, verifier: string): Promise<void> {
  const existing = await service.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  if (existing.rows.length === 0) await service.query(`CREATE ROLE ${ident(role)} LOGIN`);
  // Name only the attributes that must change: PostgreSQL lets a CREATEROLE
  // (non-superuser) account set NOSUPERUSER, NOREPLICATION and the like only
  // if it holds them itself, even when they are already off.
  const current = await service.query<Record<(typeof ROLE_POWERS)[number] | 'rolcanlogin' | 'rolinherit', boolean>>(
    'SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin, rolinherit FROM pg_roles WHERE rolname = $1',
    [role],
  );
  const attrs = current.rows[0]!;
  const changes = ROLE_POWERS.filter((p) => attrs[p]).map((p) => ROLE_POWER_OFF[p]);
  if (!attrs.rolcanlogin) changes.push('LOGIN');
  if (!attrs.rolinherit) changes.push('INHERIT');
  await service.query(`ALTER ROLE ${ident(role)} WITH ${changes.join(' ')} PASSWORD '${verifier}'`);
}

/** Role settings both paths share (ALTER ROLE … SET), from the config's limits. */
export interface RoleLimits {
  /** idle_in_transaction_session_timeout, in milliseconds; 0 for none. */
  idleInTransactionMs: number;
}

/**
 * Creates or repairs the read role and sets its password. Returns any
 * warnings (grants that weaken the second wall, e.g. writes
 * granted to PUBLIC).
 */
export async function prepareReadRole(
  service: pg.Client,
  role: string,
  password: string,
  limits: RoleLimits,
): Promise<{ warnings: string[] }> {
  const me = await service.query<{ rolsuper: boolean; rolcreaterole: boolean }>(
    'SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user',
  );
  const self = me.rows[0];
  if (self === undefined || (!self.rolsuper && !self.rolcreaterole)) {
    throw new ReadRoleError(
      `Airlock's service account cannot create the read role "${role}": it needs SUPERUSER or CREATEROLE. ` +
        `Either grant it CREATEROLE (and ADMIN OPTION on pg_read_all_data), or create the role yourself: ` +
        `CREATE ROLE ${ident(role)} LOGIN; GRANT pg_read_all_data TO ${ident(role)}; ALTER ROLE ${ident(role)} SET default_transaction_read_only = on;`,
    );
  }
  const verifier = formatScramVerifier(createScramVerifier(password));
  // Two gateways starting at once would otherwise race on the same catalog
  // rows ("tuple concurrently updated"): one at a time, per role.
  await service.query('BEGIN');
  try {
    await service.query("SELECT pg_advisory_xact_lock(hashtext('airlock read role'), hashtext($1))", [role]);
    await ensureLoginRole(service, role, verifier);
    await service.query(`ALTER ROLE ${ident(role)} SET default_transaction_read_only = on`);
    // A transaction left open holds its snapshot (and any locks) until it ends.
    await service.query(`ALTER ROLE ${ident(role)} SET idle_in_transaction_session_timeout = ${Math.trunc(limits.idleInTransactionMs)}`);
    for (const grant of READ_ROLE_GRANTS) await service.query(`GRANT ${grant} TO ${ident(role)}`);
    await service.query('COMMIT');
  } catch (err) {
    await service.query('ROLLBACK');
    throw err;
  }

  const memberships = await service.query<{ rolname: string }>(
    `SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
      WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
    [role],
  );
  const extra = memberships.rows.map((r) => r.rolname).filter((r) => !(READ_ROLE_GRANTS as readonly string[]).includes(r));
  if (extra.length > 0) {
    throw new ReadRoleError(
      `The read role "${role}" is a member of ${extra.map((r) => `"${r}"`).join(', ')}, which may carry write privileges. ` +
        `Airlock's read roles must hold only pg_read_all_data: REVOKE ${extra.map(ident).join(', ')} FROM ${ident(role)};`,
    );
  }
  return { warnings: await readRoleWarnings(service, role) };
}

/** Privileges the read role holds beyond reading (usually through PUBLIC), in plain words. */
export async function readRoleWarnings(service: pg.Client, role: string): Promise<string[]> {
  const warnings: string[] = [];
  const tables = await service.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
        AND has_table_privilege($1, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
      ORDER BY 1 LIMIT 20`,
    [role],
  );
  if (tables.rows.length > 0) {
    warnings.push(
      `The read role "${role}" may write to ${tables.rows.map((r) => r.name).join(', ')} (granted to it or to PUBLIC). ` +
        'READ ONLY transactions and Airlock still stop writes, but the role is no longer a wall of its own: revoke those grants.',
    );
  }
  const schemas = await service.query<{ nspname: string }>(
    `SELECT nspname FROM pg_namespace
      WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
        AND has_schema_privilege($1, oid, 'CREATE') ORDER BY 1`,
    [role],
  );
  if (schemas.rows.length > 0) {
    warnings.push(
      `The read role "${role}" may create objects in schema ${schemas.rows.map((r) => r.nspname).join(', ')}. ` +
        'Revoke CREATE on those schemas from PUBLIC.',
    );
  }
  return warnings;
}
