/**
 * The ingest hot path: stream bytes into a new file while md5 and sha512 are computed on the
 * hash pool's threads, in the same pass, over the very same shared-memory slots the file write
 * reads. The main thread only copies incoming chunks into slots and posts messages.
 */
import { close, constants, fdatasync, fstat, ftruncate, open, read, unlink, writev } from 'node:fs';
import { HashPool, type HashSession, type Slot } from './pool.js';

export interface HashedFile {
  size: number;
  /** hex */
  md5: string;
  /** hex */
  sha512: string;
}

export class SizeLimitError extends Error {
  readonly code = 'size_limit';
  constructor(readonly limit: number) {
    super(`upload exceeds the size limit of ${limit} bytes; send a smaller image or raise the limit`);
    this.name = 'SizeLimitError';
  }
}

/** The source brought no byte for `idleMs` while it was waited for. */
export class SourceIdleError extends Error {
  readonly code = 'source_idle';
  constructor(readonly idleMs: number) {
    super(`no data arrived for ${Math.round(idleMs / 1000)} s`);
    this.name = 'SourceIdleError';
  }
}

export interface WriteHashedFileOptions {
  /** More bytes than this → SizeLimitError (and no file). */
  maxBytes: number;
  /**
   * Waiting this long for the source's next chunk → SourceIdleError (and no file). Only time spent
   * waiting on the source counts, never time PIR spends writing or hashing. 0/absent: no limit.
   */
  idleMs?: number;
  pool?: HashPool;
  signal?: AbortSignal;
  /**
   * Write with O_DIRECT where the file system allows it (default true): the bytes go from the
   * shared slots to the disk without a copy into the page cache, which on a VM is the dearest
   * part of a buffered write (every new page-cache page is a fresh guest page). The last,
   * partial block is written buffered; the final fdatasync covers both.
   */
  direct?: boolean;
  /**
   * With `direct`: the file offset from which O_DIRECT is used (default 0: every whole block);
   * the bytes before it are written buffered (in whole slots: an offset inside the first slot
   * means the whole slot). Buffered, a small file would stay in the page cache for the
   * pipeline's next reads (its headers, a first download), but filling fresh page-cache pages
   * costs more than reading those headers back: with 8 clients uploading 1 MiB images, O_DIRECT
   * from the first byte took 1.3 ms less CPU per image (−12%) and raised the rate 11–16%
   * (docs/benchmarks.md, 2026-12-05), though the pipeline then reads its headers from the disk.
   */
  directFromBytes?: number;
  /**
   * Buffered writes (without O_DIRECT, or before `directFromBytes`): start writeback every this
   * many bytes — an fdatasync in the background, never more than one at a time — so the disk
   * works while bytes still arrive and the final fdatasync is short. 0 = only the final one.
   * Default 64 MiB.
   */
  flushEveryBytes?: number;
  /**
   * Leave all-zero blocks (`SPARSE_BLOCK`, aligned in the file) unwritten and set the final size
   * with ftruncate, so runs of zeros become holes and cost no disk. The digests still cover every
   * byte (zeros included). For outputs that are often mostly empty, e.g. decompressed raw disks.
   */
  sparse?: boolean;
}

const MiB = 1024 * 1024;
const DEFAULT_FLUSH_EVERY = 64 * MiB;
const DEFAULT_DIRECT_FROM = 0;
/** O_DIRECT offset/length/address alignment that satisfies 512 B and 4 KiB logical blocks. */
const DIRECT_ALIGN = 4096;
/** Granularity of hole detection in sparse mode; a multiple of DIRECT_ALIGN and of common fs blocks. */
export const SPARSE_BLOCK = 64 * 1024;
const ZEROS = Buffer.alloc(SPARSE_BLOCK);

// ---------------------------------------------------------------- small promise wrappers on raw fds

function openExclusive(path: string): Promise<number> {
  return new Promise((resolve, reject) =>
    open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))),
  );
}
/**
 * A second descriptor on the file `fd` just created, with O_DIRECT; -1 when the file system
 * refuses O_DIRECT or the path no longer names the same file.
 */
