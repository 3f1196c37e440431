/** Inspect: know the disk format from its headers, and refuse what is unsafe or not as declared. */
import { detectFormat, judge, type BlockCache, type VerdictPolicy } from '../../formats/index.js';
import { keyOf } from '../../core/blob-keys.js';
import { RefusedError, TransientError } from '../../core/errors.js';
import { addDetectedProperties } from '../../core/image-entity.js';
import { readEmbeddedMetadata } from '../../formats/embedded/index.js';
import type { StageWork } from '../stage-runner.js';

export function inspectStage(policy: VerdictPolicy): StageWork {
  return async (doc, ctx) => {
    const disk = doc.pipeline!.unpacked;
    if (!disk) throw new TransientError('unpacked_missing', `Image ${doc.id} has no unpacked disk to inspect.`);
    // Bounded range reads of headers and tables: never the whole image. The run's reader: unpack
    // opened it already when the upload is the disk.
    const reader = await ctx.readers.open(keyOf(disk));
    // The blocks detection read: the metadata probes re-read the same headers (sectors 0 and 8, the ISO descriptor).
    const blocks: BlockCache = new Map();
    const verdict = judge(await detectFormat(reader, blocks), doc.disk_format, policy);
    if (!verdict.ok) throw new RefusedError(verdict.code, verdict.message);
    const { format, virtualSize, findings } = verdict;
    // What the image says of itself (bounded reads; never a reason to refuse it).
    const detected = await readEmbeddedMetadata(reader, format, undefined, blocks);
    return (draft) => {
      draft.pipeline!.inspection = { format, virtual_size: virtualSize, findings };
      draft.virtual_size = virtualSize;
      addDetectedProperties(draft, detected);
    };
  };
}
