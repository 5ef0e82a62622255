/**
 * The freeze state (DESIGN.md, non-negotiable 4 and "Freeze precedence"):
 * manual freezes (global or per agent) made by a human through the admin API,
 * scheduled windows from the config (`freeze-windows.ts`), and the windows an
 * admin ended early. Queries are synchronous and in memory, for the hot path;
 * changes are written to `<stateDir>/freezes.json` before they take effect.
 *
 * Precedence: a global manual freeze is lifted only by a global unfreeze;
 * unfreezing one agent never lifts a global freeze (each scope is its own
 * record, and `unfreeze` removes exactly one); a scheduled window ends early
 * only through `endWindowEarly`, which names it, and only for the occurrence in
 * force: its next occurrence freezes again.
 *
 * Never silently unfrozen: a file that cannot be read refuses `open` (and
 * `reload`, which then keeps what it had); a failed write changes nothing.
 * Several Airlock processes may share the state directory: each change
 * re-reads the file under a lock file, so one instance never writes over a
 * freeze another one made, and `reload` picks up the others' changes.
 */
import { mkdir, open, stat } from 'node:fs/promises';
import { withLockFile, writeFileAtomic } from './atomic-file.js';
import type { LockOptions } from './atomic-file.js';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { WindowSchedule } from './freeze-windows.js';
import type { FreezeWindow, WindowOccurrence } from './freeze-windows.js';

export { WEEKDAYS } from './freeze-windows.js';
export type { FreezeWindow, Weekday } from './freeze-windows.js';

export type FreezeScope = { kind: 'global' } | { kind: 'agent'; agent: string };

export interface ManualFreeze {
  scope: FreezeScope;
  reason: string;
  /** The admin token's name. */
  by: string;
  /** When it was made (ISO). */
  at: string;
  /** ISO, or null: until unfrozen. */
  until: string | null;
}

/** Why an agent is frozen now, or null. */
export type FreezeCause =
  | { kind: 'manual'; freeze: ManualFreeze }
  | { kind: 'window'; window: string; reason: string; since: string /* ISO start of this occurrence */; until: string /* ISO end of this occurrence */ };

/** The file's name in the state directory. */
export const FREEZE_FILE = 'freezes.json';

/** The file format written; a file of another version is refused rather than guessed at. */
export const FREEZE_FILE_VERSION = 1;

/** How long a lock file may stand before it is taken for the leftover of a crashed process, and how long a change waits for the lock. */
/** Changes take turns between processes sharing the state directory; a lock older than 10 s is a crash's leftover. */
const LOCK: LockOptions = {
  staleMs: 10_000,
  waitMs: 15_000,
  busy: (lockPath) =>
    `The freeze state is locked by another Airlock process (${lockPath}); try again, or remove the lock file if no other Airlock runs.`,
};

const isoTime = z.iso.datetime({ offset: true });
const scopeSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('global') }),
  z.strictObject({ kind: z.literal('agent'), agent: z.string().min(1) }),
]);
const fileSchema = z.strictObject({
  version: z.literal(FREEZE_FILE_VERSION),
  manual: z.array(z.strictObject({ scope: scopeSchema, reason: z.string(), by: z.string().min(1), at: isoTime, until: isoTime.nullable() })),
  endedWindows: z.array(z.strictObject({ window: z.string().min(1), since: isoTime, until: isoTime, by: z.string().min(1), at: isoTime })),
});
type FreezeFile = z.infer<typeof fileSchema>;
type EndedWindow = FreezeFile['endedWindows'][number];

interface StoredFreeze {
  readonly freeze: ManualFreeze;
  /** `until` in milliseconds, or null. */
  readonly untilMs: number | null;
}

/** One immutable snapshot of the state: a change builds a new one and swaps it in once written. */
interface FreezeState {
  readonly global: StoredFreeze | null;
  readonly agents: ReadonlyMap<string, StoredFreeze>;
  /** Occurrences ended early, by occurrenceKey. */
  readonly ended: ReadonlyMap<string, EndedWindow>;
}

const EMPTY_STATE: FreezeState = { global: null, agents: new Map(), ended: new Map() };

/**
 * An ended occurrence is matched by window name, start and end: if the config
 * moves or lengthens the window, the changed occurrence freezes again.
 */
function occurrenceKey(window: string, since: string, until: string): string {
  return `${window}\n${since}\n${until}`;
}

