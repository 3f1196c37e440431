/**
 * The md5 and sha512 of a tus upload, carried across its PATCH requests so the whole image is
 * hashed exactly once. Node's hash state cannot be saved to disk, so a process that does not
 * hold it (after a restart, or a PATCH that landed on another API process) rebuilds it by
 * reading back only the bytes already staged, then goes on with the new ones.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';

export class RunningDigests {
  private constructor(private md5: Hash, private sha512: Hash, public offset: number) {}

  static empty(): RunningDigests {
    return new RunningDigests(createHash('md5'), createHash('sha512'), 0);
  }

  /** Hash state over the `length` staged bytes that `staged` reads. */
  static async rebuild(staged: Readable | null, length: number): Promise<RunningDigests> {
    const digests = RunningDigests.empty();
    if (staged) for await (const chunk of staged) digests.update(chunk as Buffer);
    if (digests.offset !== length) throw new Error(`read back ${digests.offset} staged bytes, expected ${length}`);
    return digests;
  }

  update(chunk: Uint8Array): void {
    this.md5.update(chunk);
    this.sha512.update(chunk);
    this.offset += chunk.length;
  }

  /** A copy to go back to when a PATCH's checksum fails. */
  snapshot(): RunningDigests {
    return new RunningDigests(this.md5.copy(), this.sha512.copy(), this.offset);
  }

  /** The final digests (the object is spent afterwards). */
  digest(): { md5: string; sha512: string } {
    return { md5: this.md5.digest('hex'), sha512: this.sha512.digest('hex') };
  }
}

/** Counts how many bytes each upload had hashed on rebuild (tests assert "only what was staged"). */
export const rebuildStats = { uploads: 0, bytes: 0 };
