/**
 * Glance's web-download import: POST …/import {"method": {"name": "web-download", "uri": …}}.
 * The URL is checked at once (scheme, credentials, port, address literals: 400), the image is
 * claimed (`uploading`), and the request answers 202; the download then runs in this process,
 * in the background, through the SSRF-safe egress client, into staging on the same streaming
 * and hashing path as an upload, with the upload heartbeat from the first request on (so if this
 * process dies, the sweeper returns the image to `queued` after PIR_UPLOAD_STALL_SECONDS, its task
 * failed with import_interrupted; and a download whose image is deleted or swept stops). When all bytes are in,
 * the normal pipeline runs (importing → active). A failed download kills the image with
 * `pir_failure = {stage: 'import', code, message}`.
 *
 * A glance-download (ingest/glance-download.ts) runs on this same path: the same claim, quota,
 * staging, heartbeat and pipeline; only where the bytes come from differs, and its failure puts
 * the image back in `queued`, as Glance's revert.
 */
import { inBackgroundSpan, type RecordedFailure } from '../core/trace-context.js';
import type { StoreTargets, UploadTicket } from '../core/image-service.js';
import type { Logger } from 'pino';
import { SYSTEM_CALLER, type Caller } from '../core/caller.js';
import { adoptRemote, requireWebDownloadable, type DownloadMethod, type RemoteAdoption } from '../core/image-entity.js';
import type { ImageDoc } from '../schemas/image.js';
import { PirError, badRequest } from '../core/errors.js';
import { EgressError, type EgressClient, type EgressResponse } from '../infra/egress/egress-client.js';
import { checkGlanceDownloadMethod, GlanceDownloadError, openRemoteImage, type GlanceDownloadRequest, type ImageEndpointFinder, type RemoteGlanceDeps } from './glance-download.js';
import { SizeLimitError, SourceIdleError } from './hashing/index.js';
import { streamToStaging, tooLarge, type IngestDeps } from './receive-upload.js';

export interface WebDownloadDeps extends IngestDeps {
  egress: EgressClient;
  log: Logger;
  /** glance-download: the catalog to find other regions' Glance in, and the properties copied; absent: not offered. */
  glance?: { endpoints: ImageEndpointFinder; properties: readonly string[]; recordTimeoutMs?: number } | null;
}

/** Where a download's bytes come from, opened; and, for a glance-download, what the image takes when they are in. */
interface OpenedSource {
  response: EgressResponse;
  /** The byte count the source promised (besides Content-Length). */
  expectedSize?: number;
  claimed?: ImageDoc['expected'];
  adoption?: RemoteAdoption;
}

