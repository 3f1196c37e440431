/** Promote: make the unpacked disk the image's stored bytes, atomically. */
import { access } from 'node:fs/promises';
import { TransientError } from '../../core/errors.js';
import type { BlobStore } from '../../core/ports.js';
import type { StageWork } from '../stage-runner.js';

export function promoteStage(blobs: BlobStore): StageWork {
  return async (doc) => {
    const disk = doc.pipeline!.unpacked;
    if (!disk) throw new TransientError('unpacked_missing', `Image ${doc.id} has no disk to promote.`);
    const staged = await access(disk.path).then(() => true, () => false);
    if (staged) {
      await blobs.promote(disk.path, doc.id);
    } else if ((await blobs.storedSize(doc.id)) !== disk.size) {
      // Not in staging and not (completely) in the store: a repeat after a crash can't find it.
      throw new TransientError('staged_data_lost', `Image ${doc.id}'s staged data is gone and the store does not hold it.`);
    } // else: an earlier attempt renamed it and died before recording it; the rename stands.
    return () => {};
  };
}
