/**
 * Classification off the event loop. PostgreSQL's parser is quadratic on some
 * inputs (a long run of `/*`), takes seconds on multi-MB statements, and its
 * WebAssembly memory never shrinks: run on the main thread, one agent's
 * statement would stall every session and bloat the process for good. So a
 * small pool of worker threads runs `classify()`, each statement under a
 * deadline:
 *
 * - A job that outlives `timeoutMs` is answered with a refusal
 *   (`unjudged: 'too-complex'`, SQLSTATE 54001 at the edge); its worker is
 *   terminated and replaced.
 * - A worker that dies on a job (its JS heap limit, say) gets the same answer
 *   for that job, and is replaced.
 * - A worker whose memory outside the JS heap (the parser's WebAssembly
 *   memory) passed `memoryBudgetBytes` after a job is retired and replaced.
 * - A long text (over `largeTextChars`) costs its worker memory it keeps for
 *   good (pages of the parser's memory it touched, a grown JS heap: about
 *   150 MB for a 1 MB IN list), so long texts are parsed one at a time and
 *   the worker that parsed one is replaced after it. Short statements go on
 *   meanwhile on the other workers.
 * - When every worker is busy, jobs wait in one queue per owner (the agent),
 *   served round-robin, so one agent's flood waits behind itself only. A full
 *   queue (`maxQueuePerOwner` for that owner, or `maxQueue` in all) answers
 *   `unjudged: 'too-busy'` (SQLSTATE 53400) at once.
 *
 * `classify` never rejects: every outcome is a `Classification`. An idle
 * worker never keeps the process alive (only a job in progress does, as
 * pending I/O would), and `close()` ends them all.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { WorkerReply, WorkerRequest } from './classifier-protocol.js';
import type { Classification, UnjudgedReason } from './facts.js';

export interface ClassifierPoolOptions {
  /** Worker threads (default 2). */
  workers?: number;
  /** Longest one statement may take to classify, in milliseconds (default 2000). */
  timeoutMs?: number;
  /** A worker holding more memory than this outside its JS heap after a job is replaced (default 256 MiB). */
  memoryBudgetBytes?: number;
  /** Most jobs waiting in all (default 1024). */
  maxQueue?: number;
  /** Most jobs waiting for one owner (default 64). */
  maxQueuePerOwner?: number;
  /**
   * Each worker's JS heap limit (V8 old generation), in MiB (default 512); a
   * job past it gets 'too-complex'. Keep it well above what the largest
   * statement allowed needs (see `heapLimitMbFor`): V8 gives a worker at its
   * limit only 16 MiB of leeway to stop, and one large allocation past that
   * (JSON.parse of a huge tree) aborts the whole process.
   */
  heapLimitMb?: number;
  /** Texts longer than this (in characters) are parsed one at a time, each by a worker replaced after it (default 64 Ki). */
  largeTextChars?: number;
}

export const CLASSIFIER_POOL_DEFAULTS = {
  workers: 2,
  timeoutMs: 2000,
  memoryBudgetBytes: 256 * 1024 * 1024,
  maxQueue: 1024,
  maxQueuePerOwner: 64,
  heapLimitMb: 512,
  largeTextChars: 64 * 1024,
} as const satisfies Required<ClassifierPoolOptions>;

/**
 * A worker heap limit for statements of up to `maxStatementBytes`: the
 * parse tree's objects take about 30 times the text's size for a long IN
 * list, over 100 times for long operator chains, so 256 MiB a MiB of
 * statement, and never under the default 512 MiB.
 */
export function heapLimitMbFor(maxStatementBytes: number): number {
  return Math.max(CLASSIFIER_POOL_DEFAULTS.heapLimitMb, Math.ceil(maxStatementBytes / (1024 * 1024)) * 256);
}

/** Counters for tests, logs and `airlock doctor`. */
export interface ClassifierPoolStats {
  workers: number;
  busy: number;
  queued: number;
  /** Workers terminated at a deadline or lost on a job. */
  replaced: number;
  /** Workers retired for their memory. */
  recycled: number;
}

type Refusal = Extract<Classification, { ok: false }>;

interface Job {
  id: number;
  text: string;
  owner: string;
  /** Longer than largeTextChars. */
  large: boolean;
  resolve: (result: Classification) => void;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  job: Job | null;
  timer: NodeJS.Timeout | null;
  /** Gone from `slots`: its exit is expected and changes nothing. */
  retired: boolean;
}

/** A worker that fails to start this many times in a row means no worker will: the pool gives up. */
const MAX_START_FAILURES = 3;

export class ClassifierPool {
  private readonly options: Required<ClassifierPoolOptions>;
  private readonly slots = new Set<Slot>();
  /** Waiting jobs per owner; the Map's order is the round-robin order. */
  private readonly queues = new Map<string, Job[]>();
  private queued = 0;
  private nextId = 1;
  private closed = false;
  private startFailures = 0;
  /** Why no worker can start, once the pool has given up. */
  private failure: string | null = null;
  private replaced = 0;
  private recycled = 0;
  private readonly exits = new Set<Promise<unknown>>();
  private readyWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  /** A large text is being parsed (only one is at a time). */
  private largeRunning = false;

