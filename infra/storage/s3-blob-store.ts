/**
 * Image bytes in an S3-compatible bucket (AWS S3, SeaweedFS, Ceph RGW), under an optional key
 * prefix. Writes stream as a multipart upload (s3-hashed-upload.ts: at most `queueSize` parts of
 * `partSize` bytes in flight, one more filling) while the hash pool computes md5 and sha512 over
 * the same buffers; an object is visible only once complete, and a failed upload is aborted.
 * Promotion is free: the staged object stays where it was written and becomes the stored key.
 */
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { makeLocalCopyDir } from './local-copies.js';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand,
  ListObjectsV2Command, PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import { BlobNotFoundError, BlobStoreUnavailableError, type BlobInfo, type BlobReader, type BlobStore, type BlobWriteOptions, type ByteRange, type UnfinishedWrite, type WrittenBlob } from '../../core/ports.js';
import { HashPool } from '../../ingest/hashing/index.js';
import { RangeReader } from './range-reader.js';
import { UndiciHttpHandler } from './undici-http-handler.js';
import { uploadHashed } from './s3-hashed-upload.js';
import { PartBufferCache } from './s3-part-buffers.js';

// The SDK prints, once, a multi-line warning outside the JSON logs that its releases after
// January 2027 need Node 22. PIR runs on Node 20 with the SDK version package-lock.json pins.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface S3Settings {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** Path-style (`endpoint/bucket/key`, most self-hosted servers) or virtual-host (`bucket.endpoint/key`). */
  forcePathStyle: boolean;
  /** Prepended to every key ('' or ending in '/'): several PIRs (or test runs) can share a bucket. */
  prefix?: string;
  /** Multipart part size in bytes (S3's minimum is 5 MiB). */
  partSize?: number;
  /** Parts uploaded at once (each held in memory while it is sent). */
  queueSize?: number;
  /** Shared part buffers kept at most (default max(16, 2 × (queueSize + 1)); tests set 0 to send every part from ordinary buffers). */
  partBuffers?: number;
  /**
   * Sign each body's sha256 (SigV4 over the payload) rather than sending it as UNSIGNED-PAYLOAD.
   * Default: only over plain HTTP to another host; HTTPS already protects the bytes and loopback
   * has no one in between, and the sha256 is a third digest of every byte on the main thread.
   */
  signPayload?: boolean;
  /**
   * The HTTP client of reads (GetObject): 'undici' (default; less CPU per byte, see
   * undici-http-handler.ts) or 'node', the SDK's own node:http handler that every other request uses.
   */
  readClient?: 'undici' | 'node';
  /**
   * Longest silence of the server within a request, in ms (connecting, awaiting the answer, or
   * between bytes it should be sending or taking): then the request fails as unreachable (503 in
   * the API). Default 30 s. Without it a server that went silent held uploads and downloads for
   * good. A client that reads a download slowly is not silence: undici stops the clock while paused.
   */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Whether an endpoint's bodies need a signed sha256 by default (see S3Settings.signPayload). */
export function signsPayloadByDefault(endpoint: string): boolean {
  const url = new URL(endpoint);
  if (url.protocol === 'https:') return false;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return !(host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host));
}

const MiB = 1024 * 1024;
/** The object ping() writes and reads back. */
export const PROBE_KEY = 'health/probe';
const PROBE_BODY = Buffer.from('pir readiness probe\n');
const DEFAULT_PART_SIZE = 8 * MiB;
/** Parts in flight: what is still to send after the last byte arrives is at most this many parts (+ the last). */
const DEFAULT_QUEUE_SIZE = 2;
/**
 * Shared part buffers a store keeps at most (8 MiB each by default: 128 MiB): past them, an
 * upload fills ordinary buffers, copied into the hash pool's slots (s3-part-buffers.ts).
 */
const PART_BUFFERS_MIN = 16;
/** The commands that carry image bytes. */
const UNSIGNED_BODIES = new Set(['UploadPartCommand', 'PutObjectCommand']);

export class S3BlobStore implements BlobStore {
  readonly kind = 's3';
  readonly client: S3Client;
  /** GetObject's client: the same settings on undici (or `client` itself with readClient 'node'). */
  private readonly readClient: S3Client;
  private readonly prefix: string;

