/**
 * Multi-store operations on an active image (Glance's copy-image import method and
 * DELETE /v2/stores/{store_id}/{image_id}). A copy runs as a durable `copy-image` job, one per
 * target store, so a crash or restart resumes it; each copy streams from a store holding the
 * image and is kept only if it matches the image's size and os_hash_value. The same jobs place
 * a lenient import's remaining stores once the image is active (continueImport).
 *
 * Failure, as Glance: with all_stores_must_succeed false a store that fails for good is listed
 * in os_glance_failed_import and the others stand; with true, the copies this copy-image made
 * are removed again (Glance's revert of the copy task), so the image is left as it was.
 */
import type { Logger } from 'pino';
import { requestedBy, type Caller } from './caller.js';
import { fail } from './error-catalog.js';
import { conflict } from './errors.js';
import { event } from './events.js';
import { copiesOf, copyKey, copyVerified, readingOrder } from './image-stores.js';
import { exponentialBackoff, type JobKind } from './jobs.js';
import type { Manifest } from './manifest.js';
import { nextRunNumber } from './pipeline-state.js';
import { newestWithin } from './task-history.js';
import { enforce, requireVisible } from './policy.js';
import type { JobContext, JobQueue } from './ports.js';
import type { StoreRegistry } from './store-registry.js';
import type { CopyTask, ImageDoc, StoredCopy } from '../schemas/image.js';
import type { PirEvent } from '../schemas/events.js';

export interface CopyImageJob {
  image_id: string;
  store: string;
  /**
   * The copy-image's task run (StoreImport.task); absent for a lenient import's placement. A job
   * acts only on the placement it was made for: a late duplicate of an earlier copy-image's job
   * must not fail or revert the next copy-image of the same store.
   */
  task?: number;
}

/** Whether the image is still placing `store` for this job (the same copy-image, or the same import). */
function placing(doc: ImageDoc, job: CopyImageJob): boolean {
  const plan = doc.store_import;
  return Boolean(plan?.importing.includes(job.store) && plan.task === job.task);
}

/** One job per image and target store; retried with backoff (1 s, 2 s, 4 s … capped at a minute). */
export const COPY_IMAGE_KIND: JobKind<CopyImageJob> = {
  name: 'copy-image',
  durable: true,
  retry: { attempts: 5, delayMs: exponentialBackoff(1000, 60_000) },
};

const HOLDS_BYTES = new Set(['active', 'deactivated']);
/** The image.updated change a copy-image records (Glance's field): its event starts the jobs. */
const IMPORTING_FIELD = 'os_glance_importing_to_stores';

/**
 * Events after which stores wait for their copy-image jobs: a copy-image recorded
 * (image.updated of os_glance_importing_to_stores) or a lenient import active in its first store.
 * Written in the same manifest write as the stores they name, and relayed at least once, so the
 * jobs are enqueued even if the process that wrote it dies right after (workers/dispatcher.ts).
 */
export function startsCopies(e: PirEvent): boolean {
  return e.type === 'image.active' || (e.type === 'image.updated' && (e.data as { changes: string[] }).changes.includes(IMPORTING_FIELD));
}

/** One job per image, store and starting event: a repeated event (or the api's direct enqueue) adds none. */
const copyJobId = (imageId: string, store: string, eventId: string) => `${imageId}.copy.${store}.${eventId}`;

/** Copy tasks an image keeps (Glance keeps each for task_time_to_live): the newest, and any still running. */
const KEPT_COPY_TASKS = 20;

/** Room for the copy task about to be added: the newest, within KEPT_TASKS_BYTES, and every running one. */
function keptCopyTasks(tasks: CopyTask[]): CopyTask[] {
  return newestWithin(tasks, KEPT_COPY_TASKS - 1, (t) => t.status === 'processing');
}

/**
 * Ends the copy-image's task once no store is left importing, in the write that empties the list.
 * As Glance: a failure only when a store that had to succeed failed (its flow reverts and fails the
 * task); with all_stores_must_succeed false the image stays active and the task succeeds, the
 * stores that failed being listed in os_glance_failed_import.
 */
