/**
 * md5 and sha512 on the hash pool for a writer that is not a local file (the S3 store): the
 * source's chunks pass through unchanged (under guardedChunks' size, idle and abort guards) to
 * whoever sends them, and each chunk is also copied once into the pool's shared slots, which
 * the hash threads read in place. The main thread pays a memcpy per byte, never a digest.
 *
 * Back-pressure: when the hash threads fall behind, the session's slot limit stops the
 * iteration until a slot is free, so memory stays bounded by the pool's settings.
 */
import { HashPool, type HashSession, type Slot } from './pool.js';
import { guardedChunks, type HashedFile } from './write.js';

export interface PooledChunks {
  /** The source's chunks; iterate it once, to the end (or stop early on failure). */
  readonly chunks: AsyncGenerator<Uint8Array, void, undefined>;
  /** Size and digests of every chunk yielded; only after `chunks` ran to its end. */
  result(): Promise<HashedFile>;
}

export function pooledChunks(
  source: AsyncIterable<Uint8Array> | NodeJS.ReadableStream,
  opts: { maxBytes: number; idleMs?: number; signal?: AbortSignal; pool?: HashPool },
): PooledChunks {
  const pool = opts.pool ?? HashPool.shared();
  let session: HashSession | null = null;
  let size = 0;
  let finished = false;

  async function* run(): AsyncGenerator<Uint8Array, void, undefined> {
    const guarded = guardedChunks(source, opts);
    const s = pool.open();
    session = s;
    let current: Slot | null = null;
    let fill = 0;
    try {
      current = s.tryAcquire() ?? (await s.acquire());
      for await (const chunk of guarded) {
        let off = 0;
        while (off < chunk.length) {
          const n = Math.min(s.slotBytes - fill, chunk.length - off);
          current.view.set(off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n), fill);
          fill += n;
          off += n;
          if (fill === s.slotBytes) {
            const full: Slot = current;
            current = null;
            s.submit(full, fill);
            fill = 0;
            current = s.tryAcquire() ?? (await s.acquire());
          }
        }
        if (s.error) throw s.error;
        size += chunk.length;
        yield chunk;
      }
      const last: Slot = current;
      current = null;
      if (fill > 0) s.submit(last, fill);
      else s.release(last);
      finished = true;
    } finally {
      if (current) s.release(current);
      if (!finished) s.abort(); // slots in flight are still released as the threads acknowledge
    }
  }

  return {
    chunks: run(),
    async result(): Promise<HashedFile> {
      if (!finished || !session) throw new Error('pooledChunks: result() before the chunks ran to their end');
      const { md5, sha512 } = await (session as HashSession).digests();
      return { size, md5, sha512 };
    },
  };
}
