import { mkdtemp, readdir, readFile, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FREEZE_FILE, FreezeFileError, FreezeStore } from './freeze-store.js';
import type { FreezeWindow } from './freeze-store.js';
import type * as FsPromises from 'node:fs/promises';

// Passes through to the real functions; single tests make `rename` fail to
// show that a failed write leaves the freeze state as it was.
vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  return { ...actual, rename: vi.fn(actual.rename) };
});

/** A clock the test moves by hand. */
function fakeClock(iso: string): { now: () => Date; set: (iso: string) => void; advance: (ms: number) => void } {
  let t = Date.parse(iso);
  return { now: () => new Date(t), set: (next) => (t = Date.parse(next)), advance: (ms) => (t += ms) };
}

const HOUR = 3_600_000;
const GLOBAL = { kind: 'global' } as const;
const agent = (name: string) => ({ kind: 'agent', agent: name }) as const;

// Wednesday 3 June 2026 10:00 UTC unless a test says otherwise.
const START = '2026-06-03T10:00:00Z';

/** Nightly 22:00-06:00 UTC every day, for every agent; a deploy window Wednesdays 09:00-12:00 Berlin (07:00-10:00Z in summer) for claude. */
const WINDOWS: FreezeWindow[] = [
  { name: 'nightly', reason: 'Nobody is around to watch.', agents: null, weekly: { days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '22:00', end: '06:00', timezone: 'UTC' } },
  { name: 'deploy', reason: 'Deploys run.', agents: ['claude'], weekly: { days: ['wed'], start: '09:00', end: '12:00', timezone: 'Europe/Berlin' } },
  { name: 'year-end', reason: 'Year-end freeze.', agents: null, from: '2026-12-24T00:00:00+01:00', to: '2027-01-04T00:00:00+01:00' },
];

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-freeze-'));
});
afterEach(async () => {
  // Back to the pass-through, should a test have left a failure queued.
  vi.mocked(rename).mockReset();
  await rm(dir, { recursive: true, force: true });
});

async function fileJson(): Promise<unknown> {
  return JSON.parse(await readFile(join(dir, FREEZE_FILE), 'utf8'));
}

