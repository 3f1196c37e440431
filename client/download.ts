/**
 * Streams an image's bytes to a file with md5 + sha512 computed on the way, into `<file>.part`
 * first: an interrupted download resumes with a Range request after re-hashing the bytes the
 * .part already holds, and the file gets its final name only once both digests match.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { access, lstat, realpath, rename, stat, truncate, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ChecksumMismatchError, DownloadInterruptedError, DownloadTargetError, NoImageDataError, unexpectedAnswer } from './errors.js';
import { readResponse, type Transport } from './http.js';

export interface DownloadExpectation {
  size: number | null;
  /** sha512 hex (the image's os_hash_value) */
  sha512: string | null;
  /** md5 hex (the image's checksum) */
  md5: string | null;
}

export interface DownloadOptions {
  /** Continue from an existing .part file (default true). */
  resume?: boolean;
  /** Called with the bytes on disk so far and the total. */
  onProgress?: (done: number, total: number | null) => void;
  /** Told when the bytes of an existing .part are being checked (before the request). */
  onResume?: (bytes: number) => void;
}

export interface DownloadResult {
  size: number;
  md5: string;
  sha512: string;
  /** Bytes that came from an earlier, interrupted download. */
  resumedFrom: number;
  verified: { md5: boolean; sha512: boolean };
}

export function partPath(file: string): string {
  return file + '.part';
}

/**
 * Where a download to `file` goes: a regular file (new or replaced) through its .part; through a
 * symbolic link, its target; a device, FIFO or socket (/dev/null, a pipe) streamed to as it is,
 * never replaced by a rename.
 */
