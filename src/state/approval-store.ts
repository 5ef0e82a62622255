/**
 * Requests for a human's approval (DESIGN.md, "Waiting is the wire's answer
 * to approval"): a statement that needs one becomes a request bound to the
 * agent and to the hash of its exact text and parameters, with the impact
 * its dry run measured. An approval is good once, for that agent and hash,
 * within the approved impact, until the request expires.
 *
 * Kept in memory for the hot path and written to `<stateDir>/approvals.json`
 * (atomically) before a change takes effect. `ApprovalStore` is the seam a
 * state store shared by several instances would implement.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';

export type ApprovalState = 'pending' | 'approved' | 'denied' | 'executed' | 'expired';

export interface ApprovalRequest {
  id: number;
  agent: string;
  session: string;
  /** The statement exactly as sent, and its parameters (text; binary as '\x…' hex). */
  text: string;
  params: (string | null)[];
  /** sha256 of text and parameters: what an approval binds. */
  hash: string;
  /** What the agent said it is for (a `reason:` comment): shown, never trusted. */
  reason: string | null;
  /**
   * Rows per table ('schema.table') its dry run changed, cascades and
   * triggers included; for a read, the rows the planner expects each
   * relation's scans to yield.
   */
  impact: Record<string, number>;
  /** A read held by a rule: the rows the planner expects it to return (it is planned, not run). */
  read?: { rows: number | null };
  /** Some of the rows its dry run changed, before (`d`, `o`, `t`) and after (`i`, `n`), as row_to_json text (where capture is in place). */
  sample?: { table: string; kind: string; image: string }[];
  /** sha256 of each row the dry run changed or removed, as it was before: an approval binds these rows, not only their number. */
  before?: string[];
  created: string;
  expires: string;
  state: ApprovalState;
  /** The admin who approved or denied it, when, and why (deny), or the row bound given (approve). */
  decidedBy?: string;
  decidedAt?: string;
  denyReason?: string;
  maxRows?: number;
  executedAt?: string;
}

/** The bound an approval puts on its execution. */
export interface ApprovedBound {
  request: ApprovalRequest;
  /** Most rows per table, from the dry run; null when the approver gave a total instead. */
  perTable: Record<string, number> | null;
  /** Most rows in all, when the approver gave --max-rows. */
  maxRows: number | null;
  /** The rows (digests of their before-images) the dry run changed; null when capture was not in place. */
  before: string[] | null;
}

/** A request's impact in words: "public.tasks 3, public.notes 1", or a read's "reads ~40 rows (plan estimate; public.tasks ~40)". */
export function impactText(r: Pick<ApprovalRequest, 'impact' | 'read'>): string {
  const tables = Object.entries(r.impact);
  if (r.read !== undefined) {
    const scans = tables.length === 0 ? '' : `; ${tables.map(([t, n]) => `${t} ~${n}`).join(', ')}`;
    return r.read.rows === null ? 'a read (the planner gave no estimate)' : `reads ~${r.read.rows} rows (plan estimate${scans})`;
  }
  return tables.length === 0 ? 'no rows' : tables.map(([t, n]) => `${t} ${n}`).join(', ');
}

export class ApprovalError extends Error {
  constructor(
    readonly status: 404 | 409,
    message: string,
  ) {
    super(message);
    this.name = 'ApprovalError';
  }
}

export interface ApprovalStore {
  /** A new pending request, on disk before it is returned. */
  create(request: Omit<ApprovalRequest, 'id' | 'created' | 'expires' | 'state'>): Promise<ApprovalRequest>;
  /** The agent's pending request for this hash, if any (a re-sent statement waits on it). */
  pendingFor(agent: string, hash: string): ApprovalRequest | undefined;
  get(id: number): ApprovalRequest | undefined;
  /** Requests, newest first; pending only unless `all`. */
  list(all?: boolean): ApprovalRequest[];
  approve(id: number, by: string, maxRows: number | null): Promise<ApprovalRequest>;
  deny(id: number, by: string, reason: string): Promise<ApprovalRequest>;
  /** The agent's approved, unexpired, unused approval for this hash, now used; null if none. */
  take(agent: string, hash: string): Promise<ApprovedBound | null>;
  /** Resolves when the request is decided (or at once if it is), or after `ms`: its state then. */
  waitForDecision(id: number, ms: number): Promise<ApprovalState>;
}

/** The hash an approval binds: the exact text and parameters (not the literal-blind fingerprint). */
export function statementHash(text: string, params: readonly (string | null)[]): string {
  return createHash('sha256').update(JSON.stringify([text, params])).digest('hex');
}

/** The reason an agent gives in a `/* reason: … *\/` comment, if any (shown to the human, never trusted). */
export function statedReason(text: string): string | null {
  const m = /\/\*\s*reason\s*:\s*([\s\S]*?)\s*\*\//i.exec(text);
  return m === null || m[1] === '' ? null : m[1]!.slice(0, 500);
}

export const APPROVALS_FILE = 'approvals.json';

interface FileShape {
  version: 1;
  next: number;
  requests: ApprovalRequest[];
}

/** Decided and executed requests are kept this long for the record of `airlock approvals --all`. */
const KEEP_DECIDED_MS = 7 * 24 * 3600_000;

