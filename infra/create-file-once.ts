/**
 * Creates a file whole or not at all, for the secrets PIR generates into its data dir on first
 * start (the admin token, the webhook secret key). Processes sharing a data dir often start at the
 * same moment: with `writeFile(path, …, { flag: 'wx' })` another process could open the file
 * between its creation and its write and read it empty. Here the content is written and synced
 * under a temporary name first, then linked to its own name, which fails if that name exists.
 */
import { randomBytes } from 'node:crypto';
import { link, open, unlink } from 'node:fs/promises';

/** True if this call created the file; false if it existed already (its content is left as it was). */
export async function createFileOnce(path: string, content: string, mode = 0o600): Promise<boolean> {
  const temporary = `${path}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', mode);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(temporary).catch(() => {});
  }
}
