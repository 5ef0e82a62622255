/**
 * The two file disciplines Airlock's small state files share: replace a file
 * atomically (a reader sees the old content or the new, never half), and
 * change it one process at a time (a lock file created exclusively).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Writes `text` to a new file beside `path` (mode 0600), flushes it, renames
 * it over `path`, then flushes the directory so the rename survives a crash.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    const handle = await open(tmp, 'wx', 0o600);
    try {
      await handle.writeFile(text, 'utf8');
      // The umask may only take bits away from 0600, but be explicit: the mode is part of the contract.
      await handle.chmod(0o600);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {
      // Deliberately ignored: the write's error is the one to report, and a
      // temporary file that was never created or cannot be removed is only litter.
    });
    throw err;
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

export interface LockOptions {
  /** Give up after waiting this long (ms). */
  waitMs: number;
  /** A lock older than this (ms) is a crashed process's leftover and is broken; Infinity never breaks one. */
  staleMs: number;
  /** The sentence thrown when giving up. */
  busy: (lockPath: string) => string;
}

/** Runs `fn` holding `lockPath`, created with O_EXCL, so processes sharing the directory take turns. */
export async function withLockFile<T>(lockPath: string, options: LockOptions, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + options.waitMs;
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const age = await stat(lockPath).then(
      (st) => Date.now() - st.mtimeMs,
      (err: NodeJS.ErrnoException) => {
        // Released between our open and stat: try again at once.
        if (err.code === 'ENOENT') return 0;
        throw err;
      },
    );
    if (age > options.staleMs) {
      await unlink(lockPath).catch((err: NodeJS.ErrnoException) => {
        // Another process broke it first: fine, the next round competes for a fresh one.
        if (err.code !== 'ENOENT') throw err;
      });
      continue;
    }
    if (Date.now() > deadline) throw new Error(options.busy(lockPath));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch((err: NodeJS.ErrnoException) => {
      // Already gone (broken as stale by another process): nothing to release.
      if (err.code !== 'ENOENT') throw err;
    });
  }
}
