import { FileAuditLog } from '../state/file-audit-log.js';
import { startCheckpoints } from '../state/audit-checkpoint.js';
import { startAirlock } from '../airlock.js';
import { describeUpstream } from '../config/load.js';
import type { CommandArgs } from './main.js';
import { configFromArgs } from './config-path.js';
import { waitForSignal } from './signals.js';

export async function runStart(args: CommandArgs): Promise<number> {
  const config = await configFromArgs(args);
  const audit = await FileAuditLog.open(config.stateDir, {
    flushMs: config.audit.flushMs,
    onFailure: (err) => console.error(`airlock: AUDIT LOG FAILURE: ${err.message}. New statements are refused until it is fixed.`),
  });
  const checkpoints =
    config.audit.checkpoint === null
      ? null
      : startCheckpoints(audit, config.audit.checkpoint, {
          onError: (err) => console.error(`airlock: could not write the audit checkpoint: ${err.message}`),
        });
  const gateway = await startAirlock({ config, audit });
  for (const w of gateway.warnings) console.error(`airlock: warning: ${w}`);
  console.log(
    `Airlock is listening on ${gateway.address.host}:${gateway.address.port}, in front of ${describeUpstream(config.upstream)}.`,
  );
  console.log(`Agents: ${config.agents.map((a) => `${a.name} (${a.profile})`).join(', ')}. Audit log: ${config.stateDir}.`);
  console.log(`Dashboard and admin API (sign in with an admin token: airlock admin token create --name <you>): ${gateway.dashboardUrl}`);
  if (gateway.mcpAddress !== null) {
    const scheme = config.tls === null ? 'http' : 'https';
    console.log(`MCP over Streamable HTTP (Authorization: Bearer <agent>:<password>): ${scheme}://${gateway.mcpAddress.host}:${gateway.mcpAddress.port}/mcp`);
  }
  await waitForSignal();
  console.log('Airlock is stopping.');
  await gateway.close();
  await audit.close();
  await checkpoints?.stop();
  return 0;
}
