/** Promote: make the unpacked disk the image's stored bytes, atomically and without copying them. */
import { imageKey, keyOf } from '../../core/blob-keys.js';
import { TransientError } from '../../core/errors.js';
import type { BlobStore } from '../../core/ports.js';
import type { StageWork } from '../stage-runner.js';

export function promoteStage(blobs: BlobStore): StageWork {
  return async (doc) => {
    const disk = doc.pipeline!.unpacked;
    if (!disk) throw new TransientError('unpacked_missing', `Image ${doc.id} has no disk to promote.`);
    const staged = keyOf(disk);
    let stored: string;
    if (await blobs.stat(staged)) {
      stored = await blobs.promote(staged, doc.id);
    } else if ((await blobs.stat(imageKey(doc.id)))?.size === disk.size) {
      // An earlier attempt renamed it and died before recording it; the rename stands.
      stored = imageKey(doc.id);
    } else {
      // Not in staging and not (completely) in the store: a repeat after a crash can't find it.
      throw new TransientError('staged_data_lost', `Image ${doc.id}'s staged data is gone and the store does not hold it.`);
    }
    return (draft) => {
      // The manifest names the stored key only when it is not the default (an object store's staged key).
      if (stored === imageKey(doc.id)) delete draft.blob_key;
      else draft.blob_key = stored;
    };
  };
}