describe('manual freezes and precedence', () => {
  it('freezes nobody with an empty state, and creates nothing on open', async () => {
    const store = await FreezeStore.open(join(dir, 'state'), [], fakeClock(START).now);
    expect(store.causeFor('claude')).toBeNull();
    expect(store.status()).toEqual({ manual: [], windows: [] });
    expect(await readdir(dir)).toEqual([]);
  });

  it('a global freeze freezes every agent; an agent freeze only that agent', async () => {
    const clock = fakeClock(START);
    const store = await FreezeStore.open(dir, [], clock.now);
    const own = await store.freeze(agent('claude'), 'Investigating claude.', 'alice', null);
    expect(own).toEqual({ scope: agent('claude'), reason: 'Investigating claude.', by: 'alice', at: '2026-06-03T10:00:00.000Z', until: null });
    expect(store.causeFor('claude')).toEqual({ kind: 'manual', freeze: own });
    expect(store.causeFor('cursor')).toBeNull();

    const global = await store.freeze(GLOBAL, 'Incident.', 'bob', null);
    expect(store.causeFor('cursor')).toEqual({ kind: 'manual', freeze: global });
    // Global first, even for an agent with a freeze of its own.
    expect(store.causeFor('claude')).toEqual({ kind: 'manual', freeze: global });
    expect(store.status().manual).toEqual([global, own]);
  });

  it('unfreezing an agent never lifts a global freeze', async () => {
    const store = await FreezeStore.open(dir, [], fakeClock(START).now);
    const global = await store.freeze(GLOBAL, 'Incident.', 'bob', null);
    const own = await store.freeze(agent('claude'), 'Investigating claude.', 'alice', null);
    expect(await store.unfreeze(agent('claude'), 'alice')).toEqual(own);
    expect(store.causeFor('claude')).toEqual({ kind: 'manual', freeze: global });
    // Unfreezing an agent that has no freeze of its own lifts nothing at all.
    expect(await store.unfreeze(agent('cursor'), 'alice')).toBeNull();
    expect(store.causeFor('cursor')).toEqual({ kind: 'manual', freeze: global });
    expect(store.status().manual).toEqual([global]);
  });

  it('a global unfreeze lifts only the global freeze, not agent freezes or windows', async () => {
    const clock = fakeClock('2026-06-03T23:00:00Z'); // inside 'nightly'
    const store = await FreezeStore.open(dir, WINDOWS, clock.now);
    const global = await store.freeze(GLOBAL, 'Incident.', 'bob', null);
    const own = await store.freeze(agent('claude'), 'Investigating claude.', 'alice', null);
    expect(await store.unfreeze(GLOBAL, 'bob')).toEqual(global);
    expect(store.causeFor('claude')).toEqual({ kind: 'manual', freeze: own });
    expect(store.causeFor('cursor')).toMatchObject({ kind: 'window', window: 'nightly' });
    expect(await store.unfreeze(GLOBAL, 'bob')).toBeNull();
  });

  it('a manual freeze comes before a window; a window still holds after the manual freeze is lifted', async () => {
    const store = await FreezeStore.open(dir, WINDOWS, fakeClock('2026-06-03T07:30:00Z').now); // inside 'deploy' (09:30 Berlin)
    expect(store.causeFor('claude')).toEqual({ kind: 'window', window: 'deploy', reason: 'Deploys run.', since: '2026-06-03T07:00:00.000Z', until: '2026-06-03T10:00:00.000Z' });
    expect(store.causeFor('cursor')).toBeNull(); // 'deploy' is for claude only
    const own = await store.freeze(agent('claude'), 'Hands off.', 'alice', null);
    expect(store.causeFor('claude')).toEqual({ kind: 'manual', freeze: own });
    await store.unfreeze(agent('claude'), 'alice');
    expect(store.causeFor('claude')).toMatchObject({ kind: 'window', window: 'deploy' });
  });

  it('replaces the freeze of the same scope', async () => {
    const clock = fakeClock(START);
    const store = await FreezeStore.open(dir, [], clock.now);
    await store.freeze(agent('claude'), 'First.', 'alice', null);
    clock.advance(60_000);
    const second = await store.freeze(agent('claude'), 'Second.', 'bob', new Date('2026-06-04T00:00:00Z'));
    expect(store.status().manual).toEqual([second]);
    expect(second).toMatchObject({ reason: 'Second.', by: 'bob', at: '2026-06-03T10:01:00.000Z', until: '2026-06-04T00:00:00.000Z' });
  });

  it('a freeze with an until stops counting when it passes', async () => {
    const clock = fakeClock(START);
    const store = await FreezeStore.open(dir, [], clock.now);
    const global = await store.freeze(GLOBAL, 'One hour.', 'bob', new Date(Date.parse(START) + HOUR));
    const own = await store.freeze(agent('claude'), 'Two hours.', 'alice', new Date(Date.parse(START) + 2 * HOUR));
    clock.advance(HOUR - 1);
    expect(store.causeFor('claude')).toEqual({ kind: 'manual', freeze: global });
    clock.advance(1);
    expect(store.causeFor('claude')).toEqual({ kind: 'manual', freeze: own });
    expect(store.causeFor('cursor')).toBeNull();
    expect(store.status().manual).toEqual([own]);
    clock.advance(HOUR);
    expect(store.causeFor('claude')).toBeNull();
    expect(store.status().manual).toEqual([]);
    // Nothing in force to lift.
    expect(await store.unfreeze(agent('claude'), 'alice')).toBeNull();
  });

  it('refuses an until in the past, a bad scope and a missing admin name, changing nothing', async () => {
    const store = await FreezeStore.open(dir, [], fakeClock(START).now);
    await expect(store.freeze(GLOBAL, 'Too late.', 'bob', new Date(START))).rejects.toThrow(/would already have ended/);
    await expect(store.freeze(GLOBAL, 'Bad date.', 'bob', new Date('nonsense'))).rejects.toThrow(/invalid date/);
    await expect(store.freeze(agent(''), 'No agent.', 'bob', null)).rejects.toThrow(/name of the agent/);
    await expect(store.freeze(GLOBAL, 'Nobody.', '', null)).rejects.toThrow(/admin token/);
    await expect(store.unfreeze(GLOBAL, '')).rejects.toThrow(/admin token/);
    expect(store.causeFor('claude')).toBeNull();
    expect(await readdir(dir)).toEqual([]);
  });

  it('serialises concurrent changes: none is lost', async () => {
    const store = await FreezeStore.open(dir, [], fakeClock(START).now);
    await Promise.all(['a', 'b', 'c', 'd', 'e'].map((name) => store.freeze(agent(name), `Freeze ${name}.`, 'alice', null)));
    expect(store.status().manual.map((f) => f.scope)).toEqual(['a', 'b', 'c', 'd', 'e'].map(agent));
    const reopened = await FreezeStore.open(dir, [], fakeClock(START).now);
    expect(reopened.status().manual).toHaveLength(5);
  });
});