function isLive(stored: StoredFreeze | null | undefined, now: number): stored is StoredFreeze {
  return stored !== null && stored !== undefined && (stored.untilMs === null || now < stored.untilMs);
}

function storeFreeze(freeze: ManualFreeze): StoredFreeze {
  const scope: FreezeScope = freeze.scope.kind === 'global' ? Object.freeze({ kind: 'global' }) : Object.freeze({ kind: 'agent', agent: freeze.scope.agent });
  const frozen = Object.freeze({ scope, reason: freeze.reason, by: freeze.by, at: freeze.at, until: freeze.until });
  return { freeze: frozen, untilMs: freeze.until === null ? null : Date.parse(freeze.until) };
}

function stateFromFile(file: FreezeFile, path: string): FreezeState {
  let global: StoredFreeze | null = null;
  const agents = new Map<string, StoredFreeze>();
  for (const freeze of file.manual) {
    const stored = storeFreeze(freeze);
    const taken = freeze.scope.kind === 'global' ? global !== null : agents.has(freeze.scope.agent);
    if (taken) throw new FreezeFileError(path, `it holds two manual freezes of the same scope (${scopeLabel(freeze.scope)})`);
    if (freeze.scope.kind === 'global') global = stored;
    else agents.set(freeze.scope.agent, stored);
  }
  const ended = new Map<string, EndedWindow>();
  for (const entry of file.endedWindows) ended.set(occurrenceKey(entry.window, entry.since, entry.until), entry);
  return { global, agents, ended };
}

/** The file's content for a state, leaving out what has expired by `now`. */
function fileFromState(state: FreezeState, now: number): FreezeFile {
  const manual: ManualFreeze[] = [];
  if (isLive(state.global, now)) manual.push(state.global.freeze);
  for (const agent of [...state.agents.keys()].sort()) {
    const stored = state.agents.get(agent);
    if (isLive(stored, now)) manual.push(stored.freeze);
  }
  const endedWindows = [...state.ended.values()].filter((entry) => Date.parse(entry.until) > now);
  return { version: FREEZE_FILE_VERSION, manual, endedWindows };
}

function scopeLabel(scope: FreezeScope): string {
  return scope.kind === 'global' ? 'global' : `agent "${scope.agent}"`;
}

function checkScope(scope: FreezeScope): void {
  if (scope === null || typeof scope !== 'object' || (scope.kind !== 'global' && scope.kind !== 'agent')) {
    throw new Error('A freeze scope must be { kind: "global" } or { kind: "agent", agent: "<name>" }.');
  }
  if (scope.kind === 'agent' && (typeof scope.agent !== 'string' || scope.agent === '')) throw new Error('An agent freeze needs the name of the agent.');
}

function checkBy(by: string): void {
  if (typeof by !== 'string' || by === '') throw new Error('A freeze change needs the name of the admin token that makes it, for the record.');
}

/** The freeze state file cannot be read; Airlock refuses to guess, since guessing could lift a freeze. */
export class FreezeFileError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(
      `The freeze state file ${path} cannot be used: ${problem}. Airlock will not run with an unknown freeze state, since that could lift a freeze. ` +
        'Repair the file or restore it from a backup; move it aside only if you mean to lift every manual freeze.',
    );
    this.name = 'FreezeFileError';
  }
}

/** What the file on disk holds now, compared with the version last seen. */
type DiskRead = { kind: 'unchanged' } | { kind: 'missing' } | { kind: 'read'; state: FreezeState; signature: string };

export class FreezeStore {
  private state: FreezeState;
  /** Identifies the file version in memory (inode, size, mtime), or null: no file seen yet. */
  private signature: string | null;
  /** Changes and reloads run one at a time, so none works from a state another is replacing. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly file: string;

  private constructor(
    private readonly stateDir: string,
    private readonly schedule: WindowSchedule,
    private readonly now: () => Date,
    initial: { state: FreezeState; signature: string | null },
  ) {
    this.file = join(stateDir, FREEZE_FILE);
    this.state = initial.state;
    this.signature = initial.signature;
  }

  /** Loads `<stateDir>/freezes.json` (creating nothing until the first change); `windows` from the config (validate them: bad time zone / HH:MM / empty days / from >= to → throw an Error naming the window). `now` for tests. */
  static async open(stateDir: string, windows: FreezeWindow[], now: () => Date = () => new Date()): Promise<FreezeStore> {
    const schedule = new WindowSchedule(windows);
    const read = await readFreezeFile(join(stateDir, FREEZE_FILE), null);
    const initial = read.kind === 'read' ? { state: read.state, signature: read.signature } : { state: EMPTY_STATE, signature: null };
    return new FreezeStore(stateDir, schedule, now, initial);
  }