function openDirect(path: string, fd: number, access: number): Promise<number> {
  const O_DIRECT = constants.O_DIRECT;
  if (!O_DIRECT) return Promise.resolve(-1);
  return new Promise((resolve) =>
    open(path, access | O_DIRECT, (err, dfd) => {
      if (err) return resolve(-1);
      fstat(fd, (e1, a) =>
        fstat(dfd, (e2, b) => {
          if (!e1 && !e2 && a.ino === b.ino && a.dev === b.dev) return resolve(dfd);
          close(dfd, () => resolve(-1));
        }),
      );
    }),
  );
}
function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => close(fd, (err) => (err ? reject(err) : resolve())));
}
function syncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}
function truncateFd(fd: number, size: number): Promise<void> {
  return new Promise((resolve, reject) => ftruncate(fd, size, (err) => (err ? reject(err) : resolve())));
}
function removeQuietly(path: string): Promise<void> {
  return new Promise((resolve) => unlink(path, () => resolve()));
}

/** Writes all of `views` at `position` with writev, continuing after short writes; calls back once. */
function writevAll(fd: number, views: Uint8Array[], position: number, cb: (err: NodeJS.ErrnoException | null) => void): void {
  writev(fd, views, position, (err, written) => {
    if (err) return cb(err);
    let i = 0;
    let w = written;
    while (i < views.length && w >= views[i]!.length) w -= views[i++]!.length;
    if (i === views.length) return cb(null);
    if (written === 0) return cb(new Error('write made no progress'));
    writevAll(fd, [views[i]!.subarray(w), ...views.slice(i + 1)], position + written, cb);
  });
}

/** Most slots one writev takes. */
const MAX_BATCH = 8;

/** Bytes of a slot to write at file offset `at`; `last` = the slot's final piece (then it is done). */
interface Piece {
  slot: Slot;
  view: Uint8Array;
  at: number;
  last: boolean;
}

/** True when `view` (at most SPARSE_BLOCK bytes) holds only zeros; memcmp stops at the first non-zero byte. */
function isZeroBlock(view: Uint8Array): boolean {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength).equals(view.byteLength === SPARSE_BLOCK ? ZEROS : ZEROS.subarray(0, view.byteLength));
}

/**
 * Writes slots to the file in order, one write in flight at a time (concurrent writes to one
 * file only contend for its inode lock); pieces queued meanwhile that continue one another go
 * out together in one writev. Full, page-aligned pieces go through the O_DIRECT descriptor once
 * there is one (`useDirect`). In sparse mode a slot is cut into its non-zero SPARSE_BLOCK runs
 * and all-zero blocks are skipped (left as holes).
 */
class SlotWriter {
  failure: NodeJS.ErrnoException | null = null;
  private readonly queue: Piece[] = [];
  private busy = false;
  private directOk = false;
  private directFd = -1;
  private directFrom = 0;

  constructor(
    private readonly fd: number,
    /** a slot is written (or abandoned after a failure) */
    private readonly done: (slot: Slot) => void,
    /** bytes up to `end` have been written through the page cache */
    private readonly buffered: (end: number) => void,
    private readonly sparse: boolean,
  ) {}

  /**
   * From now on, full aligned pieces at or past file offset `from` go through `directFd` (an
   * O_DIRECT descriptor; -1: none). Pieces before `from` still queued stay buffered, as asked.
   */
  useDirect(directFd: number, from: number): void {
    this.directFd = directFd;
    this.directOk = directFd >= 0;
    this.directFrom = from;
  }

  /** Queues the first `n` bytes of `slot`, which belong at file offset `at`. */
  push(slot: Slot, n: number, at: number): void {
    if (!this.sparse) {
      this.queue.push({ slot, view: n === slot.view.length ? slot.view : slot.view.subarray(0, n), at, last: true });
    } else {
      const pieces = this.dataRuns(slot, n, at);
      if (pieces.length === 0) {
        this.done(slot); // all zeros: nothing to write
        return;
      }
      pieces[pieces.length - 1]!.last = true;
      this.queue.push(...pieces);
    }
    if (!this.busy) this.pump();
  }