  constructor(options: ClassifierPoolOptions = {}) {
    this.options = { ...CLASSIFIER_POOL_DEFAULTS, ...definedOnly(options) };
    const o = this.options;
    if (!Number.isInteger(o.workers) || o.workers < 1) throw new Error(`ClassifierPool: workers must be a positive integer, got ${o.workers}.`);
    if (!(o.timeoutMs > 0)) throw new Error(`ClassifierPool: timeoutMs must be positive, got ${o.timeoutMs}.`);
    for (let i = 0; i < o.workers; i++) this.spawn();
  }

  /** Resolves once every worker has loaded the parser; rejects if workers cannot start at all. */
  ready(): Promise<void> {
    if (this.failure !== null) return Promise.reject(new Error(this.failure));
    if (this.closed || this.allReady()) return Promise.resolve();
    // Someone waits on the start: it holds the process open like any pending I/O.
    for (const slot of this.slots) if (!slot.ready) slot.worker.ref();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /**
   * The facts for `text`, from a worker. Never rejects: a statement the
   * workers could not read in time, or could not take, comes back as
   * `{ ok: false, unjudged }` with a sentence saying why. `owner` (the agent)
   * decides whose queue a job waits in when every worker is busy.
   */
  classify(text: string, owner = ''): Promise<Classification> {
    if (this.closed) return Promise.resolve(unavailable('Airlock is shutting down'));
    if (this.failure !== null) return Promise.resolve(unavailable(this.failure));
    return new Promise((resolve) => {
      const job: Job = { id: this.nextId++, text, owner, large: text.length > this.options.largeTextChars, resolve };
      const idle = this.idleSlot();
      if (idle !== undefined && !(job.large && this.largeRunning)) {
        this.run(idle, job);
        return;
      }
      const queue = this.queues.get(owner);
      if (this.queued >= this.options.maxQueue || (queue?.length ?? 0) >= this.options.maxQueuePerOwner) {
        resolve(
          refusal(
            'too-busy',
            `Airlock is judging too many statements at once (${this.queued} waiting, ${queue?.length ?? 0} of them this client's), so this one was not parsed or run; try again shortly`,
          ),
        );
        return;
      }
      if (queue === undefined) this.queues.set(owner, [job]);
      else queue.push(job);
      this.queued++;
      // A waiting job holds the process open, through the workers still starting to take it.
      for (const slot of this.slots) if (!slot.ready) slot.worker.ref();
    });
  }

  stats(): ClassifierPoolStats {
    let busy = 0;
    for (const slot of this.slots) if (slot.job !== null) busy++;
    return { workers: this.slots.size, busy, queued: this.queued, replaced: this.replaced, recycled: this.recycled };
  }

  /** Ends every worker; jobs still running or waiting are answered 'unavailable'. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      const reason = unavailable('Airlock is shutting down');
      for (const slot of this.slots) {
        if (slot.job !== null) slot.job.resolve(reason);
        this.retire(slot);
      }
      this.failQueued(reason);
      for (const waiter of this.readyWaiters) waiter.resolve();
      this.readyWaiters = [];
    }
    await Promise.all(this.exits);
  }

  private spawn(): void {
    const { code, eval: isEval } = workerEntry();
    const worker = new Worker(code, {
      eval: isEval,
      // The parent's own flags (a test runner's, say) are not the worker's business.
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: this.options.heapLimitMb },
    });
    if (this.readyWaiters.length === 0) worker.unref();
    const slot: Slot = { worker, ready: false, job: null, timer: null, retired: false };
    this.slots.add(slot);
    let lastError: Error | null = null;
    worker.on('message', (reply: WorkerReply) => this.onReply(slot, reply));
    worker.on('error', (error) => {
      lastError = error;
    });
    const exited = new Promise<void>((resolve) => {
      worker.once('exit', (code) => {
        this.exits.delete(exited);
        resolve();
        this.onExit(slot, code, lastError);
      });
    });
    this.exits.add(exited);
  }

  private onReply(slot: Slot, reply: WorkerReply): void {
    if (slot.retired) return;
    if (reply.type === 'ready') {
      slot.ready = true;
      if (this.readyWaiters.length === 0) slot.worker.unref();
      this.startFailures = 0;
      if (this.allReady()) {
        for (const waiter of this.readyWaiters) waiter.resolve();
        this.readyWaiters = [];
        for (const s of this.slots) if (s.job === null) s.worker.unref();
      }
      this.dispatch();
      return;
    }
    const job = slot.job;
    if (job === null || job.id !== reply.id) return; // the answer to a job already answered at its deadline
    this.settle(slot);
    job.resolve(reply.result);
    if (job.large || reply.memoryBytes > this.options.memoryBudgetBytes) {
      this.recycled++;
      this.replace(slot);
      return;
    }
    this.dispatch();
  }

  private onExit(slot: Slot, code: number, error: Error | null): void {
    if (slot.retired) return;
    this.slots.delete(slot);
    slot.retired = true;
    const job = slot.job;
    this.settle(slot);
    if (this.closed) return;
    const why = error !== null ? error.message : `exit code ${code}`;
    if (job !== null) {
      // The statement killed the parser (its heap limit, most likely): the statement's fault, not the pool's.
      this.replaced++;
      job.resolve(refusal('too-complex', `the statement is too complex to judge: the SQL parser failed on it (${why}), so it was not run`));
    } else if (!slot.ready) {
      this.startFailures++;
      if (this.startFailures >= MAX_START_FAILURES) {
        this.giveUp(`the SQL parser's worker threads could not start (${why})`);
        return;
      }
    }
    this.spawn();
    this.dispatch();
  }

  private run(slot: Slot, job: Job): void {
    slot.job = job;
    if (job.large) this.largeRunning = true;
    // A job in progress holds the process open, as pending I/O does; an idle worker never does.
    slot.worker.ref();
    slot.timer = setTimeout(() => this.onDeadline(slot, job), this.options.timeoutMs);
    slot.timer.unref();
    const request: WorkerRequest = { id: job.id, text: job.text };
    slot.worker.postMessage(request);
  }

  private onDeadline(slot: Slot, job: Job): void {
    if (slot.job !== job) return;
    this.settle(slot);
    this.replaced++;
    job.resolve(
      refusal(
        'too-complex',
        `the statement is too complex to judge in time: the SQL parser did not finish it within ${this.options.timeoutMs} ms (limits.classify_timeout_ms), so it was not run`,
      ),
    );
    // The only way to stop a parse in progress: end the thread.
    this.replace(slot);
  }

  /** Retires a slot and starts another in its place. */
  private replace(slot: Slot): void {
    this.retire(slot);
    if (this.closed || this.failure !== null) return;
    this.spawn();
    this.dispatch();
  }

  private retire(slot: Slot): void {
    if (slot.retired) return;
    slot.retired = true;
    this.slots.delete(slot);
    this.settle(slot);
    // terminate() resolves with the exit code; the 'exit' handler above does the bookkeeping.
    slot.worker.terminate().catch((error: Error) => {
      // Terminating a thread that is already gone fails harmlessly; nothing is left to release.
      void error;
    });
  }

  private settle(slot: Slot): void {
    if (slot.job?.large === true) this.largeRunning = false;
    if (slot.timer !== null) clearTimeout(slot.timer);
    slot.timer = null;
    slot.job = null;
    slot.worker.unref();
  }

  private dispatch(): void {
    while (this.queued > 0) {
      const slot = this.idleSlot();
      if (slot === undefined) return;
      const job = this.nextQueued();
      if (job === undefined) return;
      this.run(slot, job);
    }
  }

  /** The next job round-robin: the first owner's oldest job, that owner moving to the back (a large text waits while another is parsed). */
  private nextQueued(): Job | undefined {
    for (const [owner, queue] of this.queues) {
      if (this.largeRunning && queue[0]?.large === true) continue;
      const job = queue.shift();
      this.queues.delete(owner);
      if (queue.length > 0) this.queues.set(owner, queue);
      if (job !== undefined) {
        this.queued--;
        return job;
      }
    }
    return undefined;
  }

  private idleSlot(): Slot | undefined {
    for (const slot of this.slots) if (slot.ready && slot.job === null) return slot;
    return undefined;
  }

  private allReady(): boolean {
    for (const slot of this.slots) if (!slot.ready) return false;
    return true;
  }

  private giveUp(reason: string): void {
    this.failure = reason;
    for (const slot of this.slots) this.retire(slot);
    this.failQueued(unavailable(reason));
    for (const waiter of this.readyWaiters) waiter.reject(new Error(reason));
    this.readyWaiters = [];
  }

  private failQueued(result: Classification): void {
    for (const queue of this.queues.values()) for (const job of queue) job.resolve(result);
    this.queues.clear();
    this.queued = 0;
  }
}

function refusal(unjudged: UnjudgedReason, error: string): Refusal {
  return { ok: false, unjudged, error };
}

function unavailable(why: string): Refusal {
  return refusal('unavailable', `the SQL parser is not available (${why}), so the statement was not run`);
}

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}

let entry: { code: URL | string; eval: boolean } | undefined;

/**
 * Where the worker's code is: beside this module. Built, that is
 * classifier-worker.js. From the TypeScript sources (vitest, tsx), it is
 * classifier-worker.ts, which a worker can only load through tsx (a
 * devDependency, present wherever the sources are run). Node 20 applies no
 * module hooks (`--import tsx`, `module.register`) inside a worker thread,
 * but tsx's require hooks work there: a small script registers them, then
 * requires the entry.
 */
function workerEntry(): { code: URL | string; eval: boolean } {
  if (entry !== undefined) return entry;
  const here = fileURLToPath(import.meta.url);
  if (!/\.[cm]?ts$/.test(here)) {
    entry = { code: new URL('./classifier-worker.js', import.meta.url), eval: false };
  } else {
    // Resolved from here, not from the working directory.
    const tsx = createRequire(import.meta.url).resolve('tsx/cjs/api');
    const worker = fileURLToPath(new URL('./classifier-worker.ts', import.meta.url));
    entry = { code: `require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(worker)});`, eval: true };
  }
  return entry;
}
