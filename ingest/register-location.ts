/**
 * Registering bytes that already exist (Glance's locations: POST /v2/images/{id}/locations and
 * PATCH add /locations/-): the request is checked and the image claimed (`uploading`) at once;
 * then, in this process, in the background, the object is probed (size, ETag, Last-Modified:
 * the fingerprint every later read is checked against), read ONCE from start to end for md5 and
 * sha512 (never written anywhere), checked against validation_data, and handed to the normal
 * pipeline (inspect by bounded ranges, checksum, promote: which keeps it where it is). A failure
 * kills the image with a reason that never repeats the URL (images are seen by more projects than
 * may see their location).
 *
 * With a job queue (PIR's processes) the reading is a durable `register-location` job: any
 * worker runs it, and if that process dies (or stops) the job runs again — BullMQ hands a dead
 * worker's job to another, embedded mode resumes it after the restart — from the probe on, as
 * long as the image still waits for that registration. While the bytes are read the upload
 * heartbeat runs; a registration no process resumes within PIR_UPLOAD_STALL_SECONDS is returned
 * to `queued` by the sweeper (and may be registered again). Without a queue (tools, tests) it runs
 * in the process that accepted it.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { SYSTEM_CALLER, type Caller } from '../core/caller.js';
import { PirError, badRequest } from '../core/errors.js';
import {
  externalKey, parseLocation, parseLocationMetadata, parseValidationData, type LocationSettings, type ParsedLocation,
} from '../core/external-location.js';
import type { ImageService } from '../core/image-service.js';
import { currentTraceparent, inBackgroundSpan, type RecordedFailure } from '../core/trace-context.js';
import { exponentialBackoff, type JobKind } from '../core/jobs.js';
import type { JobQueue } from '../core/ports.js';
import { EgressError, type EgressClient } from '../infra/egress/egress-client.js';
import { LocationUnreadableError } from '../infra/storage/location-errors.js';
import type { LocationReader } from '../infra/storage/location-reader.js';
import type { ExternalLocation } from '../schemas/image.js';
import { tooLarge, type UploadSettings } from './receive-upload.js';

export interface LocationDeps {
  images: ImageService;
  reader: LocationReader;
  egress: EgressClient;
  settings: LocationSettings;
  upload: UploadSettings;
  log: Logger;
  /** Where registrations run as durable jobs; null: in this process. */
  queue?: Pick<JobQueue, 'enqueue'> | null;
}

/** One registration's reading: the image, the run beginRegistration claimed, and who asked. */
export interface RegisterLocationJob {
  image_id: string;
  run: number;
  caller: Caller;
  /** The POST's (or PATCH's) trace, which the job's span continues. */
  traceparent?: string;
}

/**
 * The job is retried only when it did not finish: its process died or stopped (a failure of the
 * location itself kills the image and ends the job). Attempts are spaced so a restart fits in.
 */
export const REGISTER_LOCATION_KIND: JobKind<RegisterLocationJob> = {
  name: 'register-location',
  durable: true,
  retry: { attempts: 5, delayMs: exponentialBackoff(2000, 60_000) },
};

/** Thrown when the process stops mid-read: the job is tried again (by another process, or after the restart). */
class RegistrationInterrupted extends Error {}

/** What a client sends: Glance's {url, metadata?, validation_data?}. */
export interface LocationRequest {
  url?: unknown;
  metadata?: unknown;
  validation_data?: unknown;
}

export class LocationRegistrations {
  private readonly running = new Set<Promise<void>>();
  private readonly abort = new AbortController();

  constructor(private readonly deps: LocationDeps) {}

  get settings(): LocationSettings {
    return this.deps.settings;
  }

  /**
   * Checks the request, claims the image; the bytes are read after this returns. `form`: the
   * locations API (Glance's add_image_location: service users too) or the older PATCH add
   * /locations/- (set_image_location: the owner's members and admins).
   */
  async start(caller: Caller, imageId: string, request: LocationRequest, form: 'api' | 'patch' = 'api'): Promise<void> {
    const parsed = this.check(request.url);
    const validation = parseValidationData(request.validation_data);
    const metadata = parseLocationMetadata(request.metadata);
    const location: ExternalLocation = {
      url: request.url as string, metadata, validation_data: validation, fingerprint: null,
      added_at: new Date().toISOString(), added_by: { project_id: caller.project_id, user_id: caller.user_id },
    };
    const { run } = await this.deps.images.beginRegistration(caller, imageId, location, parsed.kind, form === 'api' ? 'add_image_location' : 'modify_image');
    const queue = this.deps.queue;
    if (queue) {
      const who: Caller = { project_id: caller.project_id, user_id: caller.user_id, roles: [...caller.roles], ...(caller.request_id ? { request_id: caller.request_id } : {}) };
      const traceparent = currentTraceparent();
      await queue.enqueue(REGISTER_LOCATION_KIND, `${imageId}.register.${run}`, { image_id: imageId, run, caller: who, ...(traceparent ? { traceparent } : {}) }).catch(async (error: unknown) => {
        await this.deps.images.abortUpload(caller, imageId, run, 'the registration could not be queued').catch(() => {});
        throw error;
      });
      return;
    }
    const job = this.register(caller, imageId, run, location).catch(() => {}).finally(() => this.running.delete(job));
    this.running.add(job);
  }

