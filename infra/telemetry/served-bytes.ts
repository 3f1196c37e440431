import type { Readable } from 'node:stream';
import { servedBytes } from './metrics.js';

/**
 * Counts a download's bytes once, when its file stream ends (fs streams know how much they
 * read), so no listener sits on the hot path of each chunk. 'end' comes before the response is
 * finished, so the counter has moved by the time the client has every byte; 'close' alone covers
 * a download cut short, which never ends.
 */
export function countServed<T extends Readable>(stream: T, length?: number): T {
  let counted = false;
  // Streams that don't count their bytes (an object store's HTTP response) count `length` when
  // they end; a download of theirs cut short is not counted.
  const count = (ended: boolean) => {
    if (counted) return;
    const read = (stream as unknown as { bytesRead?: number }).bytesRead;
    if (typeof read === 'number') {
      counted = true;
      if (read > 0) servedBytes.inc(read);
    } else if (ended && length !== undefined) {
      counted = true;
      if (length > 0) servedBytes.inc(length);
    }
  };
  stream.once('end', () => count(true));
  stream.once('close', () => count(false));
  return stream;
}