  /** The runs of `slot` that are not all zeros, in SPARSE_BLOCK units aligned to the file offset. */
  private dataRuns(slot: Slot, n: number, at: number): Piece[] {
    const pieces: Piece[] = [];
    let runStart = -1;
    let off = 0;
    while (off < n) {
      // Blocks are aligned in the file, so a hole always covers whole file-system blocks.
      const end = Math.min(n, off + SPARSE_BLOCK - ((at + off) % SPARSE_BLOCK));
      const zero = isZeroBlock(slot.view.subarray(off, end));
      if (!zero && runStart < 0) runStart = off;
      if (zero && runStart >= 0) {
        pieces.push({ slot, view: slot.view.subarray(runStart, off), at: at + runStart, last: false });
        runStart = -1;
      }
      off = end;
    }
    if (runStart >= 0) pieces.push({ slot, view: slot.view.subarray(runStart, n), at: at + runStart, last: false });
    return pieces;
  }

  private isDirect(p: Piece): boolean {
    return this.directOk && p.at >= this.directFrom && p.slot.aligned && p.at % DIRECT_ALIGN === 0 && p.view.byteLength % DIRECT_ALIGN === 0
      && (p.view.byteOffset - p.slot.view.byteOffset) % DIRECT_ALIGN === 0;
  }

  private pump(): void {
    if (this.failure) {
      for (const q of this.queue.splice(0)) if (q.last) this.done(q.slot);
      return;
    }
    const first = this.queue[0]!;
    const direct = this.isDirect(first);
    let k = 1;
    let next = first.at + first.view.byteLength;
    while (k < this.queue.length && k < MAX_BATCH && this.queue[k]!.at === next && this.isDirect(this.queue[k]!) === direct) {
      next += this.queue[k]!.view.byteLength;
      k++;
    }
    const batch = this.queue.splice(0, k);
    const views = batch.map((q) => q.view);
    const at = first.at;
    const end = next;
    this.busy = true;
    const finish = (err: NodeJS.ErrnoException | null): void => {
      this.busy = false;
      if (err) this.failure ??= err;
      else if (!direct) this.buffered(end);
      for (const q of batch) if (q.last) this.done(q.slot);
      if (this.queue.length) this.pump();
    };
    writevAll(direct ? this.directFd : this.fd, views, at, (err) => {
      if (err?.code === 'EINVAL' && direct) {
        this.directOk = false; // the file system wants another alignment: buffered from now on
        writevAll(this.fd, views, at, finish);
      } else finish(err);
    });
  }
}

// ---------------------------------------------------------------- source iteration

type Source = AsyncIterable<Uint8Array> | NodeJS.ReadableStream;

function iteratorOf(source: Source): AsyncIterator<unknown> {
  // A stream.Readable: stop reading on return() without destroying it, so the caller can still
  // answer the request (e.g. 413) and decides what happens to the connection.
  const r = source as { iterator?: (o: { destroyOnReturn: boolean }) => AsyncIterator<unknown>; pipe?: unknown };
  if (typeof r.iterator === 'function' && typeof r.pipe === 'function') return r.iterator({ destroyOnReturn: false });
  return (source as AsyncIterable<unknown>)[Symbol.asyncIterator]();
}

function stopQuietly(it: AsyncIterator<unknown>): void {
  // Not awaited: an async generator suspended in an await only returns after that await settles.
  try {
    void Promise.resolve(it.return?.()).catch(() => {});
  } catch {
    /* the iterator's own problem; the caller gets the original error */
  }
}

/** it.next(), rejecting as soon as `signal` aborts (one listener for the whole upload). */
class AbortableNext {
  private rejectPending: ((e: unknown) => void) | null = null;
  private readonly onAbort = (): void => {
    const r = this.rejectPending;
    this.rejectPending = null;
    r?.(this.signal!.reason);
  };

  constructor(
    private readonly it: AsyncIterator<unknown>,
    private readonly signal: AbortSignal | undefined,
    private readonly idleMs = 0,
  ) {
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  next(): Promise<IteratorResult<unknown>> {
    if (!this.signal && !this.idleMs) return this.it.next();
    if (this.signal?.aborted) return Promise.reject(this.signal.reason);
    return new Promise((resolve, reject) => {
      this.rejectPending = reject;
      const idle = this.idleMs > 0 ? setTimeout(() => {
        if (this.rejectPending !== reject) return;
        this.rejectPending = null;
        reject(new SourceIdleError(this.idleMs));
      }, this.idleMs) : null;
      this.it.next().then(
        (v) => {
          if (idle) clearTimeout(idle);
          this.rejectPending = null;
          resolve(v);
        },
        (e) => {
          if (idle) clearTimeout(idle);
          this.rejectPending = null;
          reject(e);
        },
      );
    });
  }

  dispose(): void {
    this.signal?.removeEventListener('abort', this.onAbort);
  }
}

function asBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  throw new TypeError(`upload source yielded ${typeof chunk === 'string' ? 'a string' : typeof chunk}; expected bytes (Uint8Array/Buffer) — do not set an encoding on the stream`);
}

