/**
 * Local copies of stored blobs, for the tools that need a file (a zip's central directory is at
 * its end): one directory each under $TMPDIR, named after the process that made it, so that a
 * process starting up can remove what dead processes of its host left behind (a worker killed
 * mid-unpack), and never what a live one is using.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';

const PREFIX = 'pir-blob-';
// '@' is no hostname character, so the pid and host part back out unambiguously.
const OWNED = /^pir-blob-(\d+)@(.+)-[A-Za-z0-9]{6}$/;

/** A new private directory for one local copy, named after this process and host. */
export function makeLocalCopyDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), `${PREFIX}${process.pid}@${hostname()}-`));
}

/** Removes the local-copy directories of this host's processes that are gone; returns how many. */
export async function removeDeadProcessCopies(log?: Logger, dir = tmpdir()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const owner = OWNED.exec(name);
    if (!owner || owner[2] !== hostname()) continue;
    const pid = Number(owner[1]);
    if (pid === process.pid || isAlive(pid)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed++;
  }
  if (removed > 0) log?.info({ removed, dir }, 'removed local copies of image data that exited processes left behind');
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}