export class FileApprovalStore implements ApprovalStore {
  private readonly requests = new Map<number, ApprovalRequest>();
  private next = 1;
  private readonly waiters = new Map<number, Set<() => void>>();
  /** Changes are written one after another, never interleaved. */
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly path: string,
    private readonly expireMs: number,
    private readonly now: () => number,
  ) {}

  static async open(stateDir: string, options: { expireSeconds: number; now?: () => number }): Promise<FileApprovalStore> {
    const store = new FileApprovalStore(join(stateDir, APPROVALS_FILE), options.expireSeconds * 1000, options.now ?? Date.now);
    let text: string | null = null;
    try {
      text = await readFile(store.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== null) {
      let parsed: FileShape;
      try {
        parsed = JSON.parse(text) as FileShape;
      } catch (err) {
        throw new Error(`Airlock cannot read ${store.path}: ${(err as Error).message}. Fix or move the file; approvals are never guessed at.`);
      }
      if (parsed.version !== 1 || !Array.isArray(parsed.requests) || !Number.isInteger(parsed.next)) {
        throw new Error(`Airlock cannot read ${store.path}: it is not an approvals file of version 1.`);
      }
      store.next = parsed.next;
      for (const r of parsed.requests) store.requests.set(r.id, r);
    }
    return store;
  }

  async create(request: Omit<ApprovalRequest, 'id' | 'created' | 'expires' | 'state'>): Promise<ApprovalRequest> {
    const now = this.now();
    const full: ApprovalRequest = {
      ...request,
      id: this.next,
      created: new Date(now).toISOString(),
      expires: new Date(now + this.expireMs).toISOString(),
      state: 'pending',
    };
    this.next++;
    this.requests.set(full.id, full);
    await this.save();
    return { ...full };
  }

  pendingFor(agent: string, hash: string): ApprovalRequest | undefined {
    this.expire();
    for (const r of this.requests.values()) if (r.state === 'pending' && r.agent === agent && r.hash === hash) return { ...r };
    return undefined;
  }

  get(id: number): ApprovalRequest | undefined {
    this.expire();
    const r = this.requests.get(id);
    return r === undefined ? undefined : { ...r };
  }

  list(all = false): ApprovalRequest[] {
    this.expire();
    return [...this.requests.values()].filter((r) => all || r.state === 'pending').sort((a, b) => b.id - a.id).map((r) => ({ ...r }));
  }

  async approve(id: number, by: string, maxRows: number | null): Promise<ApprovalRequest> {
    const r = this.pending(id);
    r.state = 'approved';
    r.decidedBy = by;
    r.decidedAt = new Date(this.now()).toISOString();
    if (maxRows !== null) r.maxRows = maxRows;
    await this.save();
    this.wake(id);
    return { ...r };
  }

  async deny(id: number, by: string, reason: string): Promise<ApprovalRequest> {
    const r = this.pending(id);
    r.state = 'denied';
    r.decidedBy = by;
    r.decidedAt = new Date(this.now()).toISOString();
    r.denyReason = reason;
    await this.save();
    this.wake(id);
    return { ...r };
  }

  async take(agent: string, hash: string): Promise<ApprovedBound | null> {
    this.expire();
    for (const r of this.requests.values()) {
      if (r.state !== 'approved' || r.agent !== agent || r.hash !== hash) continue;
      // Used before it runs: a crash now leaves it used, never good twice.
      r.state = 'executed';
      r.executedAt = new Date(this.now()).toISOString();
      await this.save();
      return { request: { ...r }, perTable: r.maxRows === undefined ? { ...r.impact } : null, maxRows: r.maxRows ?? null, before: r.before ?? null };
    }
    return null;
  }

  waitForDecision(id: number, ms: number): Promise<ApprovalState> {
    const state = (): ApprovalState => this.get(id)?.state ?? 'expired';
    if (state() !== 'pending') return Promise.resolve(state());
    return new Promise((resolve) => {
      let set = this.waiters.get(id);
      if (set === undefined) this.waiters.set(id, (set = new Set()));
      const done = (): void => {
        clearTimeout(timer);
        set.delete(done);
        resolve(state());
      };
      const timer = setTimeout(done, Math.max(0, ms));
      set.add(done);
    });
  }

  private pending(id: number): ApprovalRequest {
    this.expire();
    const r = this.requests.get(id);
    if (r === undefined) throw new ApprovalError(404, `There is no approval request #${id}.`);
    if (r.state !== 'pending') throw new ApprovalError(409, `Request #${id} is ${r.state}${r.decidedBy === undefined ? '' : ` (by ${r.decidedBy})`}, not pending: nothing was changed.`);
    return r;
  }

  /** Marks pending and approved requests past their expiry as expired; forgets old decided ones. */
  private expire(): void {
    const now = this.now();
    for (const r of this.requests.values()) {
      if ((r.state === 'pending' || r.state === 'approved') && Date.parse(r.expires) <= now) {
        r.state = 'expired';
        this.wake(r.id);
      } else if (r.state !== 'pending' && r.state !== 'approved' && Date.parse(r.expires) + KEEP_DECIDED_MS <= now) {
        this.requests.delete(r.id);
      }
    }
  }

  private wake(id: number): void {
    for (const done of [...(this.waiters.get(id) ?? [])]) done();
    this.waiters.delete(id);
  }

  private save(): Promise<void> {
    const shape: FileShape = { version: 1, next: this.next, requests: [...this.requests.values()] };
    const text = JSON.stringify(shape, null, 1);
    this.writing = this.writing.then(
      () => writeFileAtomic(this.path, text),
      () => writeFileAtomic(this.path, text),
    );
    return this.writing;
  }
}
