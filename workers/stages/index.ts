import type { StageName } from '../../schemas/image.js';
import type { BlobStore } from '../../core/ports.js';
import type { StoreRegistry } from '../../core/store-registry.js';
import type { VerdictPolicy } from '../../formats/index.js';
import type { StageWork } from '../stage-runner.js';
import type { UnpackLimits } from '../unpack/unpack.js';
import { checksumStage } from './checksum.stage.js';
import { inspectStage } from './inspect.stage.js';
import { promoteStage } from './promote.stage.js';
import { unpackStage } from './unpack.stage.js';

export function pipelineStages(blobs: BlobStore, limits: UnpackLimits, policy: VerdictPolicy, stores?: StoreRegistry): Record<StageName, StageWork> {
  return {
    unpack: unpackStage(blobs, limits),
    inspect: inspectStage(policy),
    checksum: checksumStage(),
    promote: promoteStage(blobs, stores),
  };
}
