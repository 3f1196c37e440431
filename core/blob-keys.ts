/**
 * Which keys an image's bytes live under, and the image-level chores built on the key-based
 * BlobStore: the one place that knows the layout.
 *
 *   staging/<id>.<run>.upload    the bytes as received (upload, stage, web-download)
 *   staging/<id>.<run>.unpacked-<attempt>  the disk one unpack attempt produced (when it changed
 *                                anything); each attempt its own key, so an attempt that lost its
 *                                job (its worker froze past the lock) and cleans up after itself
 *                                never removes or overwrites the disk another attempt recorded
 *   images/<id>                  the stored image on the filesystem store (a hard link to a staged key)
 *
 * An object store keeps the promoted staged key as the stored one (no copy): the manifest's
 * `blob_key` says which key holds the image; absent means `images/<id>`.
 */
import type { BlobStore } from './ports.js';
import type { HashedBlob, ImageDoc } from '../schemas/image.js';

const ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;

/** Image ids become key segments: refuse anything that could escape its place. */
function safeId(imageId: string): string {
  if (!ID.test(imageId)) throw new Error(`unsafe image id for a blob key: ${JSON.stringify(imageId)}`);
  return imageId;
}

/** `attempt`: a token of the attempt writing the key (letters and digits), for keys attempts write. */
export function stagingKey(imageId: string, run: number, kind: 'upload' | 'unpacked', attempt?: string): string {
  if (attempt !== undefined && !/^[A-Za-z0-9]{1,32}$/.test(attempt)) throw new Error(`unsafe attempt token for a blob key: ${JSON.stringify(attempt)}`);
  return `staging/${safeId(imageId)}.${run}.${kind}${attempt === undefined ? '' : `-${attempt}`}`;
}

export function imageKey(imageId: string): string {
  return `images/${safeId(imageId)}`;
}

/** The key prefix of every staging blob of one image. */
export function stagingPrefix(imageId: string): string {
  return `staging/${safeId(imageId)}.`;
}

/** The image a staging or stored key belongs to ('' when the key is not one of ours). */
export function imageIdOfKey(key: string): string {
  const name = key.startsWith('staging/') ? key.slice(8) : key.startsWith('images/') ? key.slice(7) : '';
  return name.split('.')[0] ?? '';
}

/** The key of an image's stored bytes. */
export function storedKeyOf(doc: Pick<ImageDoc, 'id' | 'blob_key'>): string {
  return doc.blob_key ?? imageKey(doc.id);
}

/** Marks a copy a filesystem promotion left half-made (EXDEV): `images/<id>.partial-<pid>`. */
export const PARTIAL_MARK = '.partial-';

export function isPartialKey(key: string): boolean {
  return key.includes(PARTIAL_MARK);
}

/** A staged blob's key; documents written before keys held a file path in staging instead. */
export function keyOf(blob: HashedBlob): string {
  if (blob.key) return blob.key;
  const legacy = (blob as { path?: string }).path ?? '';
  return `staging/${legacy.slice(legacy.lastIndexOf('/') + 1)}`;
}

/** Removes the image's staging blobs, except `keep` (an object store's promoted key). */
export async function removeStaging(blobs: BlobStore, imageId: string, keep?: string | null): Promise<void> {
  const staged = await blobs.list(stagingPrefix(imageId));
  await Promise.all(staged.filter((b) => b.key !== keep).map((b) => blobs.delete(b.key)));
}

/** Removes the staging blobs of one run of the image (`staging/<id>.<run>.…`). */
export async function removeRunStaging(blobs: BlobStore, imageId: string, run: number): Promise<void> {
  const staged = await blobs.list(`${stagingPrefix(imageId)}${run}.`);
  await Promise.all(staged.map((b) => blobs.delete(b.key)));
}

/** Removes every byte of the image: stored and staged. */
export async function removeImageBytes(blobs: BlobStore, imageId: string): Promise<void> {
  await Promise.all([blobs.delete(imageKey(imageId)), removeStaging(blobs, imageId)]);
}