  /** Synchronous, cheap: the first cause that freezes this agent now (global manual first, then the agent's manual freeze, then windows), or null. Expired manual freezes (until passed) no longer count. */
  causeFor(agent: string): FreezeCause | null {
    const now = this.now().getTime();
    const { global, agents, ended } = this.state;
    if (isLive(global, now)) return { kind: 'manual', freeze: global.freeze };
    const own = agents.get(agent);
    if (isLive(own, now)) return { kind: 'manual', freeze: own.freeze };
    return this.schedule.firstActive<FreezeCause>(now, (occ) => {
      if (occ.agents !== null && !occ.agents.includes(agent)) return null;
      if (ended.size > 0 && ended.has(occurrenceKey(occ.window, occ.sinceIso, occ.untilIso))) return null;
      return { kind: 'window', window: occ.window, reason: occ.reason, since: occ.sinceIso, until: occ.untilIso };
    });
  }

  /** Adds or replaces the manual freeze of that scope; persisted (atomic write: tmp file + fsync + rename, mode 0600) before it resolves. */
  async freeze(scope: FreezeScope, reason: string, by: string, until: Date | null): Promise<ManualFreeze> {
    checkScope(scope);
    checkBy(by);
    if (typeof reason !== 'string') throw new Error('A freeze reason must be a string.');
    if (until !== null && !(until.getTime() > this.now().getTime())) {
      throw new Error(`A freeze until ${Number.isNaN(until.getTime()) ? 'an invalid date' : until.toISOString()} would already have ended: give a time in the future, or none to freeze until unfrozen.`);
    }
    return this.change((base, now) => {
      const stored = storeFreeze({ scope, reason, by, at: new Date(now).toISOString(), until: until === null ? null : until.toISOString() });
      if (scope.kind === 'global') return { next: { ...base, global: stored }, result: stored.freeze };
      const agents = new Map(base.agents);
      agents.set(scope.agent, stored);
      return { next: { ...base, agents }, result: stored.freeze };
    });
  }

  /** Lifts the manual freeze of exactly that scope. Precedence (DESIGN.md): unfreezing one agent never lifts a global freeze; a global unfreeze lifts only the global manual freeze; returns what was lifted (null if nothing). */
  async unfreeze(scope: FreezeScope, by: string): Promise<ManualFreeze | null> {
    checkScope(scope);
    checkBy(by);
    return this.change((base, now) => {
      const current = scope.kind === 'global' ? base.global : base.agents.get(scope.agent);
      if (current === null || current === undefined) return { next: null, result: null };
      // An expired freeze is removed too, but nothing was in force to lift.
      const result = isLive(current, now) ? current.freeze : null;
      if (scope.kind === 'global') return { next: { ...base, global: null }, result };
      const agents = new Map(base.agents);
      agents.delete(scope.agent);
      return { next: { ...base, agents }, result };
    });
  }

  /** Ends the current occurrence of a scheduled window early: only a command that names the window does that; the window starts again at its next occurrence. Persisted. Returns the occurrence ended, or null if the window is not active now (unknown name → throw). */
  async endWindowEarly(name: string, by: string): Promise<{ window: string; until: string } | null> {
    if (!this.schedule.has(name)) throw new Error(`There is no freeze window named "${name}" in the config; \`airlock status\` lists the windows in force.`);
    checkBy(by);
    return this.change((base, now) => {
      const at = new Date(now).toISOString();
      const toEnd = this.schedule.activeOf(name, now).filter((occ) => !base.ended.has(occurrenceKey(occ.window, occ.sinceIso, occ.untilIso)));
      if (toEnd.length === 0) return { next: null, result: null };
      const ended = new Map(base.ended);
      for (const occ of toEnd) ended.set(occurrenceKey(occ.window, occ.sinceIso, occ.untilIso), { window: occ.window, since: occ.sinceIso, until: occ.untilIso, by, at });
      const last = toEnd.reduce((a, b) => (b.until > a.until ? b : a));
      return { next: { ...base, ended }, result: { window: name, until: last.untilIso } };
    });
  }

