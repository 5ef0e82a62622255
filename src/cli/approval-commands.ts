/**
 * `airlock approvals`, `airlock approve ID`, `airlock deny ID`: a human's
 * side of the approval flow, through the running server's admin API with an
 * admin token (never the state store).
 */
import { adminRequest } from './admin-client.js';
import type { CommandArgs } from './main.js';
import { UsageError } from './main.js';
import { report, target } from './freeze-commands.js';
import { impactText } from '../state/approval-store.js';
import type { ApprovalRequest } from '../state/approval-store.js';

function requestId(rest: string[], command: string): string {
  const id = rest[0];
  if (id === undefined || !/^#?\d{1,15}$/.test(id)) throw new UsageError(`${command} takes a request's number (as "airlock approvals" lists them), e.g. ${command} 42`);
  return id.replace(/^#/, '');
}

/** One line a request: `#ID`, agent, age, impact, reason, statement. */
export function requestLine(r: ApprovalRequest, now = Date.now()): string {
  const age = Math.max(0, Math.round((now - Date.parse(r.created)) / 1000));
  const ageText = age < 120 ? `${age}s` : age < 7200 ? `${Math.round(age / 60)}m` : `${Math.round(age / 3600)}h`;
  const impact = impactText(r);
  const state = r.state === 'pending' ? '' : ` [${r.state}${r.decidedBy === undefined ? '' : ` by ${r.decidedBy}`}]`;
  const statement = r.text.replace(/\s+/g, ' ').trim();
  const params = r.params.length > 0 ? ` with ${JSON.stringify(r.params)}` : '';
  const words: Record<string, string> = { d: 'deletes', o: 'before', n: 'after', i: 'inserts', t: 'empties' };
  const sample = (r.sample ?? []).slice(0, 4).map((s) => `\n      ${(words[s.kind] ?? s.kind).padEnd(7)} ${s.table} ${s.image.length > 160 ? `${s.image.slice(0, 160)}…` : s.image}`);
  return `#${r.id}  ${r.agent}  ${ageText} ago  impact: ${impact}  reason: ${r.reason ?? '(none given)'}${state}\n    ${statement}${params}${sample.join('')}`;
}

export async function runApprovals(args: CommandArgs): Promise<number> {
  const t = await target(args);
  const r = await adminRequest(t, 'GET', `/v1/approvals${args.values.all === true ? '?all=true' : ''}`);
  if (r.status >= 400 || args.values.json === true) return report(r.status, r.body);
  const requests = (r.body as { requests: ApprovalRequest[] }).requests;
  if (requests.length === 0) console.log(args.values.all === true ? 'No approval requests.' : 'No approval requests are pending.');
  for (const request of requests) console.log(requestLine(request));
  return 0;
}

export async function runApprove(args: CommandArgs, rest: string[]): Promise<number> {
  const id = requestId(rest, 'approve');
  const body: Record<string, number> = {};
  if (args.values['max-rows'] !== undefined) {
    const n = Number(args.values['max-rows']);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`--max-rows takes a whole number of rows, not "${args.values['max-rows']}"`);
    body.max_rows = n;
  }
  const t = await target(args);
  const r = await adminRequest(t, 'POST', `/v1/approvals/${id}/approve`, body);
  return printMessage(r.status, r.body);
}

export async function runDeny(args: CommandArgs, rest: string[]): Promise<number> {
  const id = requestId(rest, 'deny');
  const reason = args.values.reason;
  if (reason === undefined || reason.trim() === '') throw new UsageError('deny needs --reason "…" (the agent is told it)');
  const t = await target(args);
  const r = await adminRequest(t, 'POST', `/v1/approvals/${id}/deny`, { reason });
  return printMessage(r.status, r.body);
}

function printMessage(status: number, body: unknown): number {
  if (status >= 400) return report(status, body);
  console.log((body as { message: string }).message);
  return 0;
}
