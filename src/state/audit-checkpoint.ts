/**
 * Checkpoints of the audit chain's head (DESIGN.md, "On the record,
 * durably"). A hash chain shows an edited, deleted or reordered record, but
 * not a cut-off tail: what remains is still a valid chain. So Airlock
 * periodically signs the head it has on disk (seq, hash, time; HMAC-SHA-256
 * under a key kept out of the state store) into a file kept out of the state
 * store. `airlock audit verify` then knows the log must reach that record,
 * with that hash.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from './atomic-file.js';
import type { FileAuditLog } from './file-audit-log.js';

export interface AuditCheckpoint {
  seq: number;
  hash: string;
  /** When the head was signed (ISO time). */
  at: string;
  /** HMAC-SHA-256 of the above, hex. */
  mac: string;
}

export interface CheckpointTarget {
  /** Where the checkpoint lives: outside the state directory, ideally another volume or host. */
  file: string;
  /** The signing key. */
  key: string;
}

function mac(key: string, seq: number, hash: string, at: string): string {
  return createHmac('sha256', key).update(`airlock audit checkpoint\0${seq}\0${hash}\0${at}`).digest('hex');
}

/** Signs a head and replaces the checkpoint file with it, atomically (write, then rename). */
export async function writeCheckpoint(target: CheckpointTarget, head: { seq: number; hash: string }, at = new Date()): Promise<AuditCheckpoint> {
  const iso = at.toISOString();
  const checkpoint: AuditCheckpoint = { seq: head.seq, hash: head.hash, at: iso, mac: mac(target.key, head.seq, head.hash, iso) };
  await writeFileAtomic(target.file, JSON.stringify(checkpoint) + '\n');
  return checkpoint;
}

/** Reads and checks the checkpoint file: a missing, unreadable or forged one is a problem in words. */
export async function readCheckpoint(target: CheckpointTarget): Promise<{ ok: true; checkpoint: AuditCheckpoint } | { ok: false; problem: string }> {
  let text: string;
  try {
    text = await readFile(target.file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return {
      ok: false,
      problem:
        code === 'ENOENT'
          ? `The audit checkpoint ${target.file} is missing: it was deleted, or Airlock never ran with this configuration.`
          : `The audit checkpoint ${target.file} cannot be read (${code ?? (err as Error).message}).`,
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: `The audit checkpoint ${target.file} is not valid JSON, so it was not written by Airlock.` };
  }
  const c = value as Partial<AuditCheckpoint>;
  if (typeof c.seq !== 'number' || typeof c.hash !== 'string' || typeof c.at !== 'string' || typeof c.mac !== 'string') {
    return { ok: false, problem: `The audit checkpoint ${target.file} lacks seq, hash, at or mac.` };
  }
  const expected = Buffer.from(mac(target.key, c.seq, c.hash, c.at), 'hex');
  const given = Buffer.from(c.mac, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return {
      ok: false,
      problem: `The audit checkpoint ${target.file} does not carry a valid signature: it was changed, or the checkpoint key is not the one it was signed with.`,
    };
  }
  return { ok: true, checkpoint: c as AuditCheckpoint };
}

/**
 * Signs the log's durable head every `intervalMs` while it moves on, and
 * once more when stopped. A failure to write is reported, and tried again.
 */
export function startCheckpoints(
  log: FileAuditLog,
  target: CheckpointTarget,
  options: { intervalMs?: number; onError?: (err: Error) => void } = {},
): { stop(): Promise<void> } {
  let lastSeq = -1;
  let writing: Promise<void> = Promise.resolve();
  const tick = (): Promise<void> => {
    writing = writing.then(async () => {
      const head = log.syncedHead;
      if (head.seq === lastSeq) return;
      try {
        await writeCheckpoint(target, head);
        lastSeq = head.seq;
      } catch (err) {
        options.onError?.(err as Error);
      }
    });
    return writing;
  };
  const timer = setInterval(() => void tick(), options.intervalMs ?? 1000);
  timer.unref();
  void tick();
  return {
    async stop() {
      clearInterval(timer);
      await tick();
    },
  };
}