// ---------------------------------------------------------------- writeHashedFile

/**
 * Streams `source` into `destPath` (created exclusively, mode 0600) and returns its size, md5 and
 * sha512, computed over exactly the bytes written. Durable on return (fdatasync). On any
 * failure — size limit, abort, source/disk/hash error — the partial file is removed and the
 * error rethrown. A file already at `destPath` is an EEXIST error, thrown before any of the
 * source is read (so the caller may remove it and call again with the same source).
 */
export async function writeHashedFile(source: Source, destPath: string, opts: WriteHashedFileOptions): Promise<HashedFile> {
  const { maxBytes, signal } = opts;
  const flushEvery = opts.flushEveryBytes ?? DEFAULT_FLUSH_EVERY;
  signal?.throwIfAborted();
  const pool = opts.pool ?? HashPool.shared();

  const fd = await openExclusive(destPath);
  let fdOpen = true;
  let directFd = -1;
  let session: HashSession | null = null;
  let it: AsyncIterator<unknown> | null = null;
  let nexter: AbortableNext | null = null;
  let current: Slot | null = null; // acquired, being filled, not yet submitted

  let failure: Error | null = null; // first background flush error
  let flushing: Promise<void> | null = null;
  let flushedTo = 0;
  let position = 0; // bytes submitted so far = file offset of the next slot

  const flush = (end: number): void => {
    flushedTo = end;
    flushing = syncFd(fd).then(
      () => {
        flushing = null;
      },
      (err: Error) => {
        failure ??= err;
        flushing = null;
      },
    );
  };

  // O_DIRECT from this offset on (opened when the file gets there; never: Infinity).
  let directFrom = (opts.direct ?? true) ? Math.max(0, opts.directFromBytes ?? DEFAULT_DIRECT_FROM) : Infinity;

  try {
    session = pool.open();
    const s = session;
    const slotBytes = s.slotBytes;
    const writer = new SlotWriter(
      fd,
      (slot) => s.complete(slot),
      (end) => {
        if (flushEvery > 0 && flushing === null && end - flushedTo >= flushEvery) flush(end);
      },
      opts.sparse ?? false,
    );
    const dispatch = (slot: Slot, n: number): void => {
      s.submit(slot, n, 1);
      writer.push(slot, n, position);
      position += n;
    };
    const failed = (): Error | null => writer.failure ?? failure;
    const goDirect = async (): Promise<void> => {
      const from = directFrom;
      directFrom = Infinity; // one try
      directFd = await openDirect(destPath, fd, constants.O_WRONLY);
      writer.useDirect(directFd, from);
    };
    if (directFrom === 0) await goDirect();

    it = iteratorOf(source);
    nexter = new AbortableNext(it, signal, opts.idleMs ?? 0);
    current = s.tryAcquire() ?? (await s.acquire());
    let fill = 0;
    let total = 0;

    for (;;) {
      const r = await nexter.next();
      if (r.done) break;
      const chunk = asBytes(r.value);
      const len = chunk.length;
      if (len === 0) continue;
      total += len;
      if (total > maxBytes) throw new SizeLimitError(maxBytes);
      const f = failed() ?? s.error;
      if (f) throw f;

      let off = 0;
      while (off < len) {
        const slot: Slot = current;
        const n = Math.min(slotBytes - fill, len - off);
        slot.view.set(off === 0 && n === len ? chunk : chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === slotBytes) {
          current = null;
          dispatch(slot, fill);
          fill = 0;
          if (position >= directFrom) await goDirect();
          current = s.tryAcquire() ?? (await s.acquire());
          const f = failed();
          if (f) throw f;
        }
      }
    }
    it = null; // finished normally: nothing to stop

    const last: Slot = current;
    current = null;
    if (fill > 0) dispatch(last, fill);
    else s.release(last);

    await s.idle();
    await flushing;
    const f = failed() ?? s.error;
    if (f) throw f;
    signal?.throwIfAborted();
    // Skipped zeros at the end leave the file short: its size is what was submitted.
    if (opts.sparse) await truncateFd(fd, position);
    const ending = s;
    session = null; // ends now
    const [{ md5, sha512 }] = await Promise.all([ending.digests(), syncFd(fd)]);
    fdOpen = false;
    const closing = await Promise.allSettled([closeFd(fd), directFd >= 0 ? closeFd(directFd) : undefined]);
    for (const c of closing) if (c.status === 'rejected') throw c.reason;
    signal?.throwIfAborted(); // nothing returned yet: an abort still means "no file"
    return { size: position, md5, sha512 };
  } catch (err) {
    if (it) stopQuietly(it);
    if (session) {
      if (current) session.release(current);
      session.abort();
      await session.idle(); // every write and hash done with the slots before the fd goes
    }
    await flushing;
    if (fdOpen) {
      if (directFd >= 0) await closeFd(directFd).catch(() => {});
      await closeFd(fd).catch(() => {});
    }
    await removeQuietly(destPath);
    throw err;
  } finally {
    nexter?.dispose();
  }
}

