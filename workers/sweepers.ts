/**
 * Recovery: nothing stays stuck. The outbox sweeper relays events a crash left behind; the
 * stale sweeper resumes runs that stopped moving (a new run number, so the old jobs become
 * no-ops) and gives up on uploads whose receiving process went away.
 */
import type { Logger } from 'pino';
import type { ImageDoc } from '../schemas/image.js';
import { SYSTEM_CALLER } from '../core/caller.js';
import { kill, resumeImport } from '../core/image-entity.js';
import { Manifest } from '../core/manifest.js';
import type { ImageService } from '../core/image-service.js';
import { nextRunNumber } from '../core/pipeline-state.js';
import type { OutboxRelay } from '../core/outbox-relay.js';
import type { BlobStore, StageJob } from '../core/ports.js';
import { copiesOf } from '../core/image-stores.js';
import { imageIdOfKey, isPartialKey, removeStaging } from '../core/blob-keys.js';
import { repeatPaced, type PacedLoop } from '../infra/pacing.js';

/** A staging file untouched this long, of an image that no longer needs it, is an orphan. */
export const STAGING_GRACE_MS = 60_000;
/** How often the staging janitor looks for staging blobs older than STAGING_GRACE_MS that no image needs. */
export const STAGING_SWEEP_MS = 30_000;
/** Stored bytes written or promoted this recently are never removed, whatever the manifest says. */
export const STORE_GRACE_MS = 10 * 60_000;
/** Statuses whose image owns no stored bytes: what the store janitor may reclaim. */
const BYTES_UNOWNED = new Set(['deleted', 'killed']);

export interface SweeperSettings {
  stageDeadlineSeconds: number;
  uploadStallSeconds: number;
  /** How many times a stuck run is resumed before the image is killed. */
  maxResumes: number;
  outboxGraceMs: number;
  /**
   * An object store's multipart upload older than this that no live image owns is aborted by the
   * store janitor (PIR_MULTIPART_ABORT_AFTER_SECONDS; default an hour).
   */
  multipartMaxAgeMs?: number;
}

const MULTIPART_MAX_AGE_MS = 60 * 60_000;
/**
 * The share of the time a sweeper's passes may take: their queries scan the collection on
 * FerretDB's SQLite backend, so on a large catalog there they run less often than asked.
 */
const SWEEP_SHARE = 0.02;
/**
 * The longest wait between passes of the sweeps that recover work (leftover events, dead uploads,
 * stuck imports), however long a pass took: a pass slowed by a busy machine (seconds, during a
 * burst of uploads) would otherwise put the next one minutes away, and a dead api's upload would
 * answer 409 to its client's retries all that time.
 */
const RECOVERY_MAX_DELAY_MS = 30_000;

export class Sweepers {
  private loops: PacedLoop[] = [];

  constructor(
    private readonly manifest: Manifest,
    private readonly images: ImageService,
    private readonly relay: OutboxRelay,
    private readonly blobs: BlobStore,
    private readonly settings: SweeperSettings,
    private readonly log: Logger,
  ) {}

  /**
   * Runs the outbox sweeper, the stale-image sweeper, the staging janitor and the store janitor
   * (workers, and the single embedded process). Each is a loop of its own, paced by its own
   * passes: the staging janitor lists `staging/`, which on an object store holds every stored
   * image, and a long listing there must not space out the passes that give up dead uploads and
   * resume stuck imports. The store janitor lists the whole store, so it runs seldom.
   */
  start(outboxEveryMs: number, staleEveryMs: number, storeEveryMs: number): void {
    this.every(outboxEveryMs, () => this.relay.sweep(this.settings.outboxGraceMs), RECOVERY_MAX_DELAY_MS);
    this.every(staleEveryMs, () => this.sweepStale(), RECOVERY_MAX_DELAY_MS);
    this.every(STAGING_SWEEP_MS, () => this.removeOrphanStaging());
    this.every(storeEveryMs, () => this.removeOrphanBytes());
  }

  async stop(): Promise<void> {
    const loops = this.loops;
    this.loops = [];
    await Promise.all(loops.map((loop) => loop.stop()));
  }

  /** One pass over images that stopped moving. */
  async sweepStale(now = Date.now()): Promise<void> {
    const stalledUploads = await this.manifest.store.findStale(['saving', 'uploading'], new Date(now - this.settings.uploadStallSeconds * 1000).toISOString(), 200);
    for (const doc of stalledUploads) {
      // A resumable upload waits for its client to come back, until it expires.
      if (doc.upload && resumableWaits(doc, now)) continue;
      if (doc.upload) await this.images.abortUpload(SYSTEM_CALLER, doc.id, doc.upload.run, doc.upload.resumable ? 'the resumable upload expired' : 'the upload stopped arriving (its client or server went away)', { expired: doc.upload.resumable !== undefined });
    }
    const stuckRuns = await this.manifest.store.findStale(['importing'], new Date(now - this.settings.stageDeadlineSeconds * 1000).toISOString(), 200);
    for (const doc of stuckRuns) await this.resume(doc, 'its stage made no progress before the deadline');
  }

