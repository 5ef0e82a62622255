/**
 * The tripwire: an agent that keeps running into its limits, or touches a
 * canary table, is reported at once. Pure bookkeeping over a clock, so it can
 * be tested without waiting.
 */
import type { Denial } from './decision.js';

/** Refusals that count towards the tripwire: attempts to change something, or to change too much. */
export const DESTRUCTIVE_RULES = [
  'write',
  'ddl',
  'privilege',
  'utility',
  'server-file',
  'two-phase-commit',
  'row-lock',
  'where-required',
  'row-limit',
  'budget',
] as const;
const DESTRUCTIVE: ReadonlySet<string> = new Set(DESTRUCTIVE_RULES);

/** How a refusal that trips at once is described, by its rule. */
const TRIPS_AT_ONCE: Readonly<Record<string, string>> = {
  canary: 'touched a canary table',
  budget: 'exhausted its write budget',
};

export class Tripwire {
  private readonly recent = new Map<string, number[]>();

  constructor(
    private readonly refusals: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Destructive refusals of the agent's counted now, towards `refusals` within the window (read-only; the dashboard shows it). */
  recentRefusals(agent: string): number {
    const now = this.now();
    return (this.recent.get(agent) ?? []).filter((t) => now - t < this.windowMs).length;
  }

  /** Records a refusal of `agent`'s; returns why the tripwire trips now, or null. */
  record(agent: string, denial: Denial): string | null {
    if (denial.trips === true) return `${TRIPS_AT_ONCE[denial.rule] ?? `was refused by rule ${denial.rule}`} (${denial.message})`;
    if (!DESTRUCTIVE.has(denial.rule)) return null;
    const now = this.now();
    const times = (this.recent.get(agent) ?? []).filter((t) => now - t < this.windowMs);
    times.push(now);
    if (times.length >= this.refusals) {
      // Start counting afresh, so one burst is one alarm.
      this.recent.set(agent, []);
      return `had ${times.length} destructive statements refused within ${Math.round(this.windowMs / 1000)} s`;
    }
    this.recent.set(agent, times);
    return null;
  }
}