describe('scheduled windows', () => {
  it('ends a window early only through endWindowEarly, and it returns at its next occurrence', async () => {
    const clock = fakeClock('2026-06-03T23:00:00Z');
    const store = await FreezeStore.open(dir, WINDOWS, clock.now);
    const nightly = { kind: 'window', window: 'nightly', reason: 'Nobody is around to watch.', since: '2026-06-03T22:00:00.000Z', until: '2026-06-04T06:00:00.000Z' };
    expect(store.causeFor('cursor')).toEqual(nightly);

    // Lifting manual freezes does not touch windows.
    await store.freeze(GLOBAL, 'Incident.', 'bob', null);
    await store.unfreeze(GLOBAL, 'bob');
    await store.unfreeze(agent('cursor'), 'bob');
    expect(store.causeFor('cursor')).toEqual(nightly);

    expect(await store.endWindowEarly('nightly', 'alice')).toEqual({ window: 'nightly', until: '2026-06-04T06:00:00.000Z' });
    expect(store.causeFor('cursor')).toBeNull();
    expect(store.status().windows).toEqual([]);
    // Ending it again: it is no longer in force.
    expect(await store.endWindowEarly('nightly', 'alice')).toBeNull();

    clock.set('2026-06-04T05:59:59Z');
    expect(store.causeFor('cursor')).toBeNull();
    clock.set('2026-06-04T06:00:00Z');
    expect(store.causeFor('cursor')).toBeNull(); // between occurrences
    clock.set('2026-06-04T22:00:00Z');
    expect(store.causeFor('cursor')).toEqual({ ...nightly, since: '2026-06-04T22:00:00.000Z', until: '2026-06-05T06:00:00.000Z' });
  });

  it('ending one window early leaves the other windows in force', async () => {
    // 21:30 Berlin on Wednesday is 19:30Z: only a window of our own here.
    const windows: FreezeWindow[] = [
      { name: 'evening', reason: 'Evening.', agents: null, weekly: { days: ['wed'], start: '18:00', end: '23:00', timezone: 'UTC' } },
      { name: 'evening-berlin', reason: 'Evening in Berlin.', agents: ['claude'], weekly: { days: ['wed'], start: '21:00', end: '22:00', timezone: 'Europe/Berlin' } },
    ];
    const store = await FreezeStore.open(dir, windows, fakeClock('2026-06-03T19:30:00Z').now);
    expect(store.status().windows.map((w) => w.window)).toEqual(['evening', 'evening-berlin']);
    await store.endWindowEarly('evening', 'alice');
    expect(store.causeFor('claude')).toMatchObject({ kind: 'window', window: 'evening-berlin', until: '2026-06-03T20:00:00.000Z' });
    expect(store.causeFor('cursor')).toBeNull();
    expect(store.status().windows).toEqual([
      { window: 'evening-berlin', reason: 'Evening in Berlin.', agents: ['claude'], since: '2026-06-03T19:00:00.000Z', until: '2026-06-03T20:00:00.000Z' },
    ]);
  });

  it('a date range freezes from `from` to `to`, and can be ended early', async () => {
    const clock = fakeClock('2026-12-23T22:59:59.999Z'); // inside 'nightly' only
    const store = await FreezeStore.open(dir, WINDOWS, clock.now);
    expect(store.status().windows.map((w) => w.window)).toEqual(['nightly']);
    clock.set('2026-12-23T23:00:00Z');
    expect(store.status().windows.map((w) => w.window)).toEqual(['nightly', 'year-end']); // config order
    clock.set('2026-12-25T12:00:00Z');
    const yearEnd = { kind: 'window', window: 'year-end', reason: 'Year-end freeze.', since: '2026-12-23T23:00:00.000Z', until: '2027-01-03T23:00:00.000Z' };
    expect(store.causeFor('cursor')).toEqual(yearEnd);
    expect(await store.endWindowEarly('year-end', 'alice')).toEqual({ window: 'year-end', until: '2027-01-03T23:00:00.000Z' });
    expect(store.causeFor('cursor')).toBeNull();
    clock.set('2026-12-25T23:00:00Z');
    expect(store.causeFor('cursor')).toMatchObject({ window: 'nightly' });
    clock.set('2027-01-03T12:00:00Z');
    expect(store.causeFor('cursor')).toBeNull();
    clock.set('2027-01-03T22:59:59.999Z'); // the range would have ended at 23:00Z anyway
    expect(store.causeFor('cursor')).toMatchObject({ window: 'nightly' });
  });

  it('refuses to end a window the config does not have, and says when a window is not in force', async () => {
    const store = await FreezeStore.open(dir, WINDOWS, fakeClock('2026-06-03T12:00:00Z').now);
    await expect(store.endWindowEarly('nightlly', 'alice')).rejects.toThrow(/no freeze window named "nightlly"/);
    expect(await store.endWindowEarly('nightly', 'alice')).toBeNull();
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses an invalid window config, naming the window', async () => {
    const bad: FreezeWindow = { name: 'weekend', reason: 'Weekend.', agents: null, weekly: { days: ['sat'], start: '00:00', end: '00:00', timezone: 'Mars/Olympus_Mons' } };
    await expect(FreezeStore.open(dir, [...WINDOWS, bad], fakeClock(START).now)).rejects.toThrow(/Freeze window "weekend".*time zone "Mars\/Olympus_Mons"/);
    const backwards: FreezeWindow = { name: 'release', reason: 'Release.', agents: null, from: '2026-12-24T00:00:00Z', to: '2026-12-23T00:00:00Z' };
    await expect(FreezeStore.open(dir, [backwards], fakeClock(START).now)).rejects.toThrow(/Freeze window "release"/);
  });
});