  /**
   * Staging files outlive their image's pipeline only when a process died between the manifest
   * write that ended it and the removal: remove those of images no longer receiving or importing.
   */
  async removeOrphanStaging(now = Date.now()): Promise<void> {
    const settledBefore = now - STAGING_GRACE_MS;
    const owners = new Map<string, ImageDoc | null>();
    for (const blob of await this.blobs.list('staging/')) {
      if (blob.modifiedAt > settledBefore) continue;
      const imageId = imageIdOfKey(blob.key);
      if (!owners.has(imageId)) owners.set(imageId, await this.manifest.get(imageId));
      const doc = owners.get(imageId)!;
      const working = doc !== null && (doc.upload !== null || doc.status === 'importing' || (doc.status === 'uploading' && doc.staging !== null));
      // An object store keeps a promoted image under its staging key: that blob is the image.
      const stored = doc !== null && !BYTES_UNOWNED.has(doc.status) && doc.blob_key === blob.key;
      if (!working && !stored) {
        await this.blobs.delete(blob.key);
        this.log.info({ image_id: imageId, key: blob.key }, 'removed an orphaned staging blob');
      }
    }
  }

  /**
   * The store janitor: removes stored bytes that belong to no live image — those of images
   * deleted (or killed) when the process died before removing them, or whose document is gone —
   * and copies left half-made by a promotion that died. A file is never touched within
   * STORE_GRACE_MS of being written or promoted, nor while its image is importing (promotion may
   * be renaming it into place), nor while its image is in any other status that may own bytes.
   */
  async removeOrphanBytes(now = Date.now(), graceMs = STORE_GRACE_MS): Promise<number> {
    let removed = 0;
    for (const blob of await this.blobs.list('images/')) {
      if (blob.modifiedAt > now - graceMs) continue;
      const file = { imageId: imageIdOfKey(blob.key), partial: isPartialKey(blob.key) };
      if (file.imageId === '') continue;
      if (!(await this.isOrphan(file))) continue;
      // Read again just before removing: the window for a change in between stays tiny.
      if (!(await this.isOrphan(file))) continue;
      await this.blobs.delete(blob.key);
      removed += 1;
      this.log.info({ image_id: file.imageId, key: blob.key, partial: file.partial }, 'store janitor removed bytes of no live image');
    }
    removed += await this.removeUnrecordedCopies(now, graceMs);
    await this.abortAbandonedUploads(now);
    return removed;
  }

  /**
   * Object stores: a multipart upload whose writer died (a process killed mid-upload, mid-copy or
   * mid-promotion) holds its parts forever, invisible to listings of objects; a copy retried
   * under the same key even completes beside it. Every store's unfinished uploads under
   * staging/ and images/ older than multipartMaxAgeMs are aborted unless a live image owns them:
   * a staging key while its upload run is receiving (a tus upload until it expires: its
   * multipart upload lives across PATCHes) or the image is importing; an images/ key while the
   * image is importing or being copied into that store. Returns how many were aborted.
   */
  async abortAbandonedUploads(now = Date.now()): Promise<number> {
    const maxAge = this.settings.multipartMaxAgeMs ?? MULTIPART_MAX_AGE_MS;
    let aborted = 0;
    for (const entry of this.images.stores.entries) {
      const store = entry.blobs;
      if (!store.unfinishedWrites || !store.abortUnfinishedWrite) continue;
      for (const prefix of ['staging/', 'images/']) {
        for (const write of await store.unfinishedWrites(prefix)) {
          if (write.startedAt > now - maxAge) continue;
          // Read the owner twice, as the janitor does, so a change in between cannot slip past.
          if (await this.uploadOwned(entry.id, write.key, now) || await this.uploadOwned(entry.id, write.key, now)) continue;
          await store.abortUnfinishedWrite(write);
          aborted += 1;
          this.log.info({ store: entry.id, key: write.key, started_at: new Date(write.startedAt).toISOString() }, 'store janitor aborted a multipart upload no live image owns');
        }
      }
    }
    return aborted;
  }

  private async uploadOwned(storeId: string, key: string, now: number): Promise<boolean> {
    const imageId = imageIdOfKey(key);
    if (imageId === '') return true; // not a key of PIR's layout: not ours to judge
    const doc = await this.manifest.get(imageId);
    if (!doc) return false;
    if (doc.status === 'importing') return true;
    if (key.startsWith('staging/')) {
      const run = Number(key.slice('staging/'.length).split('.')[1]);
      const upload = doc.upload;
      return upload !== null && upload.run === run && (!upload.resumable || Date.parse(upload.resumable.expires_at) > now);
    }
    return doc.store_import?.importing.includes(storeId) ?? false;
  }

