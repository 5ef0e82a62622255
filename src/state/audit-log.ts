/**
 * The audit log: an append-only, hash-chained record of everything Airlock
 * does (DESIGN.md, "Everything is on the record").
 *
 * This module holds the seam (`AuditLog`, which the embedded file log and a
 * later PostgreSQL-backed log both implement) and the record's canonical
 * form, which every implementation and the verifier must agree on byte for
 * byte: a record's hash is only reproducible if its serialisation is.
 */
import { hash as sha256 } from 'node:crypto';

/** Kinds of event on the record. Later issues extend the list (approvals, freezes, undo). */
export const AUDIT_EVENTS = [
  'statement',
  /** A write about to be kept: on the record, durably, before its COMMIT is sent (detail: changeId, txid, tables). */
  'write-intent',
  'connect',
  'disconnect',
  'auth-failed',
  'refused-startup',
  'breach',
  'tripwire',
  'freeze',
  'unfreeze',
  /** A statement held for a human's approval (detail: request id, impact of its dry run). */
  'approval-request',
  /** An admin approved or denied a request (detail: request id, by). */
  'approve',
  'deny',
  /** An admin's undo of journalled changes (detail: by, changes, undoChangeId, tables). */
  'undo',
  /** A human signed in to or out of the dashboard (detail: by, client). */
  'sign-in',
  'sign-out',
  /** An admin dropped trashed tables for good (detail: by, changes, tables). */
  'trash-purge',
  'startup',
  'shutdown',
] as const;
export type AuditEvent = (typeof AUDIT_EVENTS)[number];

export const AUDIT_DECISIONS = ['allow', 'deny'] as const;
export type AuditDecision = (typeof AUDIT_DECISIONS)[number];

/** What a caller puts on the record; the log adds `seq`, `at`, `prev` and `hash`. */
export interface AuditEntry {
  event: AuditEvent;
  agent: string | null;
  /** Airlock's session id. */
  session: string | null;
  /** Client address, "ip:port". */
  client: string | null;
  /** Statement text. */
  text?: string;
  /** Bind parameters as text; binary ones as `\x..` hex (see `binaryParamText`). */
  params?: (string | null)[];
  fingerprint?: string;
  decision?: AuditDecision;
  /** Name of the rule that decided. */
  rule?: string;
  /** Human message. */
  reason?: string;
  /** For refusals and upstream errors. */
  sqlstate?: string;
  durationMs?: number;
  rows?: number | null;
  detail?: Record<string, unknown>;
}

export interface AuditRecord extends AuditEntry {
  /** 1 for the first record, then consecutive. */
  seq: number;
  /** ISO 8601 time at which the entry was appended. */
  at: string;
  /** Hex SHA-256 of the previous record (`GENESIS_HASH` for the first). */
  prev: string;
  /** Hex SHA-256 of `prev + '\n' + canonical JSON of this record without hash`. */
  hash: string;
}

/** The seam between Airlock and its audit store (embedded file, or PostgreSQL later). */
export interface AuditLog {
  /** Queues an entry; cheap and synchronous. Throws AuditUnavailableError when the log is unhealthy. */
  append(entry: AuditEntry): void;
  /** Queues an entry and resolves once it is durably written (fsync). */
  appendDurable(entry: AuditEntry): Promise<AuditRecord>;
  /** False once a write to the store has failed (or the log is closed); it never becomes true again. */
  readonly healthy: boolean;
  /** Resolves once every entry appended before the call is durably written. */
  flush(): Promise<void>;
  /** Flushes what is queued, then releases the store. */
  close(): Promise<void>;
}

/**
 * The audit store cannot take records: the gateway must refuse new statements
 * rather than serve them unrecorded.
 */
