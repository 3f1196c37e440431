/** A random-access reader over a file, for the format inspectors (formats/ reads only through it). */
import { open, type FileHandle } from 'node:fs/promises';

export class FileReader {
  private constructor(private readonly handle: FileHandle, readonly size: number) {}

  static async open(path: string): Promise<FileReader> {
    const handle = await open(path, 'r');
    try {
      return new FileReader(handle, (await handle.stat()).size);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset >= this.size || length <= 0) return Buffer.alloc(0);
    const wanted = Math.min(length, this.size - offset);
    const buffer = Buffer.allocUnsafe(wanted);
    let filled = 0;
    while (filled < wanted) {
      const { bytesRead } = await this.handle.read(buffer, filled, wanted - filled, offset + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === wanted ? buffer : buffer.subarray(0, filled);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}
