import type { Readable } from 'node:stream';
import { servedBytes } from './metrics.js';

/**
 * Counts a download's bytes when its file stream closes (fs streams know how much they read),
 * so no listener sits on the hot path of each chunk.
 */
export function countServed<T extends Readable>(stream: T): T {
  stream.once('close', () => {
    const read = (stream as unknown as { bytesRead?: number }).bytesRead;
    if (typeof read === 'number' && read > 0) servedBytes.inc(read);
  });
  return stream;
}
