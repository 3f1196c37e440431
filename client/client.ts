/**
 * PIR's typed client: the Image API v2 calls the `pir` command and the tests use. Methods throw
 * typed errors (errors.ts) carrying PIR's error body; `raw` never throws on an HTTP status.
 */
import type { Digests } from '../ingest/hashing/index.js';
import { destinationOf, downloadImage, downloadToStream, type DownloadOptions, type DownloadResult } from './download.js';
import type { Writable } from 'node:stream';
import { ImageRefusedError, NoImageDataError, NotImageApiError, PirApiError, WaitTimeoutError, unexpectedAnswer } from './errors.js';
import { Transport, type Headers, type RawResponse, type TransportOptions } from './http.js';
import { sendFile, type SendFileOptions, type SentFile } from './upload.js';
import { resumableUpload, terminateUpload, type ResumableOptions, type ResumableResult } from './resumable.js';

export interface ShareLink {
  id: string;
  created_at: string;
  expires_at: string;
  created_by: { project_id: string; user_id: string };
  uses: number;
  url?: string;
}

export interface StageTiming {
  status: string;
  attempts?: number;
  started_at?: string | null;
  ended_at?: string | null;
  duration_ms?: number | null;
  [key: string]: unknown;
}

export interface Image {
  id: string;
  name: string | null;
  status: string;
  visibility: string;
  protected: boolean;
  disk_format: string | null;
  container_format: string | null;
  size: number | null;
  virtual_size: number | null;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  tags: string[];
  owner: string | null;
  created_at: string;
  updated_at: string;
  /** PIR's progress fields appear only when they apply (an importing image, a run, a refusal). */
  pir_stage?: string;
  pir_pipeline?: { run: number; method: string; stage: string | null; stages: Record<string, StageTiming>; findings: unknown[] };
  /** Why the image was killed; `run` and `method` name an import that failed before its pipeline run (web-download, location). */
  pir_failure?: { stage: string; code: string; message: string; run?: number; method?: string };
  [property: string]: unknown;
}

