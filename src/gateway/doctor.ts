/**
 * `airlock doctor`: checks the upstream the way an attacker would, and says
 * what it found in plain words. It changes nothing: every probe runs in a
 * transaction that is rolled back, and the probes that write touch no row
 * (`... WHERE false`).
 */
import type pg from 'pg';
import type { AirlockConfig } from '../config/load.js';
import { describeUpstream } from '../config/load.js';
import { captureStatus } from '../executor/capture.js';
import { TRASH_SCHEMA } from '../executor/trash.js';
import { compileTablePattern } from '../policy/table-pattern.js';
import { serviceClient } from './gateway.js';
import { READ_ROLE_GRANTS, readRoleWarnings } from './read-roles.js';
import { compileAgentPolicy } from '../policy/rules.js';
import type { AgentPolicy } from '../policy/rules.js';
import { GRANTING_DECISIONS, WRITE_ROLE_GRANTS, writeRoleExcess, writeRoleShortfall } from './write-roles.js';

export const CHECK_OUTCOMES = ['ok', 'warn', 'fail'] as const;
export type CheckOutcome = (typeof CHECK_OUTCOMES)[number];

export interface DoctorCheck {
  outcome: CheckOutcome;
  /** One or two sentences: what was checked and what was found. */
  message: string;
}

