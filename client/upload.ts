/**
 * Streams a file as a request body while md5 and sha512 are computed in the same pass, on the
 * shared hash threads of ingest/hashing: each chunk is read from disk into a shared-memory slot,
 * handed to both hash threads and written to the socket from that same memory, so the main
 * thread only moves pointers. Nothing beyond a few slots (1 MiB each) is held in memory.
 */
import { open } from 'node:fs/promises';
import { once } from 'node:events';
import { HashPool, type Digests } from '../ingest/hashing/index.js';
import { TransportError } from './errors.js';
import { readResponse, type Headers, type RawResponse, type Transport } from './http.js';

export interface SendFileOptions {
  headers?: Headers;
  /**
   * Compute md5 + sha512 of the bytes sent (default true). The digests go to the server as
   * trailers (`Repr-Digest: sha-512=…`, `Content-MD5`) of a chunked body, so PIR itself refuses
   * bytes that differ from what left this machine.
   */
  hash?: boolean;
  /** Called as bytes are handed to the socket, with the running total. */
  onProgress?: (sent: number, total: number) => void;
  pool?: HashPool;
}

export interface SentFile {
  response: RawResponse;
  /** Bytes written to the socket. */
  sent: number;
  size: number;
  /** Digests of everything sent; null when hashing was off or the server answered before the end. */
  digests: Digests | null;
}

const SOCKET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END']);

export async function sendFile(transport: Transport, method: string, path: string, file: string, opts: SendFileOptions = {}): Promise<SentFile> {
  const handle = await open(file, 'r');
  try {
    const size = (await handle.stat()).size;
    const headers: Headers = { 'content-type': 'application/octet-stream', ...(opts.headers ?? {}) };
    const hashing = opts.hash !== false;
    const chunked = hashing || Object.keys(headers).some((k) => k.toLowerCase() === 'transfer-encoding');
    headers['x-openstack-image-size'] ??= String(size);
    if (hashing) {
      headers['transfer-encoding'] = 'chunked';
      headers.trailer = 'Repr-Digest, Content-MD5';
    } else if (!chunked) {
      headers['content-length'] = String(size);
    }
    const { req, response, url } = transport.open(method, path, headers);
    let answered = false;
    let failed: Error | null = null;
    response.then(() => { answered = true; }, (error: Error) => { failed = error; });
    const session = hashing ? (opts.pool ?? HashPool.shared()).open() : null;
    let sent = 0;
    let position = 0;
    try {
      while (!answered && !failed) {
        const slot = session ? await session.acquire() : null;
        const view = slot ? slot.view : Buffer.allocUnsafe(1 << 20);
        const want = Math.min(view.length, size - position); // never more than Content-Length promised
        const { bytesRead } = want > 0 ? await handle.read(view, 0, want, position) : { bytesRead: 0 };
        if (bytesRead === 0) {
          if (slot) session!.release(slot);
          if (position < size) throw new Error(`${file} shrank while it was being sent (${position} of ${size} bytes); send it again once nothing writes to it`);
          break;
        }
        position += bytesRead;
        if (slot) session!.submit(slot, bytesRead, 1);
        const chunk = Buffer.from(view.buffer, view.byteOffset, bytesRead);
        const drained = req.write(chunk, () => {
          if (slot) session!.complete(slot);
          sent += bytesRead;
          opts.onProgress?.(sent, size);
        });
        if (!drained && !answered && !failed) {
          // A socket error rejects `response` (and sets `failed`); this wait only needs to end.
          await Promise.race([once(req, 'drain').catch(() => {}), response.catch(() => {})]);
        }
        if (session?.error) throw session.error;
      }
      if (failed) throw failed;
      const complete = !answered && position === size;
      let digests: Digests | null = null;
      if (complete && session) {
        digests = await session.digests();
        req.addTrailers(digestTrailers(digests));
      }
      if (!answered) req.end();
      const res = await response;
      const body = await readResponse(res);
      if (!complete) req.destroy(); // the server answered before the whole body: stop sending
      if (session && !complete) session.abort();
      return { response: body, sent: complete ? size : sent, size, digests };
    } catch (error) {
      session?.abort();
      req.destroy();
      // A socket error seen by a write or 'drain' rather than by the response: same meaning.
      if (SOCKET_ERRORS.has((error as NodeJS.ErrnoException).code ?? '')) throw new TransportError(url.origin, error as Error);
      throw error;
    }
  } finally {
    await handle.close();
  }
}

/** RFC 9530's Repr-Digest (sha-512) and RFC 1864's Content-MD5, both base64. */
function digestTrailers(digests: Digests): Record<string, string> {
  const base64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
  return { 'Repr-Digest': `sha-512=:${base64(digests.sha512)}:`, 'Content-MD5': base64(digests.md5) };
}
