/**
 * The cache's files and index. Each verified image is <dir>/entries/<id>.data beside a sidecar
 * <id>.json recording what was verified (size, hash, and the file's size/mtime/inode then).
 * - lookup(): a verified entry (hit), the running fill to join, or a new fill (miss); or null
 *   when the image cannot be cached (larger than the cache, or no room beside entries being read).
 * - An entry is served only while its file still looks as when it was verified; a file that
 *   changed since (or any entry after a restart) is hashed again first, and dropped if it fails.
 * - Least-recently-used entries are evicted to make room, never one that is being read.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, statfs, unlink, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { Fill, type FetchBody, type FillTarget } from './fill.js';

export interface Entry extends FillTarget {
  path: string;
  hits: number;
  readers: number;
  lastAccessed: number;
  lastModified: number;
  /** The file as it was when last verified; null: not verified since start. */
  verifiedAs: { size: number; mtimeMs: number; ino: number } | null;
  verifying: Promise<boolean> | null;
}

interface Sidecar {
  image_id: string;
  size: number;
  os_hash_algo: string;
  os_hash_value: string;
  hits: number;
  last_accessed: number;
  last_modified: number;
}

export type Lookup = { kind: 'hit'; entry: Entry } | { kind: 'fill'; fill: Fill; started: boolean };

export interface StoreEvents {
  evicted(entry: Entry, reason: string): void;
  corrupt(imageId: string): void;
  upstreamBytes(n: number): void;
}

/** Image ids the cache keeps (they name files): PIR's UUIDs and the like, never a path. */
export const CACHEABLE_ID = /^[A-Za-z0-9-]{1,64}$/;

/**
 * Free disk kept beside a new fill: PIR_CACHE_MAX_SIZE bounds the cache's own bytes, not what
 * else shares its disk, and a fill that meets a full disk cuts off every reader.
 */
export const DISK_HEADROOM = 64 * 1024 * 1024;

export class CacheStore {
  /** Map order is recency: the first entry is the least recently used. */
  private readonly entries = new Map<string, Entry>();
  private readonly fills = new Map<string, Fill>();
  private readonly entriesDir: string;
  private readonly tmpDir: string;

  constructor(
    dir: string, readonly maxSize: number, private readonly log: Logger, private readonly events: StoreEvents,
    /** Free bytes on the cache's disk (statfs); tests give their own. */
    private readonly freeDisk: (dir: string) => Promise<number | null> = freeDiskBytes,
  ) {
    this.entriesDir = join(dir, 'entries');
    this.tmpDir = join(dir, 'tmp');
  }