  private readonly hashes: HashPool | undefined;
  /** Parts sent at once per upload, and their size (settings or defaults). */
  readonly queueSize: number;
  readonly partSize: number;
  private readonly partBuffers: PartBufferCache;

  /** `hashes`: the pool that hashes uploads (default: the process-wide one, as the filesystem store). */
  constructor(readonly settings: S3Settings, options: { hashes?: HashPool } = {}) {
    this.hashes = options.hashes;
    this.queueSize = settings.queueSize ?? DEFAULT_QUEUE_SIZE;
    this.partSize = settings.partSize ?? DEFAULT_PART_SIZE;
    this.partBuffers = new PartBufferCache(this.partSize, settings.partBuffers ?? Math.max(PART_BUFFERS_MIN, 2 * (this.queueSize + 1)));
    const clientSettings = {
      endpoint: settings.endpoint,
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
      // Checksums on every request cost a pass over the bytes; PIR computes its own digests.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    } as const;
    const timeoutMs = settings.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // socketTimeout: inactivity on the socket (requestTimeout would bound a whole upload, and only warns).
    this.client = new S3Client({ ...clientSettings, requestHandler: { connectionTimeout: timeoutMs, socketTimeout: timeoutMs } });
    this.readClient = (settings.readClient ?? 'undici') === 'undici' ? new S3Client({ ...clientSettings, requestHandler: new UndiciHttpHandler(timeoutMs) }) : this.client;
    this.prefix = settings.prefix ?? '';
    if (!(settings.signPayload ?? signsPayloadByDefault(settings.endpoint))) {
      // Set before signing: SigV4 then signs the header instead of hashing the body.
      this.client.middlewareStack.add((next, context) => (args) => {
        const request = args.request as { headers?: Record<string, string> };
        if (UNSIGNED_BODIES.has(context.commandName ?? '') && request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      }, { step: 'build', name: 'pirUnsignedPayload' });
    }
  }

  private objectKey(key: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._/-]{0,400}$/.test(key) || key.includes('..') || key.includes('//') || key.endsWith('/')) {
      throw new Error(`bad blob key: ${JSON.stringify(key)}`);
    }
    return this.prefix + key;
  }

  /** The bucket key of a blob key (prefix applied, checked), for modules that drive S3 themselves (ingest/tus/s3-staging.ts). */
  bucketKey(key: string): string {
    return this.objectKey(key);
  }

