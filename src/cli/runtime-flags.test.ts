import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { RUNTIME_ENV, RUNTIME_NODE_FLAGS } from './runtime-flags.js';

const root = new URL('../../', import.meta.url);
const flags = RUNTIME_NODE_FLAGS.join(' ');

describe('the runtime the airlock command asks for', () => {
  it('is the #! line of the command', async () => {
    const first = (await readFile(new URL('src/cli/main.ts', root), 'utf8')).split('\n')[0];
    expect(first).toBe(`#!/usr/bin/env -S ${RUNTIME_ENV} node ${flags}`);
  });

  it('is what npm start, npm run airlock, bench and fuzz run', async () => {
    const scripts = (JSON.parse(await readFile(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.start).toBe(`${RUNTIME_ENV} node ${flags} dist/src/cli/main.js demo`);
    expect(scripts.airlock).toBe(`${RUNTIME_ENV} node ${flags} dist/src/cli/main.js`);
    expect(scripts.bench).toBe(`npm run build && ${RUNTIME_ENV} node ${flags} bench/pgbench.mjs`);
    // The fuzz harness starts Airlock itself, with these flags (bench/fuzz.ts imports them).
    expect(await readFile(new URL('bench/fuzz.ts', root), 'utf8')).toContain('RUNTIME_NODE_FLAGS');
  });
});
