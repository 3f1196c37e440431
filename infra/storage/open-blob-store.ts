/**
 * The stores the configuration asks for. Without PIR_STORES: one store `local`, S3 when
 * PIR_S3_ENDPOINT is set, else the filesystem under PIR_DATA_DIR. With PIR_STORES: each store
 * as listed (infra/store-config.ts), the default one also holding the staging area. The default
 * store also reads registered locations (`external/…` keys: infra/storage/location-blob-store.ts).
 */
import type { BlobStore } from '../../core/ports.js';
import { StoreRegistry, describeKind, type StoreEntry } from '../../core/store-registry.js';
import type { HashPool } from '../../ingest/hashing/index.js';
import type { PirConfig } from '../config.js';
import type { StoreSpec } from '../store-config.js';
import { writableDirCheck, type DependencyCheck } from '../telemetry/health.js';
import { FsBlobStore } from './fs-blob-store.js';
import { EgressClient } from '../egress/egress-client.js';
import { LocationAwareBlobStore } from './location-blob-store.js';
import { LocationReader } from './location-reader.js';

export interface OpenedBlobStore {
  /** The default store (staging and the pipeline work on it), reading registered locations too. */
  blobs: BlobStore;
  stores: StoreRegistry;
  /** Readiness checks of the stores (/readyz). */
  checks: DependencyCheck[];
  close(): void;
  /** Reads registered locations (also behind `blobs`, for `external/…` keys). */
  locations: LocationReader;
}

interface OpenedOne {
  blobs: BlobStore;
  checks: DependencyCheck[];
  close(): void;
}

export async function openBlobStore(config: Pick<PirConfig, 'dataDir' | 's3' | 'egress'> & Partial<Pick<PirConfig, 'stores'>>, hashes: HashPool): Promise<OpenedBlobStore> {
  const specs = config.stores?.stores ?? null;
  const locations = new LocationReader(new EgressClient(config.egress), config.s3);
  if (!specs) {
    const one = await openOne(config.s3 ? { id: 'local', kind: 's3', prefix: config.s3.prefix } : { id: 'local', kind: 'fs', dir: config.dataDir }, config, hashes, '');
    const blobs = new LocationAwareBlobStore(one.blobs, locations);
    return { blobs, stores: StoreRegistry.single(blobs), checks: one.checks, locations, close: () => { one.close(); locations.close(); } };
  }
  const defaultId = config.stores!.defaultStore;
  const opened: OpenedOne[] = [];
  const entries: StoreEntry[] = [];
  for (const spec of specs) {
    const one = await openOne(spec, config, hashes, `_${spec.id}`);
    opened.push(one);
    entries.push({
      id: spec.id,
      description: `${describeKind(one.blobs.kind).replace(/ \(.*\)$| under .*$/, '')} '${spec.id}'`,
      // Registered locations are read through the default store, as without PIR_STORES.
      blobs: spec.id === defaultId ? new LocationAwareBlobStore(one.blobs, locations) : one.blobs,
      properties: spec.kind === 'fs' ? { directory: spec.dir } : { bucket: config.s3!.bucket, prefix: spec.prefix, endpoint: config.s3!.endpoint },
    });
  }
  const stores = new StoreRegistry(entries, defaultId, true);
  return {
    blobs: stores.defaultStore,
    stores,
    checks: opened.flatMap((o) => o.checks),
    locations,
    close: () => { opened.forEach((o) => o.close()); locations.close(); },
  };
}

async function openOne(spec: StoreSpec, config: Pick<PirConfig, 's3'>, hashes: HashPool, suffix: string): Promise<OpenedOne> {
  if (spec.kind === 's3') {
    // Loaded only for an S3 store: a PIR on the filesystem never loads the AWS SDK (~25 MiB resident).
    const { S3BlobStore } = await import('./s3-blob-store.js');
    const blobs = new S3BlobStore({ ...config.s3!, prefix: spec.prefix }, { hashes });
    return { blobs, checks: [{ name: `blob_store${suffix}`, kind: 's3', check: () => blobs.ping() }], close: () => blobs.close() };
  }
  const blobs = new FsBlobStore(spec.dir, { hashes });
  await blobs.init();
  return {
    blobs,
    checks: [writableDirCheck(`blob_store${suffix}`, blobs.imagesDir), writableDirCheck(`blob_staging${suffix}`, blobs.stagingDir)],
    close: () => {},
  };
}
