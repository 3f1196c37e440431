/**
 * A download's stream over a file (the filesystem store, the cache role's hits). The file is
 * opened first, so a missing file rejects here rather than erroring the stream later, and read
 * with the callback fs.read on a plain descriptor (over a FileHandle every chunk goes through the
 * promise API: a plain Node file server spent 15–20% more CPU per GiB that way). The stream closes
 * the descriptor when it ends, fails or is destroyed.
 *
 * Why not fs.ReadStream: it reads every chunk into a new buffer outside V8's heap. At a download's
 * rate (1–3 GiB/s) V8 counts those as external memory and, in the state a server usually settles
 * into, collects its whole heap every 30–40 ms: measured, a 1 GiB download cost 1.5–1.7 s of CPU
 * per GiB that way against 0.3 when it did not (docs/benchmarks.md, 2026-12-05 17:40). Once told
 * where its chunks are written (`recycleAfterWrite`), this stream reads into a few buffers it
 * reuses, each only when every byte pushed up to its end has left the stream's own buffer and
 * the response's and socket's queues, so a download allocates nothing per chunk. Until then (any
 * other reader) every chunk is a new buffer, as fs.ReadStream's are.
 */
import { close, open, read } from 'node:fs';
import { Readable } from 'node:stream';

/** Bytes per read and per write to the socket. */
export const DOWNLOAD_CHUNK = 1024 * 1024;

/** Buffers a recycling stream keeps for reuse; past these, a chunk gets a buffer of its own. */
const POOLED_BUFFERS = 4;

/** What the chunks are written to: its bytes not yet handed to the kernel (ServerResponse.writableLength). */
export interface ChunkSink {
  readonly writableLength: number;
}

interface InFlight {
  buffer: Buffer;
  /** The stream's byte count once this buffer's chunk was pushed. */
  end: number;
}

export class FileStream extends Readable {
  /** Bytes read from the file so far (countServed reads it, as on fs.ReadStream). */
  bytesRead = 0;
  /** Reads into a reused buffer (the tests and benchmarks check the recycling with it). */
  reusedReads = 0;
  private position: number;
  private sink: ChunkSink | null = null;
  private readonly free: Buffer[] = [];
  private readonly inFlight: InFlight[] = [];
  /** Set while an fs.read runs: the descriptor is closed only after it returns (as fs.ReadStream does), never under it. */
  private afterRead: (() => void) | null = null;
  private reading = false;

  constructor(private fd: number | null, start: number, private readonly end: number) {
    super({ highWaterMark: DOWNLOAD_CHUNK });
    this.position = start;
  }

  /**
   * From now on, reuse buffers whose bytes `sink` has handed on. Only for a sink that writes
   * each chunk as it gets it and keeps no reference afterwards (an HTTP response).
   */
  recycleAfterWrite(sink: ChunkSink): void {
    this.sink = sink;
  }

  override _read(): void {
    const fd = this.fd;
    if (fd === null) return;
    const wanted = Math.min(DOWNLOAD_CHUNK, this.end - this.position + 1);
    if (wanted <= 0) {
      this.push(null);
      return;
    }
    const buffer = this.bufferFor(wanted);
    this.reading = true;
    read(fd, buffer, 0, wanted, this.position, (error, n) => {
      this.reading = false;
      if (this.afterRead) return this.afterRead();
      if (error) return this.destroy(error);
      if (n === 0) {
        // The end of the file (before a range's end, as fs.ReadStream, the stream just ends).
        this.keep(buffer);
        this.push(null);
        return;
      }
      this.position += n;
      this.bytesRead += n;
      if (this.sink && buffer.length === DOWNLOAD_CHUNK) this.inFlight.push({ buffer, end: this.bytesRead });
      this.push(n === buffer.length ? buffer : buffer.subarray(0, n));
    });
  }

  /** A buffer no one still holds, or a new one. */
  private bufferFor(size: number): Buffer {
    if (!this.sink || size !== DOWNLOAD_CHUNK) return Buffer.allocUnsafeSlow(size);
    // Bytes surely written: pushed, minus those still in this stream's buffer, minus everything
    // the response and its socket still queue (which may include headers: it errs on the safe side).
    const written = this.bytesRead - this.readableLength - this.sink.writableLength;
    while (this.inFlight.length > 0 && this.inFlight[0]!.end <= written) this.keep(this.inFlight.shift()!.buffer);
    const reused = this.free.pop();
    if (!reused) return Buffer.allocUnsafeSlow(size);
    this.reusedReads++;
    return reused;
  }

  /** Keeps a buffer no one holds for the next read, up to POOLED_BUFFERS (the rest go to the collector). */
  private keep(buffer: Buffer): void {
    if (this.sink && buffer.length === DOWNLOAD_CHUNK && this.free.length < POOLED_BUFFERS) this.free.push(buffer);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const fd = this.fd;
    this.fd = null;
    this.free.length = 0;
    this.inFlight.length = 0;
    if (fd === null) return callback(error);
    const closeFd = () => close(fd, (closeError) => callback(error ?? closeError));
    if (this.reading) this.afterRead = closeFd;
    else closeFd();
  }
}

/** `range` is inclusive at both ends, as in an HTTP Range. */
export function openFileStream(path: string, range?: { start: number; end: number }): Promise<FileStream> {
  return new Promise((resolve, reject) => {
    open(path, 'r', (error, fd) => {
      if (error) return reject(error);
      resolve(new FileStream(fd, range?.start ?? 0, range?.end ?? Number.MAX_SAFE_INTEGER));
    });
  });
}

/** Tells a file download stream where its chunks go, so it can reuse its buffers (other streams: nothing to do). */
export function recycleAfterWrite(stream: Readable, sink: ChunkSink): void {
  if (stream instanceof FileStream) stream.recycleAfterWrite(sink);
}
