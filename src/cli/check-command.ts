/**
 * `airlock check "SQL"`: what the parser reads and what the policy decides,
 * without a database.
 */
import { loadParser, classify } from '../sql/classify.js';
import { judgeClassification } from '../policy/read-only.js';
import type { CommandArgs } from './main.js';
import { UsageError } from './main.js';
import { configFromArgs } from './config-path.js';

export async function runCheck(args: CommandArgs, rest: string[]): Promise<number> {
  if (rest.length !== 1) throw new UsageError('check takes one SQL string (quote it)');
  const sql = rest[0]!;
  let agent = args.values.agent ?? 'agent';
  let profile = 'read-only';
  if (args.values.config !== undefined || args.values.agent !== undefined) {
    const config = await configFromArgs(args);
    const found = args.values.agent === undefined ? config.agents[0] : config.agents.find((a) => a.name === args.values.agent);
    if (found === undefined) throw new UsageError(`no agent named "${args.values.agent}" in the config`);
    agent = found.name;
    profile = found.profile;
  }
  await loadParser();
  const classification = classify(sql);
  const decision = judgeClassification(classification, { agent, profile }, () => undefined);
  if (args.values.json === true) {
    console.log(JSON.stringify({ agent, profile, classification, decision }, null, 2));
  } else {
    if (!classification.ok) {
      console.log(`Parse error: ${classification.error}${classification.position !== undefined ? ` (at character ${classification.position})` : ''}`);
    } else {
      classification.statements.forEach((s, i) => {
        console.log(`Statement ${i + 1}: ${s.command} (${s.kind})`);
        console.log(`  text:      ${s.text}`);
        if (s.reads.length > 0) console.log(`  reads:     ${s.reads.map((r) => (r.schema ? `${r.schema}.` : '') + r.name).join(', ')}`);
        if (s.writes.length > 0) console.log(`  writes:    ${s.writes.map((r) => (r.schema ? `${r.schema}.` : '') + r.name).join(', ')}`);
        if (s.functions.length > 0) console.log(`  functions: ${s.functions.join(', ')}`);
        if (s.sideEffectFunctions.length > 0) console.log(`  side effects: ${s.sideEffectFunctions.join(', ')}`);
        if (s.hasWhere !== null) console.log(`  WHERE:     ${s.hasWhere ? 'yes' : 'no'}`);
        for (const flag of ['modifyingCte', 'explainAnalyze', 'selectInto', 'locking'] as const) {
          if (s[flag]) console.log(`  ${flag}: yes`);
        }
      });
      console.log(`Fingerprint: ${classification.fingerprint}`);
    }
    if (decision.kind === 'deny') {
      console.log(`Decision for agent "${agent}" (profile ${profile}): DENY [${decision.rule}, SQLSTATE ${decision.sqlstate}]`);
      console.log(`  ${decision.message}`);
      console.log(`  Hint: ${decision.hint}`);
    } else {
      console.log(`Decision for agent "${agent}" (profile ${profile}): ALLOW (${decision.kind})`);
    }
  }
  return decision.kind === 'deny' ? 3 : 0;
}
