/**
 * A tus 1.0 upload of a file (PIR's /v2/images/{id}/uploads): created once, then PATCHed from
 * the offset the server acknowledges. A connection that breaks is retried with backoff: the
 * client asks the server how far it got (HEAD) and sends only the rest. md5 and sha512 of the
 * file are computed while sending; bytes sent twice after a cut are hashed once, by advancing
 * the state at the last acknowledged offset with the file's own bytes up to the new offset.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { PirApiError, TransportError, unexpectedAnswer } from './errors.js';
import { readResponse, type Transport } from './http.js';

export interface ResumableOptions {
  /** Bytes sent so far, as they leave (after a cut, from the offset PIR holds again). */
  onProgress?: (sent: number, total: number) => void;
  /**
   * Told of each cut and resume (for a CLI's log line): `offset` is what PIR's HEAD said it holds,
   * or null when the HEAD failed too (the next attempt asks again).
   */
  onRetry?: (error: Error, offset: number | null, attempt: number) => void;
  /** Called with the upload's URL once PIR created it: what a termination (DELETE) needs. */
  onCreated?: (location: string) => void;
  /** Aborting stops the upload: the PATCH in flight is cut and no other is sent. */
  signal?: AbortSignal;
  /** Consecutive attempts without progress before giving up (default 8). */
  maxRetries?: number;
  /** First backoff delay in ms, doubled per attempt up to 10 s (default 250). */
  backoffMs?: number;
  /** Bytes per PATCH (default: the rest of the file in one PATCH). */
  chunkBytes?: number;
}

export interface ResumableResult {
  location: string;
  size: number;
  digests: { md5: string; sha512: string };
  /** Connections that broke and were resumed. */
  resumes: number;
}

const TUS = { 'tus-resumable': '1.0.0' };

class Digests {
  constructor(readonly md5: Hash = createHash('md5'), readonly sha512: Hash = createHash('sha512')) {}
  update(chunk: Buffer): void { this.md5.update(chunk); this.sha512.update(chunk); }
  copy(): Digests { return new Digests(this.md5.copy(), this.sha512.copy()); }
}

export async function resumableUpload(transport: Transport, imagePath: string, file: string, opts: ResumableOptions = {}): Promise<ResumableResult> {
  const size = (await stat(file)).size;
  const location = await createUpload(transport, imagePath, size, opts);
  opts.onCreated?.(location);
  let acked = new Digests();
  let offset = 0;
  let resumes = 0;
  let failures = 0;
  const maxRetries = opts.maxRetries ?? 8;
  while (offset < size) {
    opts.signal?.throwIfAborted();
    const end = Math.min(size, offset + (opts.chunkBytes ?? size));
    const working = acked.copy();
    try {
      offset = await patch(transport, location, file, offset, end, working, (sent) => opts.onProgress?.(sent, size), opts.signal);
      acked = working;
      failures = 0;
    } catch (error) {
      opts.signal?.throwIfAborted();
      // Refusals are final; a cut connection, an idle cut (408), an offset that moved (409), an
      // upload another request still appends to (423: the cut PATCH's server has not let go yet)
      // or a server going away (502-504) are resumed from the offset the server tells.
      if (error instanceof PirApiError && ![408, 409, 423, 502, 503, 504].includes(error.status)) throw error;
      failures += 1;
      if (failures > maxRetries) throw error;
      resumes += 1;
      await new Promise((r) => setTimeout(r, Math.min(10_000, (opts.backoffMs ?? 250) * 2 ** (failures - 1))));
      // Only the HEAD's answer is reported: without one, the offset PIR holds is not known.
      const now = await serverOffset(transport, location).catch(() => null);
      opts.onRetry?.(error as Error, now, failures);
      if (now !== null && now > offset) {
        // The server kept part of the cut PATCH: hash those bytes from the file, once.
        await hashRange(file, offset, now, acked);
        offset = now;
        failures = 0;
      }
      opts.onProgress?.(offset, size);
    }
  }
  return { location, size, digests: { md5: acked.md5.digest('hex'), sha512: acked.sha512.digest('hex') }, resumes };
}

