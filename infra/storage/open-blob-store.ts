/**
 * The stores the configuration asks for. Without PIR_STORES: one store `local`, S3 when
 * PIR_S3_ENDPOINT is set, else the filesystem under PIR_DATA_DIR. With PIR_STORES: each store
 * as listed (infra/store-config.ts), the default one also holding the staging area. The default
 * store also reads registered locations (`external/…` keys: infra/storage/location-blob-store.ts).
 */
import type { BlobStore } from '../../core/ports.js';
import { StoreRegistry, describeKind, type StoreEntry, type StoreProperties } from '../../core/store-registry.js';
import type { HashPool } from '../../ingest/hashing/index.js';
import { ConfigError, type PirConfig } from '../config.js';
import type { NeededService, StartupWait } from '../startup-wait.js';
import { realpath, stat } from 'node:fs/promises';
import { overlappingPair, type StoreSpec } from '../store-config.js';
import { writableDirCheck, type DependencyCheck } from '../telemetry/health.js';
import { FsBlobStore } from './fs-blob-store.js';
import { EgressClient } from '../egress/egress-client.js';
import { LocationAwareBlobStore } from './location-blob-store.js';
import { LocationReader } from './location-reader.js';
import { fileProperties, s3Properties } from './store-properties.js';

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
  /** GET /v2/info/stores/detail `properties`: Glance's keys for its file or s3 driver (discovery.py). */
  properties: StoreProperties;
  checks: DependencyCheck[];
  close(): void;
}

/** The S3 server, for start-up's wait (infra/startup-wait.ts). */
const S3_SERVICE: NeededService = { name: 'the S3 server', setting: 'PIR_S3_ENDPOINT' };

export async function openBlobStore(config: Pick<PirConfig, 'dataDir' | 's3' | 'egress'> & Partial<Pick<PirConfig, 'stores'>>, hashes: HashPool, startup?: StartupWait): Promise<OpenedBlobStore> {
  const specs = config.stores?.stores ?? null;
  const locations = new LocationReader(new EgressClient(config.egress), config.s3);
  if (!specs) {
    const one = await openOne(config.s3 ? { id: 'local', kind: 's3', prefix: config.s3.prefix } : { id: 'local', kind: 'fs', dir: config.dataDir }, config, hashes, '', startup);
    const blobs = new LocationAwareBlobStore(one.blobs, locations);
    return { blobs, stores: StoreRegistry.single(blobs, undefined, one.properties), checks: one.checks, locations, close: () => { one.close(); locations.close(); } };
  }
  const defaultId = config.stores!.defaultStore;
  const opened: OpenedOne[] = [];
  const entries: StoreEntry[] = [];
  for (const spec of specs) {
    const one = await openOne(spec, config, hashes, `_${spec.id}`, startup);
    opened.push(one);
    entries.push({
      id: spec.id,
      description: `${describeKind(one.blobs.kind).replace(/ \(.*\)$| under .*$/, '')} '${spec.id}'`,
      // Registered locations are read through the default store, as without PIR_STORES.
      blobs: spec.id === defaultId ? new LocationAwareBlobStore(one.blobs, locations) : one.blobs,
      properties: one.properties,
    });
  }
  await noSharedDirectories(specs);
  const stores = new StoreRegistry(entries, defaultId, true);
  return {
    blobs: stores.defaultStore,
    stores,
    checks: opened.flatMap((o) => o.checks),
    locations,
    close: () => { opened.forEach((o) => o.close()); locations.close(); },
  };
}

async function openOne(spec: StoreSpec, config: Pick<PirConfig, 's3'>, hashes: HashPool, suffix: string, startup?: StartupWait): Promise<OpenedOne> {
  if (spec.kind === 's3') {
    // Loaded only for an S3 store: a PIR on the filesystem never loads the AWS SDK (~25 MiB resident).
    const { S3BlobStore } = await import('./s3-blob-store.js');
    const blobs = new S3BlobStore({ ...config.s3!, prefix: spec.prefix }, { hashes });
    // Asked once at start: a wrong bucket or key is a configuration error that says which, not a
    // stack trace from the first listing; a server still starting is waited for like the others.
    const ping = () => blobs.ping().catch((error: unknown) => { throw s3ConfigError(error, config.s3!); });
    await (startup ? startup.until(S3_SERVICE, ping) : ping()).catch((error: unknown) => {
      blobs.close();
      throw error;
    });
    const properties = s3Properties(blobs, config.s3!.bucket, spec.prefix, config.s3!.endpoint);
    return { blobs, properties, checks: [{ name: `blob_store${suffix}`, kind: 's3', check: () => blobs.ping() }], close: () => blobs.close() };
  }
  const blobs = new FsBlobStore(spec.dir, { hashes });
  await blobs.init().catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError(spec.id === 'local' ? 'PIR_DATA_DIR' : 'PIR_STORES', `the store directory ${spec.dir} cannot hold images and staging (${error.code ?? error.name}: ${error.message})`);
  });
  return {
    blobs,
    properties: fileProperties(spec.dir),
    checks: [writableDirCheck(`blob_store${suffix}`, blobs.imagesDir), writableDirCheck(`blob_staging${suffix}`, blobs.stagingDir)],
    close: () => {},
  };
}

/** A wrong bucket or refused credentials, named; anything else (unreachable: waited for) as it is. */
function s3ConfigError(error: unknown, s3: NonNullable<PirConfig['s3']>): unknown {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  const status = e?.$metadata?.httpStatusCode;
  if (e?.name === 'NoSuchBucket' || e?.name === 'NotFound' || status === 404) {
    return new ConfigError('PIR_S3_BUCKET', `bucket "${s3.bucket}" does not exist at ${s3.endpoint}; create it, or name one that does`);
  }
  if (status === 403 || status === 401 || ['Forbidden', 'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch'].includes(e?.name ?? '')) {
    return new ConfigError('PIR_S3_ACCESS_KEY_ID', `${s3.endpoint} refused PIR's credentials for bucket "${s3.bucket}" (${e?.name && e.name !== 'Unknown' ? e.name : `HTTP ${status}`}); check PIR_S3_ACCESS_KEY_ID and PIR_S3_SECRET_ACCESS_KEY`);
  }
  return error;
}

/**
 * Two filesystem stores in one directory (a symlink, a bind mount) would delete each other's
 * copies: PIR_STORES's own check compares the paths as written, this one where they lead.
 */
async function noSharedDirectories(specs: StoreSpec[]): Promise<void> {
  const dirs: { id: string; real: string; inode: string }[] = [];
  for (const spec of specs) {
    if (spec.kind !== 'fs') continue;
    const real = await realpath(spec.dir);
    const { dev, ino } = await stat(real);
    dirs.push({ id: spec.id, real: `${real}/`, inode: `${dev}:${ino}` });
  }
  // Where the paths lead (symlinks), then the directories themselves (a bind mount: one inode, two paths).
  const pair = overlappingPair(dirs.map((d) => d.real)) ?? overlappingPair(dirs.map((d) => `${d.inode}/`));
  if (pair) {
    const [a, b] = [dirs[pair[0]]!, dirs[pair[1]]!];
    throw new ConfigError('PIR_STORES', `stores "${a.id}" and "${b.id}" are the same directory or one lies inside the other (${a.real} and ${b.real}, after links); each store needs its own`);
  }
}
