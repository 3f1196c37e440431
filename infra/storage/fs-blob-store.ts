/**
 * Image bytes on a filesystem: key `staging/<name>` is <root>/staging/<name>, `images/<name>` is
 * <root>/images/<name>. Both live under one root, so promotion is a hard link: atomic, no byte
 * is copied, and the staged name stays until the image is active (a pipeline that dies after
 * promotion can run again from its first stage). When they don't share a filesystem (EXDEV), or
 * the filesystem has no hard links, promotion copies to a temporary name, fsyncs and renames, so
 * a partial file is never visible in the store. Writes go through
 * writeHashedFile (hashing on the pool's threads, O_DIRECT from the first block, one fdatasync,
 * sparse holes).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { link, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PARTIAL_MARK, imageKey } from '../../core/blob-keys.js';
import { BlobNotFoundError, type BlobInfo, type BlobReader, type BlobStore, type BlobWriteOptions, type ByteRange, type WrittenBlob } from '../../core/ports.js';
import { HashPool, writeHashedFile } from '../../ingest/hashing/index.js';
import { FileReader } from './file-reader.js';
import { openFileStream } from './file-stream.js';
import { GroupFsync } from './group-fsync.js';

/** One key segment: no separators, no dot files, nothing that climbs out of its directory. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;

export class FsBlobStore implements BlobStore {
  readonly kind = 'filesystem';
  readonly stagingDir: string;
  readonly imagesDir: string;
  /** Makes promotions (links made in imagesDir) durable, several with one fsync. */
  private readonly imagesDirSync: GroupFsync;

  constructor(root: string, private readonly options: { stagingDir?: string; hashes?: HashPool } = {}) {
    this.stagingDir = options.stagingDir ?? join(root, 'staging');
    this.imagesDir = join(root, 'images');
    this.imagesDirSync = new GroupFsync(this.imagesDir);
  }

  async init(): Promise<void> {
    await mkdir(this.stagingDir, { recursive: true, mode: 0o700 });
    await mkdir(this.imagesDir, { recursive: true, mode: 0o700 });
  }

  /** The file behind a key; throws for a key outside the two directories. */
  filePath(key: string): string {
    return this.pathOf(key);
  }

  pathOf(key: string): string {
    const slash = key.indexOf('/');
    const area = key.slice(0, slash);
    const name = key.slice(slash + 1);
    if (slash < 0 || !NAME.test(name) || name.includes('..')) throw new Error(`bad blob key: ${JSON.stringify(key)}`);
    if (area === 'staging') return join(this.stagingDir, name);
    if (area === 'images') return join(this.imagesDir, name);
    throw new Error(`bad blob key: ${JSON.stringify(key)}`);
  }

  async write(key: string, source: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, options: BlobWriteOptions): Promise<WrittenBlob> {
    const path = this.pathOf(key);
    const write = () => writeHashedFile(source as AsyncIterable<Uint8Array>, path, {
      maxBytes: options.maxBytes,
      ...(options.idleMs ? { idleMs: options.idleMs } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.sparse ? { sparse: true } : {}),
      ...(this.options.hashes ? { pool: this.options.hashes } : {}),
    });
    try {
      return await write();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Its directory removed under PIR (an operator's cleanup): made again, as at start. The
      // file is created before the source is read, so nothing of it was taken yet.
      if (code === 'ENOENT' && (error as NodeJS.ErrnoException).path === path) {
        await this.init();
        return write();
      }
      // writeHashedFile creates exclusively (before it reads the source): a file left by a
      // crashed attempt is this key's to replace. Removed only then, not before every write.
      if (code !== 'EEXIST') throw error;
      await rm(path, { force: true });
      return write();
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    return openFileStream(this.pathOf(key), range).catch((error: NodeJS.ErrnoException) => {
      throw error.code === 'ENOENT' ? new BlobNotFoundError(key) : error;
    });
  }

  async openReader(key: string): Promise<BlobReader> {
    return FileReader.open(this.pathOf(key)).catch((error: NodeJS.ErrnoException) => {
      throw error.code === 'ENOENT' ? new BlobNotFoundError(key) : error;
    });
  }

  async stat(key: string): Promise<BlobInfo | null> {
    try {
      const info = await stat(this.pathOf(key));
      // In the store, ctime too: a link (promotion) keeps the staging file's mtime but sets the
      // ctime. Nothing is linked or renamed into staging, so there the mtime is the last write.
      const modifiedAt = key.startsWith('images/') ? Math.max(info.mtimeMs, info.ctimeMs) : info.mtimeMs;
      return info.isFile() ? { key, size: info.size, modifiedAt } : null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }

  async list(prefix: string): Promise<BlobInfo[]> {
    const areas: [string, string][] = [['staging/', this.stagingDir], ['images/', this.imagesDir]];
    const found: BlobInfo[] = [];
    for (const [area, dir] of areas) {
      if (!(area.startsWith(prefix) || prefix.startsWith(area))) continue;
      const names = await readdir(dir).catch(() => [] as string[]);
      const infos = await Promise.all(names
        .filter((name) => !name.startsWith('.') && `${area}${name}`.startsWith(prefix))
        .map((name) => this.stat(`${area}${name}`).catch(() => null)));
      for (const info of infos) if (info) found.push(info);
    }
    return found;
  }

  async localFile(key: string): Promise<{ path: string; release(): Promise<void> }> {
    const path = this.pathOf(key);
    if (!(await this.stat(key))) throw new BlobNotFoundError(key);
    return { path, release: async () => {} };
  }

  async promote(stagedKey: string, imageId: string): Promise<string> {
    const key = imageKey(imageId);
    try {
      await placeLink(this.pathOf(stagedKey), this.pathOf(key));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFoundError(stagedKey);
      throw error;
    }
    await this.imagesDirSync.sync();
    return key;
  }

  async ping(): Promise<void> {
    await Promise.all([stat(this.stagingDir), stat(this.imagesDir)]);
  }
}

/** Why link() may fail where a copy still works: another filesystem, or one without hard links. */
const LINKLESS = new Set(['EXDEV', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK']);

/**
 * `target` becomes a second name of `from`, or where links can't be made a durable copy of it.
 * A target that is already `from` (an earlier promotion of this staged blob died before its run
 * was recorded) is left alone; stale bytes there are replaced at once.
 */
async function placeLink(from: string, target: string): Promise<void> {
  let code: string;
  try {
    await link(from, target);
    return;
  } catch (error) {
    code = (error as NodeJS.ErrnoException).code ?? '';
    if (code !== 'EEXIST' && !LINKLESS.has(code)) throw error;
  }
  if (code === 'EEXIST' && await sameFile(from, target)) return;
  await viaTemporary(target, (temporary) => (code === 'EEXIST' ? linkOrCopy(from, temporary) : copyInto(from, temporary)));
}

async function sameFile(a: string, b: string): Promise<boolean> {
  const [first, second] = await Promise.all([stat(a), stat(b).catch(() => null)]);
  return second !== null && first.dev === second.dev && first.ino === second.ino;
}

async function linkOrCopy(from: string, path: string): Promise<void> {
  try {
    await link(from, path);
  } catch (error) {
    if (!LINKLESS.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
    await copyInto(from, path);
  }
}

/** Fills a temporary name beside `target`, then renames it over `target`: the name never shows a partial file. */
async function viaTemporary(target: string, fill: (temporary: string) => Promise<void>): Promise<void> {
  const temporary = `${target}${PARTIAL_MARK}${process.pid}`;
  await rm(temporary, { force: true });
  try {
    await fill(temporary);
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

async function copyInto(from: string, to: string): Promise<void> {
  await pipeline(createReadStream(from, { highWaterMark: 1024 * 1024 }), createWriteStream(to, { mode: 0o600 }));
  const handle = await open(to, 'r+');
  try { await handle.datasync(); } finally { await handle.close(); }
}

