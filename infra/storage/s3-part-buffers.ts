/**
 * Part buffers for S3 multipart uploads: shared memory (so the hash pool's threads read a part's
 * bytes in place), reused from upload to upload (a fresh 8 MiB buffer per part costs page faults
 * and garbage collection on every byte), bounded per upload (`lease(max)`) and in all (`max`).
 *
 * The buffers are made once and never dropped: a SharedArrayBuffer handed to the hash threads is
 * freed only when every thread's heap has let go of it, which a quiet worker thread may not do
 * for a long time, and the allocator keeps what it gets back. Uploads of small images, one new
 * buffer each beyond the few kept, grew a process by ~1 GB per 1,000 images and never gave it
 * back. Past `max` buffers in use, uploads wait for one (each holds its buffers only while
 * filling and sending a part).
 */

export interface PartBuffer {
  /** The whole buffer (partSize bytes), a view of a SharedArrayBuffer. */
  readonly bytes: Buffer;
  /** Users still reading or filling it (filler, hash threads, the part's request); reused at 0. */
  refs: number;
}

/** All the part buffers of a store: at most `max`, made when first needed, reused forever. */
export class PartBufferCache {
  private free: Buffer[] = [];
  private made = 0;
  private readonly waiters: ((bytes: Buffer) => void)[] = [];

  constructor(readonly partSize: number, readonly max: number) {}

  /** A buffer budget for one upload: at most `max` buffers in use at once. */
  lease(max: number): PartLease {
    return new PartLease(this, max);
  }

  /** @internal A free buffer, or a new one while fewer than `max` exist; null when all are in use. */
  tryGet(): Buffer | null {
    const free = this.free.pop();
    if (free) return free;
    if (this.made >= this.max) return null;
    this.made++;
    return Buffer.from(new SharedArrayBuffer(this.partSize));
  }

  /** @internal As tryGet, else the next buffer given back. */
  async get(signal: AbortSignal): Promise<Buffer> {
    signal.throwIfAborted();
    const ready = this.tryGet();
    if (ready) return ready;
    return new Promise<Buffer>((resolve, reject) => {
      const take = (bytes: Buffer): void => {
        signal.removeEventListener('abort', stop);
        resolve(bytes);
      };
      const stop = (): void => {
        this.waiters.splice(this.waiters.indexOf(take), 1);
        reject(signal.reason);
      };
      this.waiters.push(take);
      signal.addEventListener('abort', stop, { once: true });
    });
  }

  /** @internal */
  give(bytes: Buffer): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(bytes);
    else this.free.push(bytes);
  }

  /** Buffers free for the next upload (tests, metrics). */
  get cached(): number {
    return this.free.length;
  }

  /** Buffers made so far (never more than `max`). */
  get allocated(): number {
    return this.made;
  }
}

export class PartLease {
  private made = 0;
  private readonly available: PartBuffer[] = [];
  private waiter: (() => void) | null = null;
  private closed = false;

  constructor(private readonly cache: PartBufferCache, private readonly max: number) {}

  /** A buffer with refs = 1 (the caller fills it), waiting while `max` are in use; rejects when `signal` aborts. */
  async take(signal: AbortSignal): Promise<PartBuffer> {
    for (;;) {
      signal.throwIfAborted();
      const reused = this.available.pop();
      if (reused) {
        reused.refs = 1;
        return reused;
      }
      if (this.made < this.max) {
        // An upload holding buffers waits for its own to come back rather than for the store's:
        // two uploads each waiting for another's buffer would wait forever.
        const bytes = this.made === 0 ? await this.cache.get(signal) : this.cache.tryGet();
        if (bytes) {
          this.made++;
          return { bytes, refs: 1 };
        }
      }
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          signal.removeEventListener('abort', wake);
          this.waiter = null;
          resolve();
        };
        this.waiter = wake;
        signal.addEventListener('abort', wake, { once: true });
      });
    }
  }

  unref(buffer: PartBuffer): void {
    if (--buffer.refs > 0) return;
    if (this.closed) {
      this.cache.give(buffer.bytes);
      return;
    }
    this.available.push(buffer);
    this.waiter?.();
  }

  /** The upload is over: free buffers go back to the cache now, busy ones when their last user lets go. */
  close(): void {
    this.closed = true;
    for (const b of this.available.splice(0)) this.cache.give(b.bytes);
  }
}
