/** The blob store the configuration asks for: S3 when PIR_S3_ENDPOINT is set, else the filesystem under PIR_DATA_DIR. */
import type { BlobStore } from '../../core/ports.js';
import type { HashPool } from '../../ingest/hashing/index.js';
import type { PirConfig } from '../config.js';
import { writableDirCheck, type DependencyCheck } from '../telemetry/health.js';
import { FsBlobStore } from './fs-blob-store.js';
import { S3BlobStore } from './s3-blob-store.js';

export interface OpenedBlobStore {
  blobs: BlobStore;
  /** Readiness checks of the store (/readyz). */
  checks: DependencyCheck[];
  close(): void;
}

export async function openBlobStore(config: Pick<PirConfig, 'dataDir' | 's3'>, hashes: HashPool): Promise<OpenedBlobStore> {
  if (config.s3) {
    const blobs = new S3BlobStore(config.s3, { hashes });
    return { blobs, checks: [{ name: 'blob_store', kind: 's3', check: () => blobs.ping() }], close: () => blobs.close() };
  }
  const blobs = new FsBlobStore(config.dataDir, { hashes });
  await blobs.init();
  return {
    blobs,
    checks: [writableDirCheck('blob_store', blobs.imagesDir), writableDirCheck('blob_staging', blobs.stagingDir)],
    close: () => {},
  };
}