export class AuditUnavailableError extends Error {
  override readonly name = 'AuditUnavailableError';
  /** SQLSTATE the gateway can answer with: io_error (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
  readonly sqlstate = '58030';
  readonly hint =
    'Airlock refuses statements while its audit log cannot record them. An operator should check the state store (disk space, permissions, the log file) and restart Airlock.';
}

/** The `prev` of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** Text form of a binary bind parameter, as PostgreSQL's bytea hex output writes it. */
export function binaryParamText(bytes: Uint8Array): string {
  return '\\x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

// ---------------------------------------------------------------------------
// Canonical form.
//
// A record is one line of JSON with its keys in this fixed order, `hash`
// last. `agent`, `session` and `client` are always present (null when not
// known); the other entry fields appear only when set. Inside `detail`, keys
// are sorted (JSON.stringify's own rule then puts integer-like keys first),
// so the text is a function of the record's content alone.
// hash = sha256(prev + '\n' + the line without its `,"hash":"…"` member).

/** Keys of a record, in canonical order. */
export const AUDIT_RECORD_KEYS = [
  'seq',
  'at',
  'event',
  'agent',
  'session',
  'client',
  'text',
  'params',
  'fingerprint',
  'decision',
  'rule',
  'reason',
  'sqlstate',
  'durationMs',
  'rows',
  'detail',
  'prev',
  'hash',
] as const;

const RECORD_KEY_SET: ReadonlySet<string> = new Set(AUDIT_RECORD_KEYS);
const EVENT_SET: ReadonlySet<string> = new Set(AUDIT_EVENTS);
const HEX64 = /^[0-9a-f]{64}$/;
/** `,"hash":"` + 64 hex digits + `"}`: the fixed-length end of every line. */
const HASH_SUFFIX_LENGTH = 9 + 64 + 2;
const HASH_SUFFIX = /,"hash":"([0-9a-f]{64})"\}$/;

function sortKeys(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) sorted[k] = (value as Record<string, unknown>)[k];
  return sorted;
}

// Hoisted: auditEntryProblem runs for every record appended (every statement of every session).
const IDENTITY_KEYS = ['agent', 'session', 'client'] as const;
const STRING_KEYS = ['text', 'fingerprint', 'rule', 'reason', 'sqlstate'] as const;

/**
 * Says what is wrong with an entry's fields, or null. Checked on append (so
 * that a bad entry fails its caller, not a later batch) and on reading.
 */
export function auditEntryProblem(value: object): string | null {
  const entry = value as Readonly<Record<string, unknown>>;
  if (typeof entry.event !== 'string' || !EVENT_SET.has(entry.event)) {
    return `The audit event ${JSON.stringify(entry.event)} is not one of ${AUDIT_EVENTS.join(', ')}.`;
  }
  for (const key of IDENTITY_KEYS) {
    const v = entry[key];
    if (v !== null && typeof v !== 'string') return `The audit field "${key}" must be a string or null.`;
  }
  for (const key of STRING_KEYS) {
    const v = entry[key];
    if (v !== undefined && typeof v !== 'string') return `The audit field "${key}" must be a string.`;
  }
  const { params, decision, durationMs, rows, detail } = entry;
  if (params !== undefined && !(Array.isArray(params) && params.every((p) => p === null || typeof p === 'string'))) {
    return 'The audit field "params" must be an array of strings and nulls.';
  }
  if (decision !== undefined && decision !== 'allow' && decision !== 'deny') {
    return 'The audit field "decision" must be "allow" or "deny".';
  }
  if (durationMs !== undefined && !(typeof durationMs === 'number' && Number.isFinite(durationMs))) {
    return 'The audit field "durationMs" must be a finite number.';
  }
  if (rows !== undefined && rows !== null && !(typeof rows === 'number' && Number.isFinite(rows))) {
    return 'The audit field "rows" must be a finite number or null.';
  }
  if (detail !== undefined && (detail === null || typeof detail !== 'object' || Array.isArray(detail))) {
    return 'The audit field "detail" must be an object.';
  }
  return null;
}

/**
 * The canonical text of a record up to and including `"prev":"`: everything
 * that is known when the entry is appended. Throws (TypeError) when `detail`
 * cannot be serialised (a BigInt, a cycle).
 */
export function auditRecordHead(entry: AuditEntry, seq: number, at: string): string {
  // One JSON.stringify of an object built in canonical order (it drops the
  // undefined members) is several times cheaper than one call per member.
  const json = JSON.stringify({
    seq,
    at,
    event: entry.event,
    agent: entry.agent,
    session: entry.session,
    client: entry.client,
    text: entry.text,
    params: entry.params,
    fingerprint: entry.fingerprint,
    decision: entry.decision,
    rule: entry.rule,
    reason: entry.reason,
    sqlstate: entry.sqlstate,
    durationMs: entry.durationMs,
    rows: entry.rows,
  });
  const detail = entry.detail === undefined ? '' : `,"detail":${JSON.stringify(entry.detail, sortKeys)}`;
  return json.slice(0, -1) + detail + ',"prev":"';
}