  /**
   * The register-location job: reads the location if the image still waits for this run's
   * registration (a repeated or late job finds it done, superseded or deleted, and does nothing).
   */
  handle = async (job: RegisterLocationJob): Promise<void> => {
    // Read as the system: the caller was authorized when the registration began, and may hold no
    // reader role at all (a service user's, Glance's add_image_location).
    const doc = await this.deps.images.get(SYSTEM_CALLER, job.image_id).catch(() => null);
    const upload = doc?.upload;
    if (!doc || !doc.location || doc.status !== 'uploading' || upload?.run !== job.run || upload.kind !== 'location') return;
    const run = this.register(job.caller, job.image_id, job.run, doc.location, job.traceparent);
    this.running.add(run);
    try {
      await run;
    } finally {
      this.running.delete(run);
    }
  };

  /** Stops running registrations: queued ones are tried again later; in-process ones go back to `queued`. */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.running]);
  }

  /** The URL's kind; for http(s), the egress checks that need no DNS (400 at once, as web-download). */
  private check(url: unknown): ParsedLocation {
    const parsed = parseLocation(url, this.deps.settings);
    if (parsed.kind === 'http') {
      try {
        this.deps.egress.check(parsed.url);
      } catch (error) {
        if (error instanceof EgressError) throw badRequest(error.code, `The location does not pass filtering: ${error.message}`);
        throw error;
      }
    }
    return parsed;
  }

  /** The reading, in its own span of the request's trace (its failure an error status with the code, as a web-download's). */
  private register(caller: Caller, imageId: string, run: number, location: ExternalLocation, traceparent?: string): Promise<void> {
    return inBackgroundSpan('register-location', { 'pir.image.id': imageId, 'pir.run': run }, () => this.registerNow(caller, imageId, run, location), traceparent);
  }

  /** Null when registered (or stopped by PIR, in-process); else the failure recorded on the image. */
  private async registerNow(caller: Caller, imageId: string, run: number, location: ExternalLocation): Promise<RecordedFailure | null> {
    const { images, reader, upload, settings, log } = this.deps;
    const started = Date.now();
    const heartbeat = setInterval(() => { images.heartbeat(caller, imageId, run).catch(() => {}); }, upload.heartbeatMs);
    try {
      // At once too: a job resumed after a crash shows it is alive before the stall sweeper looks.
      await images.heartbeat(caller, imageId, run);
      const fingerprint = await reader.probe(location.url, this.abort.signal);
      if (fingerprint.size > upload.maxImageSize) throw tooLarge(upload.maxImageSize);
      if (fingerprint.size < settings.minSize) {
        throw new LocationUnreadableError('location_too_small', `The object at the location is ${fingerprint.size} bytes; a disk image has at least ${settings.minSize}.`);
      }
      await images.recordFingerprint(imageId, run, fingerprint);
      const ref = { url: location.url, fingerprint };
      // One streamed pass for the digests; the bytes go nowhere.
      const md5 = createHash('md5');
      const sha512 = createHash('sha512');
      let size = 0;
      const body = await reader.read(ref, undefined, this.abort.signal);
      for await (const chunk of body) {
        md5.update(chunk as Buffer);
        sha512.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      const digests = { md5: md5.digest('hex'), sha512: sha512.digest('hex') };
      const { checksum, os_hash_value } = location.validation_data;
      if (checksum && checksum !== digests.md5) {
        throw new LocationUnreadableError('location_validation_failed', `The bytes at the location have md5 ${digests.md5}, but validation_data.checksum said ${checksum}.`);
      }
      if (os_hash_value && os_hash_value !== digests.sha512) {
        throw new LocationUnreadableError('location_validation_failed', `The bytes at the location have sha512 ${digests.sha512}, but validation_data.os_hash_value said ${os_hash_value}.`);
      }
      const claimed = { ...(checksum ? { md5: checksum, md5_from: 'validation_data.checksum' } : {}), ...(os_hash_value ? { sha512: os_hash_value, sha512_from: 'validation_data.os_hash_value' } : {}) };
      await images.completeUpload(caller, imageId, run, { key: externalKey(ref), size, ...digests }, claimed);
      log.info({ image_id: imageId, run, location: redact(location.url), bytes: size, ms: Date.now() - started }, 'location registered; pipeline started');
      return null;
    } catch (error) {
      if (this.abort.signal.aborted) {
        if (this.deps.queue) throw new RegistrationInterrupted('PIR stopped while registering the location; the job runs again');
        await images.abortUpload(caller, imageId, run, 'PIR stopped while registering the location').catch(() => {});
        return null;
      }
      const { code, message } = describe(error);
      log.warn({ image_id: imageId, run, location: redact(location.url), code, reason: message }, 'location registration failed');
      await images.failWebDownload(caller, imageId, run, code, `Registering the location failed: ${message}`)
        .catch((e: unknown) => log.error({ image_id: imageId, err: e }, 'could not record the registration failure'));
      return { code, message };
    } finally {
      clearInterval(heartbeat);
    }
  }
}

/** A failure's code and message; messages name no part of the URL (LocationUnreadableError scrubs them). */
function describe(error: unknown): { code: string; message: string } {
  if (error instanceof PirError) return { code: error.code, message: error.message };
  return { code: 'location_unreadable', message: 'The location could not be read.' };
}

/** For logs (the operator's): the URL without its query, which may carry a signature. */
export function redact(url: string): string {
  if (url.startsWith('s3://')) return url;
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return '(unparseable URL)';
  }
}
