/** Inspect: know the disk format from its headers, and refuse what is unsafe or not as declared. */
import { detectFormat, judge, type VerdictPolicy } from '../../formats/index.js';
import { RefusedError, TransientError } from '../../core/errors.js';
import { addDetectedProperties } from '../../core/image-entity.js';
import { readEmbeddedMetadata } from '../../formats/embedded/index.js';
import { FileReader } from '../../infra/storage/file-reader.js';
import type { StageWork } from '../stage-runner.js';

export function inspectStage(policy: VerdictPolicy): StageWork {
  return async (doc) => {
    const disk = doc.pipeline!.unpacked;
    if (!disk) throw new TransientError('unpacked_missing', `Image ${doc.id} has no unpacked disk to inspect.`);
    const reader = await FileReader.open(disk.path);
    let verdict;
    let detected: Record<string, string> = {};
    try {
      verdict = judge(await detectFormat(reader), doc.disk_format, policy);
      // What the image says of itself (bounded reads; never a reason to refuse it).
      if (verdict.ok) detected = await readEmbeddedMetadata(reader, verdict.format);
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
