/**
 * `airlock admin token create|revoke`, `airlock freeze`, `airlock unfreeze`,
 * `airlock status`. Token creation is the one local step (done as Airlock's
 * own OS user, which the agent is not); everything else goes through the
 * running server's admin API with an admin token, never to the state store.
 */
import { createAdminToken, revokeAdminToken } from '../state/admin-tokens.js';
import { adminRequest, adminTokenFromEnvOrPrompt } from './admin-client.js';
import type { AdminTarget } from './admin-client.js';
import type { CommandArgs } from './main.js';
import { UsageError } from './main.js';
import { configFromArgs } from './config-path.js';
import { parseListen } from '../config/schema.js';

/** `--until` as an instant: an ISO 8601 time, or a duration from now such as 30m, 2h, 1d. */
export function parseUntil(text: string, now = new Date()): Date {
  const rel = /^(\d+)\s*(m|h|d)$/.exec(text.trim());
  if (rel !== null) {
    const ms = Number(rel[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'm' | 'h' | 'd'];
    return new Date(now.getTime() + ms);
  }
  const at = Date.parse(text);
  if (Number.isNaN(at)) throw new UsageError(`--until takes an ISO 8601 time (2026-12-01T09:00:00+01:00) or a duration (30m, 2h, 1d), not "${text}"`);
  return new Date(at);
}

/**
 * Where the admin API is: --admin HOST:PORT (https://HOST:PORT when it has
 * admin.tls), or AIRLOCK_ADMIN_ADDRESS, or the config's admin.listen and
 * admin.tls (loading the config needs its secrets in the environment, which
 * an operator's shell may not hold).
 */
export async function target(args: CommandArgs): Promise<AdminTarget> {
  const given = args.values.admin ?? process.env.AIRLOCK_ADMIN_ADDRESS;
  let address: { host: string; port: number };
  let tls: Pick<AdminTarget, 'scheme' | 'ca'> = {};
  if (given !== undefined) {
    const scheme = /^(https?):\/\//i.exec(given)?.[1]?.toLowerCase();
    const parsed = parseListen(given.replace(/^https?:\/\//i, '').replace(/\/$/, ''));
    if (!parsed.ok) throw new UsageError(`--admin takes host:port or https://host:port (${parsed.problems.join('; ')})`);
    address = parsed.value;
    if (scheme === 'https') tls = { scheme: 'https' };
  } else {
    const config = await configFromArgs(args);
    address = config.admin.listen;
    // The configured certificate is trusted for it (a self-signed one included); it must name the address.
    if (config.admin.tls !== null) tls = { scheme: 'https', ca: config.admin.tls.cert };
  }
  const totp = args.values.totp ?? process.env.AIRLOCK_TOTP;
  return { host: address.host, port: address.port, token: await adminTokenFromEnvOrPrompt(), ...tls, ...(totp === undefined ? {} : { totp }) };
}

export function report(status: number, body: unknown): number {
  const b = body as { error?: string } | null;
  if (status >= 400) {
    console.error(`airlock: ${b?.error ?? `the admin API answered ${status}`}`);
    return 1;
  }
  console.log(JSON.stringify(body, null, 2));
  return 0;
}

export async function runAdmin(args: CommandArgs, rest: string[]): Promise<number> {
  const [what, action] = rest;
  if (what !== 'token' || (action !== 'create' && action !== 'revoke')) {
    throw new UsageError('admin takes "token create --name NAME" or "token revoke --name NAME"');
  }
  const name = args.values.name;
  if (name === undefined) throw new UsageError(`admin token ${action} needs --name (who the token is for: it goes on the record)`);
  const stateDir = (await configFromArgs(args)).stateDir;
  if (action === 'revoke') {
    const removed = await revokeAdminToken(stateDir, name);
    console.log(removed ? `The admin token "${name}" is revoked.` : `There is no admin token named "${name}".`);
    return removed ? 0 : 1;
  }
  const token = await createAdminToken(stateDir, name);
  console.log(
    `Admin token "${name}" (shown once; Airlock keeps only its hash):\n\n  ${token}\n\n` +
      'Keep it where no agent can read it. Commands take it from AIRLOCK_ADMIN_TOKEN, or ask for it.',
  );
  return 0;
}

export async function runFreeze(args: CommandArgs): Promise<number> {
  const reason = args.values.reason;
  if (reason === undefined || reason.trim() === '') throw new UsageError('freeze needs --reason "…" (it goes on the record and into every refusal)');
  const body: Record<string, string> = { reason };
  if (args.values.agent !== undefined) body.agent = args.values.agent;
  if (args.values.until !== undefined) body.until = parseUntil(args.values.until).toISOString();
  const t = await target(args);
  const r = await adminRequest(t, 'POST', '/v1/freeze', body);
  return report(r.status, r.body);
}

export async function runUnfreeze(args: CommandArgs): Promise<number> {
  if (args.values.agent !== undefined && args.values.window !== undefined) throw new UsageError('unfreeze takes --agent or --window, not both');
  const body: Record<string, string> = {};
  if (args.values.agent !== undefined) body.agent = args.values.agent;
  if (args.values.window !== undefined) body.window = args.values.window;
  const t = await target(args);
  const r = await adminRequest(t, 'POST', '/v1/unfreeze', body);
  return report(r.status, r.body);
}

export async function runStatus(args: CommandArgs): Promise<number> {
  const t = await target(args);
  const r = await adminRequest(t, 'GET', '/v1/status');
  return report(r.status, r.body);
}
