/**
 * Where an image's bytes are, store by store (multi-store), and the chores over them: reading
 * the copies a document records, copying between stores with verification, removing every copy.
 */
import { fail } from './error-catalog.js';
import { imageKey, storedKeyOf } from './blob-keys.js';
import type { BlobStore } from './ports.js';
import type { StoreRegistry } from './store-registry.js';
import type { ImageDoc, StoredCopy } from '../schemas/image.js';

/**
 * The copies of the image's bytes. Documents without a `stores` record (written before
 * multi-store, or by a single-store PIR) hold one copy in the default store once they have bytes.
 */
export function copiesOf(doc: ImageDoc, defaultStore: string): StoredCopy[] {
  if (doc.stores) return doc.stores;
  if (doc.size === null || (doc.status !== 'active' && doc.status !== 'deactivated')) return [];
  return [{ store: defaultStore, key: storedKeyOf(doc), at: doc.updated_at }];
}

/**
 * The copies in reading order: those in the `preferred` stores first, in the order given (Glance's
 * GET …/file?prefer=), then the default store's (local and cheapest), then as recorded.
 */
export function readingOrder(copies: StoredCopy[], defaultStore: string, preferred: readonly string[] = []): StoredCopy[] {
  const rank = (c: StoredCopy) => {
    const at = preferred.indexOf(c.store);
    return at >= 0 ? at : c.store === defaultStore ? preferred.length : preferred.length + 1;
  };
  return [...copies].sort((a, b) => rank(a) - rank(b)); // stable: equal ranks keep the recorded order
}

/** The key an image's copy gets in a store other than the staging one. */
export function copyKey(imageId: string): string {
  return imageKey(imageId);
}

/**
 * Streams `fromKey` of `from` into `toKey` of `to`, hashing as it writes, and keeps the copy only
 * if it has exactly the image's size and sha512 (its os_hash_value): a mismatch removes it.
 */
export async function copyVerified(
  from: BlobStore, fromKey: string, to: BlobStore, toKey: string,
  expected: { size: number; sha512: string }, signal?: AbortSignal,
): Promise<void> {
  const source = await from.read(fromKey);
  const written = await to.write(toKey, source, { maxBytes: expected.size, ...(signal ? { signal } : {}) });
  if (written.size !== expected.size || written.sha512 !== expected.sha512) {
    await to.delete(toKey);
    throw fail('store_copy_mismatch', `The copy under ${toKey} read ${written.size} bytes with sha512 ${written.sha512.slice(0, 16)}…; the image has ${expected.size} bytes and ${expected.sha512.slice(0, 16)}…. It was removed.`);
  }
}

/** Removes every recorded copy of the image; failures are reported, each store is tried. */
export async function removeCopies(registry: StoreRegistry, copies: StoredCopy[]): Promise<void> {
  const results = await Promise.allSettled(copies.filter((c) => registry.has(c.store)).map((c) => registry.get(c.store).delete(c.key)));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
