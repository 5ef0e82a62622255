/**
 * Airlock as a whole server: the gateway agents connect to, and beside it the
 * admin API humans use (freeze, unfreeze, status), and the MCP server over
 * Streamable HTTP when `mcp.listen` is set. They are separate parts
 * (DESIGN.md: the admin interface is apart from the data path; MCP is a
 * client of the gate); this is where they are put together, so the gateway
 * knows nothing of the web or of MCP.
 */
import { serviceClient, startGateway } from './gateway/gateway.js';
import { startMcpHttp } from './mcp/http.js';
import { UndoRefused, countConflicts, undoChanges } from './executor/undo.js';
import type { ChangeControl, TrashControl } from './web/admin-api.js';
import { purgeTrashed, trashItems, trashTables } from './executor/trash.js';
import type { TrashItem } from './executor/trash.js';
import type { Gateway, GatewayOptions } from './gateway/gateway.js';
import { AdminTokens } from './state/admin-tokens.js';
import { FileApprovalStore } from './state/approval-store.js';
import { SecondFactor } from './web/second-factor.js';
import { postWebhook } from './notify/webhook.js';
import type { ApprovalEvent } from './notify/webhook.js';
import { describeFreeze } from './policy/read-only.js';
import { startAdminApi } from './web/admin-api.js';
import { fileAuditAccess } from './web/audit-routes.js';
import { PROFILE_DEFAULTS, rulesFor } from './policy/rules.js';

export interface Airlock extends Gateway {
  /** Where the admin API listens. */
  adminAddress: { host: string; port: number };
  /** The dashboard's address, http://HOST:PORT/ (https with admin.tls). */
  dashboardUrl: string;
  /** Where the MCP server listens for Streamable HTTP (at /mcp); null when `mcp.listen` is not set. */
  mcpAddress: { host: string; port: number } | null;
}

