/**
 * Debian's chromium for the dashboard's browser tests, driven by
 * playwright-core (whose own browser downloads are never used). When it is
 * missing and the tests run as root on a machine with apt-get, it is
 * installed as .ci/run does, once per run; anywhere else the tests fail
 * saying what to do: a dashboard nobody tested in a browser is a failure,
 * not a skip.
 */
import { existsSync } from 'node:fs';
import { runProcess } from './run-process.js';

export const CHROMIUM = process.env.AIRLOCK_CHROMIUM ?? '/usr/bin/chromium';

/** How long installing it may take (a download of about 100 MB from Debian's mirror). */
export const CHROMIUM_INSTALL_MS = 600_000;

const NO_CHROMIUM =
  `The dashboard's browser tests need Debian's chromium at ${CHROMIUM}, and it is not there. ` +
  'Install it (as root: apt-get install -y chromium; the tests do so themselves when run as root), or point AIRLOCK_CHROMIUM at a chromium binary.';

let found: Promise<string> | null = null;

/** The chromium binary's path, installing Debian's package first when it is missing and that is possible. */
export function ensureChromium(): Promise<string> {
  found ??= findOrInstall();
  return found;
}

async function findOrInstall(): Promise<string> {
  if (existsSync(CHROMIUM)) return CHROMIUM;
  if (process.env.AIRLOCK_CHROMIUM !== undefined || process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) throw new Error(NO_CHROMIUM);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args: string[]) => runProcess('apt-get', args, { env, timeoutMs: CHROMIUM_INSTALL_MS });
  const install = ['install', '-y', '-qq', '--no-install-recommends', 'chromium'];
  let result = await apt(install);
  if (result.code !== 0) {
    // A machine that never fetched the package lists: fetch them, then try again.
    await apt(['update', '-qq']);
    result = await apt(install);
  }
  if (result.code !== 0 || !existsSync(CHROMIUM)) {
    const said = `${result.stderr}${result.stdout}`.trim().split('\n').slice(-3).join(' ');
    throw new Error(`${NO_CHROMIUM} Installing it with apt-get failed (exit ${result.code}): ${said}`);
  }
  return CHROMIUM;
}
