/**
 * One readable line per audit record, for `airlock audit tail`.
 *
 * Everything in a record that an agent chose (statement text, names,
 * reasons echoing them) is untrusted: control characters are shown escaped,
 * never sent to the operator's terminal, where an escape sequence could
 * rewrite what is on screen, and so are the Unicode controls that reorder
 * text (a "Trojan Source" statement would read differently than it runs).
 */
import type { AuditRecord } from './audit-log.js';

export interface AuditFormatOptions {
  /** Longest statement (or reason) shown, in characters, before it is cut with "…" (default 160). */
  maxText?: number;
}

// C0 and C1 controls, DEL, and the bidirectional formatting characters
// (https://www.unicode.org/reports/tr9/#Directional_Formatting_Characters).
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** Makes agent-chosen text safe for one terminal line: whitespace runs become one space, controls are escaped, long text is cut. */
export function singleLine(text: string, max: number): string {
  const safe = text.replace(/\s+/g, ' ').trim().replace(UNSAFE, escapeChar);
  const chars = Array.from(safe); // by code point, so that a cut never splits a surrogate pair
  return chars.length <= max ? safe : chars.slice(0, Math.max(0, max - 1)).join('') + '…';
}

function formatDuration(ms: number): string {
  return `${ms.toFixed(ms < 10 ? 2 : ms < 100 ? 1 : 0)} ms`;
}

/**
 * `2026-11-26 14:50:01.123Z #42 claude allow [reads] 3 rows 1.20 ms: SELECT …`
 * Non-statement events name the event after the sequence number.
 */
export function formatAuditRecord(record: AuditRecord, options: AuditFormatOptions = {}): string {
  const max = options.maxText ?? 160;
  const short = (s: string): string => singleLine(s, 64);
  const parts: string[] = [record.at.replace('T', ' '), `#${record.seq}`];
  if (record.event !== 'statement') parts.push(record.event);
  parts.push(record.agent === null ? '-' : short(record.agent));
  if (record.decision !== undefined) parts.push(record.decision);
  if (record.rule !== undefined) parts.push(`[${short(record.rule)}]`);
  if (record.sqlstate !== undefined) parts.push(short(record.sqlstate));
  if (record.rows !== undefined && record.rows !== null) parts.push(record.rows === 1 ? '1 row' : `${record.rows} rows`);
  if (record.durationMs !== undefined) parts.push(formatDuration(record.durationMs));
  if (record.event !== 'statement' && record.client !== null) parts.push(short(record.client));
  let line = parts.join(' ');
  if (record.text !== undefined) line += `: ${singleLine(record.text, max)}`;
  if (record.reason !== undefined) line += ` (${singleLine(record.reason, max)})`;
  return line;
}