export async function destinationOf(file: string): Promise<{ kind: 'file' | 'stream'; path: string }> {
  let info;
  try {
    info = await lstat(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return newFile(file);
    throw error;
  }
  if (info.isSymbolicLink()) {
    const target = await realpath(file).catch(() => null);
    if (target === null) throw new DownloadTargetError(`${file} is a symbolic link to nothing; give the file to write, or remove the link.`);
    return destinationOf(target);
  }
  if (info.isDirectory()) throw new DownloadTargetError(`${file} is a directory; give the path of the file to write (e.g. ${file.replace(/\/+$/, '')}/image.img).`);
  return { kind: info.isFile() ? 'file' : 'stream', path: file };
}

/** A file to create: its directory must exist and take it (found now, not after the bytes came). */
async function newFile(file: string): Promise<{ kind: 'file'; path: string }> {
  const directory = dirname(file);
  const info = await stat(directory).catch(() => null);
  if (!info) throw new DownloadTargetError(`${directory} does not exist; create it first, or give a path in a directory that exists.`);
  if (!info.isDirectory()) throw new DownloadTargetError(`${directory} is not a directory; give a path in a directory.`);
  await access(directory, constants.W_OK).catch(() => {
    throw new DownloadTargetError(`${directory} cannot be written to (permission denied); give a path in a directory you may write to.`);
  });
  return { kind: 'file', path: file };
}

export async function downloadImage(transport: Transport, id: string, file: string, expect: DownloadExpectation, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const destination = await destinationOf(file);
  if (destination.kind === 'stream') return downloadToStream(transport, id, createWriteStream(destination.path), expect, opts, destination.path);
  file = destination.path;
  const part = partPath(file);
  const md5 = createHash('md5');
  const sha512 = createHash('sha512');
  let have = opts.resume === false ? 0 : await sizeOf(part);
  if (expect.size !== null && have > expect.size) have = 0; // longer than the image: not ours
  if (have > 0) {
    opts.onResume?.(have);
    // Re-hash what is already there, so the final digests cover every byte of the file.
    let n = 0;
    for await (const chunk of createReadStream(part, { end: have - 1, highWaterMark: 1 << 20 })) {
      md5.update(chunk as Buffer);
      sha512.update(chunk as Buffer);
      opts.onProgress?.((n += (chunk as Buffer).length), expect.size);
    }
  }
  const resumedFrom = have;
  // An empty image is still fetched (and its empty .part written): there is nothing to resume.
  if (expect.size === null || have < expect.size || have === 0) {
    const res = await openImageData(transport, id, have);
    if (res.statusCode === 200 && have > 0) {
      // The server ignored the range: start over from byte 0.
      res.destroy();
      await truncate(part, 0);
      return restart();
    }
    let done = have;
    try {
      await pipeline(res, hashing([md5, sha512], (n) => { done = have + n; opts.onProgress?.(done, expect.size); }), createWriteStream(part, { flags: have > 0 ? 'a' : 'w', highWaterMark: 1 << 20 }));
    } catch (error) {
      throw new DownloadInterruptedError(part, (await sizeOf(part)), error as Error);
    }
    have = done;
  }
  const result = { size: have, md5: md5.digest('hex'), sha512: sha512.digest('hex'), resumedFrom, verified: { md5: false, sha512: false } };
  const resumedNote = resumedFrom > 0 ? ` (${resumedFrom} bytes came from an earlier interrupted download)` : '';
  await verify(result, expect, async () => {
    await unlink(part).catch(() => {});
    return `${resumedNote}; the bytes were corrupted on disk or on the way. ${part} was removed: run the download again.`;
  });
  await rename(part, file);
  return result;

  function restart(): Promise<DownloadResult> {
    return downloadImage(transport, id, file, expect, { ...opts, resume: false });
  }
}

/**
 * Streams the image to `sink` (standard output, a device, a pipe): no .part and no resume; the
 * digests are checked once every byte is written, and a mismatch says the output is not the image.
 */
export async function downloadToStream(transport: Transport, id: string, sink: Writable, expect: DownloadExpectation, opts: DownloadOptions = {}, name = 'the output'): Promise<DownloadResult> {
  const md5 = createHash('md5');
  const sha512 = createHash('sha512');
  const res = await openImageData(transport, id, 0);
  let size = 0;
  // Standard output stays open for what the caller writes after; its last bytes must still be
  // out before pir exits (a pipe takes them asynchronously): an empty write calls back after them.
  const keepOpen = sink === process.stdout;
  await pipeline(res, hashing([md5, sha512], (n) => { size = n; opts.onProgress?.(size, expect.size); }), sink, { end: !keepOpen });
  if (keepOpen) await new Promise<void>((resolve, reject) => sink.write(Buffer.alloc(0), (error) => (error ? reject(error) : resolve())));
  const result = { size, md5: md5.digest('hex'), sha512: sha512.digest('hex'), resumedFrom: 0, verified: { md5: false, sha512: false } };
  await verify(result, expect, async () => `; what was written to ${name} is not the image: do not use it, and run the download again.`);
  return result;
}

/** GET …/file from byte `from`: the answer when it carries data (200 or 206), else the error it means. */
async function openImageData(transport: Transport, id: string, from: number) {
  const path = `/v2/images/${encodeURIComponent(id)}/file`;
  const { req, response } = transport.open('GET', path, from > 0 ? { range: `bytes=${from}-` } : {});
  req.end();
  const res = await response;
  if (res.statusCode === 204) {
    res.resume();
    throw new NoImageDataError(id, `Image ${id} has no data to download (PIR answered 204: it is not active); see its status with pir image show ${id}.`);
  }
  if (res.statusCode !== 200 && res.statusCode !== 206) {
    const body = await readResponse(res);
    throw unexpectedAnswer(transport.baseUrl, body, 'GET', path);
  }
  return res;
}

/** Checks size, sha512 and md5 against the image's; on a mismatch, `onMismatch` cleans up and says what to do. */
async function verify(result: DownloadResult, expect: DownloadExpectation, onMismatch: () => Promise<string>): Promise<void> {
  const fail = async (algorithm: 'md5' | 'sha512', wanted: string, got: string) => {
    const next = await onMismatch();
    throw new ChecksumMismatchError(algorithm, wanted, got,
      `The downloaded data has ${algorithm} ${got}, but the image's ${algorithm === 'sha512' ? 'os_hash_value' : 'checksum'} is ${wanted}${next}`);
  };
  if (expect.size !== null && result.size !== expect.size) await fail('sha512', `${expect.size} bytes`, `${result.size} bytes`);
  if (expect.sha512) {
    if (expect.sha512.toLowerCase() !== result.sha512) await fail('sha512', expect.sha512, result.sha512);
    result.verified.sha512 = true;
  }
  if (expect.md5) {
    if (expect.md5.toLowerCase() !== result.md5) await fail('md5', expect.md5, result.md5);
    result.verified.md5 = true;
  }
}

/** A pass-through that feeds every chunk to the hashes and reports the running byte count. */
function hashing(hashes: Hash[], onBytes: (n: number) => void): Transform {
  let n = 0;
  return new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _encoding, callback) {
      for (const h of hashes) h.update(chunk);
      n += chunk.length;
      onBytes(n);
      callback(null, chunk);
    },
  });
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}