export type JsonPatchOp =
  | { op: 'add' | 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

export type Query = Record<string, string | number | boolean | string[] | undefined>;

/** Statuses an image does not leave on its own. */
export const SETTLED_STATUSES = new Set(['active', 'killed', 'deactivated', 'deleted']);

export const JSON_PATCH_TYPE = 'application/openstack-images-v2.1-json-patch';

export interface UploadOptions extends Omit<SendFileOptions, 'headers'> {
  /** Answer as soon as the bytes are staged (202) instead of when the image is active. */
  async?: boolean;
  /** md5 hex the server must find (sent as Content-MD5). */
  md5?: string;
  headers?: Headers;
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Called with every poll's image. */
  onUpdate?: (image: Image) => void;
}

export class PirClient {
  readonly transport: Transport;

  constructor(readonly url: string, readonly token: string | null, opts: TransportOptions = {}) {
    this.transport = new Transport(url, token, opts);
  }

  /** Any call, with the status and parsed body as answered. */
  raw<T = any>(method: string, path: string, body?: unknown, headers: Headers = {}): Promise<RawResponse<T>> {
    return this.transport.call<T>(method, path, body, headers);
  }

  /** A call that must answer one of `ok`; anything else becomes a typed error. */
  async request<T = any>(method: string, path: string, body?: unknown, ok: number[] = [200], headers: Headers = {}): Promise<T> {
    const response = await this.raw<T>(method, path, body, headers);
    if (!ok.includes(response.status)) throw unexpectedAnswer(this.transport.baseUrl, response, method, path);
    // PIR answers these with a JSON object; anything else (a web page) is another server.
    if ((response.status === 200 || response.status === 201) && (typeof response.body !== 'object' || response.body === null || Array.isArray(response.body))) {
      throw new NotImageApiError(this.transport.baseUrl, method, path, response);
    }
    return response.body;
  }

  /** One page of a list: the answer must carry its array under `key`. */
  private async page<K extends string, T>(path: string, key: K): Promise<Record<K, T[]> & { next?: string }> {
    const response = await this.raw('GET', path);
    const body = response.status === 200 ? response.body : null;
    if (!Array.isArray(body?.[key])) throw response.status === 200 ? new NotImageApiError(this.transport.baseUrl, 'GET', path, response) : unexpectedAnswer(this.transport.baseUrl, response, 'GET', path);
    return body;
  }

  createImage(fields: Record<string, unknown>): Promise<Image> {
    return this.request<Image>('POST', '/v2/images', fields, [201]);
  }

  getImage(id: string): Promise<Image> {
    return this.request<Image>('GET', imagePath(id));
  }

  /** One page of images; `next` is the server's link to the following page. */
  async listImages(query: Query = {}): Promise<{ images: Image[]; next: string | null }> {
    const body = await this.page<'images', Image>('/v2/images' + queryString(query), 'images');
    return { images: body.images, next: body.next ?? null };
  }

  /** Every image matching the query, page after page. */
  async *allImages(query: Query = {}): AsyncGenerator<Image> {
    let page = await this.listImages(query);
    for (;;) {
      yield* page.images;
      if (!page.next || page.images.length === 0) return;
      const body = await this.page<'images', Image>(page.next, 'images');
      page = { images: body.images, next: body.next ?? null };
    }
  }

  updateImage(id: string, patch: JsonPatchOp[]): Promise<Image> {
    return this.request<Image>('PATCH', imagePath(id), patch, [200], { 'content-type': JSON_PATCH_TYPE });
  }

  async deleteImage(id: string): Promise<void> {
    await this.request('DELETE', imagePath(id), undefined, [204]);
  }

  /**
   * PUT …/file. Synchronous by default: resolves when the image is active and throws
   * ImageRefusedError when the pipeline refused it; a server whose pipeline did not settle within
   * its PIR_UPLOAD_SETTLE_WAIT_SECONDS answers 202 instead (the image goes on importing: wait for
   * it). With `async`, resolves once staged (202).
   */
  async uploadFile(id: string, file: string, opts: UploadOptions = {}): Promise<SentFile> {
    const headers: Headers = { ...(opts.async ? { prefer: 'respond-async' } : {}), ...(opts.md5 ? { 'content-md5': opts.md5 } : {}), ...(opts.headers ?? {}) };
    const sent = await this.sendData(id, file, 'file', { ...opts, headers });
    if (sent.response.status === 204 || sent.response.status === 202) return sent;
    if (sent.response.status < 400) throw unexpectedAnswer(this.transport.baseUrl, sent.response, 'PUT', `${imagePath(id)}/file`);
    throw await this.refusalOrError(id, sent.response, `${imagePath(id)}/file`);
  }

  /** PUT …/stage (glance-direct's first half). */
  async stageFile(id: string, file: string, opts: UploadOptions = {}): Promise<SentFile> {
    const sent = await this.sendData(id, file, 'stage', { ...opts, headers: { ...(opts.md5 ? { 'content-md5': opts.md5 } : {}), ...(opts.headers ?? {}) } });
    if (sent.response.status !== 204) throw unexpectedAnswer(this.transport.baseUrl, sent.response, 'PUT', `${imagePath(id)}/stage`);
    return sent;
  }

  /** Streams a file to …/file or …/stage and returns the raw answer (for callers that check statuses themselves). */
  sendData(id: string, file: string, kind: 'file' | 'stage', opts: SendFileOptions = {}): Promise<SentFile> {
    return sendFile(this.transport, 'PUT', `${imagePath(id)}/${kind}`, file, opts);
  }

  /** A tus upload (POST …/uploads, then PATCHes) that resumes after a cut connection; resolves when all bytes are in. */
  resumableUpload(id: string, file: string, opts: ResumableOptions = {}): Promise<ResumableResult> {
    return resumableUpload(this.transport, imagePath(id), file, opts);
  }

  /** Ends a tus upload (DELETE, tus termination): PIR drops its staged bytes and the image is back in queued. */
  terminateUpload(location: string): Promise<void> {
    return terminateUpload(this.transport, location);
  }

  /** A download link for someone without an account; `url` is shown only here. */
  createShareLink(id: string, expiresIn: number): Promise<ShareLink & { url: string }> {
    return this.request('POST', `${imagePath(id)}/share-links`, { expires_in: expiresIn }, [201]);
  }

  async listShareLinks(id: string): Promise<ShareLink[]> {
    return (await this.request<{ share_links: ShareLink[] }>('GET', `${imagePath(id)}/share-links`)).share_links;
  }

  async revokeShareLink(id: string, linkId: string): Promise<void> {
    await this.request('DELETE', `${imagePath(id)}/share-links/${encodeURIComponent(linkId)}`, undefined, [204]);
  }

  async importImage(id: string, method = 'glance-direct'): Promise<void> {
    await this.request('POST', `${imagePath(id)}/import`, { method: { name: method } }, [202]);
  }

  /** Registers bytes that already exist (s3://bucket/key or an http(s) URL) as the image's data: 202, read in the background. */
  async addLocation(id: string, url: string, validation: { checksum?: string; os_hash_algo?: 'sha512'; os_hash_value?: string } = {}): Promise<void> {
    await this.request('POST', `${imagePath(id)}/locations`, { url, ...(Object.keys(validation).length ? { validation_data: validation } : {}) }, [202]);
  }

  tasks(id: string): Promise<{ tasks: Record<string, unknown>[] }> {
    return this.request('GET', `${imagePath(id)}/tasks`);
  }

  /** Polls until the image is active (resolves) or killed (throws ImageRefusedError). */
  async waitForImage(id: string, opts: WaitOptions = {}): Promise<Image> {
    const deadline = Date.now() + (opts.timeoutMs ?? 3_600_000);
    let interval = Math.min(opts.intervalMs ?? 50, 1000);
    for (;;) {
      const image = await this.getImage(id);
      opts.onUpdate?.(image);
      if (image.status === 'killed') throw new ImageRefusedError(id, image.pir_failure ?? { stage: 'unknown', code: 'no pir_failure', message: 'the image was killed without a recorded reason' });
      if (SETTLED_STATUSES.has(image.status)) return image;
      if (Date.now() > deadline) throw new WaitTimeoutError(`image ${id} is still ${image.status}${image.pir_stage ? ` (stage ${image.pir_stage})` : ''}; waiting longer may help (--timeout)`);
      await new Promise((r) => setTimeout(r, interval));
      interval = Math.min(interval * 1.5, opts.intervalMs ?? 1000);
    }
  }

  /**
   * Downloads to `file` (via `file.part`; a device or pipe is written as it is), or to `sink`
   * (a stream such as standard output), verifying the image's md5 and sha512.
   */
  async download(id: string, file: string | Writable, opts: DownloadOptions = {}): Promise<DownloadResult & { image: Image }> {
    // A destination that cannot take the image is refused before any request.
    if (typeof file === 'string') await destinationOf(file);
    const image = await this.getImage(id);
    if (image.status !== 'active') {
      const next = image.status === 'killed' ? `it was refused${image.pir_failure ? ` (${image.pir_failure.code})` : ''} and will never have data; see pir image show ${id}` : `wait until it is active (pir image wait ${id})`;
      throw new NoImageDataError(id, `Image ${id} is ${image.status}, so it has no data to download; ${next}.`);
    }
    const expect = { size: image.size, sha512: image.os_hash_algo === 'sha512' ? image.os_hash_value : null, md5: image.checksum };
    const result = typeof file === 'string' ? await downloadImage(this.transport, id, file, expect, opts) : await downloadToStream(this.transport, id, file, expect, opts);
    return { ...result, image };
  }

  /** A refused synchronous upload names its reason: read the image's pir_failure for it. */
  private async refusalOrError(id: string, response: RawResponse, path: string): Promise<Error> {
    const error = unexpectedAnswer(this.transport.baseUrl, response, 'PUT', path);
    if (!(error instanceof PirApiError)) return error;
    // 415: an inspector's refusal (as Glance answers it); 400: unpack's and checksum's; 500: PIR's fault.
    if (response.status !== 400 && response.status !== 415 && response.status !== 500) return error;
    // Refused before the pipeline: the upload brought no data for a format with a header (the image stays queued).
    if (error.errorCode === 'empty_image') return new ImageRefusedError(id, { stage: 'upload', code: error.errorCode, message: error.message });
    const image = await this.getImage(id).catch(() => null);
    if (image?.status === 'killed' && image.pir_failure) return new ImageRefusedError(id, image.pir_failure);
    return error;
  }
}

export function imagePath(id: string): string {
  return `/v2/images/${encodeURIComponent(id)}`;
}

export function queryString(query: Query): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

export type { Digests, SentFile, DownloadResult, ResumableOptions, ResumableResult };