describe('persistence', () => {
  it('a new store on the same directory sees the freezes and the windows ended early', async () => {
    const clock = fakeClock('2026-06-03T23:00:00Z');
    const first = await FreezeStore.open(dir, WINDOWS, clock.now);
    const global = await first.freeze(GLOBAL, 'Incident.', 'bob', new Date('2026-06-05T00:00:00Z'));
    const own = await first.freeze(agent('claude'), 'Investigating claude.', 'alice', null);
    await first.endWindowEarly('nightly', 'alice');

    const info = await stat(join(dir, FREEZE_FILE));
    expect(info.mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual([FREEZE_FILE]); // no temporary or lock file left behind
    expect(await fileJson()).toMatchObject({ version: 1 });

    const second = await FreezeStore.open(dir, WINDOWS, clock.now);
    expect(second.status()).toEqual({ manual: [global, own], windows: [] });
    await second.unfreeze(GLOBAL, 'bob');
    expect(second.causeFor('cursor')).toBeNull(); // nightly stays ended

    const third = await FreezeStore.open(dir, WINDOWS, clock.now);
    expect(third.causeFor('claude')).toEqual({ kind: 'manual', freeze: own });
    expect(third.causeFor('cursor')).toBeNull();
    clock.set('2026-06-04T22:00:00Z');
    expect(third.causeFor('cursor')).toMatchObject({ kind: 'window', window: 'nightly', since: '2026-06-04T22:00:00.000Z' });
  });

  it('a window whose schedule changes in the config freezes again, though its old occurrence was ended early', async () => {
    const clock = fakeClock('2026-06-03T23:00:00Z');
    const first = await FreezeStore.open(dir, WINDOWS, clock.now);
    await first.endWindowEarly('nightly', 'alice');
    const longer = WINDOWS.map((w) => (w.name === 'nightly' && 'weekly' in w ? { ...w, weekly: { ...w.weekly, end: '07:00' } } : w));
    const second = await FreezeStore.open(dir, longer, clock.now);
    expect(second.causeFor('cursor')).toMatchObject({ window: 'nightly', until: '2026-06-04T07:00:00.000Z' });
  });

  it('drops expired freezes and past ended windows from the file at the next change', async () => {
    const clock = fakeClock('2026-06-03T23:00:00Z');
    const store = await FreezeStore.open(dir, WINDOWS, clock.now);
    await store.freeze(agent('claude'), 'Short.', 'alice', new Date('2026-06-03T23:30:00Z'));
    await store.endWindowEarly('nightly', 'alice');
    expect(await fileJson()).toMatchObject({ manual: [{ reason: 'Short.' }], endedWindows: [{ window: 'nightly', by: 'alice' }] });
    clock.set('2026-06-04T12:00:00Z');
    await store.freeze(agent('cursor'), 'Long.', 'alice', null);
    expect(await fileJson()).toEqual({
      version: 1,
      manual: [{ scope: agent('cursor'), reason: 'Long.', by: 'alice', at: '2026-06-04T12:00:00.000Z', until: null }],
      endedWindows: [],
    });
  });

  const corrupt: [label: string, content: string, message: RegExp][] = [
    ['not JSON', '{"version": 1, "manual": [', /not valid JSON/],
    ['empty', '', /not valid JSON/],
    ['another version', JSON.stringify({ version: 2, manual: [], endedWindows: [] }), /format version 2/],
    ['no version', JSON.stringify({ manual: [], endedWindows: [] }), /does not hold a freeze state/],
    ['a freeze without a scope', JSON.stringify({ version: 1, manual: [{ reason: 'x', by: 'a', at: START, until: null }], endedWindows: [] }), /does not hold a freeze state/],
    ['a bad time', JSON.stringify({ version: 1, manual: [{ scope: GLOBAL, reason: 'x', by: 'a', at: 'yesterday', until: null }], endedWindows: [] }), /does not hold a freeze state/],
    [
      'two freezes of one scope',
      JSON.stringify({ version: 1, manual: [1, 2].map(() => ({ scope: agent('claude'), reason: 'x', by: 'a', at: START, until: null })), endedWindows: [] }),
      /two manual freezes of the same scope \(agent "claude"\)/,
    ],
    ['an array', '[]', /does not hold a freeze state/],
  ];

  it.each(corrupt)('refuses a corrupt file (%s) rather than start unfrozen, and leaves it alone', async (_label, content, message) => {
    const path = join(dir, FREEZE_FILE);
    await writeFile(path, content, { mode: 0o600 });
    const opening = FreezeStore.open(dir, [], fakeClock(START).now);
    await expect(opening).rejects.toThrow(FreezeFileError);
    await expect(opening).rejects.toThrow(message);
    await expect(opening).rejects.toThrow(path);
    expect(await readFile(path, 'utf8')).toBe(content);
  });

  it('a failed write rejects and changes nothing, in memory or on disk', async () => {
    const clock = fakeClock('2026-06-03T23:00:00Z');
    const store = await FreezeStore.open(dir, WINDOWS, clock.now);
    const own = await store.freeze(agent('claude'), 'Investigating claude.', 'alice', null);
    const before = await readFile(join(dir, FREEZE_FILE), 'utf8');
    const diskFull = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });

    vi.mocked(rename).mockRejectedValueOnce(diskFull);
    await expect(store.freeze(GLOBAL, 'Incident.', 'bob', null)).rejects.toThrow(/ENOSPC/);
    vi.mocked(rename).mockRejectedValueOnce(diskFull);
    await expect(store.unfreeze(agent('claude'), 'alice')).rejects.toThrow(/ENOSPC/);
    vi.mocked(rename).mockRejectedValueOnce(diskFull);
    await expect(store.endWindowEarly('nightly', 'alice')).rejects.toThrow(/ENOSPC/);

    expect(store.causeFor('claude')).toEqual({ kind: 'manual', freeze: own });
    expect(store.causeFor('cursor')).toMatchObject({ kind: 'window', window: 'nightly' });
    expect(await readFile(join(dir, FREEZE_FILE), 'utf8')).toBe(before);
    expect(await readdir(dir)).toEqual([FREEZE_FILE]);
    // The next write works again.
    expect(await store.unfreeze(agent('claude'), 'alice')).toEqual(own);
  });
});

