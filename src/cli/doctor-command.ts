/**
 * `airlock doctor`: checks the upstream, the read path and (for agents that may write) the write path, in plain words.
 */
import { runDoctorChecks } from '../gateway/doctor.js';
import { compileAgentPolicy } from '../policy/rules.js';
import type { CommandArgs } from './main.js';
import { configFromArgs } from './config-path.js';

const MARK = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;

export async function runDoctor(args: CommandArgs): Promise<number> {
  const config = await configFromArgs(args);
  const checks = await runDoctorChecks(config);
  for (const c of checks) console.log(`${MARK[c.outcome]}  ${c.message}`);
  const failed = checks.filter((c) => c.outcome === 'fail').length;
  const warned = checks.filter((c) => c.outcome === 'warn').length;
  const writes = config.agents.some((a) => compileAgentPolicy(a, config.rules).mayWrite);
  console.log(
    failed > 0
      ? `\n${failed} check(s) failed: ${writes ? 'the read and write paths are not safe as they are' : 'the read path is not safe as it is'}. Fix them and run airlock doctor again.`
      : `\n${writes ? 'The read and write paths hold' : 'The read path holds'}${warned > 0 ? ` (${warned} warning(s) above are worth a look)` : ''}.`,
  );
  return failed > 0 ? 1 : 0;
}
