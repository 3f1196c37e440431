/**
 * Part buffers for S3 multipart uploads: shared memory (so the hash pool's threads read a part's
 * bytes in place), reused from upload to upload (a fresh 8 MiB buffer per part costs page faults
 * and garbage collection on every byte), and bounded per upload (`lease(max)`).
 *
 * A store's shared buffers are at most `max`, made when first needed and never dropped: a
 * SharedArrayBuffer handed to the hash threads is freed only when every thread's heap has let go
 * of it, which a quiet worker thread may not do for a long time, and the allocator keeps what it
 * gets back. Uploads of small images, one new shared buffer each beyond the few kept, grew a
 * process by ~1 GB per 1,000 images. When all are in use (slow clients hold theirs while they
 * trickle a part in), an upload gets an ordinary buffer instead, freed as any other, whose bytes
 * are copied into the hash pool's slots: never a wait behind other clients.
 */

export interface PartBuffer {
  /** The whole buffer (partSize bytes). */
  readonly bytes: Buffer;
  /** A view of one of the store's SharedArrayBuffers (hashed in place), or an ordinary buffer (copied to be hashed). */
  readonly shared: boolean;
  /** Users still reading or filling it (filler, hash threads, the part's request); reused at 0. */
  refs: number;
}

/** A store's shared part buffers: at most `max`, made when first needed, reused forever. */
export class PartBufferCache {
  private free: Buffer[] = [];
  private made = 0;

  constructor(readonly partSize: number, readonly max: number) {}

  /** A buffer budget for one upload: at most `max` buffers in use at once. */
  lease(max: number): PartLease {
    return new PartLease(this, max);
  }

  /** @internal A free shared buffer, or a new one while fewer than `max` exist; null when all are in use. */
  tryGet(): Buffer | null {
    const free = this.free.pop();
    if (free) return free;
    if (this.made >= this.max) return null;
    this.made++;
    return Buffer.from(new SharedArrayBuffer(this.partSize));
  }

  /** @internal */
  give(bytes: Buffer): void {
    this.free.push(bytes);
  }

  /** Shared buffers free for the next upload (tests, metrics). */
  get cached(): number {
    return this.free.length;
  }

  /** Shared buffers made so far (never more than `max`). */
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
        const shared = this.cache.tryGet();
        if (shared) {
          this.made++;
          return { bytes: shared, shared: true, refs: 1 };
        }
        // None free: an upload without a buffer takes an ordinary one; one that holds buffers
        // waits for its own to come back.
        if (this.made === 0) {
          this.made++;
          return { bytes: Buffer.allocUnsafeSlow(this.cache.partSize), shared: false, refs: 1 };
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
      if (buffer.shared) this.cache.give(buffer.bytes);
      return;
    }
    this.available.push(buffer);
    this.waiter?.();
  }

  /** The upload is over: free buffers go back to the cache now, busy ones when their last user lets go. */
  close(): void {
    this.closed = true;
    for (const b of this.available.splice(0)) if (b.shared) this.cache.give(b.bytes);
  }
}
