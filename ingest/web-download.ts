/**
 * Glance's web-download import: POST …/import {"method": {"name": "web-download", "uri": …}}.
 * The URL is checked at once (scheme, credentials, port, address literals: 400), the image is
 * claimed (`uploading`), and the request answers 202; the download then runs in this process,
 * in the background, through the SSRF-safe egress client, into staging on the same streaming
 * and hashing path as an upload, with the upload heartbeat (so if this process dies, the
 * sweeper returns the image to `queued` after PIR_UPLOAD_STALL_SECONDS). When all bytes are in,
 * the normal pipeline runs (importing → active). A failed download kills the image with
 * `pir_failure = {stage: 'import', code, message}`.
 */
import { inBackgroundSpan, type RecordedFailure } from '../core/trace-context.js';
import type { StoreTargets, UploadTicket } from '../core/image-service.js';
import type { Logger } from 'pino';
import { SYSTEM_CALLER, type Caller } from '../core/caller.js';
import { requireWebDownloadable } from '../core/image-entity.js';
import { PirError, badRequest } from '../core/errors.js';
import { EgressError, type EgressClient } from '../infra/egress/egress-client.js';
import { SizeLimitError, SourceIdleError } from './hashing/index.js';
import { streamToStaging, tooLarge, type IngestDeps } from './receive-upload.js';

export interface WebDownloadDeps extends IngestDeps {
  egress: EgressClient;
  log: Logger;
}

/** Longest URL accepted (a URL is not a place for data). */
const MAX_URI_LENGTH = 4096;

export class WebDownloads {
  private readonly running = new Set<Promise<void>>();
  private readonly abort = new AbortController();

  constructor(private readonly deps: WebDownloadDeps) {}

  /** Checks the request and claims the image; the download goes on after this returns. */
  /** `importReq`: the POST …/import body, for the task's input (absent for a legacy task's download). */
  async start(caller: Caller, imageId: string, uri: unknown, targets?: StoreTargets, importReq?: Record<string, unknown>): Promise<void> {
    const { images, quotas } = this.deps;
    const doc = await images.get(caller, imageId);
    // As Glance: the image's status and formats (409) before the URI (400); the claim checks them again.
    requireWebDownloadable(doc);
    this.checkUri(uri);
    const project = quotas.enabled ? doc.owner : null;
    const ticket = await images.beginWebDownload(caller, imageId, targets, importReq);
    try {
      await quotas.reserveFlight(project, imageId, 0);
    } catch (error) {
      await images.abortUpload(caller, imageId, ticket.run, (error as Error).message);
      await quotas.settle(imageId, () => images.get(SYSTEM_CALLER, imageId).catch(() => null)).catch(() => {});
      throw error;
    }
    const run = this.download(caller, imageId, project, ticket, uri).finally(() => this.running.delete(run));
    this.running.add(run);
  }

  /** Refuses (400) a URI that is missing, too long, or that the egress rules refuse by what it says alone. */
  checkUri(uri: unknown): asserts uri is string {
    if (typeof uri !== 'string' || uri.length === 0) {
      throw badRequest('uri_refused', "web-download needs the image's URL in method.uri, e.g. {\"method\": {\"name\": \"web-download\", \"uri\": \"https://example.org/disk.qcow2\"}}.");
    }
    if (uri.length > MAX_URI_LENGTH) throw badRequest('uri_refused', `The URI is longer than ${MAX_URI_LENGTH} characters.`);
    try {
      this.deps.egress.check(uri);
    } catch (error) {
      if (error instanceof EgressError) throw badRequest(error.code, `URI for web-download does not pass filtering: ${error.message}`);
      throw error;
    }
  }

  /** Stops running downloads (their images are returned to `queued` by the sweeper's stall rule, or killed here). */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.running]);
  }

  /** The download after the 202, in its own span of the request's trace (its failure an error status with the code). */
  private download(caller: Caller, imageId: string, project: string | null, ticket: UploadTicket, uri: string): Promise<void> {
    return inBackgroundSpan('web-download', { 'pir.image.id': imageId, 'pir.run': ticket.run }, () => this.downloadNow(caller, imageId, project, ticket, uri));
  }

  /** Null when staged (or stopped by PIR); else the failure recorded on the image. */
  private async downloadNow(caller: Caller, imageId: string, project: string | null, ticket: UploadTicket, uri: string): Promise<RecordedFailure | null> {
    const { images, quotas, upload, log } = this.deps;
    const started = Date.now();
    try {
      const response = await this.deps.egress.get(uri, { maxBytes: upload.maxImageSize, signal: this.abort.signal });
      if (response.contentLength !== null) await quotas.reserveFlight(project, imageId, response.contentLength);
      const blob = await streamToStaging(caller, this.deps, imageId, project, ticket, response.body, response.contentLength ?? 0);
      if (response.contentLength !== null && blob.size !== response.contentLength) {
        throw new EgressError('connection_failed', `The server announced ${response.contentLength} bytes but sent ${blob.size}.`);
      }
      await images.completeUpload(caller, imageId, ticket.run, { key: ticket.stagingKey, ...blob });
      log.info({ image_id: imageId, run: ticket.run, url: redact(response.url), bytes: blob.size, ms: Date.now() - started }, 'web-download staged');
      return null;
    } catch (error) {
      if (this.abort.signal.aborted) {
        // PIR is stopping: not the URL's fault. Back to queued, so the import can be tried again.
        await images.abortUpload(caller, imageId, ticket.run, 'PIR stopped during the web-download').catch(() => {});
        return null;
      }
      const { code, message } = describe(error, upload.maxImageSize);
      log.warn({ image_id: imageId, run: ticket.run, code, reason: message }, 'web-download failed');
      try {
        await images.failWebDownload(caller, imageId, ticket.run, code, `web-download of ${redact(uri)} failed: ${message}`);
      } catch (failError) {
        log.error({ image_id: imageId, err: failError }, 'could not record the web-download failure');
      }
      await quotas.settle(imageId, () => images.get(SYSTEM_CALLER, imageId).catch(() => null)).catch((e: unknown) => log.warn({ image_id: imageId, err: e }, 'quota settle failed'));
      return { code, message };
    }
  }
}

function describe(error: unknown, maxImageSize: number): { code: string; message: string } {
  if (error instanceof EgressError) return { code: error.code === 'too_large' ? 'image_too_large' : error.code, message: error.message };
  if (error instanceof SizeLimitError) return { code: 'image_too_large', message: tooLarge(maxImageSize).message };
  // Staging's own wait for the next bytes (PIR_UPLOAD_IDLE_SECONDS, as the egress client's) may end first.
  if (error instanceof SourceIdleError) return { code: 'timeout', message: `The server behind the URI sent nothing for ${error.idleMs / 1000} s (PIR_UPLOAD_IDLE_SECONDS).` };
  if (error instanceof PirError) return { code: error.code, message: error.message };
  return { code: 'download_failed', message: (error as Error).message };
}

/** The URL without its query (which may carry a signature) for messages and logs. */
function redact(uri: string): string {
  try {
    const url = new URL(uri);
    return `${url.origin}${url.pathname}${url.search ? '?…' : ''}`;
  } catch {
    return '(the URL)';
  }
}