function ident(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** Runs `probe` inside a transaction that is always rolled back; returns the SQLSTATE it failed with, or null. */
async function failsWith(client: pg.Client, setup: string, probe: string): Promise<string | null> {
  await client.query(setup);
  try {
    await client.query(probe);
    return null;
  } catch (err) {
    return (err as { code?: string }).code ?? 'unknown';
  } finally {
    await client.query('ROLLBACK');
  }
}

export async function runDoctorChecks(config: AirlockConfig): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const add = (outcome: CheckOutcome, message: string): void => {
    checks.push({ outcome, message });
  };
  const service = serviceClient(config);
  try {
    await service.connect();
  } catch (err) {
    add('fail', `Cannot connect to ${describeUpstream(config.upstream)} as the service account: ${(err as Error).message}.`);
    return checks;
  }
  try {
    const info = await service.query<{ version: string; num: number; rolsuper: boolean; rolcreaterole: boolean; ssl: boolean | null }>(
      `SELECT current_setting('server_version') AS version, current_setting('server_version_num')::int AS num,
              r.rolsuper, r.rolcreaterole,
              (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl
         FROM pg_roles r WHERE r.rolname = current_user`,
    );
    const me = info.rows[0]!;
    add('ok', `Connected to ${describeUpstream(config.upstream)} (PostgreSQL ${me.version}) as the service account.`);
    if (me.num < 140000) {
      add('fail', 'PostgreSQL 14 or newer is needed: read roles rely on the pg_read_all_data role.');
    }
    if (me.rolsuper) {
      add(
        'warn',
        'The service account is a superuser. Agents never run as it (their reads run as their own read role), but a narrower account with CREATEROLE is enough and safer.',
      );
    } else if (!me.rolcreaterole) {
      add('warn', 'The service account has neither SUPERUSER nor CREATEROLE, so Airlock cannot create or repair read roles; create them yourself (see docs/read-path.md).');
    }
    if (me.ssl !== true && config.upstream.host !== '127.0.0.1' && config.upstream.host !== 'localhost' && config.upstream.host !== '::1') {
      add('warn', `The connection to ${config.upstream.host} is not encrypted; set sslmode=verify-full in the upstream URL.`);
    }

    for (const agent of config.agents) {
      const role = agent.readRole;
      const found = await service.query<{
        rolsuper: boolean;
        rolcreaterole: boolean;
        rolcreatedb: boolean;
        rolreplication: boolean;
        rolbypassrls: boolean;
        rolcanlogin: boolean;
      }>('SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1', [role]);
      const r = found.rows[0];
      if (r === undefined) {
        add('warn', `Agent "${agent.name}": its read role "${role}" does not exist yet; \`airlock start\` creates it.`);
        continue;
      }
      const powers = (['rolsuper', 'rolcreaterole', 'rolcreatedb', 'rolreplication', 'rolbypassrls'] as const).filter((k) => r[k]);
      if (powers.length > 0) {
        add('fail', `Agent "${agent.name}": read role "${role}" has ${powers.join(', ')}; \`airlock start\` removes these, or run ALTER ROLE ${ident(role)} NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS.`);
      } else {
        add('ok', `Agent "${agent.name}": read role "${role}" is not a superuser and cannot create roles or databases.`);
      }
      const members = await service.query<{ rolname: string }>(
        `SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
        [role],
      );
      const extra = members.rows.map((m) => m.rolname).filter((n) => !(READ_ROLE_GRANTS as readonly string[]).includes(n));
      if (extra.length > 0) add('fail', `Agent "${agent.name}": read role "${role}" is also a member of ${extra.join(', ')}.`);
      const defaults = await service.query<{ setconfig: string[] | null }>(
        `SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = $1) AND s.setdatabase = 0`,
        [role],
      );
      const readOnlyDefault = (defaults.rows[0]?.setconfig ?? []).includes('default_transaction_read_only=on');
      add(
        readOnlyDefault ? 'ok' : 'fail',
        readOnlyDefault
          ? `Agent "${agent.name}": read role "${role}" starts every transaction READ ONLY.`
          : `Agent "${agent.name}": read role "${role}" does not default to READ ONLY transactions; \`airlock start\` sets it.`,
      );
      const here = await service.query<{ setting: string }>(
        `SELECT unnest(s.setconfig) AS setting FROM pg_db_role_setting s
          WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = $1))`,
        [role],
      );
      const off = here.rows.map((r) => r.setting).filter((v) => /^default_transaction_read_only=(off|false|0|no)$/i.test(v));
      if (off.length > 0) {
        add(
          'warn',
          `Agent "${agent.name}": this database (or the read role in it) sets default_transaction_read_only = off. Airlock's own start-up setting overrides it, but remove it: ALTER DATABASE/ROLE ... RESET default_transaction_read_only.`,
        );
      }
      for (const w of await readRoleWarnings(service, role)) add('warn', `Agent "${agent.name}": ${w}`);
      if (me.rolsuper || (await canSetRole(service, role))) {
        checks.push(...(await probeReadRole(service, agent.name, role)));
      } else {
        add('warn', `Agent "${agent.name}": the service account cannot SET ROLE ${role}, so doctor cannot try writes as it.`);
      }
    }

    for (const agent of config.agents) {
      const policy = compileAgentPolicy(agent, config.rules);
      if (!policy.mayWrite) continue;
      checks.push(...(await checkWriteRole(service, agent.name, agent.writeRole, policy, me.rolsuper)));
    }

    // Undo capture (src/executor/capture.ts): where it is missing, agents' writes are refused (no-journal).
    if (config.agents.some((a) => compileAgentPolicy(a, config.rules).mayWrite)) {
      const optional = config.undo.optionalTables.map((p) => compileTablePattern(p));
      const states = await captureStatus(service);
      const missing = states.filter((st) => {
        const dot = st.table.indexOf('.');
        return !st.installed && !optional.some((p) => p.matches(st.table.slice(0, dot), st.table.slice(dot + 1)));
      });
      for (const st of missing) {
        add('warn', `Undo capture is not in place on ${st.table}: ${st.reason ?? 'unknown reason'}. Agents' writes to it are refused (rule no-journal) until it is, or until undo.optional_tables names it.`);
      }
      const installed = states.filter((st) => st.installed).length;
      add(installed > 0 || missing.length === 0 ? 'ok' : 'warn', `Undo capture is in place on ${installed} of ${states.length} tables.`);

      // The trash (src/executor/trash.ts): where an agent's DROP TABLE puts the table.
      const trash = await service.query<{ tables: string }>(
        `SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p') AND NOT c.relispartition)::text AS tables
           FROM pg_catalog.pg_namespace n WHERE n.nspname = $1`,
        [TRASH_SCHEMA],
      );
      const schemaNames = (
        await service.query<{ nspname: string }>(
          `SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', '${TRASH_SCHEMA}') AND nspname NOT LIKE 'pg\\_%'`,
        )
      ).rows.map((r) => r.nspname);
      const dropping = config.agents.filter((a) => {
        const policy = compileAgentPolicy(a, config.rules);
        return policy.mayWrite && schemaNames.some((schema) => policy.couldDecideInSchema('drop', schema, GRANTING_DECISIONS));
      });
      if (trash.rows.length === 0) {
        if (dropping.length > 0) {
          add('warn', `The trash schema ${TRASH_SCHEMA} is missing: an agent's DROP TABLE fails (and is rolled back) until Airlock creates it at start, which needs CREATE on the database for the service account.`);
        }
      } else {
        add('ok', `The trash (schema ${TRASH_SCHEMA}) holds ${trash.rows[0]!.tables} table(s); \`airlock trash list\` lists them.`);
      }
      if (!me.rolsuper) {
        for (const agent of dropping) {
          const member = await service.query<{ ok: boolean }>("SELECT pg_catalog.pg_has_role(current_user, $1, 'USAGE') AS ok", [agent.writeRole]);
          if (member.rows[0]?.ok !== true) {
            add(
              'warn',
              `Agent "${agent.name}" may drop tables, which go into the trash owned by its write role ${agent.writeRole}; the service account is not a member of that role, so undo and purge of them will be refused. GRANT ${agent.writeRole} TO the service account.`,
            );
          }
        }
      }
    }

    // Even the service account, in a READ ONLY transaction, must be refused a
    // write: this is the first wall, and it holds for superusers too.
    const table = await someUserTable(service);
    if (table !== null) {
      const code = await failsWith(service, 'BEGIN READ ONLY', `DELETE FROM ${table} WHERE false`);
      add(
        code === '25006' ? 'ok' : 'fail',
        code === '25006'
          ? `A READ ONLY transaction refuses writes on this server (tried DELETE FROM ${table} WHERE false: 25006).`
          : `A READ ONLY transaction did not refuse DELETE FROM ${table} WHERE false (got ${code ?? 'success'}).`,
      );
    }
  } finally {
    await service.end();
  }
  return checks;
}

