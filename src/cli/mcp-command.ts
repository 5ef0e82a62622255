/**
 * `airlock mcp`: the MCP server on stdio, for an agent's MCP client to
 * launch. It needs only the agent's own Airlock URL (AIRLOCK_URL, or --url)
 * and opens nothing else: no config file, no state directory.
 */
import { serveMcpOnStdio } from '../mcp/stdio.js';
import type { CommandArgs } from './main.js';
import { UsageError } from './main.js';

export async function runMcp(args: CommandArgs): Promise<number> {
  if (args.values.config !== undefined || args.values['state-dir'] !== undefined) {
    throw new UsageError('mcp takes no --config or --state-dir: it is a client of the running Airlock, and needs only the agent\'s URL (AIRLOCK_URL or --url)');
  }
  const url = args.values.url ?? process.env.AIRLOCK_URL;
  if (url === undefined || url === '') {
    throw new UsageError('mcp needs the agent\'s Airlock URL: set AIRLOCK_URL=postgres://AGENT:PASSWORD@HOST:PORT/DATABASE (or pass --url)');
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError('the Airlock URL is not a URL; it looks like postgres://AGENT:PASSWORD@HOST:PORT/DATABASE');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new UsageError(`the Airlock URL must start with postgres:// (got ${parsed.protocol}//…)`);
  }
  // How long execute lets a statement wait for a human's approval before answering "held" (seconds).
  const wait = process.env.AIRLOCK_MCP_APPROVAL_WAIT;
  const approvalWaitMs = wait === undefined || wait === '' ? undefined : Number(wait) * 1000;
  if (approvalWaitMs !== undefined && !(approvalWaitMs >= 0 && approvalWaitMs <= 3_600_000)) {
    throw new UsageError(`AIRLOCK_MCP_APPROVAL_WAIT takes a number of seconds (0 to 3600), not "${wait}"`);
  }
  const mcp = await serveMcpOnStdio(url, { approvalWaitMs });
  const stop = () => void mcp.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await mcp.closed;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  return 0;
}