/**
 * tus creation (POST …/uploads). A server that answers it is unavailable (502-504: PIR's store
 * or another service down a moment) made nothing, so it is asked again with the PATCHes' backoff;
 * anything else is final.
 */
async function createUpload(transport: Transport, imagePath: string, size: number, opts: ResumableOptions): Promise<string> {
  const path = `${imagePath}/uploads`;
  for (let failures = 0; ; failures++) {
    opts.signal?.throwIfAborted();
    const created = await transport.call('POST', path, undefined, { ...TUS, 'upload-length': String(size) });
    if (created.status === 201 && created.headers.location) return created.headers.location;
    const error = unexpectedAnswer(transport.baseUrl, created, 'POST', path);
    if (![502, 503, 504].includes(created.status) || failures >= (opts.maxRetries ?? 8)) throw error;
    await new Promise((r) => setTimeout(r, Math.min(10_000, (opts.backoffMs ?? 250) * 2 ** failures)));
  }
}

/**
 * One PATCH of [start, end); resolves with the server's new offset. `onSent` hears of the bytes
 * as they go (one PATCH may be the whole file: waiting for its answer would show nothing).
 */
async function patch(transport: Transport, location: string, file: string, start: number, end: number, digests: Digests, onSent: (sent: number) => void, signal?: AbortSignal): Promise<number> {
  const { req, response } = transport.open('PATCH', location, {
    ...TUS, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(start), 'content-length': String(end - start),
  });
  // A reset, not a close: the bytes still in the socket's buffers would reach PIR first (seconds
  // on a slow link), and PIR ends the PATCH, and with it holds a termination, only once they have.
  const cut = () => {
    req.socket?.resetAndDestroy();
    req.destroy(new Error('the upload was stopped'));
  };
  signal?.addEventListener('abort', cut, { once: true });
  const body = createReadStream(file, { start, end: end - 1, highWaterMark: 1 << 20 });
  let sent = start;
  body.on('data', (chunk) => {
    digests.update(chunk as Buffer);
    onSent((sent += (chunk as Buffer).length));
  });
  // An answer before the whole body went (a 503 when PIR's store failed mid-PATCH) is acted on at
  // once: PIR reads no more of this PATCH, so sending the rest would only wait out its timeouts.
  let answeredEarly = false;
  const answered = response.then(async (res) => {
    const answer = await readResponse(res);
    if (answer.status !== 204 && !body.closed) {
      answeredEarly = true;
      body.destroy();
      req.destroy();
    }
    return answer;
  });
  const sending = pipeline(body, req).catch((error: Error) => {
    if (answeredEarly) return;
    throw new TransportError(transport.url(location).origin, error);
  });
  const [answer] = await Promise.all([answered, sending]).finally(() => signal?.removeEventListener('abort', cut));
  if (answer.status !== 204) throw PirApiError.from(answer.status, answer.body, 'PATCH', location);
  const offset = Number(answer.headers['upload-offset']);
  if (offset !== end) throw new Error(`the server acknowledged offset ${answer.headers['upload-offset']} after a PATCH ending at ${end}`);
  return offset;
}

async function serverOffset(transport: Transport, location: string): Promise<number> {
  const head = await transport.call('HEAD', location, undefined, TUS);
  if (head.status !== 200) throw PirApiError.from(head.status, head.body, 'HEAD', location);
  const offset = head.headers['upload-offset'];
  if (!offset || !/^\d+$/.test(offset)) throw new Error(`the HEAD answered no Upload-Offset (got '${offset ?? ''}')`);
  return Number(offset);
}

/**
 * tus termination (DELETE of the upload): PIR drops the staged bytes and the image is back in
 * queued. A 423 means the cut PATCH's request still holds the upload: asked again shortly.
 */
export async function terminateUpload(transport: Transport, location: string, attempts = 10): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const answer = await transport.call('DELETE', location, undefined, TUS);
    if (answer.status === 204) return;
    if (answer.status !== 423 || attempt >= attempts) throw PirApiError.from(answer.status, answer.body, 'DELETE', location);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function hashRange(file: string, start: number, end: number, digests: Digests): Promise<void> {
  await pipeline(createReadStream(file, { start, end: end - 1 }), new Writable({ write(chunk, _e, done) { digests.update(chunk as Buffer); done(); } }));
}