async function canSetRole(service: pg.Client, role: string): Promise<boolean> {
  const r = await service.query<{ ok: boolean }>(`SELECT pg_has_role(current_user, $1, 'SET') AS ok`, [role]).catch(
    // PostgreSQL before 16 has no 'SET' privilege mode; MEMBER is the closest.
    () => service.query<{ ok: boolean }>(`SELECT pg_has_role(current_user, $1, 'MEMBER') AS ok`, [role]),
  );
  return r.rows[0]?.ok === true;
}

async function someUserTable(service: pg.Client): Promise<string | null> {
  const r = await service.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${TRASH_SCHEMA}') AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY 1 LIMIT 1`,
  );
  return r.rows[0]?.name ?? null;
}

/** Tries, as the read role and inside rolled-back transactions, what an agent's session could try. */
async function probeReadRole(service: pg.Client, agent: string, role: string): Promise<DoctorCheck[]> {
  const out: DoctorCheck[] = [];
  const asRole = `BEGIN; SET LOCAL ROLE ${ident(role)}`;
  const table = await someUserTable(service);
  if (table !== null) {
    // Without the READ ONLY default (SET ROLE does not apply role defaults),
    // this tests the role's grants alone: the second wall.
    const code = await failsWith(service, asRole, `DELETE FROM ${table} WHERE false`);
    out.push(
      code === '42501'
        ? { outcome: 'ok', message: `Agent "${agent}": as "${role}", DELETE FROM ${table} is refused for lack of privilege (42501), even outside a READ ONLY transaction.` }
        : { outcome: 'fail', message: `Agent "${agent}": as "${role}", DELETE FROM ${table} WHERE false was not refused for privilege (got ${code ?? 'success'}).` },
    );
    const read = await failsWith(service, asRole, `SELECT 1 FROM ${table} LIMIT 1`);
    out.push(
      read === null
        ? { outcome: 'ok', message: `Agent "${agent}": as "${role}", reading ${table} works.` }
        : { outcome: 'fail', message: `Agent "${agent}": as "${role}", reading ${table} fails (${read}); grant pg_read_all_data.` },
    );
  }
  const create = await failsWith(service, asRole, 'CREATE TABLE public.airlock_doctor_probe (x int)');
  out.push(
    create !== null
      ? { outcome: 'ok', message: `Agent "${agent}": as "${role}", CREATE TABLE in public is refused (${create}).` }
      : { outcome: 'fail', message: `Agent "${agent}": as "${role}", CREATE TABLE in public succeeded (rolled back); revoke CREATE on schema public from PUBLIC.` },
  );
  const seq = await service.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${TRASH_SCHEMA}') ORDER BY 1 LIMIT 1`,
  );
  const seqName = seq.rows[0]?.name;
  if (seqName !== undefined) {
    // Asked, not tried: a sequence does not roll back.
    const r = await service.query<{ ok: boolean }>(`SELECT has_sequence_privilege($1, $2, 'USAGE, UPDATE') AS ok`, [role, seqName]);
    out.push(
      r.rows[0]?.ok === true
        ? { outcome: 'fail', message: `Agent "${agent}": "${role}" may advance sequence ${seqName} (USAGE or UPDATE granted); revoke it.` }
        : { outcome: 'ok', message: `Agent "${agent}": "${role}" may not advance sequences such as ${seqName}.` },
    );
  }
  return out;
}

/**
 * The write path's second wall, for one agent that may write: its write role
 * has no powers and no memberships beyond pg_read_all_data, holds no
 * privilege its rules do not allow, and PostgreSQL refuses it a write to a
 * table its rules do not allow (tried inside a rolled-back transaction).
 */
