/**
 * The data directory at start-up: made if missing, checked usable, and in embedded mode held by
 * one process at a time. A path that cannot work stops start-up with one line naming
 * PIR_DATA_DIR (it was a stack trace from the first file written, or, under /proc, Node's
 * recursive mkdir spinning forever). Two `pir serve` on one directory each resumed the other's
 * "stuck" imports and raced on the same SQLite files and staging; the lock file refuses the
 * second. Hand-written: the lock libraries on npm use mtime leases (a process that stalls loses
 * its lock) or native flock bindings; a pid with its start time is what tells a live holder here.
 */
import { access, constants, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { StartupError } from './startup-error.js';

const LOCK_FILE = 'pir.lock';

/** Makes the directory (each missing level, mode 0700) and checks that PIR can write in it. */
export async function prepareDataDir(dataDir: string): Promise<void> {
  const dir = resolve(dataDir);
  const unusable = (why: string) => new StartupError(`PIR_DATA_DIR=${dataDir} cannot be used: ${why}; choose another directory with PIR_DATA_DIR`);
  // Level by level from the deepest that exists: no recursive mkdir (which loops under /proc).
  const missing: string[] = [];
  for (let at = dir; ; at = dirname(at)) {
    const info = await stat(at).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return null; // ENOTDIR: a file above, found next
      throw unusable(`${at}: ${error.code ?? error.message}`);
    });
    if (info) {
      if (!info.isDirectory()) throw unusable(`${at} is not a directory`);
      break;
    }
    if (dirname(at) === at) break;
    missing.unshift(at);
  }
  for (const level of missing) {
    await mkdir(level, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw unusable(`cannot create ${level} (${error.code ?? error.message})`);
    });
  }
  await access(dir, constants.W_OK | constants.X_OK).catch((error: NodeJS.ErrnoException) => {
    throw unusable(`it is not writable (${error.code ?? error.message})`);
  });
}

interface LockHolder {
  pid: number;
  /** The holder's start time (Linux: /proc/<pid>/stat), so a recycled pid is not taken for it. */
  started: string | null;
}

export interface DataDirLock {
  release(): Promise<void>;
}

/** Holds the data directory for this process; refuses when a live PIR process holds it. */
export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const path = join(dataDir, LOCK_FILE);
  const me: LockHolder = { pid: process.pid, started: startTimeOf(process.pid) };
  const text = JSON.stringify(me) + '\n';
  const created = await open(path, 'wx', 0o600).then(async (handle) => {
    try { await handle.writeFile(text); } finally { await handle.close(); }
    return true;
  }, (error: NodeJS.ErrnoException) => {
    if (error.code === 'EEXIST') return false;
    throw new StartupError(`PIR_DATA_DIR=${dataDir} cannot be used: cannot create ${path} (${error.code ?? error.message})`);
  });
  if (!created) {
    const holder = await readHolder(path);
    if (holder && holder.pid !== process.pid && isAlive(holder)) {
      throw new StartupError(`PIR_DATA_DIR=${dataDir} is in use by another PIR process (pid ${holder.pid}, ${path}); stop it first, or give this one another directory with PIR_DATA_DIR`);
    }
    // Left by a process that is gone (killed, crashed): taken over.
    const next = `${path}.${process.pid}`;
    await writeFile(next, text, { mode: 0o600 });
    await rename(next, path);
  }
  return {
    async release() {
      const holder = await readHolder(path);
      if (holder?.pid === process.pid) await rm(path, { force: true });
    },
  };
}

async function readHolder(path: string): Promise<LockHolder | null> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<LockHolder>;
    return Number.isSafeInteger(parsed.pid) && parsed.pid! > 0 ? { pid: parsed.pid!, started: typeof parsed.started === 'string' ? parsed.started : null } : null;
  } catch {
    return null; // unreadable or cut short by a crash: no live holder can be named
  }
}

function isAlive(holder: LockHolder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const started = startTimeOf(holder.pid);
  return holder.started === null || started === null || started === holder.started;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); null off Linux. */
function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}