function settleCopyTask(draft: ImageDoc, why?: string): void {
  const plan = draft.store_import;
  if (!plan || plan.importing.length > 0 || plan.task === undefined) return;
  const task = draft.copy_tasks?.find((t) => t.run === plan.task);
  if (!task || task.status !== 'processing') return;
  const backend = (task.requested.input?.backend ?? []) as string[];
  const lost = backend.filter((s) => plan.failed.includes(s));
  const failed = plan.must_succeed && lost.length > 0;
  task.status = failed ? 'failure' : 'success';
  task.message = failed ? (why ?? `copy to store${lost.length > 1 ? 's' : ''} ${lost.map((s) => `'${s}'`).join(', ')} failed for good.`) : '';
  task.updated_at = new Date().toISOString();
}

export class StoreOperations {
  constructor(
    private readonly manifest: Manifest,
    private readonly stores: StoreRegistry,
    /** Null: this process cannot start copies (copy-image is then not offered). */
    private readonly queue: Pick<JobQueue, 'enqueue'> | null,
    private readonly log: Logger,
  ) {}

  get canCopy(): boolean {
    return this.queue !== null;
  }

  /**
   * copy-image: marks the stores as importing (os_glance_importing_to_stores) and enqueues a
   * copy job for each. Returns the stores being copied to. As Glance's import_image: while a
   * placement runs, 409 import_in_progress (its import lock); with `allStores` the stores already
   * holding the image are left out, and if none is left nothing is done (returns []); stores named
   * one by one must not hold it yet (400 already_in_stores).
   */
  async copyImage(caller: Caller, id: string, targets: string[], mustSucceed: boolean, allStores = false, importReq: Record<string, unknown> = { method: { name: 'copy-image' } }): Promise<string[]> {
    const queue = this.queue;
    if (!queue) throw new Error('copy-image needs a job queue');
    const def = this.stores.defaultId;
    let wanted: string[] = [];
    const { doc } = await this.manifest.update(id, (draft) => {
      requireVisible(caller, draft, id);
      enforce(caller, 'copy_image', { owner: draft.owner });
      if (draft.status !== 'active') {
        throw conflict('invalid_status', `Image ${id} is ${draft.status}; copy-image copies active images only.`);
      }
      const held = new Set(copiesOf(draft, def).map((c) => c.store));
      const busy = draft.store_import?.importing ?? [];
      // One placement at a time (Glance's import lock): a failure then undoes exactly its own copies.
      if (busy.length > 0) {
        throw fail('import_in_progress', `Image ${id} is still being placed in ${busy.join(', ')}; copy it when os_glance_importing_to_stores is empty.`);
      }
      const present = targets.filter((s) => held.has(s));
      if (!allStores && present.length > 0) {
        throw fail('already_in_stores', `Image ${id} is already present at store '${present[0]}'; name only stores that do not hold it (it is in ${[...held].join(', ')}).`);
      }
      wanted = targets.filter((s) => !held.has(s));
      // all_stores and every store holds it: Glance ends the copy workflow there, as a success.
      if (wanted.length === 0) return null;
      // From now on the record is explicit, whatever the document held before.
      draft.stores = copiesOf(draft, def).map((c) => ({ ...c }));
      // Its task, in the same write (Glance's api_image_import task; backend: the stores it copies to).
      const run = nextRunNumber(draft);
      const now = new Date().toISOString();
      const requested = requestedBy(caller, { import_req: importReq, backend: wanted });
      draft.copy_tasks = [...keptCopyTasks(draft.copy_tasks ?? []), { run, status: 'processing', requested, started_at: now, updated_at: now, message: '' }];
      draft.store_import = {
        importing: wanted,
        failed: (draft.store_import?.failed ?? []).filter((s) => !wanted.includes(s)),
        must_succeed: mustSucceed,
        copied: [],
        task: run,
      };
      return [event('image.updated', { changes: [IMPORTING_FIELD] })];
    });
    if (wanted.length === 0) return wanted;
    // Enqueued here at once; the event (the same job ids) enqueues them if this process dies first.
    const started = [...doc.outbox].reverse().find((e) => e.type === 'image.updated');
    if (started) {
      const task = doc.store_import?.task;
      for (const store of wanted) await queue.enqueue(COPY_IMAGE_KIND, copyJobId(id, store, started.id), { image_id: id, store, ...(task !== undefined ? { task } : {}) });
    }
    return wanted;
  }