/**
 * Longest statement text (and parameter) a record holds, in characters.
 * A longer one is recorded as its beginning, with its length and the
 * sha256 of the whole (`detail.cut`): the record still names exactly what
 * was sent, and an agent that sends megabyte statements cannot make each
 * one cost the gateway a megabyte of serialising, hashing and disk.
 */
export const AUDIT_TEXT_MAX_CHARS = 16 * 1024;

/** The entry with any text or parameter past AUDIT_TEXT_MAX_CHARS cut, and `detail.cut` saying what was cut. */
export function withBoundedText(entry: AuditEntry): AuditEntry {
  const long = (v: string | null | undefined): v is string => typeof v === 'string' && v.length > AUDIT_TEXT_MAX_CHARS;
  const params = entry.params;
  if (!long(entry.text) && (params === undefined || !params.some(long))) return entry;
  const cut: Record<string, { chars: number; sha256: string }> = {};
  const bounded = (v: string, key: string): string => {
    cut[key] = { chars: v.length, sha256: sha256('sha256', v, 'hex') };
    return v.slice(0, AUDIT_TEXT_MAX_CHARS);
  };
  const out: AuditEntry = { ...entry };
  if (long(entry.text)) out.text = bounded(entry.text, 'text');
  if (params !== undefined) out.params = params.map((v, i) => (long(v) ? bounded(v, `params[${i}]`) : v));
  out.detail = { ...entry.detail, cut };
  return out;
}

/** The hash of a record, given its predecessor's hash and its text without the hash member. */
export function auditRecordHash(prev: string, body: string): string {
  return sha256('sha256', prev + '\n' + body, 'hex');
}

/** Completes a record: its hash and its line (with the trailing newline). */
export function sealAuditRecord(head: string, prev: string): { hash: string; line: string } {
  const hash = auditRecordHash(prev, head + prev + '"}');
  return { hash, line: head + prev + '","hash":"' + hash + '"}\n' };
}

export type ParsedAuditLine =
  | { ok: true; record: AuditRecord; /** The hashed text: the line without its hash member. */ body: string }
  | { ok: false; problem: string };

/**
 * Reads one line (without its newline) as a record and checks that it is in
 * canonical form. It does not check the hash or the chain: see audit-verify.
 */
export function parseAuditLine(line: string): ParsedAuditLine {
  const m = HASH_SUFFIX.exec(line.slice(-HASH_SUFFIX_LENGTH));
  if (m === null || line.length <= HASH_SUFFIX_LENGTH) {
    return { ok: false, problem: 'it does not end with a "hash" member, so it is not a whole audit record' };
  }
  const body = line.slice(0, -HASH_SUFFIX_LENGTH) + '}';
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    return { ok: false, problem: `it is not valid JSON (${(err as Error).message})` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, problem: 'it is not a JSON object' };
  }
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!RECORD_KEY_SET.has(key) || key === 'hash') return { ok: false, problem: `it has an unknown member "${key}"` };
  }
  const { seq, at, prev } = obj;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
    return { ok: false, problem: 'its "seq" is not a positive integer' };
  }
  if (typeof at !== 'string') return { ok: false, problem: 'its "at" is not a string' };
  if (typeof prev !== 'string' || !HEX64.test(prev)) return { ok: false, problem: 'its "prev" is not a SHA-256 hex digest' };
  const entryProblem = auditEntryProblem(obj);
  if (entryProblem !== null) return { ok: false, problem: entryProblem.replace(/^The /, 'the ').replace(/\.$/, '') };
  const record = obj as unknown as AuditRecord;
  if (auditRecordHead(record, seq, at) + prev + '"}' !== body) {
    return { ok: false, problem: 'it is not in canonical form (members reordered, reformatted or duplicated)' };
  }
  record.hash = m[1] as string;
  return { ok: true, record, body };
}
