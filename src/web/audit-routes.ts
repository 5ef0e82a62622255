/**
 * The audit log through the admin API: search it (GET /v1/audit) and verify
 * its chain (GET /v1/audit/verify), as `airlock audit tail` and `airlock
 * audit verify` do on the machine. Read-only; `AuditAccess` is the seam, and
 * `fileAuditAccess` reads the embedded log (src/state/file-audit-log.ts).
 */
import { createReadStream } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { AUDIT_DECISIONS, AUDIT_EVENTS, parseAuditLine } from '../state/audit-log.js';
import type { AuditRecord } from '../state/audit-log.js';
import { auditLogPath, followAudit } from '../state/file-audit-log.js';
import { verifyAuditLog } from '../state/audit-verify.js';
import { readCheckpoint } from '../state/audit-checkpoint.js';

export interface AuditFilter {
  agent?: string;
  event?: string;
  decision?: string;
  /** Words to find in the statement, reason or rule (case-insensitive). */
  text?: string;
  /** Only records before this seq (the next page). */
  before?: number;
  limit: number;
}

export interface AuditVerifyResult {
  ok: boolean;
  records: number;
  problem?: string;
  line?: number;
  head?: string;
  /** What the signed checkpoint vouches for, or why it cannot. */
  checkpoint: string;
}

export interface AuditAccess {
  /** The newest records that match, newest first. */
  search(filter: AuditFilter): Promise<AuditRecord[]>;
  /** Walks the whole chain (and the checkpoint, when configured). */
  verify(): Promise<AuditVerifyResult>;
  /** Calls `onRecord` for each record appended from now on, until `signal` aborts; resolves then, rejects if the log cannot be followed. */
  follow(onRecord: (record: AuditRecord) => void, signal: AbortSignal): Promise<void>;
}

/** The embedded audit log of `stateDir`, and its checkpoint when configured. */
export function fileAuditAccess(stateDir: string, checkpoint: { file: string; key: string } | null): AuditAccess {
  return {
    async search(filter) {
      const words = filter.text?.toLowerCase();
      const found: AuditRecord[] = [];
      const match = (r: AuditRecord): boolean =>
        (filter.before === undefined || r.seq < filter.before) &&
        (filter.agent === undefined || r.agent === filter.agent) &&
        (filter.event === undefined || r.event === filter.event) &&
        (filter.decision === undefined || r.decision === filter.decision) &&
        (words === undefined || [r.text, r.reason, r.rule].some((t) => t?.toLowerCase().includes(words)));
      let carry = '';
      try {
        // Oldest to newest, keeping the last `limit` matches: a log of a million records is read in a few seconds.
        for await (const chunk of createReadStream(auditLogPath(stateDir), { encoding: 'utf8', highWaterMark: 1 << 20 })) {
          const lines = (carry + (chunk as string)).split('\n');
          carry = lines.pop() ?? '';
          for (const line of lines) {
            const parsed = parseAuditLine(line);
            // A line that is not a record is for `verify` to report; the search shows what can be read.
            if (!parsed.ok || !match(parsed.record)) continue;
            found.push(parsed.record);
            if (found.length > filter.limit * 2) found.splice(0, found.length - filter.limit);
          }
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw err;
      }
      return found.slice(-filter.limit).reverse();
    },

    async verify() {
      let signed: { seq: number; hash: string; at: string } | undefined;
      let vouched = 'No audit checkpoint is configured (audit.checkpoint_file), so records cut off the end of the log would not show.';
      if (checkpoint !== null) {
        const read = await readCheckpoint(checkpoint);
        if (!read.ok) return { ok: false, records: 0, problem: `The audit log cannot be vouched for: ${read.problem}`, checkpoint: read.problem };
        signed = read.checkpoint;
        vouched = `It reaches the signed checkpoint of ${signed.at} (record ${signed.seq}).`;
      }
      const result = await verifyAuditLog(stateDir, { checkpoint: signed });
      return result.ok ? { ok: true, records: result.records, head: result.head, checkpoint: vouched } : { ...result, checkpoint: checkpoint === null ? vouched : 'The checkpoint could not be checked past the problem.' };
    },

    follow(onRecord, signal) {
      return followAudit(stateDir, onRecord, signal, { pollMs: 250 });
    },
  };
}

const EVENT_SET: ReadonlySet<string> = new Set(AUDIT_EVENTS);
const DECISION_SET: ReadonlySet<string> = new Set(AUDIT_DECISIONS);
const MAX_LIMIT = 500;

export function registerAuditRoutes(app: FastifyInstance, audit: AuditAccess): void {
  app.get<{ Querystring: Record<string, string | undefined> }>('/v1/audit', async (request, reply) => {
    const q = request.query;
    if (q.event !== undefined && !EVENT_SET.has(q.event)) {
      return reply.code(400).send({ error: `"event" must be one of ${AUDIT_EVENTS.join(', ')}; "${q.event}" is not.` });
    }
    if (q.decision !== undefined && !DECISION_SET.has(q.decision)) {
      return reply.code(400).send({ error: `"decision" must be allow or deny; "${q.decision}" is not.` });
    }
    const limit = q.limit === undefined ? 100 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) return reply.code(400).send({ error: `"limit" must be a whole number from 1 to ${MAX_LIMIT}.` });
    const before = q.before === undefined ? undefined : Number(q.before);
    if (before !== undefined && !(Number.isInteger(before) && before > 0)) return reply.code(400).send({ error: '"before" must be a record\'s seq (a positive whole number).' });
    const filter: AuditFilter = { limit };
    if (q.agent) filter.agent = q.agent;
    if (q.event) filter.event = q.event;
    if (q.decision) filter.decision = q.decision;
    if (q.q) filter.text = q.q.slice(0, 200);
    if (before !== undefined) filter.before = before;
    return { records: await audit.search(filter) };
  });

  app.get('/v1/audit/verify', async () => audit.verify());
}
