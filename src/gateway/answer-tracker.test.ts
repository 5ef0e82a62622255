import { describe, expect, it } from 'vitest';
import { BACKEND, errorResponse, readyForQuery } from '../protocol/backend.js';
import { Cycle, CycleQueue, LostTrack } from './answer-tracker.js';
import type { Step } from './answer-tracker.js';

/** A backend message's type and body, as the tracker reads them. */
function msg(type: number, body: Buffer = Buffer.alloc(0)): [number, Buffer] {
  return [type, body];
}
const tag = (t: string): [number, Buffer] => msg(BACKEND.commandComplete, Buffer.from(t + '\0'));
const error = (code: string, message = 'boom'): [number, Buffer] => {
  const raw = errorResponse({ severity: 'ERROR', code, message });
  return [raw[0]!, raw.subarray(5)];
};
const ready = (s: 'I' | 'T' | 'E'): [number, Buffer] => {
  const raw = readyForQuery(s);
  return [raw[0]!, raw.subarray(5)];
};

/** Steps that log what happens to them. */
function logged(kinds: Step['kind'][], log: string[], extra: Partial<Step>[] = []): Step[] {
  return kinds.map((kind, i) => ({
    kind,
    ...extra[i],
    onDone: () => log.push(`done ${i} ${kind}`),
    onFail: (failed: boolean) => log.push(`${failed ? 'failed' : 'skipped'} ${i} ${kind}`),
  }));
}

describe('Cycle', () => {
  it('completes each step by its answer and ends at ReadyForQuery with its status', () => {
    const log: string[] = [];
    const rows: (number | null)[] = [];
    const cycle = new Cycle(3);
    const steps = logged(['parse', 'bind', 'describe', 'execute', 'sync'], log, [{}, {}, {}, { statements: [{ settle: (r) => rows.push(r) }] }]);
    for (const s of steps) cycle.add(s);
    const answers = [msg(BACKEND.parseComplete), msg(BACKEND.bindComplete), msg(BACKEND.rowDescription), msg(BACKEND.dataRow), tag('DELETE 3'), ready('T')];
    expect(answers.map(([t, b]) => cycle.answer(t, b))).toEqual(['pass', 'pass', 'pass', 'pass', 'pass', 'pass']);
    expect(log).toEqual(['done 0 parse', 'done 1 bind', 'done 2 describe', 'done 3 execute', 'done 4 sync']);
    expect(rows).toEqual([3]);
    expect(cycle.status).toBe('T');
    expect(cycle.seq).toBe(3);
  });

  it('fails the step an error answers, and takes back the skipped ones newest first, before it', () => {
    const log: string[] = [];
    const settled: (string | undefined)[] = [];
    const cycle = new Cycle();
    const steps = logged(['parse', 'bind', 'parse', 'execute', 'sync'], log, [{}, {}, {}, { statements: [{ settle: (_r, s) => settled.push(s) }] }]);
    for (const s of steps) cycle.add(s);
    cycle.answer(...msg(BACKEND.parseComplete));
    expect(cycle.answer(...error('08P01'))).toBe('pass');
    cycle.answer(...ready('I'));
    expect(log).toEqual(['done 0 parse', 'skipped 3 execute', 'skipped 2 parse', 'failed 1 bind', 'done 4 sync']);
    expect(settled).toEqual(['skipped']);
    expect(cycle.failed).toBe(true);
  });

  it('settles at once a step added after an error: the server skips it', () => {
    const log: string[] = [];
    const cycle = new Cycle();
    for (const s of logged(['parse'], log)) cycle.add(s);
    cycle.answer(...error('42601'));
    for (const s of logged(['bind', 'sync'], log)) cycle.add(s);
    cycle.answer(...ready('I'));
    expect(log).toEqual(['failed 0 parse', 'skipped 0 bind', 'done 1 sync']);
  });

  it("replaces the server's error for a refusal token with Airlock's, and swallows answers to its own steps", () => {
    const cycle = new Cycle();
    cycle.add({ kind: 'parse', own: true });
    cycle.add({ kind: 'parse', refusal: { token: 'airlock_refused_x', denial: { kind: 'deny', rule: 'r', message: 'no', hint: 'h', sqlstate: '42501' } } });
    cycle.add({ kind: 'sync' });
    expect(cycle.answer(...msg(BACKEND.parseComplete))).toBe('swallow');
    const replaced = cycle.answer(...error('42601', 'syntax error at or near "airlock_refused_x"'));
    expect(Buffer.isBuffer(replaced)).toBe(true);
    expect((replaced as Buffer).toString('latin1')).toContain('42501');
    expect(cycle.answer(...ready('I'))).toBe('pass');
  });

  it('settles every statement of a query string, the ones after an error as skipped', () => {
    const settled: string[] = [];
    const cycle = new Cycle();
    const statement = (name: string) => ({ settle: (rows: number | null, sqlstate: string | undefined, command?: string) => settled.push(`${name} ${rows} ${sqlstate} ${command}`) });
    cycle.add({ kind: 'query', statements: [statement('a'), statement('b'), statement('c')] });
    cycle.answer(...tag('COMMIT'));
    cycle.answer(...error('22012'));
    cycle.answer(...ready('I'));
    expect(settled).toEqual(['a null undefined COMMIT', 'b null 22012 undefined', 'c null skipped undefined']);
  });

  it.each([
    ['a ParseComplete where a Bind was sent', ['bind', 'sync'], BACKEND.parseComplete],
    ['a BindComplete to nothing sent', [], BACKEND.bindComplete],
    ['a ReadyForQuery before the Execute was answered', ['execute', 'sync'], BACKEND.readyForQuery],
  ] as const)('loses track (and says so) on %s', (_what, kinds, type) => {
    const cycle = new Cycle();
    for (const kind of kinds) cycle.add({ kind });
    expect(() => cycle.answer(type, Buffer.from('I'))).toThrow(LostTrack);
  });
});

describe('CycleQueue', () => {
  it('answers cycles in order and hands back each one that ended', () => {
    const queue = new CycleQueue();
    const a = new Cycle(0);
    a.add({ kind: 'sync' });
    const b = new Cycle(1);
    b.add({ kind: 'query', statements: [] });
    queue.push(a);
    queue.push(b);
    expect(queue.answer(...ready('I')).ended).toBe(a);
    expect(queue.answer(...msg(BACKEND.emptyQueryResponse)).ended).toBeNull();
    expect(queue.answer(...ready('I')).ended).toBe(b);
    expect(queue.length).toBe(0);
  });

  it('passes notices and a FATAL that come with nothing asked, and refuses any other answer then', () => {
    const queue = new CycleQueue();
    expect(queue.answer(...msg(BACKEND.noticeResponse)).action).toBe('pass');
    expect(queue.answer(...error('57P01')).action).toBe('pass');
    expect(() => queue.answer(...msg(BACKEND.dataRow))).toThrow(LostTrack);
  });
});