  /** Everything in force now, for `airlock status`: manual freezes (not expired) and active window occurrences (not ended early). */
  status(): { manual: ManualFreeze[]; windows: { window: string; reason: string; agents: string[] | null; since: string; until: string }[] } {
    const now = this.now().getTime();
    const { global, agents, ended } = this.state;
    const manual: ManualFreeze[] = [];
    if (isLive(global, now)) manual.push(global.freeze);
    for (const agent of [...agents.keys()].sort()) {
      const stored = agents.get(agent);
      if (isLive(stored, now)) manual.push(stored.freeze);
    }
    const windows = this.schedule
      .activeAt(now)
      .filter((occ: WindowOccurrence) => !ended.has(occurrenceKey(occ.window, occ.sinceIso, occ.untilIso)))
      .map((occ) => ({ window: occ.window, reason: occ.reason, agents: occ.agents === null ? null : [...occ.agents], since: occ.sinceIso, until: occ.untilIso }));
    return { manual, windows };
  }

  /** Re-reads the file if another process changed it (mtime), so freezes made through another instance sharing the state directory take effect; cheap when unchanged. */
  reload(): Promise<void> {
    return this.serially(async () => {
      const read = await readFreezeFile(this.file, this.signature);
      if (read.kind === 'read') {
        this.state = read.state;
        this.signature = read.signature;
      } else if (read.kind === 'missing' && this.signature !== null) {
        // Never unfreeze because a file vanished: keep what is known, say so.
        throw new Error(
          `The freeze state file ${this.file} has disappeared. Airlock keeps the freezes it knows and writes them back at the next change; ` +
            'find out what removed the file (a restore, a cleanup job, a full disk) before relying on it.',
        );
      }
    });
  }

  /** Runs `fn` after every change or reload queued before it. */
  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    // The queue only orders work; each caller gets its own outcome from `run`.
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Applies a change to the freshest state (the file as another instance may
   * have left it), writes the result, then swaps it in. `next: null`: nothing
   * to write. If anything fails, memory is left as it was.
   */
  private change<T>(apply: (base: FreezeState, now: number) => { next: FreezeState | null; result: T }): Promise<T> {
    return this.serially(async () => {
      await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
      return withLockFile(`${this.file}.lock`, LOCK, async () => {
        const read = await readFreezeFile(this.file, this.signature);
        // A missing file we had seen is not an empty state: keep ours and write it back.
        const base = read.kind === 'read' ? read.state : this.state;
        const now = this.now().getTime();
        const { next, result } = apply(base, now);
        if (next === null) {
          if (read.kind === 'read') {
            this.state = read.state;
            this.signature = read.signature;
          }
          return result;
        }
        const signature = await writeFreezeFile(this.file, fileFromState(next, now));
        this.state = next;
        this.signature = signature;
        return result;
      });
    });
  }
}

function signatureOf(st: { ino: bigint; size: bigint; mtimeNs: bigint }): string {
  return `${st.ino}:${st.size}:${st.mtimeNs}`;
}

/** Reads the file unless its signature is `known`. Throws FreezeFileError for a file that is not a valid freeze state. */
async function readFreezeFile(path: string, known: string | null): Promise<DiskRead> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw new FreezeFileError(path, `it cannot be opened (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    // Signature and content from the same open file, so a rename in between cannot pair them wrongly.
    const signature = signatureOf(await handle.stat({ bigint: true }));
    if (signature === known) return { kind: 'unchanged' };
    const text = await handle.readFile('utf8');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new FreezeFileError(path, `it is not valid JSON (${(err as Error).message})`);
    }
    if (typeof value === 'object' && value !== null && 'version' in value && value.version !== FREEZE_FILE_VERSION) {
      throw new FreezeFileError(path, `it has format version ${JSON.stringify(value.version)}, and this Airlock reads version ${FREEZE_FILE_VERSION} (was it written by a newer Airlock?)`);
    }
    const parsed = fileSchema.safeParse(value);
    if (!parsed.success) throw new FreezeFileError(path, `it does not hold a freeze state (${z.prettifyError(parsed.error).replace(/\n+/g, '; ')})`);
    return { kind: 'read', state: stateFromFile(parsed.data, path), signature };
  } finally {
    await handle.close();
  }
}

/** Replaces the file atomically (see atomic-file.ts). Returns the new file's signature. */
async function writeFreezeFile(path: string, content: FreezeFile): Promise<string> {
  await writeFileAtomic(path, JSON.stringify(content, null, 2) + '\n');
  return signatureOf(await stat(path, { bigint: true }));
}