  /** Rebuilds the index from the sidecars (partial files of a previous run are removed). */
  async open(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    await mkdir(this.entriesDir, { recursive: true, mode: 0o700 });
    const loaded: Entry[] = [];
    for (const name of await readdir(this.entriesDir)) {
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -5);
      try {
        const sidecar = JSON.parse(await readFile(join(this.entriesDir, name), 'utf8')) as Sidecar;
        const path = this.dataPath(id);
        const info = await stat(path);
        if (sidecar.image_id !== id || !CACHEABLE_ID.test(id) || info.size !== sidecar.size) throw new Error('sidecar and file disagree');
        loaded.push({
          imageId: id, size: sidecar.size, algo: sidecar.os_hash_algo, hash: sidecar.os_hash_value, path,
          hits: sidecar.hits ?? 0, readers: 0, lastAccessed: sidecar.last_accessed ?? 0, lastModified: sidecar.last_modified ?? 0,
          verifiedAs: null, verifying: null,
        });
      } catch (error) {
        this.log.warn({ image_id: id, err: error }, 'cache entry unreadable at start: removed');
        await this.removeFiles(id);
      }
    }
    for (const name of await readdir(this.entriesDir)) {
      // Data files without a sidecar (a crash between rename and sidecar write), and sidecars
      // half written.
      const orphan = (name.endsWith('.data') && !loaded.some((e) => `${e.imageId}.data` === name)) || name.endsWith('.json.tmp');
      if (orphan) await unlink(join(this.entriesDir, name)).catch(() => {});
    }
    loaded.sort((a, b) => a.lastAccessed - b.lastAccessed);
    for (const entry of loaded) this.entries.set(entry.imageId, entry);
    const victims = this.chooseVictims(0);
    if (victims) await Promise.all(victims.map((v) => this.removeFiles(v.imageId)));
  }

  /** Hashes every entry not yet verified since start, one at a time (requests verify theirs first). */
  async verifyAll(): Promise<void> {
    for (const entry of [...this.entries.values()]) {
      if (this.entries.get(entry.imageId) === entry && !entry.verifiedAs) await this.verified(entry);
    }
  }

  used(): number {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.size;
    for (const fill of this.fills.values()) total += fill.target.size;
    return total;
  }

  list(): { entries: Entry[]; filling: Fill[] } {
    return { entries: [...this.entries.values()], filling: [...this.fills.values()] };
  }

  has(imageId: string): boolean {
    return this.entries.has(imageId) || this.fills.has(imageId);
  }

  /**
   * What serves `target` now. `fetchBody` starts the upstream read if a new fill is needed.
   * Null: not cacheable (too large, or no room): the caller streams from upstream instead.
   */
  async lookup(target: FillTarget, fetchBody: FetchBody): Promise<Lookup | null> {
    const entry = this.entries.get(target.imageId);
    if (entry) {
      if (entry.hash !== target.hash || entry.algo !== target.algo || entry.size !== target.size) {
        await this.drop(target.imageId, 'replaced upstream');
      } else {
        // Claim it before awaiting, so eviction cannot take it meanwhile.
        entry.readers += 1;
        const ok = await this.verified(entry).catch(() => false);
        entry.readers -= 1;
        if (ok && this.entries.get(target.imageId) === entry) {
          this.touch(entry);
          return { kind: 'hit', entry };
        }
      }
    }
    const freeOnDisk = await this.freeDisk(this.tmpDir).catch(() => null);
    // From here to the new fill nothing awaits: two requests can never start two fills.
    const running = this.fills.get(target.imageId);
    if (running && running.target.hash === target.hash && running.state !== 'failed') return { kind: 'fill', fill: running, started: false };
    if (running) running.abort('replaced upstream');
    // Bytes the disk lacks for this fill and the rest of those running: evicted entries give them back.
    const diskShortfall = freeOnDisk === null ? 0 : target.size + this.unwrittenFillBytes() + DISK_HEADROOM - freeOnDisk;
    const victims = target.size > this.maxSize ? null : this.chooseVictims(target.size, diskShortfall);
    if (!victims) return null;
    const fill = new Fill(target, join(this.tmpDir, `${target.imageId}.${randomBytes(6).toString('hex')}`), this.dataPath(target.imageId), fetchBody, (n) => this.events.upstreamBytes(n));
    this.fills.set(target.imageId, fill);
    fill.done.then(() => this.fillVerified(fill), (error: Error) => {
      this.log.warn({ image_id: target.imageId, err: error.message }, 'cache fill failed');
      if (this.fills.get(target.imageId) === fill) this.fills.delete(target.imageId);
    }).catch((error: Error) => this.log.error({ image_id: target.imageId, err: error }, 'cache entry could not be recorded'));
    await Promise.all(victims.map((v) => this.removeFiles(v.imageId)));
    return { kind: 'fill', fill, started: true };
  }

  /** Counts a read of an entry from its start until `release` (eviction skips entries being read). */
  claim(entry: Entry): () => void {
    entry.readers += 1;
    entry.hits += 1;
    let released = false;
    return () => {
      if (!released) entry.readers -= 1;
      released = true;
    };
  }

  /** Counts a reader of a fill; it keeps counting on the entry the fill becomes. */
  claimFill(fill: Fill): () => void {
    fill.readers += 1;
    if (fill.successor) fill.successor.readers += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      fill.readers -= 1;
      if (fill.successor) fill.successor.readers -= 1;
    };
  }

  /** Removes an image's entry and stops its fill (deleted, deactivated, replaced upstream, or by an admin). */
  async drop(imageId: string, reason: string): Promise<boolean> {
    const fill = this.fills.get(imageId);
    if (fill) {
      fill.abort(reason);
      this.fills.delete(imageId);
    }
    const entry = this.entries.get(imageId);
    if (!entry) return fill !== undefined;
    this.entries.delete(imageId);
    this.events.evicted(entry, reason);
    // Readers that have the file open keep reading it: the bytes were verified and they were authorized.
    await this.removeFiles(imageId);
    this.log.info({ image_id: imageId, reason }, 'cache entry dropped');
    return true;
  }

  async dropAll(reason: string): Promise<number> {
    const ids = [...new Set([...this.entries.keys(), ...this.fills.keys()])];
    for (const id of ids) await this.drop(id, reason);
    return ids.length;
  }

  /** Writes hit counts and access times to the sidecars (at stop). */
  async flush(): Promise<void> {
    for (const fill of this.fills.values()) fill.abort('cache stopping');
    for (const entry of this.entries.values()) await this.writeSidecar(entry).catch(() => {});
  }

  private dataPath(id: string): string {
    return join(this.entriesDir, `${id}.data`);
  }

  private touch(entry: Entry): void {
    entry.lastAccessed = Date.now() / 1000;
    this.entries.delete(entry.imageId);
    this.entries.set(entry.imageId, entry);
  }

  private async fillVerified(fill: Fill): Promise<void> {
    if (this.fills.get(fill.target.imageId) !== fill) {
      // Dropped while it ran (deleted upstream): its file must not come back.
      await unlink(fill.finalPath).catch(() => {});
      return;
    }
    const now = Date.now() / 1000;
    const info = await stat(fill.finalPath);
    const entry: Entry = {
      ...fill.target, path: fill.finalPath, hits: 0, readers: fill.readers, lastAccessed: now, lastModified: now,
      verifiedAs: { size: info.size, mtimeMs: info.mtimeMs, ino: info.ino }, verifying: null,
    };
    // Readers of the fill keep counting on the entry until they finish (eviction skips it).
    fill.successor = entry;
    await this.writeSidecar(entry);
    if (this.fills.get(fill.target.imageId) !== fill) {
      await this.removeFiles(fill.target.imageId);
      return;
    }
    this.fills.delete(fill.target.imageId);
    this.entries.set(entry.imageId, entry);
  }

  /** True when the entry's file still holds the verified bytes (hashing it again if it changed). */
  private verified(entry: Entry): Promise<boolean> {
    if (entry.verifying) return entry.verifying;
    entry.verifying = (async () => {
      const info = await stat(entry.path).catch(() => null);
      const known = entry.verifiedAs;
      if (info && known && info.size === known.size && info.mtimeMs === known.mtimeMs && info.ino === known.ino) return true;
      let ok = false;
      if (info && info.size === entry.size) {
        const hasher = createHash(entry.algo);
        await pipeline(createReadStream(entry.path, { highWaterMark: 1 << 20 }), hasher);
        ok = hasher.digest('hex') === entry.hash;
      }
      if (ok) {
        entry.verifiedAs = { size: info!.size, mtimeMs: info!.mtimeMs, ino: info!.ino };
        return true;
      }
      this.log.warn({ image_id: entry.imageId }, 'cache file changed or corrupt: dropped, it will be fetched again');
      this.events.corrupt(entry.imageId);
      if (this.entries.get(entry.imageId) === entry) await this.drop(entry.imageId, 'corrupt');
      return false;
    })().finally(() => { entry.verifying = null; });
    return entry.verifying;
  }

  private unwrittenFillBytes(): number {
    let total = 0;
    for (const fill of this.fills.values()) if (fill.state === 'running') total += Math.max(0, fill.target.size - fill.written);
    return total;
  }

  /**
   * Takes least-recently-used entries not being read out of the index until `size` more bytes
   * fit and `diskShortfall` bytes are freed on disk (synchronously: the caller removes their
   * files); null when they cannot.
   */
  private chooseVictims(size: number, diskShortfall = 0): Entry[] | null {
    const victims: Entry[] = [];
    let free = this.maxSize - this.used();
    let freed = 0;
    for (const entry of this.entries.values()) {
      if (free >= size && freed >= diskShortfall) break;
      if (entry.readers > 0 || entry.verifying) continue;
      victims.push(entry);
      free += entry.size;
      freed += entry.size;
    }
    if (free < size || freed < diskShortfall) return null;
    for (const victim of victims) {
      this.entries.delete(victim.imageId);
      this.events.evicted(victim, 'lru');
    }
    return victims;
  }

  private async writeSidecar(entry: Entry): Promise<void> {
    const sidecar: Sidecar = {
      image_id: entry.imageId, size: entry.size, os_hash_algo: entry.algo, os_hash_value: entry.hash,
      hits: entry.hits, last_accessed: entry.lastAccessed, last_modified: entry.lastModified,
    };
    const path = join(this.entriesDir, `${entry.imageId}.json`);
    await writeFile(`${path}.tmp`, JSON.stringify(sidecar));
    await rename(`${path}.tmp`, path);
  }

  private async removeFiles(id: string): Promise<void> {
    await unlink(join(this.entriesDir, `${id}.json`)).catch(() => {});
    await unlink(this.dataPath(id)).catch(() => {});
  }
}

/** Free bytes on the disk holding `dir` for an unprivileged writer; null when the system cannot say. */
async function freeDiskBytes(dir: string): Promise<number | null> {
  const disk = await statfs(dir).catch(() => null);
  return disk ? disk.bavail * disk.bsize : null;
}
