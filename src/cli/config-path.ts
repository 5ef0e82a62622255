import { resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import type { AirlockConfig } from '../config/load.js';
import type { CommandArgs } from './main.js';

/** Loads the config named by --config (default ./airlock.yaml) and prints its warnings. */
export async function configFromArgs(args: CommandArgs): Promise<AirlockConfig> {
  const path = resolve(args.values.config ?? 'airlock.yaml');
  const { config, warnings } = await loadConfig(path);
  for (const w of warnings) console.error(`airlock: warning: ${w}`);
  return config;
}
