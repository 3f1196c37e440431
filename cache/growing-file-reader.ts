/**
 * A Readable over a file another task is still writing (a Fill): it reads what is visible,
 * waits for more, and fails if the fill fails, so a client never receives a complete download of
 * bytes that did not verify. That holds for a range too: its last byte waits for the whole
 * image's hash, wherever the range ends.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Fill } from './fill.js';

const CHUNK = 1 << 20;

export class GrowingFileReader extends Readable {
  private position: number;
  private file: FileHandle | null = null;
  bytesRead = 0;

  /** start and end inclusive, as in a Range. */
  constructor(private readonly fill: Fill, start: number, private readonly end: number) {
    super({ highWaterMark: CHUNK });
    this.position = start;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    // The fill renames its temp file once verified: open whichever name holds the bytes now.
    this.fill.ready.then(() => open(this.fill.tempPath, 'r')).catch(() => open(this.fill.finalPath, 'r')).then((file) => {
      this.file = file;
      callback();
    }, (error: Error) => callback(this.fill.error ?? error));
  }

  override _read(): void {
    void this.readMore().catch((error: Error) => this.destroy(error));
  }

  private async readMore(): Promise<void> {
    for (;;) {
      if (this.position > this.end) {
        this.push(null);
        return;
      }
      if (this.fill.state === 'failed') throw this.fill.error ?? new Error('cache fill failed');
      // Up to, not including, the range's last byte until the fill is verified.
      const visible = this.fill.state === 'verified' ? this.fill.target.size : Math.min(this.fill.visible(), this.end);
      if (visible > this.position) {
        const length = Math.min(CHUNK, visible - this.position, this.end + 1 - this.position);
        const buffer = Buffer.allocUnsafe(length);
        const { bytesRead } = await this.file!.read(buffer, 0, length, this.position);
        if (bytesRead === 0) throw new Error('cache file shorter than the bytes written to it');
        this.position += bytesRead;
        this.bytesRead += bytesRead;
        this.push(bytesRead === length ? buffer : buffer.subarray(0, bytesRead));
        return;
      }
      await this.fill.changed();
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const file = this.file;
    this.file = null;
    if (!file) return callback(error);
    file.close().then(() => callback(error), () => callback(error));
  }
}