describe('several instances on one state directory', () => {
  it('reload picks up a change made by another instance, and is a no-op when nothing changed', async () => {
    const clock = fakeClock(START);
    const a = await FreezeStore.open(dir, WINDOWS, clock.now);
    const b = await FreezeStore.open(dir, WINDOWS, clock.now);
    const global = await b.freeze(GLOBAL, 'Incident.', 'bob', null);
    expect(a.causeFor('claude')).toBeNull(); // not until it reloads
    await a.reload();
    expect(a.causeFor('claude')).toEqual({ kind: 'manual', freeze: global });
    const cause = a.causeFor('claude');
    await a.reload();
    // Unchanged file: the same objects, nothing re-read.
    expect(a.causeFor('claude')).toEqual(cause);
    expect((a.causeFor('claude') as { freeze: unknown }).freeze).toBe((cause as { freeze: unknown }).freeze);

    await b.unfreeze(GLOBAL, 'bob');
    await a.reload();
    expect(a.causeFor('claude')).toBeNull();
  });

  it('reload notices a rewrite even within one mtime tick (the file is replaced, so its inode changes)', async () => {
    const clock = fakeClock(START);
    const a = await FreezeStore.open(dir, [], clock.now);
    const b = await FreezeStore.open(dir, [], clock.now);
    await a.freeze(agent('claude'), 'x', 'alice', null);
    const { mtime } = await stat(join(dir, FREEZE_FILE));
    await b.freeze(agent('cursor'), 'y', 'alice', null);
    await utimes(join(dir, FREEZE_FILE), mtime, mtime);
    await a.reload();
    expect(a.causeFor('cursor')).toMatchObject({ kind: 'manual' });
  });

  it('a change made through a stale instance keeps the freezes another instance made', async () => {
    const clock = fakeClock(START);
    const a = await FreezeStore.open(dir, [], clock.now);
    const b = await FreezeStore.open(dir, [], clock.now);
    const own = await a.freeze(agent('claude'), 'Investigating claude.', 'alice', null);
    await b.freeze(GLOBAL, 'Incident.', 'bob', null); // b has not reloaded
    await b.unfreeze(GLOBAL, 'bob');
    expect(b.causeFor('claude')).toEqual({ kind: 'manual', freeze: own });
    const c = await FreezeStore.open(dir, [], clock.now);
    expect(c.status().manual).toEqual([own]);
  });

  it('reload refuses a corrupt or vanished file and keeps the freezes it knows', async () => {
    const clock = fakeClock(START);
    const a = await FreezeStore.open(dir, [], clock.now);
    const global = await a.freeze(GLOBAL, 'Incident.', 'bob', null);
    await writeFile(join(dir, FREEZE_FILE), 'garbage');
    await expect(a.reload()).rejects.toThrow(FreezeFileError);
    expect(a.causeFor('claude')).toEqual({ kind: 'manual', freeze: global });
    // A change will not write over a file it cannot read either.
    await expect(a.freeze(agent('claude'), 'x', 'alice', null)).rejects.toThrow(FreezeFileError);
    expect(await readFile(join(dir, FREEZE_FILE), 'utf8')).toBe('garbage');

    await unlink(join(dir, FREEZE_FILE));
    await expect(a.reload()).rejects.toThrow(/has disappeared/);
    expect(a.causeFor('claude')).toEqual({ kind: 'manual', freeze: global });
    // The next change writes back what it knows.
    await a.freeze(agent('claude'), 'x', 'alice', null);
    const b = await FreezeStore.open(dir, [], clock.now);
    expect(b.causeFor('cursor')).toEqual({ kind: 'manual', freeze: global });
  });

  it('waits for another process holding the lock, and breaks a stale lock', async () => {
    const clock = fakeClock(START);
    const a = await FreezeStore.open(dir, [], clock.now);
    const lock = join(dir, `${FREEZE_FILE}.lock`);
    await writeFile(lock, '99999\n');
    const pending = a.freeze(GLOBAL, 'Incident.', 'bob', null);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(a.causeFor('claude')).toBeNull(); // still waiting
    await unlink(lock);
    await pending;
    expect(a.causeFor('claude')).toMatchObject({ kind: 'manual' });

    const old = new Date(Date.now() - 60_000);
    await writeFile(lock, '99999\n');
    await utimes(lock, old, old);
    await a.unfreeze(GLOBAL, 'bob');
    expect(a.causeFor('claude')).toBeNull();
    expect(await readdir(dir)).toEqual([FREEZE_FILE]);
  });
});
