/**
 * `airlock audit verify` and `airlock audit tail [-f]`.
 */
import { resolve } from 'node:path';
import { verifyAuditLog } from '../state/audit-verify.js';
import { readCheckpoint } from '../state/audit-checkpoint.js';
import type { AuditCheckpoint } from '../state/audit-checkpoint.js';
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
    let stateDir: string;
    let checkpoint: AuditCheckpoint | undefined;
    if (args.values['state-dir'] !== undefined) {
      stateDir = resolve(args.values['state-dir']);
    } else {
      const config = await configFromArgs(args);
      stateDir = config.stateDir;
      if (config.audit.checkpoint !== null) {
        const read = await readCheckpoint(config.audit.checkpoint);
        if (!read.ok) {
          console.log(`The audit log cannot be vouched for: ${read.problem}`);
          return 1;
        }
        checkpoint = read.checkpoint;
      }
    }
    const result = await verifyAuditLog(stateDir, { checkpoint });
    if (result.ok) {
      const vouched =
        checkpoint === undefined
          ? ' (No audit checkpoint is configured, so records cut off its end would not show: see audit.checkpoint_file.)'
          : ` It reaches the signed checkpoint of ${checkpoint.at} (record ${checkpoint.seq}).`;
      console.log(`The audit log is intact: ${result.records} records, head ${result.head}.${vouched}`);
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
