/** The blob store the configuration asks for: S3 when PIR_S3_ENDPOINT is set, else the filesystem under PIR_DATA_DIR. */
import type { BlobStore } from '../../core/ports.js';
import type { HashPool } from '../../ingest/hashing/index.js';
import type { PirConfig } from '../config.js';
import { writableDirCheck, type DependencyCheck } from '../telemetry/health.js';
import { FsBlobStore } from './fs-blob-store.js';
import { S3BlobStore } from './s3-blob-store.js';
import { EgressClient } from '../egress/egress-client.js';
import { LocationAwareBlobStore } from './location-blob-store.js';
import { LocationReader } from './location-reader.js';

export interface OpenedBlobStore {
  blobs: BlobStore;
  /** Readiness checks of the store (/readyz). */
  checks: DependencyCheck[];
  close(): void;
  /** Reads registered locations (also behind `blobs`, for `external/…` keys). */
  locations: LocationReader;
}

export async function openBlobStore(config: Pick<PirConfig, 'dataDir' | 's3' | 'egress'>, hashes: HashPool): Promise<OpenedBlobStore> {
  const own = await openOwnStore(config, hashes);
  // Registered locations are read through the same port, under `external/…` keys.
  const locations = new LocationReader(new EgressClient(config.egress), config.s3);
  return { ...own, locations, blobs: new LocationAwareBlobStore(own.blobs, locations), close: () => { own.close(); locations.close(); } };
}

async function openOwnStore(config: Pick<PirConfig, 'dataDir' | 's3'>, hashes: HashPool): Promise<Omit<OpenedBlobStore, 'locations'>> {
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
