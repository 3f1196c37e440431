import type { Readable } from 'node:stream';
import { servedBytes } from './metrics.js';

/**
 * Counts a download's bytes once, when its file stream ends (fs streams know how much they
 * read), so no listener sits on the hot path of each chunk. 'end' comes before the response is
 * finished, so the counter has moved by the time the client has every byte; 'close' alone covers
 * a download cut short, which never ends.
 */
export function countServed<T extends Readable>(stream: T): T {
  let counted = false;
  const count = () => {
    if (counted) return;
    counted = true;
    const read = (stream as unknown as { bytesRead?: number }).bytesRead;
    if (typeof read === 'number' && read > 0) servedBytes.inc(read);
  };
  stream.once('end', count);
  stream.once('close', count);
  return stream;
}
