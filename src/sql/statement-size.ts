/**
 * The first and cheapest limit on a statement: its size, checked before any
 * parsing. PostgreSQL's parser costs time and memory that grow with the text
 * (and faster than linearly on some inputs), so a text past
 * limits.max_statement_bytes is refused unread.
 */
import type { Classification } from './facts.js';

/** 1 MiB: far above any statement an application or agent writes by hand. */
export const DEFAULT_MAX_STATEMENT_BYTES = 1024 * 1024;

/**
 * The refusal for a statement of `byteLength` UTF-8 bytes, or null when it is
 * within `maxBytes`. Pure; give it the message's byte count where the bytes
 * are at hand, or `Buffer.byteLength(text, 'utf8')`.
 */
export function statementSizeRefusal(byteLength: number, maxBytes: number): Extract<Classification, { ok: false }> | null {
  if (byteLength <= maxBytes) return null;
  return {
    ok: false,
    unjudged: 'too-large',
    error: `the statement is ${byteLength} bytes long, more than the ${maxBytes} bytes limits.max_statement_bytes allows, so it was not parsed or run`,
  };
}
