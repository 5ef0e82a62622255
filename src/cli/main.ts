#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=8 --heap-growing-percent=40
/**
 * The `airlock` command.
 */
import { parseArgs } from 'node:util';
import { runAudit } from './audit-command.js';
import { runCheck } from './check-command.js';
import { runDemo } from './demo-command.js';
import { runDoctor } from './doctor-command.js';
import { runMcp } from './mcp-command.js';
import { runStart } from './start-command.js';
import { runAdmin, runFreeze, runStatus, runUnfreeze } from './freeze-commands.js';
import { runApprovals, runApprove, runDeny } from './approval-commands.js';
import { runChanges, runUndo } from './undo-commands.js';
import { runTrash } from './trash-commands.js';

const USAGE = `Usage: airlock <command> [options]

Commands:
  start --config FILE            Run the gateway in front of the upstream database.
  demo                           Run a demo: an embedded PostgreSQL with demo data, Airlock in front.
  check [--agent NAME] [--config FILE] [--json] "SQL"
                                 Show the facts Airlock reads from SQL and the decision for an agent.
  doctor --config FILE           Check the upstream: service account, read and write roles, that neither can do more than it may.
  audit verify [--config FILE | --state-dir DIR]
                                 Check the audit log's hash chain.
  audit tail [-n N] [-f] [--config FILE | --state-dir DIR]
                                 Show the last audit records (and follow new ones with -f).
  admin token create --name NAME [--config FILE]
                                 Create a named admin token (printed once). Run as Airlock's OS user.
  admin token revoke --name NAME [--config FILE]
                                 Revoke an admin token.
  freeze [--agent NAME] --reason TEXT [--until TIME] [--config FILE]
                                 Freeze one agent, or all: no statement of theirs may change anything.
  unfreeze [--agent NAME | --window NAME] [--config FILE]
                                 Lift a freeze (global, one agent's, or a scheduled window's current occurrence).
  status [--config FILE]         Show the freezes in force.
  approvals [--all] [--json] [--config FILE]
                                 List requests waiting for a human's approval (#ID, agent, age, impact, reason, statement).
  approve ID [--max-rows N] [--totp CODE] [--config FILE]
                                 Approve request ID, once, within its dry run's impact (or up to N rows in all).
  deny ID --reason TEXT [--config FILE]
                                 Deny request ID; the waiting agent is told the reason.
  mcp [--url URL]                Serve MCP on stdio for an agent's MCP client, through the running Airlock,
                                 as the agent in AIRLOCK_URL (postgres://AGENT:PASSWORD@HOST:PORT/DATABASE).

  changes [--agent NAME] [--since TIME] [--table T] [--transaction TXID] [--all] [--json]
                                 List the journalled changes, one a line: change id, time, agent, statement, rows per table, state.
  undo CHANGE_ID… | --transaction TXID | --agent NAME --since TIME [--dry-run] [--force]
                                 Put the rows of those changes back exactly, in one transaction; stops at rows changed since unless --force.
                                 A dropped table comes back from the trash, a dropped column with its values.
  trash list [--json]            List the tables agents dropped, waiting in the trash: change id, table, agent, time, rows, size.
  trash purge CHANGE_ID… | --older-than AGE [--totp CODE]
                                 Drop trashed tables for good (AGE: 7d, 12h, or an ISO time); their changes can no longer be undone.

  freeze, unfreeze, status, approvals, approve, deny, changes, undo and trash talk to the running server's admin API with the
  token in AIRLOCK_ADMIN_TOKEN (or ask for it), at --admin HOST:PORT, or
  AIRLOCK_ADMIN_ADDRESS, or the config's admin.listen.

Options:
  --config FILE   Airlock's config (YAML). Default: airlock.yaml in the current directory.
  --help          Show this help.
`;

/** Thrown for a command-line mistake: printed with the usage, exit code 2. */
export class UsageError extends Error {}

export type CommandArgs = ReturnType<typeof parse>;

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      agent: { type: 'string' },
      json: { type: 'boolean' },
      follow: { type: 'boolean', short: 'f' },
      lines: { type: 'string', short: 'n' },
      port: { type: 'string' },
      'state-dir': { type: 'string' },
      name: { type: 'string' },
      reason: { type: 'string' },
      until: { type: 'string' },
      window: { type: 'string' },
      since: { type: 'string' },
      table: { type: 'string' },
      transaction: { type: 'string' },
      all: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      force: { type: 'boolean' },
      admin: { type: 'string' },
      totp: { type: 'string' },
      'max-rows': { type: 'string' },
      'older-than': { type: 'string' },
      url: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

export async function main(argv: string[]): Promise<number> {
  let args: CommandArgs;
  try {
    args = parse(argv);
  } catch (err) {
    console.error(`airlock: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const [command, ...rest] = args.positionals;
  if (args.values.help === true || command === undefined || command === 'help') {
    console.log(USAGE);
    return command === undefined && args.values.help !== true ? 2 : 0;
  }
  try {
    switch (command) {
      case 'start':
        return await runStart(args);
      case 'demo':
        return await runDemo(args);
      case 'check':
        return await runCheck(args, rest);
      case 'doctor':
        return await runDoctor(args);
      case 'audit':
        return await runAudit(args, rest);
      case 'admin':
        return await runAdmin(args, rest);
      case 'freeze':
        return await runFreeze(args);
      case 'unfreeze':
        return await runUnfreeze(args);
      case 'status':
        return await runStatus(args);
      case 'approvals':
        return await runApprovals(args);
      case 'approve':
        return await runApprove(args, rest);
      case 'deny':
        return await runDeny(args, rest);
      case 'mcp':
        return await runMcp(args);
      case 'changes':
        return await runChanges(args);
      case 'undo':
        return await runUndo(args, rest);
      case 'trash':
        return await runTrash(args, rest);
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`airlock: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`airlock: ${(err as Error).message}`);
    return 1;
  }
}

// Run when executed as the `airlock` command, not when imported by tests.
if (process.argv[1] !== undefined && /[\\/]main\.(js|ts)$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
