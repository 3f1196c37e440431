/** Which tus staging a blob store supports: a local file appended in place, or an S3 multipart upload. */
import type { BlobStore } from '../../core/ports.js';
import { LocationAwareBlobStore } from '../../infra/storage/location-blob-store.js';
import type { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { FileTusStaging, type TusStaging } from './staging.js';

/**
 * Null when the store offers neither (then /v2/images/{id}/uploads is not served). The S3
 * staging (and with it the AWS SDK) is loaded only for an S3 store.
 */
export async function tusStagingFor(blobs: BlobStore): Promise<TusStaging | null> {
  if (blobs.filePath) return new FileTusStaging(blobs);
  // Staging keys are PIR's own: past the registered-locations wrapper, to the store itself.
  const own = blobs instanceof LocationAwareBlobStore ? blobs.own : blobs;
  if (own.kind !== 's3') return null;
  const { S3TusStaging } = await import('./s3-staging.js');
  return new S3TusStaging(own as S3BlobStore);
}
