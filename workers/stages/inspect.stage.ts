/** Inspect: know the disk format from its headers, and refuse what is unsafe or not as declared. */
import { detectFormat, judge, type BlockCache, type VerdictPolicy } from '../../formats/index.js';
import { keyOf } from '../../core/blob-keys.js';
import { RefusedError, TransientError } from '../../core/errors.js';
import { addDetectedProperties } from '../../core/image-entity.js';
import type { BlobStore } from '../../core/ports.js';
import { readEmbeddedMetadata } from '../../formats/embedded/index.js';
import type { StageWork } from '../stage-runner.js';

export function inspectStage(blobs: BlobStore, policy: VerdictPolicy): StageWork {
  return async (doc) => {
    const disk = doc.pipeline!.unpacked;
    if (!disk) throw new TransientError('unpacked_missing', `Image ${doc.id} has no unpacked disk to inspect.`);
    // Bounded range reads of headers and tables: never the whole image.
    const reader = await blobs.openReader(keyOf(disk));
    // The blocks detection read: the metadata probes re-read the same headers (sectors 0 and 8, the ISO descriptor).
    const blocks: BlockCache = new Map();
    let verdict;
    let detected: Record<string, string> = {};
    try {
      verdict = judge(await detectFormat(reader, blocks), doc.disk_format, policy);
      // What the image says of itself (bounded reads; never a reason to refuse it).
      if (verdict.ok) detected = await readEmbeddedMetadata(reader, verdict.format, undefined, blocks);
    } finally {
      await reader.close();
    }
    if (!verdict.ok) throw new RefusedError(verdict.code, verdict.message);
    const { format, virtualSize, findings } = verdict;
    return (draft) => {
      draft.pipeline!.inspection = { format, virtual_size: virtualSize, findings };
      draft.virtual_size = virtualSize;
      addDetectedProperties(draft, detected);
    };
  };
}