  /**
   * One copy-image job per store still importing, for an event of startsCopies(): a copy-image
   * recorded, or a lenient import active in its first store (workers/stages/promote.stage.ts).
   * Events come at least once; the job ids are deterministic, so a repeat enqueues nothing new.
   */
  async continueImport(imageId: string, eventId: string): Promise<string[]> {
    const queue = this.queue;
    if (!queue) return [];
    const doc = await this.manifest.get(imageId);
    if (!doc || !HOLDS_BYTES.has(doc.status)) return [];
    const stores = doc.store_import?.importing ?? [];
    const task = doc.store_import?.task;
    for (const store of stores) await queue.enqueue(COPY_IMAGE_KIND, copyJobId(imageId, store, eventId), { image_id: imageId, store, ...(task !== undefined ? { task } : {}) });
    if (stores.length) this.log.debug({ image_id: imageId, stores }, 'copy-image jobs enqueued for the stores still importing');
    return stores;
  }

  /** The copy-image job: copy, verify, record; on the last failed attempt the store is listed as failed. */
  handle = async (job: CopyImageJob, ctx: JobContext): Promise<void> => {
    const { image_id: id, store } = job;
    const doc = await this.manifest.get(id);
    if (!doc || !placing(doc, job)) return; // finished (or another placement's now), or the image is gone
    if (!HOLDS_BYTES.has(doc.status) || !this.stores.has(store) || doc.size === null || !doc.os_hash_value) {
      await this.finish(job, null);
      return;
    }
    const key = copyKey(id);
    try {
      await this.copyFromAnyCopy(doc, store, key);
    } catch (error) {
      const last = ctx.attempt >= ctx.maxAttempts;
      this.log[last ? 'error' : 'warn']({ image_id: id, store, err: error, attempt: ctx.attempt }, last ? 'copy-image failed for good' : 'copy-image failed; will retry');
      if (!last) throw error;
      await this.failed(doc, job);
      return;
    }
    const after = await this.finish(job, { store, key, at: new Date().toISOString() });
    // Deleted (or the copy dropped) while it was being written: no bytes may stay behind.
    if (!after || !copiesOf(after, this.stores.defaultId).some((c) => c.store === store)) await this.stores.get(store).delete(key);
    else this.log.info({ image_id: id, store }, 'image copied into store');
  };

  /**
   * A copy-image job the queue gave up (its workers died while it ran, more often than the queue
   * retries that): the store is recorded as failed, as after a last attempt, so the image does not
   * stay "importing" into it for good and a new copy-image can be asked for.
   */
  abandoned = async (job: CopyImageJob): Promise<void> => {
    const doc = await this.manifest.get(job.image_id);
    if (!doc || !placing(doc, job)) return;
    this.log.error({ image_id: job.image_id, store: job.store }, 'copy-image given up: the workers running it died or froze; the store is recorded as failed');
    await this.failed(doc, job);
  };

  /** A copy that will not be made: reverted (all stores had to succeed and one did) or listed as failed. */
  private async failed(doc: ImageDoc, job: CopyImageJob): Promise<void> {
    if (doc.store_import?.must_succeed && doc.store_import.copied) await this.revert(job);
    else await this.finish(job, null);
  }

