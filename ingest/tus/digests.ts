/**
 * The md5 and sha512 of a tus upload, carried across its PATCH requests so the whole image is
 * hashed exactly once. Two kinds, one interface:
 * - RunningDigests (Node's OpenSSL hashes, the faster): its state cannot leave the process, so a
 *   process that does not hold it (after a restart, or a PATCH that landed on another API
 *   process) rebuilds it by reading back only the bytes already staged (the file staging);
 * - SavableDigests (hash-wasm): its state can be saved beside the staged bytes and loaded by any
 *   process, for a staging whose bytes cannot be read back before they are complete (S3 multipart
 *   parts are invisible until CompleteMultipartUpload).
 */
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { createMD5, createSHA512, type IHasher } from 'hash-wasm';

export interface UploadDigests {
  /** Bytes hashed so far. */
  readonly offset: number;
  update(chunk: Uint8Array): void;
  /** An independent copy to go back to when a PATCH's checksum fails. */
  snapshot(): Promise<UploadDigests>;
  /** The final digests (the object is spent afterwards). */
  digest(): { md5: string; sha512: string };
}

export class RunningDigests implements UploadDigests {
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

  async snapshot(): Promise<RunningDigests> {
    return new RunningDigests(this.md5.copy(), this.sha512.copy(), this.offset);
  }

  digest(): { md5: string; sha512: string } {
    return { md5: this.md5.digest('hex'), sha512: this.sha512.digest('hex') };
  }
}

/** The saved form: `<bytes hashed>.<base64 md5 state>.<base64 sha512 state>` (ASCII, fits S3 user metadata). */
export class SavableDigests implements UploadDigests {
  private constructor(private readonly md5: IHasher, private readonly sha512: IHasher, public offset: number) {}

  static async empty(): Promise<SavableDigests> {
    const [md5, sha512] = await Promise.all([createMD5(), createSHA512()]);
    md5.init();
    sha512.init();
    return new SavableDigests(md5, sha512, 0);
  }

  /** The state `save()` wrote after `offset` bytes; throws when it is not one (other bytes, another hash-wasm build, damage). */
  static async load(saved: string, offset: number): Promise<SavableDigests> {
    const [bytes, md5State, sha512State] = saved.split('.');
    if (!md5State || !sha512State) throw new Error('not a saved hash state');
    if (bytes !== String(offset)) throw new Error(`the saved hash state covers ${bytes} bytes, not ${offset}`);
    const digests = await SavableDigests.empty();
    digests.md5.load(Buffer.from(md5State, 'base64'));
    digests.sha512.load(Buffer.from(sha512State, 'base64'));
    digests.offset = offset;
    return digests;
  }

  save(): string {
    return `${this.offset}.${Buffer.from(this.md5.save()).toString('base64')}.${Buffer.from(this.sha512.save()).toString('base64')}`;
  }

  update(chunk: Uint8Array): void {
    this.md5.update(chunk);
    this.sha512.update(chunk);
    this.offset += chunk.length;
  }

  async snapshot(): Promise<SavableDigests> {
    return SavableDigests.load(this.save(), this.offset);
  }

  digest(): { md5: string; sha512: string } {
    return { md5: this.md5.digest('hex'), sha512: this.sha512.digest('hex') };
  }
}

/** Counts how many bytes each upload had hashed on rebuild (tests assert "only what was staged"). */
export const rebuildStats = { uploads: 0, bytes: 0 };
