/**
 * A download's stream over a file (the filesystem store, the cache role's hits). The file is
 * opened first, so a missing file rejects here rather than erroring the stream later, and as a
 * plain descriptor: fs.ReadStream then reads with the callback fs.read, while over a FileHandle
 * it goes through the promise API for every chunk (a plain Node file server spent 15–20% more
 * CPU per GiB that way, in interleaved runs; inside PIR the difference was below the noise of
 * this shared machine). The stream closes the descriptor when it ends, fails or is destroyed.
 */
import { createReadStream, open, type ReadStream } from 'node:fs';

/** Bytes per read and per write to the socket; at most about two of them are held per download. */
export const DOWNLOAD_CHUNK = 1024 * 1024;

/** `range` is inclusive at both ends, as in an HTTP Range. */
export function openFileStream(path: string, range?: { start: number; end: number }): Promise<ReadStream> {
  return new Promise((resolve, reject) => {
    open(path, 'r', (error, fd) => {
      if (error) return reject(error);
      resolve(createReadStream('', { fd, highWaterMark: DOWNLOAD_CHUNK, ...(range ? { start: range.start, end: range.end } : {}) }));
    });
  });
}
