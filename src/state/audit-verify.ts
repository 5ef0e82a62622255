/**
 * `airlock audit verify`: walks the embedded audit log from its first record
 * and checks that it is one unbroken hash chain.
 *
 * It finds an edited record (its hash no longer matches), a deleted, inserted
 * or reordered record (a gap in `seq`, a `prev` that is not the hash of the
 * line before), a torn line and a log that does not start at its beginning.
 * Alone it cannot find a cut-off tail (the records that remain still form a
 * valid chain); given a signed head checkpoint (audit-checkpoint.ts) it
 * also checks that the log reaches that record, unchanged.
 */
import { createReadStream } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { GENESIS_HASH, auditRecordHash, parseAuditLine } from './audit-log.js';
import { auditLogPath } from './file-audit-log.js';

export type AuditVerification =
  | { ok: true; records: number; /** Hash of the last record (GENESIS_HASH when empty). */ head: string }
  | { ok: false; /** Records that verified before the problem. */ records: number; problem: string; /** 1-based line of the problem. */ line: number };

/** Streams the log under `stateDir` and checks every record and link of its chain. */
export async function verifyAuditLog(
  stateDir: string,
  options: { checkpoint?: { seq: number; hash: string; at: string } } = {},
): Promise<AuditVerification> {
  const checkpoint = options.checkpoint;
  const path = auditLogPath(stateDir);
  let records = 0;
  let head = GENESIS_HASH;
  let lineNo = 0;

  const check = (bytes: Buffer): string | null => {
    if (bytes.length === 0) return `Line ${lineNo} is empty; every line of the audit log is one record.`;
    if (!isUtf8(bytes)) return `Line ${lineNo} is not valid UTF-8, so it was not written by Airlock.`;
    const parsed = parseAuditLine(bytes.toString('utf8'));
    if (!parsed.ok) return `Line ${lineNo} is not a valid record: ${parsed.problem}.`;
    const { seq, prev, hash } = parsed.record;
    if (records === 0) {
      if (seq !== 1) {
        return `The first record has seq ${seq}, not 1: the log does not start at its beginning (records before it were removed).`;
      }
      if (prev !== GENESIS_HASH) {
        return 'The first record does not start the chain: its prev is not 64 zeros, so records before it were removed or it was changed.';
      }
    } else {
      const expected = records + 1;
      if (seq > expected) return `Line ${lineNo} has seq ${seq} where ${expected} was expected: records were deleted or moved.`;
      if (seq < expected) return `Line ${lineNo} has seq ${seq} where ${expected} was expected: records were moved or repeated.`;
      if (prev !== head) {
        return `Line ${lineNo}'s prev is not the hash of the record before it: a record before it was replaced, or it was changed.`;
      }
    }
    if (auditRecordHash(prev, parsed.body) !== hash) {
      return `Line ${lineNo} (seq ${seq}) does not match its hash: the record was changed after it was written.`;
    }
    records++;
    head = hash;
    if (checkpoint !== undefined && seq === checkpoint.seq && hash !== checkpoint.hash) {
      return `Record ${seq} is not the one the checkpoint of ${checkpoint.at} signed: the log was rewritten from there on.`;
    }
    return null;
  };

  let carry: Buffer | null = null;
  try {
    for await (const data of createReadStream(path, { highWaterMark: 1 << 20 })) {
      const chunk: Buffer = carry === null ? (data as Buffer) : Buffer.concat([carry, data as Buffer]);
      let start = 0;
      for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
        lineNo++;
        const problem = check(chunk.subarray(start, nl));
        if (problem !== null) return { ok: false, records, problem, line: lineNo };
        start = nl + 1;
      }
      carry = start < chunk.length ? Buffer.from(chunk.subarray(start)) : null;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return { ok: false, records: 0, problem: `There is no audit log at ${path}; check the state directory.`, line: 0 };
    }
    throw err;
  }
  if (carry !== null) {
    return {
      ok: false,
      records,
      problem: `Line ${lineNo + 1} is torn: it has no newline at its end, as a crash in the middle of a write or a cut through the file leaves.`,
      line: lineNo + 1,
    };
  }
  if (checkpoint !== undefined && records < checkpoint.seq) {
    return {
      ok: false,
      records,
      problem: `The log ends at record ${records}, but the checkpoint of ${checkpoint.at} saw record ${checkpoint.seq}: records were cut off its end.`,
      line: lineNo + 1,
    };
  }
  return { ok: true, records, head };
}
