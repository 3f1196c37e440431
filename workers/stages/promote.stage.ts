/**
 * Promote: make the unpacked disk the image's stored bytes, in each store the import targets.
 * The default (staging) store takes it atomically and without copying; any other target store
 * gets a streamed copy, hashed as it is written and kept only if it matches the disk's sha512
 * (multi-store: README "Stores").
 */
import { imageKey, keyOf } from '../../core/blob-keys.js';
import { TransientError } from '../../core/errors.js';
import { copyKey, copyVerified, removeCopies } from '../../core/image-stores.js';
import type { BlobStore } from '../../core/ports.js';
import { StoreRegistry } from '../../core/store-registry.js';
import type { StoredCopy } from '../../schemas/image.js';
import type { StageWork } from '../stage-runner.js';

export function promoteStage(blobs: BlobStore, stores: StoreRegistry = StoreRegistry.single(blobs)): StageWork {
  return async (doc) => {
    const disk = doc.pipeline!.unpacked;
    if (!disk) throw new TransientError('unpacked_missing', `Image ${doc.id} has no disk to promote.`);
    const staged = keyOf(disk);
    const plan = doc.store_import ?? null;
    const targets = plan && plan.importing.length ? plan.importing.filter((id) => stores.has(id)) : [stores.defaultId];
    const now = new Date().toISOString();

    // Copies into the other target stores first: promotion may move the staged bytes away.
    const copies: StoredCopy[] = [];
    const failed = [...(plan?.failed ?? [])];
    for (const id of targets.filter((t) => t !== stores.defaultId)) {
      try {
        const source = (await blobs.stat(staged)) ? staged : imageKey(doc.id);
        await copyVerified(blobs, source, stores.get(id), copyKey(doc.id), { size: disk.size, sha512: disk.sha512 });
        copies.push({ store: id, key: copyKey(doc.id), at: now });
      } catch (error) {
        if (plan?.must_succeed !== false) {
          // all_stores_must_succeed: no partial placement; the stage retries, then the import fails.
          await removeCopies(stores, copies).catch(() => {});
          throw new TransientError('store_copy_failed', `Image ${doc.id} could not be written into store ${id}: ${(error as Error).message}`);
        }
        failed.push(id);
      }
    }

    let stored: string | null = null;
    if (targets.includes(stores.defaultId)) {
      if (await blobs.stat(staged)) {
        stored = await blobs.promote(staged, doc.id);
      } else if ((await blobs.stat(imageKey(doc.id)))?.size === disk.size) {
        // An earlier attempt renamed it and died before recording it; the rename stands.
        stored = imageKey(doc.id);
      } else {
        // Not in staging and not (completely) in the store: a repeat after a crash can't find it.
        throw new TransientError('staged_data_lost', `Image ${doc.id}'s staged data is gone and the store does not hold it.`);
      }
      copies.unshift({ store: stores.defaultId, key: stored, at: now });
    }
    if (copies.length === 0) {
      throw new TransientError('store_copy_failed', `Image ${doc.id} could not be written into any of its stores (${targets.join(', ')}).`);
    }
    return (draft) => {
      // The manifest names the stored key only when it is not the default (an object store's staged key).
      // Left unset when the default store holds no copy: activation then removes the staged bytes.
      if (stored === null || stored === imageKey(doc.id)) delete draft.blob_key;
      else draft.blob_key = stored;
      if (stores.multi) draft.stores = copies;
      if (plan) draft.store_import = { importing: [], failed: [...new Set(failed)], must_succeed: plan.must_succeed };
    };
  };
}
