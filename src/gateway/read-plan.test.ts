import { describe, expect, it } from 'vitest';
import { estimateOfPlan } from './read-plan.js';
import { parseBind, rebindForTextResults } from '../protocol/frontend.js';

describe('estimateOfPlan', () => {
  it('reads the top row estimate and each relation scan, schema-qualified, summed over scans of one table', () => {
    const plan = JSON.stringify([
      {
        Plan: {
          'Node Type': 'Hash Join',
          'Plan Rows': 40,
          Plans: [
            { 'Node Type': 'Seq Scan', 'Relation Name': 'executives', Schema: 'public', 'Plan Rows': 1206 },
            { 'Node Type': 'Hash', 'Plan Rows': 3, Plans: [{ 'Node Type': 'Index Scan', 'Relation Name': 'executives', Schema: 'public', 'Plan Rows': 3 }] },
          ],
        },
      },
    ]);
    expect(estimateOfPlan(plan)).toEqual({ rows: 40, tables: { 'public.executives': 1209 } });
  });

  it('says why when the output is not a plan', () => {
    expect(estimateOfPlan('not json')).toEqual({ error: 'the plan is not JSON' });
    expect(estimateOfPlan('[{}]')).toEqual({ error: 'the plan has no row estimate' });
  });
});

describe('rebindForTextResults', () => {
  it("keeps the client's parameters and their formats, renames, and asks for text results", () => {
    // portal "p", statement "s", formats [1, 0], values [0x0001, 'x'], result formats [1, 1]
    const body = Buffer.concat([
      Buffer.from('p\0s\0'),
      Buffer.from([0, 2, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1, 0, 0, 0, 1]),
      Buffer.from('x'),
      Buffer.from([0, 2, 0, 1, 0, 1]),
    ]);
    const out = rebindForTextResults(body, '', '');
    expect(out[0]).toBe(0x42);
    const rebound = out.subarray(5);
    expect(parseBind(rebound)).toEqual({ portal: '', statement: '', params: ['\\x0001', 'x'] });
    // No result formats: every column in text.
    expect([...rebound.subarray(rebound.length - 2)]).toEqual([0, 0]);
  });
});
