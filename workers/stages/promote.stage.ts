/**
 * Promote: make the unpacked disk the image's stored bytes, in each store the import targets.
 * The default (staging) store takes it atomically and without copying, leaving the staged bytes
 * in place until activation; any other target store gets a streamed copy, hashed as it is
 * written and kept only if it matches the disk's sha512 (multi-store: README "Stores").
 *
 * all_stores_must_succeed (the default): every target store is written here, or none is kept.
 * all_stores_must_succeed: false (Glance's lenient import): the first store that takes the disk
 * is enough for the image to become active; the other targets stay in store_import.importing and
 * durable copy-image jobs place them afterwards (core/store-operations.ts continueImport, started
 * by the image.active event, so a crash in between loses none of them).
 */
import { imageKey, keyOf } from '../../core/blob-keys.js';
import { isExternalKey } from '../../core/external-location.js';
import { errorName, TransientError } from '../../core/errors.js';
import { copyKey, copyVerified, removeCopies } from '../../core/image-stores.js';
import { BlobNotFoundError, type BlobStore } from '../../core/ports.js';
import { StoreRegistry } from '../../core/store-registry.js';
import type { HashedBlob, ImageDoc, StoredCopy } from '../../schemas/image.js';
import type { StageWork } from '../stage-runner.js';

export function promoteStage(blobs: BlobStore, stores: StoreRegistry = StoreRegistry.single(blobs)): StageWork {
  /** The default store takes the staged disk by promotion (a hard link on a filesystem; no copy). */
  const promoteInDefault = async (doc: ImageDoc, disk: HashedBlob): Promise<string> => {
    const staged = keyOf(disk);
    try {
      return await blobs.promote(staged, doc.id);
    } catch (error) {
      if (!(error instanceof BlobNotFoundError)) throw error;
    }
    // Staging is gone: an earlier attempt placed the disk and its run ended meanwhile (or an
    // older PIR renamed it into the store); what the store holds stands if it is complete.
    if ((await blobs.stat(imageKey(doc.id)))?.size === disk.size) return imageKey(doc.id);
    // Not in staging and not (completely) in the store: a repeat after a crash can't find it.
    throw new TransientError('staged_data_lost', `Image ${doc.id}'s staged data is gone and the store does not hold it.`);
  };
  /** Any other store gets a verified copy of the staged disk. */
  const copyInto = async (doc: ImageDoc, disk: HashedBlob, store: string): Promise<StoredCopy> => {
    const staged = keyOf(disk);
    const source = (await blobs.stat(staged)) ? staged : imageKey(doc.id);
    await copyVerified(blobs, source, stores.get(store), copyKey(doc.id), { size: disk.size, sha512: disk.sha512 });
    return { store, key: copyKey(doc.id), at: new Date().toISOString() };
  };

  return async (doc) => {
    const disk = doc.pipeline!.unpacked;
    if (!disk) throw new TransientError('unpacked_missing', `Image ${doc.id} has no disk to promote.`);
    const plan = doc.store_import ?? null;
    const targets = plan && plan.importing.length ? plan.importing.filter((id) => stores.has(id)) : [stores.defaultId];
    const failed = [...(plan?.failed ?? [])];
    let copies: StoredCopy[];
    let remaining: string[] = [];
    if (plan?.must_succeed === false) {
      ({ copies, remaining } = await placeFirst(doc, disk, targets, failed));
    } else {
      copies = await placeAll(doc, disk, targets);
    }
    if (copies.length === 0) {
      throw new TransientError('store_copy_failed', `Image ${doc.id} could not be written into any of its stores (${targets.join(', ')}).`);
    }
    const stored = copies[0]!.store === stores.defaultId ? copies[0]!.key : null;
    return (draft) => {
      // The manifest names the stored key only when it is not the default (an object store's staged key).
      // Left unset when the default store holds no copy: activation then removes the staged bytes.
      if (stored === null || stored === imageKey(doc.id)) delete draft.blob_key;
      else draft.blob_key = stored;
      // Every stored image names its stores, as Glance's (PIR always serves /v2/info/stores, and
      // tempest's import waiter compares the image's `stores` with it); registered bytes are in no store.
      if (stores.multi || !isExternalKey(keyOf(disk))) draft.stores = copies;
      if (plan) draft.store_import = { importing: remaining, failed: [...new Set(failed)], must_succeed: plan.must_succeed };
    };
  };

  /** Strict: every target store, copies first (promotion may move the staged bytes away); any failure undoes them. */
  async function placeAll(doc: ImageDoc, disk: HashedBlob, targets: string[]): Promise<StoredCopy[]> {
    const copies: StoredCopy[] = [];
    for (const id of targets.filter((t) => t !== stores.defaultId)) {
      try {
        copies.push(await copyInto(doc, disk, id));
      } catch (error) {
        // all_stores_must_succeed: no partial placement; the stage retries, then the import fails.
        await removeCopies(stores, copies).catch(() => {});
        // The owner reads this (pir_failure): the error's code, never its message (server paths).
        throw Object.assign(new TransientError('store_copy_failed', `Image ${doc.id} could not be written into store ${id} (${errorName(error)}); PIR's log has the details.`), { cause: error });
      }
    }
    if (targets.includes(stores.defaultId)) copies.unshift({ store: stores.defaultId, key: await promoteInDefault(doc, disk), at: new Date().toISOString() });
    return copies;
  }

  /**
   * Lenient: the first target that takes the disk (the default store first: no copy), failures
   * before it listed as failed; the targets after it are left for the copy-image jobs.
   */
  async function placeFirst(doc: ImageDoc, disk: HashedBlob, targets: string[], failed: string[]): Promise<{ copies: StoredCopy[]; remaining: string[] }> {
    const order = [...targets.filter((t) => t === stores.defaultId), ...targets.filter((t) => t !== stores.defaultId)];
    for (const [index, id] of order.entries()) {
      try {
        const copy = id === stores.defaultId
          ? { store: id, key: await promoteInDefault(doc, disk), at: new Date().toISOString() }
          : await copyInto(doc, disk, id);
        return { copies: [copy], remaining: order.slice(index + 1) };
      } catch (error) {
        if ((error as { code?: string }).code === 'staged_data_lost') throw error;
        failed.push(id);
      }
    }
    return { copies: [], remaining: [] };
  }
}
