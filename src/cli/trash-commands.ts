/**
 * `airlock trash list` and `airlock trash purge`: clients of the running
 * server's admin API (GET /v1/trash, POST /v1/trash/purge), with an admin
 * token, like freeze. Tables an agent dropped wait in the trash schema
 * until a human puts them back (`airlock undo CHANGE_ID`) or purges them.
 */
import { adminRequest } from './admin-client.js';
import { target } from './freeze-commands.js';
import type { CommandArgs } from './main.js';
import { UsageError } from './main.js';
import type { TrashItem } from '../executor/trash.js';

/** Bytes in a unit a human reads at a glance. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let n = bytes;
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(1)} ${units[u]}`;
}

/** One line per trashed table: change id, original name, agent, time, rows, size, name in the trash. */
export function formatTrashItem(t: TrashItem): string {
  const rows = t.rows === null ? '? rows' : `${t.rows} row(s)`;
  return `${t.change ?? '(no change)'}  ${t.table}  ${t.agent ?? '?'}  ${t.at ?? '?'}  ${rows}  ${formatBytes(t.bytes)}  airlock_trash.${t.trash}`;
}

export async function runTrash(args: CommandArgs, rest: string[]): Promise<number> {
  const [sub, ...ids] = rest;
  if (sub === 'list') {
    if (ids.length > 0) throw new UsageError('trash list takes no arguments');
    const r = await adminRequest(await target(args), 'GET', '/v1/trash');
    const body = r.body as { trash?: TrashItem[]; error?: string };
    if (r.status >= 400) {
      console.error(`airlock: ${body.error ?? `the admin API answered ${r.status}`}`);
      return 1;
    }
    const items = body.trash ?? [];
    if (args.values.json === true) console.log(JSON.stringify(items, null, 2));
    else if (items.length === 0) console.log('The trash is empty.');
    else for (const t of items) console.log(formatTrashItem(t));
    return 0;
  }
  if (sub === 'purge') {
    const olderThan = args.values['older-than'];
    if ((ids.length > 0) === (olderThan !== undefined)) throw new UsageError('trash purge takes change ids, or --older-than AGE (7d, 12h) or TIME: one of them');
    const body = olderThan !== undefined ? { olderThan } : { changes: ids };
    const r = await adminRequest(await target(args), 'POST', '/v1/trash/purge', body);
    const result = r.body as { purged?: TrashItem[]; message?: string; error?: string };
    if (args.values.json === true) console.log(JSON.stringify(result, null, 2));
    if (r.status >= 400) {
      console.error(`airlock: ${result.error ?? `the admin API answered ${r.status}`}`);
      return 1;
    }
    if (args.values.json !== true) {
      for (const t of result.purged ?? []) console.log(`purged ${formatTrashItem(t)}`);
      console.log(result.message ?? '');
    }
    return 0;
  }
  throw new UsageError(`trash takes list or purge${sub === undefined ? '' : `, not "${sub}"`}`);
}