  async write(key: string, source: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, options: BlobWriteOptions): Promise<WrittenBlob> {
    const { size, md5, sha512 } = await uploadHashed({
      client: this.client,
      bucket: this.settings.bucket,
      objectKey: this.objectKey(key),
      label: key,
      queueSize: this.queueSize,
      buffers: this.partBuffers,
      ...(this.hashes ? { pool: this.hashes } : {}),
    }, source, {
      maxBytes: options.maxBytes,
      ...(options.idleMs ? { idleMs: options.idleMs } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return { size, md5, sha512 };
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    try {
      const out = await this.readClient.send(new GetObjectCommand({
        Bucket: this.settings.bucket,
        Key: this.objectKey(key),
        ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
      }));
      return out.Body as Readable;
    } catch (error) {
      throw notFound(error) ? new BlobNotFoundError(key) : error;
    }
  }

  async openReader(key: string): Promise<BlobReader> {
    const info = await this.stat(key);
    if (!info) throw new BlobNotFoundError(key);
    return new RangeReader(info.size, (offset, length) => this.readRange(key, offset, length));
  }

  /** One bounded range as bytes (at most `length`, fewer at the end). */
  async readRange(key: string, offset: number, length: number): Promise<Buffer> {
    const body = await this.read(key, { start: offset, end: offset + length - 1 });
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async stat(key: string): Promise<BlobInfo | null> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: this.objectKey(key) }));
      return { key, size: out.ContentLength ?? 0, modifiedAt: out.LastModified?.getTime() ?? 0 };
    } catch (error) {
      if (notFound(error)) return null;
      throw error;
    }
  }

  /** Removes the object and any unfinished multipart upload to the key (a writer that died mid-write). */
  async delete(key: string): Promise<void> {
    const objectKey = this.objectKey(key);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: objectKey }));
    for (const upload of await this.unfinishedUploads(objectKey)) {
      if (upload.key !== objectKey) continue;
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.settings.bucket, Key: upload.key, UploadId: upload.uploadId }))
        .catch((error: unknown) => { if (!notFound(error)) throw error; });
    }
  }

  private async unfinishedUploads(prefix: string): Promise<{ key: string; uploadId: string; initiated: number }[]> {
    const found: { key: string; uploadId: string; initiated: number }[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const out = await this.client.send(new ListMultipartUploadsCommand({
        Bucket: this.settings.bucket,
        Prefix: prefix,
        ...(keyMarker ? { KeyMarker: keyMarker } : {}),
        ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}),
      }));
      for (const u of out.Uploads ?? []) {
        if (u.Key && u.UploadId) found.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated?.getTime() ?? 0 });
      }
      const more = out.IsTruncated && (out.NextKeyMarker || out.NextUploadIdMarker);
      keyMarker = more ? out.NextKeyMarker : undefined;
      uploadIdMarker = more ? out.NextUploadIdMarker : undefined;
    } while (keyMarker || uploadIdMarker);
    return found;
  }

  async unfinishedWrites(prefix: string): Promise<UnfinishedWrite[]> {
    const uploads = await this.unfinishedUploads(this.prefix + prefix);
    return uploads.filter((u) => u.key.startsWith(this.prefix)).map((u) => ({ key: u.key.slice(this.prefix.length), uploadId: u.uploadId, startedAt: u.initiated }));
  }

  async abortUnfinishedWrite(write: UnfinishedWrite): Promise<void> {
    await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.settings.bucket, Key: this.objectKey(write.key), UploadId: write.uploadId }))
      .catch((error: unknown) => { if (!notFound(error)) throw error; });
  }

  async list(prefix: string): Promise<BlobInfo[]> {
    const found: BlobInfo[] = [];
    let token: string | undefined;
    do {
      const out = await this.client.send(new ListObjectsV2Command({
        Bucket: this.settings.bucket,
        Prefix: this.prefix + prefix,
        ...(token ? { ContinuationToken: token } : {}),
      }));
      for (const object of out.Contents ?? []) {
        if (!object.Key?.startsWith(this.prefix)) continue;
        found.push({ key: object.Key.slice(this.prefix.length), size: object.Size ?? 0, modifiedAt: object.LastModified?.getTime() ?? 0 });
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    // Unfinished multipart uploads (their writer died) are listed too, with size 0 and the time
    // they began, so the sweepers can find and delete them like a partial file.
    const listed = new Set(found.map((b) => b.key));
    for (const upload of await this.unfinishedUploads(this.prefix + prefix)) {
      const key = upload.key.slice(this.prefix.length);
      if (!upload.key.startsWith(this.prefix) || listed.has(key)) continue;
      listed.add(key);
      found.push({ key, size: 0, modifiedAt: upload.initiated });
    }
    return found;
  }

  async localFile(key: string): Promise<{ path: string; release(): Promise<void> }> {
    const dir = await makeLocalCopyDir();
    const path = join(dir, 'blob');
    const release = () => rm(dir, { recursive: true, force: true });
    try {
      await pipeline(await this.read(key), createWriteStream(path, { mode: 0o600 }));
    } catch (error) {
      await release();
      throw error;
    }
    return { path, release };
  }

  async promote(stagedKey: string): Promise<string> {
    // No rename in S3 and a copy would move every byte again: the staged object is the stored one.
    if (!(await this.stat(stagedKey))) throw new BlobNotFoundError(stagedKey);
    return stagedKey;
  }

  /**
   * Readiness: the bucket exists (a write alone would make it on servers that create buckets on
   * first use, as SeaweedFS does, hiding a misspelt PIR_S3_BUCKET), takes a small object and
   * gives it back. A HEAD of the bucket alone answers while the servers that hold the data behind
   * an S3 gateway are down (SeaweedFS's volume servers), when no image can be stored or served.
   * One fixed key for every process (overwritten, never piling up), outside `staging/` and `images/`.
   */
  async ping(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.settings.bucket }));
    const Key = this.objectKey(PROBE_KEY);
    await this.client.send(new PutObjectCommand({ Bucket: this.settings.bucket, Key, Body: PROBE_BODY }));
    const out = await this.readClient.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key }));
    for await (const chunk of out.Body as Readable) void chunk;
  }

  close(): void {
    this.client.destroy();
    if (this.readClient !== this.client) this.readClient.destroy();
  }
}

function notFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}