// ---------------------------------------------------------------- hashFile

function readAt(fd: number, slot: Slot, position: number): Promise<number> {
  return new Promise((resolve, reject) =>
    read(fd, slot.view, 0, slot.view.length, position, (err, bytes) => (err ? reject(err) : resolve(bytes))),
  );
}

/**
 * md5 and sha512 of an existing file, read in slot-sized chunks straight into shared memory
 * (with O_DIRECT where possible: no page-cache copy), hashed on the pool's threads while the
 * next chunk is read.
 */
export async function hashFile(path: string, pool: HashPool = HashPool.shared(), opts: { direct?: boolean } = {}): Promise<HashedFile> {
  const fd = await new Promise<number>((resolve, reject) => open(path, constants.O_RDONLY, (err, fd) => (err ? reject(err) : resolve(fd))));
  let directFd = -1;
  let s: HashSession;
  try {
    if (opts.direct ?? true) directFd = await openDirect(path, fd, constants.O_RDONLY);
    s = pool.open();
  } catch (err) {
    if (directFd >= 0) await closeFd(directFd).catch(() => {});
    await closeFd(fd).catch(() => {});
    throw err;
  }
  let directOk = directFd >= 0;
  let ended = false;
  try {
    let position = 0;
    for (;;) {
      const slot = s.tryAcquire() ?? (await s.acquire());
      let n: number;
      try {
        const direct = directOk && slot.aligned && position % DIRECT_ALIGN === 0;
        try {
          n = await readAt(direct ? directFd : fd, slot, position);
        } catch (err) {
          if (!direct || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
          directOk = false; // the file system wants another alignment: buffered from now on
          n = await readAt(fd, slot, position);
        }
      } catch (err) {
        s.release(slot);
        throw err;
      }
      if (n === 0) {
        s.release(slot);
        break;
      }
      s.submit(slot, n);
      position += n;
      if (s.error) throw s.error;
    }
    ended = true;
    const { md5, sha512 } = await s.digests();
    return { size: position, md5, sha512 };
  } catch (err) {
    if (!ended) s.abort();
    throw err;
  } finally {
    await s.idle();
    if (directFd >= 0) await closeFd(directFd).catch(() => {});
    await closeFd(fd);
  }
}

// ---------------------------------------------------------------- guardedChunks

/**
 * The source's chunks under writeHashedFile's guards (bytes only, size limit, idle limit, abort),
 * for writers that are not a local file (the S3 store). A request body is not destroyed when
 * the limit stops the reading, so the caller can still answer (413).
 */
export async function* guardedChunks(source: Source, opts: { maxBytes: number; idleMs?: number; signal?: AbortSignal }): AsyncGenerator<Uint8Array, void, undefined> {
  opts.signal?.throwIfAborted();
  const it = iteratorOf(source);
  const nexter = new AbortableNext(it, opts.signal, opts.idleMs ?? 0);
  let finished = false;
  let total = 0;
  try {
    for (;;) {
      const r = await nexter.next();
      if (r.done) {
        finished = true;
        return;
      }
      const chunk = asBytes(r.value);
      total += chunk.length;
      if (total > opts.maxBytes) throw new SizeLimitError(opts.maxBytes);
      if (chunk.length > 0) yield chunk;
    }
  } finally {
    nexter.dispose();
    if (!finished) stopQuietly(it);
  }
}
