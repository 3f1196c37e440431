/**
 * One upstream fetch of an image into a temporary file, hashed as it is written. Every request
 * for the image while it runs reads the growing file (cache/growing-file-reader.ts), so N
 * concurrent cold downloads cost one upstream read. Readers see every byte but the last until the
 * hash matched the image's os_hash_value: a mismatching (corrupt or replaced) image therefore
 * never reaches a client as a complete download — its readers fail instead.
 */
import { createHash } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';

/** The upstream's answer to GET …/file: its status and its body as a Node stream (no web streams on the hot path). */
export interface UpstreamBody {
  status: number;
  body: Readable;
}

export type FetchBody = (signal: AbortSignal) => Promise<UpstreamBody>;

/** The upstream did not answer with the image's data (no answer in time, unreachable, not 200): not the cache's fault. */
export class UpstreamFailure extends Error {}

export interface FillTarget {
  imageId: string;
  size: number;
  algo: string;
  hash: string;
}

export type FillState = 'running' | 'verified' | 'failed';

export class Fill {
  written = 0;
  state: FillState = 'running';
  error: Error | null = null;
  /** Clients reading this fill; the finished entry inherits them. */
  readers = 0;
  /** The cache entry this fill became, once verified (its readers move there). */
  successor: { readers: number } | null = null;
  readonly done: Promise<void>;
  /** Resolves once the temporary file exists (readers open it then). */
  readonly ready: Promise<void>;
  /**
   * Resolves once the upstream answered 200; rejects if the fill failed before. Readers wait for
   * it before answering, so a failure then is an error answer rather than a 200 cut off.
   */
  readonly answered: Promise<void>;
  private markReady!: () => void;
  private settleAnswered!: (error?: Error) => void;
  private waiters: (() => void)[] = [];
  private readonly abortController = new AbortController();

  constructor(
    readonly target: FillTarget,
    readonly tempPath: string,
    readonly finalPath: string,
    private readonly fetchBody: FetchBody,
    private readonly onUpstreamBytes: (n: number) => void,
  ) {
    this.ready = new Promise((resolve) => { this.markReady = resolve; });
    this.answered = new Promise((resolve, reject) => { this.settleAnswered = (error) => (error ? reject(error) : resolve()); });
    this.answered.catch(() => {}); // a fill nobody reads yet must not be an unhandled rejection
    this.done = this.run();
    this.done.catch(() => {}); // failures are read from state/error; nobody must await done
  }

  /** Bytes a reader may deliver: all of them only once verified, all but the last until then. */
  visible(): number {
    return this.state === 'verified' ? this.target.size : Math.max(0, Math.min(this.written, this.target.size - 1));
  }

  /** Resolves at the next change (more bytes, verified, failed). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  abort(reason: string): void {
    if (this.state === 'running') this.abortController.abort(new Error(reason));
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private async run(): Promise<void> {
    const { size, algo, hash, imageId } = this.target;
    let file: FileHandle | null = null;
    try {
      file = await open(this.tempPath, 'w', 0o600).finally(() => this.markReady());
      const { signal } = this.abortController;
      const response = await this.fetchBody(signal).catch((error: Error) => {
        throw signal.aborted ? error : new UpstreamFailure(error.message);
      });
      if (response.status !== 200) {
        response.body.destroy();
        throw new UpstreamFailure(`upstream answered ${response.status} for image ${imageId}'s data`);
      }
      this.settleAnswered();
      const hasher = createHash(algo);
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        if (this.written + chunk.length > size) throw new Error(`upstream sent more than the image's ${size} bytes`);
        await file.write(chunk, 0, chunk.length, this.written);
        hasher.update(chunk);
        this.written += chunk.length;
        this.onUpstreamBytes(chunk.length);
        this.notify();
      }
      if (this.written !== size) throw new Error(`upstream sent ${this.written} of the image's ${size} bytes`);
      const digest = hasher.digest('hex');
      if (digest !== hash) throw new Error(`image ${imageId}'s data hashes to ${algo} ${digest.slice(0, 16)}…, not its os_hash_value ${hash.slice(0, 16)}…`);
      await file.close();
      await rename(this.tempPath, this.finalPath);
      this.state = 'verified';
    } catch (error) {
      this.state = 'failed';
      this.error = error instanceof Error ? error : new Error(String(error));
      this.settleAnswered(this.error); // no-op once answered
      await file?.close().catch(() => {});
      await unlink(this.tempPath).catch(() => {});
      throw this.error;
    } finally {
      this.notify();
    }
  }
}
