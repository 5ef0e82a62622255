/**
 * Writes schema/airlock.schema.json, the JSON Schema editors use to check
 * airlock.yaml, from the zod schema in src/config/schema.ts. Run it with
 * `npm run schema` after changing the schema; a test fails until you do.
 * An argument writes elsewhere (the test compares that with the committed file).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderConfigJsonSchema } from '../src/config/schema.js';

const target = process.argv[2]
  ? resolve(process.argv[2])
  : fileURLToPath(new URL('../schema/airlock.schema.json', import.meta.url));

mkdirSync(dirname(target), { recursive: true });
writeFileSync(target, renderConfigJsonSchema());
console.log(`Wrote ${target}.`);