  /**
   * The other stores (multi-store): a copy is kept while its image is importing (promotion or a
   * copy-image may be writing it) or records it; anything else under images/ there is removed
   * (a copy finished after its image was deleted, a copy deleted from the record but not the store).
   */
  private async removeUnrecordedCopies(now: number, graceMs: number): Promise<number> {
    const registry = this.images.stores;
    let removed = 0;
    for (const entry of registry.entries) {
      if (entry.blobs === this.blobs) continue;
      for (const blob of await entry.blobs.list('images/')) {
        if (blob.modifiedAt > now - graceMs) continue;
        const imageId = imageIdOfKey(blob.key);
        if (imageId === '') continue;
        const unrecorded = async () => {
          const doc = await this.manifest.get(imageId);
          if (!doc) return true;
          if (doc.status === 'importing' || doc.store_import?.importing.includes(entry.id)) return false;
          return !copiesOf(doc, registry.defaultId).some((c) => c.store === entry.id && c.key === blob.key);
        };
        if (!(await unrecorded()) || !(await unrecorded())) continue;
        await entry.blobs.delete(blob.key);
        removed += 1;
        this.log.info({ image_id: imageId, store: entry.id, key: blob.key }, 'store janitor removed a copy no image records');
      }
    }
    return removed;
  }

  private async isOrphan(file: { imageId: string; partial: boolean }): Promise<boolean> {
    const doc = await this.manifest.get(file.imageId);
    if (file.partial) return doc === null || doc.status !== 'importing';
    return doc === null || BYTES_UNOWNED.has(doc.status);
  }

  /**
   * After a restart of the single embedded process, nothing else can be working on an image:
   * abandoned uploads go back to queued and every import resumes at once.
   */
  async recoverAfterRestart(): Promise<void> {
    const longAgo = new Date(Date.now() + 1000).toISOString();
    for (const doc of await this.manifest.store.findStale(['saving', 'uploading'], longAgo, 100_000)) {
      // A resumable upload's staged bytes outlive the restart: its client resumes from them.
      if (doc.upload && resumableWaits(doc, Date.now())) continue;
      // A location registration is a durable job that runs again now; if it does not, the stall sweep returns it to queued.
      if (doc.upload?.kind === 'location') continue;
      // A resumable upload here has expired (one still waiting was passed over above).
      if (doc.upload) await this.images.abortUpload(SYSTEM_CALLER, doc.id, doc.upload.run, doc.upload.resumable ? 'the resumable upload expired' : 'PIR restarted while the data was arriving', { expired: doc.upload.resumable !== undefined });
    }
    for (const doc of await this.manifest.store.findStale(['importing'], longAgo, 100_000)) {
      await this.resume(doc, 'PIR restarted during the import', false);
    }
    await this.relay.sweep(0, 100_000);
    await this.removeOrphanBytes();
  }

  /** Starts the run again from its current stage, under a new run number. */
  /**
   * A stage job the queue dropped because it stalled too often (JobQueue.onStageJobStalledOut):
   * the import is resumed now rather than at its stage deadline; a resume counts towards
   * maxResumes, so an image that keeps killing its workers is killed in the end.
   */
  async resumeStalledOut(job: StageJob): Promise<void> {
    const doc = await this.manifest.get(job.imageId);
    if (doc?.status !== 'importing' || doc.pipeline?.run !== job.run) return;
    await this.resume(doc, `its ${job.stage} job stalled too often: the workers running it died or froze`);
  }

  private async resume(stuck: ImageDoc, why: string, countsAsResume = true): Promise<void> {
    const { doc, changed } = await this.manifest.update(stuck.id, (draft) => {
      if (draft.status !== 'importing' || !draft.pipeline || draft.revision !== stuck.revision) return null;
      const pipeline = draft.pipeline;
      if (countsAsResume && pipeline.resumes >= this.settings.maxResumes) {
        return kill(draft, pipeline.stage, 'deadline_exceeded', `The import stopped making progress (${why}) and was resumed ${pipeline.resumes} times without success. Upload the image again; if this repeats, tell the operator.`);
      }
      if (countsAsResume) pipeline.resumes += 1;
      // A run whose stages all finished but which never became active ends here, with its image.active event.
      return resumeImport(draft, nextRunNumber(draft), this.settings.stageDeadlineSeconds);
    });
    if (!changed) return;
    if (doc.status === 'killed') await removeStaging(this.blobs, doc.id);
    this.log.warn({ image_id: doc.id, status: doc.status, run: doc.pipeline?.run, why }, doc.status === 'killed' ? 'stuck import killed' : 'stuck import resumed');
  }

  /** Every `ms`, or less often when a pass takes more than SWEEP_SHARE of the time (infra/pacing.ts), but at least every `maxDelayMs`. */
  private every(ms: number, task: () => Promise<unknown>, maxDelayMs = Infinity): void {
    this.loops.push(repeatPaced(task, ms, SWEEP_SHARE, (error) => this.log.warn({ err: error }, 'sweeper pass failed'), maxDelayMs));
  }
}

/** A resumable (tus) upload not yet expired: neither stalled nor abandoned by a restart. */
function resumableWaits(doc: ImageDoc, now: number): boolean {
  const resumable = doc.upload?.resumable;
  return resumable !== undefined && Date.parse(resumable.expires_at) > now;
}
