/** Which tus staging a blob store supports: a local file appended in place, or an S3 multipart upload. */
import type { BlobStore } from '../../core/ports.js';
import { LocationAwareBlobStore } from '../../infra/storage/location-blob-store.js';
import { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { S3TusStaging } from './s3-staging.js';
import { FileTusStaging, type TusStaging } from './staging.js';

/** Null when the store offers neither (then /v2/images/{id}/uploads is not served). */
export function tusStagingFor(blobs: BlobStore): TusStaging | null {
  if (blobs.filePath) return new FileTusStaging(blobs);
  // Staging keys are PIR's own: past the registered-locations wrapper, to the store itself.
  const own = blobs instanceof LocationAwareBlobStore ? blobs.own : blobs;
  if (own instanceof S3BlobStore) return new S3TusStaging(own);
  return null;
}
