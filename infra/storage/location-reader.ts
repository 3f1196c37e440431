/**
 * Reads registered locations (core/external-location.ts), read-only: objects in an allowed bucket
 * of the configured S3 endpoint, and http(s) URLs through the SSRF-safe egress client (every
 * request, redirects included, passes its checks). Every read is checked against the object as
 * registered: a different size, ETag or Last-Modified fails with LocationChangedError before a
 * byte is passed on (S3 asks the server to check too, with If-Match on the ETag).
 *
 * The HTTP store needs range requests (inspection reads bounded ranges; downloads pass Range
 * through): a server that answers a range request with the whole body is refused at registration.
 */
import { Transform, type Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import type { LocationFingerprint } from '../../schemas/image.js';
import { EGRESS_REASONS, LocationChangedError, LocationUnreadableError } from './location-errors.js';
import type { ByteRange } from '../../core/ports.js';
import type { LocationRef } from '../../core/external-location.js';
import { EgressError, type EgressClient, type EgressResponse } from '../egress/egress-client.js';
import type { S3Config } from '../config.js';

// Re-exported for the reader's users and tests; code that only tells the errors apart imports location-errors.ts.
export { LocationChangedError, LocationUnreadableError };

type S3Sdk = typeof import('@aws-sdk/client-s3');

export class LocationReader {
  /** The S3 client, made (and the AWS SDK loaded) on the first s3:// read: a PIR without S3 never loads the SDK. */
  private s3: Promise<{ client: S3Client; sdk: S3Sdk }> | null = null;

  constructor(private readonly egress: EgressClient, private readonly s3Config: S3Config | null) {}

  /** The object as it is now (size, ETag, Last-Modified). */
  async probe(url: string, signal?: AbortSignal): Promise<LocationFingerprint> {
    if (url.startsWith('s3://')) {
      const { bucket, key } = this.s3Parts(url);
      const { client, sdk } = await this.client();
      try {
        const head = await client.send(new sdk.HeadObjectCommand({ Bucket: bucket, Key: key }), signal ? { abortSignal: signal } : {});
        return { size: head.ContentLength ?? 0, etag: head.ETag ?? null, last_modified: head.LastModified?.toUTCString() ?? null };
      } catch (error) {
        throw s3Failure(error);
      }
    }
    // One byte, to learn the size from Content-Range and that ranges are honoured.
    const response = await this.httpGet(url, { start: 0, end: 0 }, null, signal);
    response.body.destroy();
    if (response.status === 416) {
      const total = /\*\/(\d+)/.exec(String(response.headers['content-range'] ?? ''))?.[1];
      if (total === '0') return { size: 0, etag: validator(response, 'etag'), last_modified: validator(response, 'last-modified') };
    }
    if (response.status === 200) throw new LocationUnreadableError('location_no_ranges', 'The server behind the location ignores range requests; PIR reads registered images by range (inspection, downloads with Range). Serve it from a server with range support, or upload it.');
    if (response.status !== 206) throw statusFailure(response.status);
    const size = totalOf(response);
    if (size === null) throw new LocationUnreadableError('location_no_ranges', 'The server behind the location answered a range request without a usable Content-Range.');
    return { size, etag: validator(response, 'etag'), last_modified: validator(response, 'last-modified') };
  }

  /** Throws LocationChangedError unless the object still matches the registration. */
  async verify(ref: LocationRef): Promise<void> {
    compare(ref.fingerprint, await this.probe(ref.url));
  }

  /** The bytes (or one inclusive range), checked against the registration before the first byte. */
  async read(ref: LocationRef, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
    const { size } = ref.fingerprint;
    if (range && (range.start < 0 || range.end >= size || range.start > range.end)) throw new RangeError(`range ${range.start}-${range.end} outside 0-${size - 1}`);
    if (ref.url.startsWith('s3://')) {
      const { bucket, key } = this.s3Parts(ref.url);
      const { client, sdk } = await this.client();
      let answer;
      try {
        answer = await client.send(new sdk.GetObjectCommand({
          Bucket: bucket, Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
          ...(ref.fingerprint.etag ? { IfMatch: ref.fingerprint.etag } : {}),
        }), signal ? { abortSignal: signal } : {});
      } catch (error) {
        const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status === 412) throw new LocationChangedError('the ETag differs');
        if (status === 416) throw new LocationChangedError('the object is shorter');
        throw s3Failure(error);
      }
      const body = answer.Body as Readable;
      const total = range ? Number(/\/(\d+)$/.exec(answer.ContentRange ?? '')?.[1] ?? NaN) : answer.ContentLength;
      try {
        compare(ref.fingerprint, { size: total ?? -1, etag: answer.ETag ?? null, last_modified: answer.LastModified?.toUTCString() ?? null });
      } catch (error) {
        body.destroy();
        throw error;
      }
      return exactly(body, range ? range.end - range.start + 1 : ref.fingerprint.size);
    }
    const response = await this.httpGet(ref.url, range ?? null, ref.fingerprint, signal);
    try {
      if (response.status === 412 || response.status === 416) throw new LocationChangedError(response.status === 412 ? 'the ETag differs' : 'the object is shorter');
      if (range && response.status !== 206) throw response.status === 200 ? new LocationUnreadableError('location_no_ranges', 'The server behind the location stopped honouring range requests.') : statusFailure(response.status);
      if (!range && response.status !== 200) throw statusFailure(response.status);
      const total = range ? totalOf(response) : response.contentLength;
      compare(ref.fingerprint, { size: total ?? -1, etag: validator(response, 'etag'), last_modified: validator(response, 'last-modified') });
    } catch (error) {
      response.body.destroy();
      throw error;
    }
    return exactly(response.body, range ? range.end - range.start + 1 : ref.fingerprint.size);
  }

  /** `length` bytes from `offset` (inspection), checked like read(). */
  async readRange(ref: LocationRef, offset: number, length: number): Promise<Buffer> {
    const stream = await this.read(ref, { start: offset, end: offset + length - 1 });
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    if (data.length !== length) throw new LocationChangedError(`a range read returned ${data.length} of ${length} bytes`);
    return data;
  }

  close(): void {
    void this.s3?.then(({ client }) => client.destroy(), () => {});
  }

  private client(): Promise<{ client: S3Client; sdk: S3Sdk }> {
    const s3 = this.s3Config;
    if (!s3) return Promise.reject(new LocationUnreadableError('location_refused', 'No S3 endpoint is configured (PIR_S3_ENDPOINT); s3:// locations cannot be read.'));
    this.s3 ??= Promise.all([import('@aws-sdk/client-s3'), import('./undici-http-handler.js')]).then(([sdk, { UndiciHttpHandler }]) => ({
      sdk,
      client: new sdk.S3Client({
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: s3.forcePathStyle,
        credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        // Only reads here (HEAD and GET): on undici like the S3 store's reads (PIR_S3_READ_CLIENT).
        requestHandler: s3.readClient === 'node' ? { connectionTimeout: s3.timeoutMs, socketTimeout: s3.timeoutMs } : new UndiciHttpHandler(s3.timeoutMs),
      }),
    }));
    return this.s3;
  }

  private s3Parts(url: string): { bucket: string; key: string } {
    const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
    if (!m) throw new LocationUnreadableError('location_refused', 'Malformed s3:// location.');
    return { bucket: m[1]!, key: m[2]! };
  }

  /** A GET through the egress client; any status comes back (the caller decides). */
  private async httpGet(url: string, range: ByteRange | null, registered: LocationFingerprint | null, signal?: AbortSignal): Promise<EgressResponse> {
    const headers: Record<string, string> = {};
    if (range) headers.range = `bytes=${range.start}-${range.end}`;
    // The server checks too where it can: a strong ETag must still match.
    if (registered?.etag && !registered.etag.startsWith('W/')) headers['if-match'] = registered.etag;
    try {
      // No byte limit here: an error body or a server ignoring Range is told apart by status,
      // and read() counts the bytes of a good answer itself (exactly the length expected).
      return await this.egress.request(url, { method: 'GET', headers, maxBytes: Number.MAX_SAFE_INTEGER, anyStatus: true, ...(signal ? { signal } : {}) });
    } catch (error) {
      if (error instanceof EgressError) throw new LocationUnreadableError(error.code, EGRESS_REASONS[error.code] ?? error.message);
      throw error;
    }
  }
}

