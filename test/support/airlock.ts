/**
 * Runs a real Airlock gateway in the test process, in front of a throwaway
 * database on a real PostgreSQL server.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import type { AirlockConfig } from '../../src/config/load.js';
import { startAirlock } from '../../src/airlock.js';
import type { Airlock } from '../../src/airlock.js';
import { FileAuditLog } from '../../src/state/file-audit-log.js';
import type { FileAuditLogOptions } from '../../src/state/file-audit-log.js';
import { dropRoles } from './drop-roles.js';
import type { TestDatabase, TestServer } from './postgres-servers.js';

export interface TestAgent {
  name: string;
  password: string;
  /** read-only by default. */
  profile?: string;
  /** Extra YAML lines for the agent's entry (e.g. `    groups: [ops]`), indented under it. */
  extra?: string[];
}

export interface TestAirlock {
  gateway: Airlock;
  audit: FileAuditLog;
  config: AirlockConfig;
  stateDir: string;
  port: number;
  /** A connection URL for the agent, through Airlock. */
  url(agent?: string, overrides?: { password?: string; database?: string }): string;
  /** Client options for node-postgres. */
  clientConfig(agent?: string): { host: string; port: number; user: string; password: string; database: string };
  close(): Promise<void>;
}

export const DEFAULT_AGENT: TestAgent = { name: 'claude', password: 'claude-test-password' };

/** Extra YAML lines appended to the generated config (e.g. `tls:` or `limits:` blocks). */
export async function startTestAirlock(
  server: TestServer,
  db: TestDatabase,
  options: {
    agents?: TestAgent[];
    extraYaml?: string[];
    keepRoles?: boolean;
    auditOptions?: FileAuditLogOptions;
    /** Airlock's service account; the server's superuser by default. */
    serviceAccount?: { user: string; password: string | null };
    /** The upstream URL's query string; `sslmode=disable` by default. */
    upstreamQuery?: string;
    /** A state directory to use (and keep on close); a fresh temporary one by default. */
    stateDir?: string;
    /** The gateway's clock for freezes and freeze windows. */
    now?: () => Date;
    /** How often the gateway re-reads the schema (and re-syncs write roles), in milliseconds. */
    schemaRefreshMs?: number;
    /** More lines under `admin:` (indented two spaces), e.g. `  totp_secret: …`. */
    adminYaml?: string[];
  } = {},
): Promise<TestAirlock> {
  const agents = options.agents ?? [DEFAULT_AGENT];
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'airlock-state-')));
  const service = options.serviceAccount ?? { user: server.user, password: server.password };
  const env: Record<string, string> = { UPSTREAM_PASSWORD: service.password ?? '' };
  const lines = [
    'listen: 127.0.0.1:0',
    'admin:',
    '  listen: 127.0.0.1:0',
    ...(options.adminYaml ?? []),
    `upstream: postgres://${service.user}${service.password === null ? '' : ':${UPSTREAM_PASSWORD}'}@${server.host}:${server.port}/${db.name}?${options.upstreamQuery ?? 'sslmode=disable'}`,
    `state_dir: ${JSON.stringify(stateDir)}`,
    'agents:',
  ];
  agents.forEach((a, i) => {
    env[`AGENT_PASSWORD_${i}`] = a.password;
    // Read and write roles are cluster-wide: name them after the (unique) database.
    const slug = a.name.toLowerCase().replace(/[^a-z0-9_]/g, '_');
    lines.push(
      `  - name: ${a.name}`,
      `    password: \${AGENT_PASSWORD_${i}}`,
      `    profile: ${a.profile ?? 'read-only'}`,
      `    read_role: ${db.name}_${slug}`,
      `    write_role: ${db.name}_${slug}_w`,
      ...(a.extra ?? []),
    );
  });
  lines.push(...(options.extraYaml ?? []));
  // What needs approval is refused at once, as it was before approvals existed, unless a test
  // sets approvals itself (test/approvals.test.ts): the other suites judge rules, not waiting.
  if (!(options.extraYaml ?? []).some((l) => l.startsWith('approvals:'))) lines.push('approvals:', '  wait_seconds: 0');
  const { config } = parseConfig(lines.join('\n'), { source: 'test config', baseDir: stateDir, env });
  const audit = await FileAuditLog.open(stateDir, { flushMs: 2, ...options.auditOptions });
  const gateway = await startAirlock({ config, audit, now: options.now, schemaRefreshMs: options.schemaRefreshMs, log: process.env.AIRLOCK_TEST_LOG === '1' ? (l) => console.error(l) : () => undefined });
  const port = gateway.address.port;
  const passwords = new Map(agents.map((a) => [a.name, a.password]));
  const first = agents[0]!.name;
  return {
    gateway,
    audit,
    config,
    stateDir,
    port,
    url(agent = first, overrides = {}) {
      const password = overrides.password ?? passwords.get(agent) ?? '';
      return `postgres://${encodeURIComponent(agent)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${overrides.database ?? db.name}?sslmode=disable`;
    },
    clientConfig(agent = first) {
      return { host: '127.0.0.1', port, user: agent, password: passwords.get(agent) ?? '', database: db.name };
    },
    async close() {
      await gateway.close();
      await audit.close();
      // A tripwire freeze may still be persisting (the tripwire trips asynchronously): retry on ENOTEMPTY.
      if (options.stateDir === undefined) await rm(stateDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
      // Read and write roles are cluster-wide: leave none behind. A test that
      // shares them between instances drops them itself, after the last one.
      if (options.keepRoles !== true) await dropRoles(server, config.agents.flatMap((a) => [a.readRole, a.writeRole]));
    },
  };
}
