/**
 * Image bytes on a filesystem: <root>/staging for work in progress, <root>/images for stored
 * images. Both live under one root, so promotion is a rename: atomic, and no byte is copied.
 * When they don't share a filesystem (EXDEV) promotion copies to a temporary name, fsyncs and
 * renames, so a partial file is never visible in the store.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobStore, ByteRange } from '../../core/ports.js';

const UUID_LIKE = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;

export class FsBlobStore implements BlobStore {
  readonly stagingDir: string;
  readonly imagesDir: string;

  constructor(root: string, options: { stagingDir?: string } = {}) {
    this.stagingDir = options.stagingDir ?? join(root, 'staging');
    this.imagesDir = join(root, 'images');
  }

  async init(): Promise<void> {
    await mkdir(this.stagingDir, { recursive: true, mode: 0o700 });
    await mkdir(this.imagesDir, { recursive: true, mode: 0o700 });
  }

  stagingPath(imageId: string, run: number, kind: 'upload' | 'unpacked'): string {
    return join(this.stagingDir, `${safeId(imageId)}.${run}.${kind}`);
  }

  async removeStaging(imageId: string): Promise<void> {
    const prefix = `${safeId(imageId)}.`;
    const names = await readdir(this.stagingDir).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => n.startsWith(prefix)).map((n) => rm(join(this.stagingDir, n), { force: true })));
  }

  async promote(stagingFile: string, imageId: string): Promise<void> {
    const target = this.imagePath(imageId);
    try {
      await rename(stagingFile, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      await copyDurably(stagingFile, target);
      await unlink(stagingFile);
    }
    await fsyncDir(this.imagesDir);
  }

  async storedSize(imageId: string): Promise<number | null> {
    try {
      return (await stat(this.imagePath(imageId))).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  openRead(imageId: string, range?: ByteRange): Readable {
    return createReadStream(this.imagePath(imageId), {
      highWaterMark: 1024 * 1024,
      ...(range ? { start: range.start, end: range.end } : {}),
    });
  }

  async remove(imageId: string): Promise<void> {
    await rm(this.imagePath(imageId), { force: true });
  }

  async listStored(): Promise<string[]> {
    return (await readdir(this.imagesDir)).filter((n) => !n.startsWith('.'));
  }

  async listStoredFiles(): Promise<{ imageId: string; path: string; modifiedAt: number; partial: boolean }[]> {
    const names = await readdir(this.imagesDir).catch(() => [] as string[]);
    const files = await Promise.all(names.map(async (name) => {
      const path = join(this.imagesDir, name);
      const info = await stat(path).catch(() => null);
      // ctime too: a rename (promotion) keeps the staging file's mtime but sets the ctime.
      return info?.isFile() ? { imageId: name.split('.')[0], path, modifiedAt: Math.max(info.mtimeMs, info.ctimeMs), partial: name.includes('.partial-') } : null;
    }));
    return files.filter((f): f is NonNullable<typeof f> => f !== null && f.imageId !== '');
  }

  async removeFile(path: string): Promise<void> {
    await rm(path, { force: true });
  }

  async listStaging(): Promise<{ imageId: string; path: string; modifiedAt: number }[]> {
    const names = await readdir(this.stagingDir).catch(() => [] as string[]);
    const files = await Promise.all(names.map(async (name) => {
      const path = join(this.stagingDir, name);
      const info = await stat(path).catch(() => null);
      return info ? { imageId: name.split('.')[0], path, modifiedAt: info.mtimeMs } : null;
    }));
    return files.filter((f): f is NonNullable<typeof f> => f !== null);
  }

  imagePath(imageId: string): string {
    return join(this.imagesDir, safeId(imageId));
  }
}

/** Image ids become file names: refuse anything that could escape the directory. */
function safeId(imageId: string): string {
  if (!UUID_LIKE.test(imageId)) throw new Error(`unsafe image id for a file name: ${JSON.stringify(imageId)}`);
  return imageId;
}

async function copyDurably(from: string, to: string): Promise<void> {
  const temporary = `${to}.partial-${process.pid}`;
  try {
    await pipeline(createReadStream(from, { highWaterMark: 1024 * 1024 }), createWriteStream(temporary, { mode: 0o600 }));
    const handle = await open(temporary, 'r+');
    try { await handle.datasync(); } finally { await handle.close(); }
    await rename(temporary, to);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try { await handle.sync(); } finally { await handle.close(); }
}