async function checkWriteRole(service: pg.Client, agent: string, role: string, policy: AgentPolicy, superuser: boolean): Promise<DoctorCheck[]> {
  const out: DoctorCheck[] = [];
  const add = (outcome: CheckOutcome, message: string): void => {
    out.push({ outcome, message: `Agent "${agent}": ${message}` });
  };
  const found = await service.query<Record<'rolsuper' | 'rolcreaterole' | 'rolcreatedb' | 'rolreplication' | 'rolbypassrls', boolean>>(
    'SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = $1',
    [role],
  );
  const r = found.rows[0];
  if (r === undefined) {
    add('warn', `its write role "${role}" does not exist yet; \`airlock start\` creates it (until then this agent's writes cannot run).`);
    return out;
  }
  const powers = (['rolsuper', 'rolcreaterole', 'rolcreatedb', 'rolreplication', 'rolbypassrls'] as const).filter((k) => r[k]);
  if (powers.length > 0) {
    add('fail', `write role "${role}" has ${powers.join(', ')}; \`airlock start\` removes these, or run ALTER ROLE ${ident(role)} NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS.`);
  } else {
    add('ok', `write role "${role}" is not a superuser and cannot create roles or databases, replicate or bypass row-level security.`);
  }
  const members = await service.query<{ rolname: string }>(
    `SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
    [role],
  );
  const extra = members.rows.map((m) => m.rolname).filter((n) => !(WRITE_ROLE_GRANTS as readonly string[]).includes(n));
  if (extra.length > 0) add('fail', `write role "${role}" is also a member of ${extra.join(', ')}; REVOKE ${extra.map(ident).join(', ')} FROM ${ident(role)};`);

  const excess = await writeRoleExcess(service, role, policy);
  const own = excess.filter((e) => !e.viaPublic && !e.owned);
  const owned = excess.filter((e) => !e.viaPublic && e.owned);
  const viaPublic = excess.filter((e) => e.viaPublic);
  const list = (xs: typeof excess): string => xs.slice(0, 10).map((e) => `${e.privilege} on ${e.object}`).join(', ') + (xs.length > 10 ? ` and ${xs.length - 10} more` : '');
  if (own.length > 0) {
    add('fail', `write role "${role}" holds ${list(own)}, which its rules do not allow; \`airlock start\` revokes what the service account granted, or REVOKE it yourself.`);
  } else {
    add('ok', `write role "${role}" holds no write privilege beyond what its rules could allow.`);
  }
  if (owned.length > 0) add('warn', `write role "${role}" holds ${list(owned)} as the owner, beyond its rules; an owner may grant itself anything there: ALTER … OWNER TO another role if the agent should not.`);
  if (viaPublic.length > 0) add('warn', `write role "${role}" may ${list(viaPublic)} through grants to PUBLIC, beyond its rules; revoke those from PUBLIC.`);
  const missing = await writeRoleShortfall(service, role, policy);
  if (missing.length > 0) {
    add(
      'warn',
      `write role "${role}" lacks ${missing.slice(0, 10).map((p) => `${p.privilege} on ${p.object}`).join(', ')}, which its rules allow, so PostgreSQL will refuse those writes; ` +
        'give the service account those privileges WITH GRANT OPTION and restart Airlock.',
    );
  }

  if (!superuser && !(await canSetRole(service, role))) {
    add('warn', `the service account cannot SET ROLE ${role}, so doctor cannot try a write as it.`);
    return out;
  }
  // A table this agent may not delete from, by its rules or by the role's privileges.
  const tables = await service.query<{ name: string; nspname: string; relname: string; may: boolean }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name, n.nspname, c.relname, has_table_privilege($1, c.oid, 'DELETE') AS may
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${TRASH_SCHEMA}') AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY 1`,
    [role],
  );
  const target = tables.rows.find((t) => !GRANTING_DECISIONS.includes(policy.decide('delete', { schema: t.nspname, name: t.relname }).decision));
  if (target === undefined) {
    add('ok', `its rules let it delete from every table, so there is no table to try a refused write on.`);
    return out;
  }
  // Without Airlock's classification in the way: this tests the role's grants alone.
  const code = await failsWith(service, `BEGIN; SET LOCAL ROLE ${ident(role)}`, `DELETE FROM ${target.name} WHERE false`);
  add(
    code === '42501' ? 'ok' : 'fail',
    code === '42501'
      ? `as "${role}", DELETE FROM ${target.name}, which its rules do not allow, is refused for lack of privilege (42501).`
      : `as "${role}", DELETE FROM ${target.name} WHERE false, which its rules do not allow, was not refused for privilege (got ${code ?? 'success'}).`,
  );
  return out;
}
