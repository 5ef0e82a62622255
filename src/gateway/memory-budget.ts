/**
 * The process-wide memory budget (limits.max_memory_bytes): while the
 * process's resident memory is over it, Airlock takes on no new work that
 * costs memory — no new connections, no statement not already judged (a
 * parse costs tens of MB for a long one) — and says why. Work already under
 * way, and statements already judged (cache hits), go on, so that the
 * process gets back under the budget instead of being killed over it.
 */

/** How long one reading of the resident memory is trusted, in milliseconds. */
const SAMPLE_MS = 50;

export class MemoryBudget {
  private sampledAt = -Infinity;
  private lastBytes = 0;

  constructor(
    /** The budget in bytes; 0 means none. */
    readonly maxBytes: number,
    private readonly residentBytes: () => number = () => process.memoryUsage.rss(),
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The refusal's sentence when the process is over its budget, else null. Cheap: reads memory at most every 50 ms. */
  exceeded(): string | null {
    if (this.maxBytes === 0) return null;
    const now = this.now();
    if (now - this.sampledAt >= SAMPLE_MS) {
      this.sampledAt = now;
      this.lastBytes = this.residentBytes();
    }
    if (this.lastBytes <= this.maxBytes) return null;
    return `Airlock is over its memory budget (${mib(this.lastBytes)} MiB in use, limits.max_memory_bytes is ${mib(this.maxBytes)} MiB), so it takes on no new work until it is back under`;
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}
