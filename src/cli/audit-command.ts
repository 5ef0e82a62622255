/**
 * `airlock audit verify` and `airlock audit tail [-f]`.
 */
import { resolve } from 'node:path';
import { verifyAuditLog } from '../state/audit-verify.js';
import { formatAuditRecord } from '../state/audit-format.js';
import { followAudit, readAuditTail } from '../state/file-audit-log.js';
import type { CommandArgs } from './main.js';
import { UsageError } from './main.js';
import { configFromArgs } from './config-path.js';
import { waitForSignal } from './signals.js';

async function stateDirFromArgs(args: CommandArgs): Promise<string> {
  if (args.values['state-dir'] !== undefined) return resolve(args.values['state-dir']);
  return (await configFromArgs(args)).stateDir;
}

export async function runAudit(args: CommandArgs, rest: string[]): Promise<number> {
  const [sub] = rest;
  if (sub === 'verify') {
    const stateDir = await stateDirFromArgs(args);
    const result = await verifyAuditLog(stateDir);
    if (result.ok) {
      console.log(`The audit log is intact: ${result.records} records, head ${result.head}.`);
      return 0;
    }
    console.log(`The audit log is NOT intact: ${result.problem} (line ${result.line}; ${result.records} records before it check out).`);
    return 1;
  }
  if (sub === 'tail') {
    const stateDir = await stateDirFromArgs(args);
    const n = Number(args.values.lines ?? '20');
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`-n takes a whole number, not "${args.values.lines}"`);
    const { records, end } = await readAuditTail(stateDir, n);
    for (const r of records) console.log(formatAuditRecord(r));
    if (args.values.follow === true) {
      const stop = new AbortController();
      void waitForSignal().then(() => stop.abort());
      await followAudit(stateDir, (r) => console.log(formatAuditRecord(r)), stop.signal, { from: end });
    }
    return 0;
  }
  throw new UsageError('audit takes "verify" or "tail"');
}
