/**
 * `airlock check "SQL"`: what the parser reads and what the policy decides,
 * without a database. With a config (or --agent), the agent's own profile,
 * rules and write limits decide; without, the read-only profile does.
 */
import { loadParser, classify } from '../sql/classify.js';
import type { StatementFacts } from '../sql/facts.js';
import { accessNeeds } from '../policy/access.js';
import { judgeClassification } from '../policy/read-only.js';
import type { PolicySubject } from '../policy/read-only.js';
import { compileAgentPolicy } from '../policy/rules.js';
import type { AgentPolicy } from '../policy/rules.js';
import { qualifiedRelation } from '../policy/table-pattern.js';
import type { CommandArgs } from './main.js';
import { UsageError } from './main.js';
import { configFromArgs } from './config-path.js';

export async function runCheck(args: CommandArgs, rest: string[]): Promise<number> {
  if (rest.length !== 1) throw new UsageError('check takes one SQL string (quote it)');
  const sql = rest[0]!;
  const subject: PolicySubject = { agent: args.values.agent ?? 'agent', profile: 'read-only' };
  if (args.values.config !== undefined || args.values.agent !== undefined) {
    const config = await configFromArgs(args);
    const found = args.values.agent === undefined ? config.agents[0] : config.agents.find((a) => a.name === args.values.agent);
    if (found === undefined) throw new UsageError(`no agent named "${args.values.agent}" in the config`);
    subject.agent = found.name;
    subject.profile = found.profile;
    subject.policy = compileAgentPolicy(found, config.rules);
  }
  const { agent, profile, policy } = subject;
  await loadParser();
  const classification = classify(sql);
  // No schema: functions, views and canary views are not looked up, and names are judged as written.
  const decision = judgeClassification(classification, subject, () => undefined);
  if (args.values.json === true) {
    const limits = policy === undefined ? {} : { mayWrite: policy.mayWrite, writeLimits: policy.limits };
    console.log(JSON.stringify({ agent, profile, ...limits, classification, decision }, null, 2));
    return decision.kind === 'deny' ? 3 : 0;
  }
  if (!classification.ok) {
    console.log(`Parse error: ${classification.error}${classification.position !== undefined ? ` (at character ${classification.position})` : ''}`);
  } else {
    classification.statements.forEach((s, i) => printStatement(s, i, policy));
    console.log(`Fingerprint: ${classification.fingerprint}`);
  }
  const who = `Decision for agent "${agent}" (profile ${profile})`;
  if (decision.kind === 'deny') {
    console.log(`${who}: DENY [${decision.rule}, SQLSTATE ${decision.sqlstate}]`);
    console.log(`  ${decision.message}`);
    console.log(`  Hint: ${decision.hint}`);
  } else {
    console.log(`${who}: ALLOW (${decision.kind})`);
    if (decision.kind === 'allow-write' && policy !== undefined) {
      const l = policy.limits;
      console.log(
        `  Runs on the write path, within write_limits: max_rows ${l.maxRows}, require_where ${l.requireWhere ? 'on' : 'off'}, ` +
          `rows_per_hour ${l.rowsPerHour}, writes_per_minute ${l.writesPerMinute}.`,
      );
    }
  }
  return decision.kind === 'deny' ? 3 : 0;
}

const names = (refs: readonly { schema: string | null; name: string }[]) => refs.map((r) => (r.schema ? `${r.schema}.` : '') + r.name).join(', ');

function printStatement(s: StatementFacts, i: number, policy: AgentPolicy | undefined): void {
  console.log(`Statement ${i + 1}: ${s.command} (${s.kind})`);
  console.log(`  text:      ${s.text}`);
  if (s.reads.length > 0) console.log(`  reads:     ${names(s.reads)}`);
  if (s.writes.length > 0) console.log(`  writes:    ${names(s.writes)}`);
  if (s.changes.length > 0) console.log(`  changes:   ${s.changes.map((c) => `${c.action} ${names([c.relation])}`).join(', ')}`);
  if (s.functions.length > 0) console.log(`  functions: ${s.functions.join(', ')}`);
  if (s.sideEffectFunctions.length > 0) console.log(`  side effects: ${s.sideEffectFunctions.join(', ')}`);
  if (s.hasWhere !== null) console.log(`  WHERE:     ${s.hasWhere ? 'yes' : 'no'}`);
  for (const flag of ['modifyingCte', 'explainAnalyze', 'selectInto', 'locking', 'drops', 'cascade'] as const) {
    if (s[flag]) console.log(`  ${flag}: yes`);
  }
  if (policy === undefined) return;
  // What the agent's profile and rules say about each thing the statement does: the "why" behind the decision.
  for (const need of accessNeeds(s)) {
    const d = policy.decide(need.kind, need.relation);
    const on = need.relation === null ? '(no relation)' : qualifiedRelation(need.relation);
    console.log(`  policy:    ${need.kind} ${on}: ${d.decision} by ${d.by}${d.note === undefined ? '' : ` ("${d.note}")`}`);
  }
}
