import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GENESIS_HASH, auditRecordHash } from './audit-log.js';
import type { AuditRecord } from './audit-log.js';
import { FileAuditLog, auditDir, auditLogPath } from './file-audit-log.js';
import { verifyAuditLog } from './audit-verify.js';

let root: string;
let pristine: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'airlock-verify-'));
  pristine = join(root, 'pristine');
  const log = await FileAuditLog.open(pristine);
  for (let i = 1; i <= 6; i++) {
    log.append({ event: 'statement', agent: 'claude', session: 's1', client: '127.0.0.1:5000', text: `SELECT ${i}`, decision: 'allow', rule: 'reads', rows: i });
  }
  await log.close();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let copies = 0;
/** A copy of the six-record log, its text edited by `edit`. */
async function tampered(edit: (lines: string[]) => string): Promise<string> {
  const dir = join(root, `copy-${copies++}`);
  await cp(pristine, dir, { recursive: true });
  const text = await readFile(auditLogPath(dir), 'utf8');
  await writeFile(auditLogPath(dir), edit(text.split('\n').slice(0, -1)));
  return dir;
}

const joined = (lines: string[]): string => lines.map((l) => l + '\n').join('');

/** Rewrites one record's body and gives it a correct hash of its own, as a forger would. */
function forge(line: string, change: (r: AuditRecord) => void): string {
  const r = JSON.parse(line) as AuditRecord;
  change(r);
  const { hash: _old, ...rest } = r;
  const body = JSON.stringify(rest);
  return body.slice(0, -1) + `,"hash":"${auditRecordHash(r.prev, body)}"}`;
}

describe('verifyAuditLog', () => {
  it('accepts the untouched log and gives its head', async () => {
    const text = await readFile(auditLogPath(pristine), 'utf8');
    const last = JSON.parse(text.trimEnd().split('\n').at(-1) as string) as AuditRecord;
    expect(await verifyAuditLog(pristine)).toEqual({ ok: true, records: 6, head: last.hash });
  });

  it.each([
    ['an edited field', (l: string[]) => joined(l.map((x, i) => (i === 2 ? x.replace('"SELECT 3"', '"SELECT 33"') : x))), 3, /line 3 \(seq 3\) does not match its hash/i],
    ['an edited number', (l: string[]) => joined(l.map((x, i) => (i === 3 ? x.replace('"rows":4', '"rows":0') : x))), 4, /does not match its hash/],
    ['a reformatted record', (l: string[]) => joined(l.map((x, i) => (i === 2 ? x.replace('"rows":3', '"rows": 3') : x))), 3, /canonical/],
    ['a deleted record', (l: string[]) => joined(l.filter((_x, i) => i !== 2)), 3, /seq 4 where 3 was expected: records were deleted/],
    ['two swapped records', (l: string[]) => joined([l[0], l[1], l[3], l[2], l[4], l[5]] as string[]), 3, /seq 4 where 3 was expected/],
    ['a repeated record', (l: string[]) => joined([l[0], l[1], l[2], l[2], l[3]] as string[]), 4, /seq 3 where 4 was expected: records were moved or repeated/],
    ['a line cut in the middle', (l: string[]) => joined(l).slice(0, -30), 6, /Line 6 is torn/],
    ['a missing final newline', (l: string[]) => joined(l).slice(0, -1), 6, /Line 6 is torn/],
    ['a changed first prev', (l: string[]) => joined(l.map((x, i) => (i === 0 ? x.replace(GENESIS_HASH, '1'.repeat(64)) : x))), 1, /first record does not start the chain/],
    ['a forged first prev (rehashed)', (l: string[]) => joined(l.map((x, i) => (i === 0 ? forge(x, (r) => (r.prev = '1'.repeat(64))) : x))), 1, /first record does not start the chain/],
    ['a deleted first record', (l: string[]) => joined(l.slice(1)), 1, /first record has seq 2/],
    ['an edited record given a new hash', (l: string[]) => joined(l.map((x, i) => (i === 2 ? forge(x, (r) => (r.text = 'SELECT 1; DROP TABLE x')) : x))), 4, /line 4's prev is not the hash of the record before it/i],
    ['a deleted record with the rest renumbered', (l: string[]) => joined(l.filter((_x, i) => i !== 2).map((x, i) => (i >= 2 ? forge(x, (r) => (r.seq = i + 1)) : x))), 3, /prev is not the hash/],
    ['an empty line', (l: string[]) => joined([l[0], '', ...l.slice(1)] as string[]), 2, /Line 2 is empty/],
    ['a garbage line', (l: string[]) => joined([l[0], 'rm -rf /', ...l.slice(1)] as string[]), 2, /Line 2 is not a valid record/],
  ])('finds %s', async (_name, edit, line, problem) => {
    const dir = await tampered(edit);
    const result = await verifyAuditLog(dir);
    expect(result).toMatchObject({ ok: false, line, records: line - 1 });
    if (!result.ok) expect(result.problem).toMatch(problem);
  });

  it('finds bytes that are not UTF-8', async () => {
    const dir = join(root, 'bad-utf8');
    await cp(pristine, dir, { recursive: true });
    const bytes = await readFile(auditLogPath(dir));
    const at = bytes.indexOf('SELECT 2');
    bytes[at + 7] = 0xff;
    await writeFile(auditLogPath(dir), bytes);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, line: 2, problem: expect.stringMatching(/UTF-8/) as unknown });
  });

  it('cannot see a tail cut at a line boundary (that needs external checkpoints)', async () => {
    const dir = await tampered((l) => joined(l.slice(0, 4)));
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 4 });
  });

  it('accepts an empty log and reports a missing one', async () => {
    const empty = join(root, 'empty');
    await mkdir(auditDir(empty), { recursive: true });
    await writeFile(auditLogPath(empty), '');
    expect(await verifyAuditLog(empty)).toEqual({ ok: true, records: 0, head: GENESIS_HASH });
    expect(await verifyAuditLog(join(root, 'nowhere'))).toMatchObject({ ok: false, line: 0, problem: expect.stringMatching(/no audit log/) as unknown });
  });
});