/** Starts the gateway, then the admin API; if the admin API cannot start, the gateway is closed again. */
export async function startAirlock(options: GatewayOptions): Promise<Airlock> {
  const { config, audit } = options;
  const log = options.log ?? ((line: string) => console.error(line));
  const clock = options.now;
  const approvals = await FileApprovalStore.open(config.stateDir, {
    expireSeconds: config.approvals.expireSeconds,
    ...(clock === undefined ? {} : { now: () => clock().getTime() }),
  });
  const webhook = config.approvals.webhook;
  const gateway = await startGateway({
    ...options,
    approvals,
    onApprovalRequest:
      webhook === null
        ? undefined
        : (request) => {
            const event: ApprovalEvent = {
              event: 'approval-request',
              id: request.id,
              agent: request.agent,
              statement: request.text,
              params: request.params,
              reason: request.reason,
              impact: request.impact,
              ...(request.read === undefined ? {} : { read: request.read }),
              expires: request.expires,
              approve: `airlock approve ${request.id}`,
              deny: `airlock deny ${request.id} --reason "…"`,
              at: request.created,
            };
            postWebhook(webhook.url, webhook.format, event).catch((err: Error) => log(`approvals: the webhook for request #${request.id} failed: ${err.message}`));
          },
  });
  let admin: Awaited<ReturnType<typeof startAdminApi>>;
  try {
    const tokens = await AdminTokens.open(config.stateDir);
    const journal = gateway.journal;
    const changes: ChangeControl = {
      list: (filter) => journal.list(filter),
      async conflicts(ids) {
        const out = new Map<string, number>();
        if (ids.length === 0) return out;
        const service = serviceClient(config);
        await service.connect();
        try {
          for (const id of ids) out.set(id, await countConflicts(service, journal, id));
        } finally {
          await service.end().catch(() => undefined);
        }
        return out;
      },
      async undo(request, by) {
        let ids = request.changes ?? [];
        if (request.transaction !== undefined) {
          ids = journal.list({ txid: request.transaction }).filter((e) => e.state === 'committed').map((e) => e.id);
          if (ids.length === 0) throw new UndoRefused(`The journal holds no committed change of transaction ${request.transaction} that is not undone yet.`);
        } else if (request.agent !== undefined) {
          ids = journal.list({ agent: request.agent, since: request.since }).filter((e) => e.state === 'committed').map((e) => e.id);
          if (ids.length === 0) throw new UndoRefused(`The journal holds no committed change of agent "${request.agent}" since ${request.since?.toISOString() ?? 'then'} that is not undone yet.`);
        }
        const service = serviceClient(config);
        await service.connect();
        try {
          const result = await undoChanges(service, journal, ids, { dryRun: request.dryRun, force: request.force, by });
          if (result.applied) {
            await audit.appendDurable({
              event: 'undo',
              agent: null,
              session: null,
              client: null,
              reason: `${by} undid ${result.changes.length} change(s)${request.force ? ', forced' : ''}`,
              rows: result.tables.reduce((n, t) => n + t.delete + t.update + t.insert, 0),
              detail: { by, changes: result.changes, undoChangeId: result.undoChangeId, tables: result.tables, force: request.force, conflicts: result.conflicts.length },
            });
          }
          return result;
        } finally {
          await service.end().catch(() => undefined);
        }
      },
    };
    const trash: TrashControl = {
      async list() {
        const service = serviceClient(config);
        await service.connect();
        try {
          return trashItems(journal, await trashTables(service));
        } finally {
          await service.end().catch(() => undefined);
        }
      },
      async purge(request, by) {
        const service = serviceClient(config);
        await service.connect();
        try {
          const items = trashItems(journal, await trashTables(service));
          let chosen: TrashItem[];
          if (request.changes !== undefined) {
            for (const id of request.changes) {
              const entry = journal.get(id);
              if (entry === null) throw new UndoRefused(`The journal has no change ${id}. \`airlock trash list\` lists the changes whose tables are in the trash.`);
              if (!items.some((t) => t.change === id)) throw new UndoRefused(`Change ${id} has no table in the trash (\`airlock trash list\` lists those that do), so there is nothing to purge.`);
            }
            chosen = items.filter((t) => t.change !== null && request.changes!.includes(t.change));
          } else {
            const cutoff = request.olderThan!.getTime();
            chosen = items.filter((t) => t.change !== null && t.at !== null && Date.parse(t.at) < cutoff);
          }
          if (chosen.length === 0) return [];
          await service.query('BEGIN');
          try {
            for (const t of chosen) await purgeTrashed(service, t.trash);
            await service.query('COMMIT');
          } catch (err) {
            await service.query('ROLLBACK').catch(() => {
              // Deliberately ignored: the DROP's own error is the one to report (a lost connection rolled it back).
            });
            throw new UndoRefused(`Nothing was purged: the database refused to drop a trashed table (${(err as Error).message}). The service account must own the trashed tables or be a member of their owner.`);
          }
          const ids = [...new Set(chosen.map((t) => t.change!))];
          await journal.markPurged(ids, by);
          await audit.appendDurable({
            event: 'trash-purge',
            agent: null,
            session: null,
            client: null,
            reason: `${by} purged ${chosen.length} table(s) from the trash`,
            rows: chosen.reduce((n, t) => n + (t.rows ?? 0), 0),
            detail: { by, changes: ids, tables: chosen.map((t) => ({ table: t.table, trash: t.trash, rows: t.rows, bytes: t.bytes })) },
          });
          return chosen;
        } finally {
          await service.end().catch(() => undefined);
        }
      },
    };
    admin = await startAdminApi({
      changes,
      trash,
      host: config.admin.listen.host,
      port: config.admin.listen.port,
      tokens,
      freezes: gateway.freezes,
      agents: config.agents.map((a) => a.name),
      log,
      ...(config.admin.totpSecret === null ? {} : { secondFactor: new SecondFactor(config.admin.totpSecret) }),
      tls: config.admin.tls,
      onSignInRefused: (client, why) => {
        try {
          audit.append({ event: 'auth-failed', agent: null, session: null, client, reason: why, detail: { channel: 'dashboard' } });
        } catch (err) {
          log(`audit: could not record a refused dashboard sign-in from ${client}: ${(err as Error).message}`);
        }
      },
      audit: fileAuditAccess(config.stateDir, config.audit.checkpoint),
      freezeWindows: () => config.freezeWindows,
      agentDetails: () =>
        config.agents.map((a) => {
          const usage = gateway.usage(a.name);
          const cause = gateway.freezes.causeFor(a.name);
          return {
            name: a.name,
            profile: a.profile,
            groups: a.groups,
            database: a.database,
            maxSessions: a.maxSessions,
            // What the profile decides for each kind where no rule does.
            profileDefaults: PROFILE_DEFAULTS[a.profile],
            rules: rulesFor(a, config.rules),
            limits: a.writeLimits,
            used: { writesLastMinute: usage.writesLastMinute, rowsLastHour: usage.rowsLastHour },
            tripwire: { refusals: usage.tripwireRefusals, tripsAt: config.tripwire.refusals, windowSeconds: config.tripwire.windowSeconds },
            frozen: cause === null ? null : describeFreeze(cause),
          };
        }),
      approvals: {
        store: approvals,
        frozen: (agent) => {
          const cause = gateway.freezes.causeFor(agent);
          return cause === null ? null : describeFreeze(cause);
        },
        record: (kind, by, request) => {
          try {
            audit.append({
              event: kind,
              agent: request.agent,
              session: null,
              client: null,
              text: request.text,
              reason: request.denyReason,
              detail: { request: request.id, by, maxRows: request.maxRows ?? null },
            });
          } catch (err) {
            log(`audit: could not record the ${kind} of request #${request.id} by ${by}: ${(err as Error).message}`);
          }
        },
      },
      onAction: (action) => {
        try {
          audit.append({
            event: action.kind === 'freeze' || action.kind === 'sign-in' || action.kind === 'sign-out' ? action.kind : 'unfreeze',
            agent: typeof action.detail.agent === 'string' ? action.detail.agent : null,
            session: null,
            client: null,
            reason: typeof action.detail.reason === 'string' ? action.detail.reason : undefined,
            detail: { ...action.detail, by: action.by, action: action.kind },
          });
        } catch (err) {
          log(`audit: could not record the admin action ${action.kind} by ${action.by}: ${(err as Error).message}`);
        }
      },
    });
  } catch (err) {
    await gateway.close();
    throw new Error(`Airlock could not start its admin API on ${config.admin.listen.host}:${config.admin.listen.port}: ${(err as Error).message}`);
  }
  let mcp: Awaited<ReturnType<typeof startMcpHttp>> | null = null;
  if (config.mcp !== null) {
    try {
      mcp = await startMcpHttp({
        host: config.mcp.listen.host,
        port: config.mcp.listen.port,
        approvalWaitMs: config.mcp.approvalWaitSeconds * 1000,
        approvals,
        agents: config.agents.map((a) => ({ name: a.name, password: a.password, database: a.database })),
        gateway: gateway.address,
        maxStatementBytes: config.limits.maxStatementBytes,
        tls: config.tls,
        log,
        onAuthFailed: ({ agent, client }) => {
          try {
            audit.append({
              event: 'auth-failed',
              agent,
              session: null,
              client,
              reason: 'MCP over HTTP: a missing or wrong bearer credential',
              detail: { channel: 'mcp-http' },
            });
          } catch (err) {
            log(`audit: could not record a refused MCP login from ${client}: ${(err as Error).message}`);
          }
        },
      });
    } catch (err) {
      await admin.close();
      await gateway.close();
      throw new Error(`Airlock could not start its MCP server on ${config.mcp.listen.host}:${config.mcp.listen.port}: ${(err as Error).message}`);
    }
  }
  return {
    address: gateway.address,
    adminAddress: admin.address,
    dashboardUrl: `${admin.scheme}://${admin.address.host.includes(':') ? `[${admin.address.host}]` : admin.address.host}:${admin.address.port}/`,
    usage: (agent) => gateway.usage(agent),
    mcpAddress: mcp?.address ?? null,
    freezes: gateway.freezes,
    warnings: gateway.warnings,
    journal: gateway.journal,
    get capture() {
      return gateway.capture;
    },
    get sessions() {
      return gateway.sessions;
    },
    async close() {
      await mcp?.close();
      await admin.close();
      await gateway.close();
    },
  };
}
