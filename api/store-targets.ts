/**
 * Which stores an upload or import names (Glance's multi-store request fields): the
 * X-Image-Meta-Store header, and the import body's `stores`, `all_stores` and
 * `all_stores_must_succeed`. Unknown stores are 400 unknown_store on uploads and 409
 * unknown_import_store on imports (as Glance: UnknownScheme is a Conflict in import_image);
 * contradictions (all_stores or stores with another way of naming stores) 400 bad_stores.
 * Without PIR_STORES (Glance without enabled_backends) there is nothing to choose: Glance reads
 * none of these (its import's stores are [None], its upload ignores the header), so neither does PIR,
 * except all_stores_must_succeed: false, which Glance refuses there too.
 */
import type { FastifyRequest } from 'fastify';
import { fail } from '../core/error-catalog.js';
import type { StoreTargets } from '../core/image-service.js';
import type { StoreRegistry } from '../core/store-registry.js';

export interface ImportStoreFields {
  stores?: string[];
  all_stores?: boolean;
  all_stores_must_succeed?: boolean;
}

/** X-Image-Meta-Store (one store id); undefined when absent. */
export function headerStore(request: FastifyRequest): string | undefined {
  const raw = request.headers['x-image-meta-store'];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.trim() === '') throw fail('unknown_store', 'X-Image-Meta-Store must name one store (GET /v2/info/stores lists them).');
  return raw.trim();
}

/** The targets of PUT …/file or …/stage: the header's store, or undefined (the default store). */
export function uploadTargets(request: FastifyRequest, stores: StoreRegistry): StoreTargets | undefined {
  if (!stores.multi) return undefined; // Glance's upload reads the header only with enabled_backends
  const store = headerStore(request);
  if (store === undefined) return undefined;
  return { stores: stores.requireKnown([store]), must_succeed: true };
}

/** The targets of POST …/import; undefined when the request names none (default store, or the staged header's). */
export function importTargets(request: FastifyRequest, body: ImportStoreFields, stores: StoreRegistry): StoreTargets | undefined {
  const mustSucceed = body.all_stores_must_succeed ?? true;
  if (!stores.multi) {
    // Glance: leniency needs enabled_backends (one store has nothing to be lenient about); the
    // stores named are not read at all there (stores = [None]), so they are ignored, not refused.
    if (!mustSucceed) throw fail('bad_stores', 'All_stores_must_succeed can only be set with enabled_backends (PIR_STORES).');
    // A client that named stores watches them (os_glance_importing_to_stores, then
    // os_glance_failed_import: tempest's web-download with a bad URL waits for it): the one store.
    const named = body.all_stores === true || body.stores !== undefined || request.headers['x-image-meta-store'] !== undefined;
    return named ? { stores: stores.ids, must_succeed: true } : undefined;
  }
  const header = headerStore(request);
  if (body.all_stores) {
    if (body.stores !== undefined || header !== undefined) {
      throw fail('bad_stores', 'all_stores cannot be combined with stores or X-Image-Meta-Store; send one of them.');
    }
    return { stores: stores.ids, must_succeed: mustSucceed };
  }
  if (body.stores !== undefined) {
    if (header !== undefined) throw fail('bad_stores', "Stores parameter and X-Image-Meta-Store header can't be both specified; send one of them.");
    if (body.stores.length === 0) throw fail('bad_stores', 'stores is empty; name at least one store, or leave it out for the default store.');
    return { stores: importStores(body.stores, stores), must_succeed: mustSucceed };
  }
  if (header !== undefined) return { stores: importStores([header], stores), must_succeed: mustSucceed };
  return undefined;
}

/** An import's stores, each once; unknown → 409 unknown_import_store (Glance's import_image answers its UnknownScheme as a Conflict). */
function importStores(ids: string[], stores: StoreRegistry): string[] {
  const unknown = ids.find((id) => !stores.has(id));
  if (unknown !== undefined) throw fail('unknown_import_store', `Unknown store '${unknown.slice(0, 64)}'; GET /v2/info/stores lists them (${stores.ids.join(', ')}).`);
  return stores.requireKnown(ids);
}
