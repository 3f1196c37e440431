/**
 * Part buffers for S3 multipart uploads: shared memory (so the hash pool's threads read a part's
 * bytes in place), reused from upload to upload (a fresh 16 MiB buffer per part costs page
 * faults and garbage collection on every byte), and bounded per upload (`lease(max)`).
 */

export interface PartBuffer {
  /** The whole buffer (partSize bytes), a view of a SharedArrayBuffer. */
  readonly bytes: Buffer;
  /** Users still reading or filling it (filler, hash threads, the part's request); reused at 0. */
  refs: number;
}

/** Free buffers kept between uploads, dropped after a quiet spell. */
export class PartBufferCache {
  private free: Buffer[] = [];
  private dropTimer: NodeJS.Timeout | null = null;

  constructor(readonly partSize: number, private readonly keep: number, private readonly idleMs = 15_000) {}

  /** A buffer budget for one upload: at most `max` buffers in use at once. */
  lease(max: number): PartLease {
    return new PartLease(this, max);
  }

  /** @internal */
  get(): Buffer {
    return this.free.pop() ?? Buffer.from(new SharedArrayBuffer(this.partSize));
  }

  /** @internal */
  give(bytes: Buffer): void {
    if (this.free.length < this.keep) this.free.push(bytes);
    if (this.dropTimer) clearTimeout(this.dropTimer);
    this.dropTimer = setTimeout(() => {
      this.free = [];
      this.dropTimer = null;
    }, this.idleMs);
    this.dropTimer.unref();
  }

  /** Buffers kept for the next upload (tests, metrics). */
  get cached(): number {
    return this.free.length;
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
        this.made++;
        return { bytes: this.cache.get(), refs: 1 };
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