interface DownloadSource {
  method: DownloadMethod;
  /** The failure message's start: what was being downloaded from where. */
  describe: string;
  open(signal: AbortSignal): Promise<OpenedSource>;
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
    const doc = await this.deps.images.get(caller, imageId);
    // As Glance: the image's status and formats (409) before the URI (400); the claim checks them again.
    requireWebDownloadable(doc);
    this.checkUri(uri);
    const source: DownloadSource = {
      method: 'web-download',
      describe: `web-download of ${redact(uri)}`,
      open: (signal) => this.deps.egress.get(uri, { maxBytes: this.deps.upload.maxImageSize, signal }).then((response) => ({ response })),
    };
    await this.claimAndRun(caller, doc, source, targets, importReq);
  }

  /** Whether glance-download is offered (it needs a Keystone catalog). */
  get glanceDownloadOffered(): boolean {
    return Boolean(this.deps.glance);
  }

  /**
   * POST …/import with glance-download: Glance's checks (the image's status and formats, 409,
   * then the method's fields, 400), the claim, and the download from the remote Glance in the
   * background with `token`, the caller's own.
   */
  async startGlanceDownload(caller: Caller, token: string, imageId: string, method: Record<string, unknown>, targets?: StoreTargets, importReq?: Record<string, unknown>): Promise<void> {
    const glance = this.deps.glance;
    if (!glance) throw badRequest('unsupported_import_method', 'glance-download needs PIR behind Keystone (its catalog names the other regions\' Glance).');
    const doc = await this.deps.images.get(caller, imageId);
    requireWebDownloadable(doc, 'glance-download');
    const request: GlanceDownloadRequest = checkGlanceDownloadMethod(method);
    // Glance's task input has the interface filled in when the call left it out.
    const input = importReq && typeof importReq.method === 'object' && importReq.method !== null
      ? { ...importReq, method: { ...importReq.method, glance_service_interface: request.serviceInterface } } : importReq;
    const deps: RemoteGlanceDeps = {
      egress: this.deps.egress, endpoints: glance.endpoints, properties: glance.properties, maxImageSize: this.deps.upload.maxImageSize,
      ...(glance.recordTimeoutMs ? { recordTimeoutMs: glance.recordTimeoutMs } : {}),
      // What the remote record gives must fit this image before its data is read (checked again when the bytes are in).
      accept: (remote) => {
        try {
          adoptRemote(structuredClone(doc), remote.adoption);
        } catch (error) {
          if (error instanceof PirError) throw new GlanceDownloadError(error.code, `The remote image's properties cannot be copied to this image: ${error.message}`);
          throw error;
        }
      },
    };
    const source: DownloadSource = {
      method: 'glance-download',
      describe: `glance-download of image ${request.imageId} from region '${request.region.slice(0, 64)}'`,
      open: async (signal) => {
        const { remote, response } = await openRemoteImage(deps, token, request, signal);
        return { response, expectedSize: remote.size, claimed: remote.claimed, adoption: remote.adoption };
      },
    };
    await this.claimAndRun(caller, doc, source, targets, input);
  }

  /** Claims the image (`uploading`) and starts the download, which goes on after this returns. */
  private async claimAndRun(caller: Caller, doc: ImageDoc, source: DownloadSource, targets?: StoreTargets, importReq?: Record<string, unknown>): Promise<void> {
    const { images, quotas } = this.deps;
    const imageId = doc.id;
    const project = quotas.enabled ? doc.owner : null;
    const ticket = await images.beginWebDownload(caller, imageId, targets, importReq, source.method);
    try {
      await quotas.reserveFlight(project, imageId, 0);
    } catch (error) {
      await images.abortUpload(caller, imageId, ticket.run, (error as Error).message, { neverStarted: true });
      await this.settleQuota(imageId).catch(() => {});
      throw error;
    }
    const run = this.download(caller, imageId, project, ticket, source).finally(() => this.running.delete(run));
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
  private download(caller: Caller, imageId: string, project: string | null, ticket: UploadTicket, source: DownloadSource): Promise<void> {
    return inBackgroundSpan(source.method, { 'pir.image.id': imageId, 'pir.run': ticket.run }, () => this.downloadNow(caller, imageId, project, ticket, source));
  }

  /** Null when staged (or stopped by PIR); else the failure recorded on the image. */
  private async downloadNow(caller: Caller, imageId: string, project: string | null, ticket: UploadTicket, source: DownloadSource): Promise<RecordedFailure | null> {
    const { images, quotas, upload, log } = this.deps;
    const started = Date.now();
    // The heartbeat covers the whole download, from the first request (a slow catalog or remote
    // record must not look abandoned to the stall sweep), and stops it once the run no longer
    // holds the image: deleted, or given back to queued by the sweep (nothing would keep its bytes).
    const lost = new AbortController();
    const heartbeat = setInterval(() => {
      images.heartbeat(caller, imageId, ticket.run).then((held) => { if (!held) lost.abort(); }, (error: unknown) => {
        if (error instanceof PirError && error.kind === 'not_found') lost.abort();
      });
    }, upload.heartbeatMs);
    heartbeat.unref();
    try {
      const opened = await source.open(AbortSignal.any([this.abort.signal, lost.signal]));
      const { response } = opened;
      const announced = response.contentLength ?? opened.expectedSize ?? null;
      if (announced !== null) await quotas.reserveFlight(project, imageId, announced);
      // The remote image's format decides whether an empty body is refused, not the one it replaces.
      const staging = opened.adoption ? { ...ticket, diskFormat: opened.adoption.disk_format } : ticket;
      const blob = await streamToStaging(caller, this.deps, imageId, project, staging, response.body, announced ?? 0, { heartbeat: false });
      if (response.contentLength !== null && blob.size !== response.contentLength) {
        throw new EgressError('connection_failed', `The server announced ${response.contentLength} bytes but sent ${blob.size}.`);
      }
      // Glance's check: the data is as large as the remote image says.
      if (opened.expectedSize !== undefined && blob.size !== opened.expectedSize) {
        throw new GlanceDownloadError('remote_size_mismatch', `The remote image is ${opened.expectedSize} bytes but ${blob.size} arrived.`);
      }
      await images.completeUpload(caller, imageId, ticket.run, { key: ticket.stagingKey, ...blob }, opened.claimed ?? {}, opened.adoption);
      log.info({ image_id: imageId, run: ticket.run, method: source.method, url: redact(response.url), bytes: blob.size, ms: Date.now() - started }, `${source.method} staged`);
      return null;
    } catch (error) {
      if (this.abort.signal.aborted) {
        // PIR is stopping: not the source's fault. Back to queued, so the import can be tried again.
        await images.abortUpload(caller, imageId, ticket.run, `PIR stopped during the ${source.method}`).catch(() => {});
        return null;
      }
      if (lost.signal.aborted || await this.claimLost(imageId, ticket.run, error)) {
        // An ordinary delete (or the stall sweep) ended the run: nothing to record, only this run's staging to drop.
        log.info({ image_id: imageId, run: ticket.run, method: source.method }, `${source.method} stopped: the image was deleted or its import ended meanwhile`);
        await images.abortUpload(caller, imageId, ticket.run, `the image was deleted or its ${source.method} ended meanwhile`).catch(() => {});
        await this.settleQuota(imageId).catch(() => {});
        return null;
      }
      const { code, message } = describe(error, upload.maxImageSize);
      log.warn({ image_id: imageId, run: ticket.run, method: source.method, code, reason: message }, `${source.method} failed`);
      try {
        const reason = `${source.describe} failed: ${message}`;
        if (source.method === 'glance-download') await images.failGlanceDownload(caller, imageId, ticket.run, code, reason);
        else await images.failWebDownload(caller, imageId, ticket.run, code, reason);
      } catch (failError) {
        log.error({ image_id: imageId, err: failError }, `could not record the ${source.method} failure`);
      }
      await this.settleQuota(imageId).catch((e: unknown) => log.warn({ image_id: imageId, err: e }, 'quota settle failed'));
      return { code, message };
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** Sets the image's quota holds from its state now (the in-flight hold given back once it no longer receives). */
  private settleQuota(imageId: string): Promise<void> {
    return this.deps.quotas.settle(imageId, () => this.deps.images.get(SYSTEM_CALLER, imageId).catch(() => null));
  }

  /** Whether the run no longer holds the image (deleted, purged, or claimed by another run). */
  private async claimLost(imageId: string, run: number, error: unknown): Promise<boolean> {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === 'image_deleted' || code === 'upload_superseded') return true;
    const doc = await this.deps.images.get(SYSTEM_CALLER, imageId).catch((e: unknown) => (e instanceof PirError && e.kind === 'not_found' ? null : undefined));
    if (doc === undefined) return false;
    return doc === null || doc.status === 'deleted' || doc.upload?.run !== run;
  }
}

function describe(error: unknown, maxImageSize: number): { code: string; message: string } {
  if (error instanceof EgressError) return { code: error.code === 'too_large' ? 'image_too_large' : error.code, message: error.message };
  if (error instanceof SizeLimitError) return { code: 'image_too_large', message: tooLarge(maxImageSize).message };
  // Staging's own wait for the next bytes (PIR_UPLOAD_IDLE_SECONDS, as the egress client's) may end first.
  if (error instanceof SourceIdleError) return { code: 'timeout', message: `The server behind the URI sent nothing for ${error.idleMs / 1000} s (PIR_UPLOAD_IDLE_SECONDS).` };
  if (error instanceof GlanceDownloadError) return { code: error.code, message: error.message };
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