/** The stream, failing if it brings more or fewer than `length` bytes (the object changed under the read). */
function exactly(source: Readable, length: number): Readable {
  let seen = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > length) return callback(new LocationChangedError(`more than the ${length} bytes expected`));
      callback(null, chunk);
    },
    flush(callback) {
      callback(seen === length ? null : new LocationChangedError(`${seen} of the ${length} bytes expected`));
    },
  });
  source.once('error', (error) => counted.destroy(error));
  counted.once('close', () => source.destroy());
  return source.pipe(counted);
}

function validator(response: EgressResponse, name: 'etag' | 'last-modified'): string | null {
  const value = response.headers[name];
  return typeof value === 'string' && value.length > 0 ? value : null;
}

function totalOf(response: EgressResponse): number | null {
  const m = /^bytes \d+-\d+\/(\d+)$/.exec(String(response.headers['content-range'] ?? '').trim());
  return m ? Number(m[1]) : null;
}

/** Throws LocationChangedError when `now` is not the registered object (a validator the server stopped sending counts as changed). */
function compare(registered: LocationFingerprint, now: LocationFingerprint): void {
  if (now.size !== registered.size) throw new LocationChangedError(`size ${now.size} instead of ${registered.size}`);
  if (registered.etag !== null && now.etag !== registered.etag) throw new LocationChangedError('the ETag differs');
  if (registered.last_modified !== null && now.last_modified !== registered.last_modified) throw new LocationChangedError('Last-Modified differs');
}

function statusFailure(status: number): LocationUnreadableError {
  return new LocationUnreadableError('upstream_status', `The server behind the location answered ${status}.`);
}

function s3Failure(error: unknown): Error {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  const status = e?.$metadata?.httpStatusCode;
  if (status === 404 || e?.name === 'NotFound' || e?.name === 'NoSuchKey') return new LocationUnreadableError('location_unreadable', 'No object at the S3 location.');
  if (status === 403) return new LocationUnreadableError('location_unreadable', 'The S3 endpoint refuses PIR access to the object.');
  if (status !== undefined) return new LocationUnreadableError('location_unreadable', `The S3 endpoint answered ${status}.`);
  return new LocationUnreadableError('location_unreadable', `The S3 endpoint could not be reached (${(error as Error).name ?? 'error'}).`);
}