  /** Streams from the first store that still holds a whole copy (default store first). */
  private async copyFromAnyCopy(doc: ImageDoc, store: string, key: string): Promise<void> {
    const expected = { size: doc.size!, sha512: doc.os_hash_value! };
    let lastError: unknown = new Error('no store holds a copy');
    for (const copy of readingOrder(copiesOf(doc, this.stores.defaultId), this.stores.defaultId)) {
      if (!this.stores.has(copy.store) || copy.store === store) continue;
      const from = this.stores.get(copy.store);
      try {
        if ((await from.stat(copy.key))?.size !== expected.size) continue;
        await copyVerified(from, copy.key, this.stores.get(store), key, expected);
        return;
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }

  /** Takes the store off the importing list: into `stores` with its copy, or into the failed list. */
  private async finish(job: CopyImageJob, copy: StoredCopy | null): Promise<ImageDoc | null> {
    const { image_id: id, store } = job;
    const def = this.stores.defaultId;
    try {
      const { doc } = await this.manifest.update(id, (draft) => {
        const plan = draft.store_import;
        if (!plan || !placing(draft, job)) return null;
        plan.importing = plan.importing.filter((s) => s !== store);
        if (copy && HOLDS_BYTES.has(draft.status)) {
          draft.stores = [...copiesOf(draft, def).filter((c) => c.store !== store), copy];
          if (plan.copied) plan.copied = [...plan.copied.filter((s) => s !== store), store];
        } else if (!plan.failed.includes(store)) {
          plan.failed.push(store);
        }
        settleCopyTask(draft);
        return [];
      });
      return doc;
    } catch (error) {
      if ((error as { code?: string }).code === 'not_found') return null;
      throw error;
    }
  }

  /**
   * A copy-image with all_stores_must_succeed lost `store` for good: as Glance reverts the copy
   * task, the copies it made are removed (record first, then bytes; the janitor removes bytes a
   * crash leaves), the stores it had not finished are dropped, and `store` is listed as failed.
   * The image keeps the copies it had before the copy-image.
   */
  private async revert(job: CopyImageJob): Promise<void> {
    const { image_id: id, store } = job;
    const def = this.stores.defaultId;
    let undone: StoredCopy[] = [];
    try {
      await this.manifest.update(id, (draft) => {
        undone = [];
        const plan = draft.store_import;
        if (!plan || !placing(draft, job)) return null;
        const copies = copiesOf(draft, def);
        const made = new Set(plan.copied ?? []);
        const kept = copies.filter((c) => !made.has(c.store));
        // Never below one copy (the copies from before were deleted from their stores meanwhile).
        if (kept.length > 0) {
          undone = copies.filter((c) => made.has(c.store));
          draft.stores = kept;
          if (undone.some((c) => c.store === def)) delete draft.blob_key;
        }
        draft.store_import = { importing: [], failed: [...new Set([...plan.failed, store])], must_succeed: plan.must_succeed, copied: [], ...(plan.task !== undefined ? { task: plan.task } : {}) };
        const removed = undone.map((c) => c.store);
        settleCopyTask(draft, `copy to store '${store}' failed for good; all_stores_must_succeed is true, so the copy-image stopped${removed.length ? ` and removed the copies it made (${removed.join(', ')})` : ''}.`);
        return [];
      });
    } catch (error) {
      if ((error as { code?: string }).code === 'not_found') return;
      throw error;
    }
    this.log.error({ image_id: id, store, removed: undone.map((c) => c.store) }, 'copy-image failed with all_stores_must_succeed: its copies are removed');
    for (const copy of undone) {
      if (!this.stores.has(copy.store)) continue;
      await this.stores.get(copy.store).delete(copy.key).catch((err: unknown) => this.log.warn({ image_id: id, store: copy.store, err }, 'copy left in store; the janitor will remove it'));
    }
  }

  /**
   * DELETE /v2/stores/{store_id}/{image_id}: removes the image's copy from one store. The image
   * must be active and keep at least one other copy (403 last_store).
   */
  async deleteFromStore(caller: Caller, id: string, storeId: string): Promise<void> {
    // Glance checks the store before the image: an unknown one is 409 whoever asks.
    if (!this.stores.has(storeId)) {
      throw fail('store_unavailable', `The selected store ${storeId.slice(0, 64)} is not available on this node; GET /v2/info/stores lists them (${this.stores.ids.join(', ')}).`);
    }
    const target = this.stores.get(storeId);
    const def = this.stores.defaultId;
    let removed: StoredCopy | null = null;
    await this.manifest.update(id, (draft) => {
      requireVisible(caller, draft, id);
      enforce(caller, 'delete_image_location', { owner: draft.owner });
      if (draft.status !== 'active') {
        throw conflict('invalid_status', `Image ${id} is ${draft.status}; a copy can be deleted from a store only while the image is active.`);
      }
      const copies = copiesOf(draft, def);
      removed = copies.find((c) => c.store === storeId) ?? null;
      if (!removed) throw fail('image_not_in_store', `Image ${id} has no copy in store ${storeId}; it is in ${copies.map((c) => c.store).join(', ')}.`);
      // A copy in a store this PIR no longer configures cannot be read: it does not count as one left.
      if (!copies.some((c) => c !== removed && this.stores.has(c.store))) {
        throw fail('last_store', `Store ${storeId} holds the last copy of image ${id} that PIR can read; delete the image instead (DELETE /v2/images/${id}).`);
      }
      draft.stores = copies.filter((c) => c.store !== storeId);
      if (storeId === def) delete draft.blob_key;
      return [];
    });
    // The record goes first: a failure here leaves bytes the store janitor removes later.
    await target.delete((removed as StoredCopy | null)!.key).catch((err: unknown) => this.log.warn({ image_id: id, store: storeId, err }, 'copy left in store; the janitor will remove it'));
  }
}
