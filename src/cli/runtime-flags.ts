/**
 * How the `airlock` command runs Node.js, in one place: its `#!` line,
 * `npm start`, `npm run airlock`, `npm run bench` and `npm run fuzz` say the
 * same (runtime-flags.test.ts checks them). Set these too where you start
 * `node dist/src/cli/main.js` yourself (docs/performance.md, "Memory").
 *
 * - MALLOC_ARENA_MAX=2: glibc otherwise gives every thread that allocates
 *   its own 64 MB malloc arena, and keeps them.
 * - --max-semi-space-size=8: a young generation of at most 3 × 8 MB (not
 *   3 × 16), collected more often, each time in less.
 * - --heap-growing-percent=40: V8 starts its next full collection once the
 *   heap has grown 40% past what the last one kept, not the 1.5–4× it
 *   chooses by itself; a flood of short-lived statements otherwise leaves a
 *   few hundred MB of garbage resident between collections.
 */
export const RUNTIME_ENV = 'MALLOC_ARENA_MAX=2';
export const RUNTIME_NODE_FLAGS = ['--max-semi-space-size=8', '--heap-growing-percent=40'] as const;
