/**
 * The configured stores by id (Glance's multi-store): the one place that knows which stores
 * exist, which is the default, and which BlobStore serves each. Everything else asks it by id.
 *
 * The default store is also the staging store: every upload, stage and web-download lands
 * there and the pipeline works on it; promotion then places the image in its target stores
 * (workers/stages/promote.stage.ts). infra/storage/open-blob-store.ts builds the registry from
 * PIR_STORES (infra/store-config.ts).
 */
import { fail } from './error-catalog.js';
import type { BlobStore } from './ports.js';

export interface StoreEntry {
  id: string;
  description: string;
  /** 'filesystem' or 's3' (GET /v2/info/stores/detail `type`: Glance's driver names 'file' and 's3'). */
  blobs: BlobStore;
  /** What /v2/info/stores/detail shows an administrator about it (never credentials). */
  properties: StoreProperties;
}

export type StoreProperties = Record<string, string | number | boolean>;

export class StoreRegistry {
  private readonly byId: Map<string, StoreEntry>;

  /**
   * `multi`: PIR_STORES configured the stores (Glance's enabled_backends): images show `stores`
   * and the os_glance_* import fields, and copy-image is offered. False: the one store of before.
   */
  constructor(entries: StoreEntry[], readonly defaultId: string, readonly multi: boolean) {
    this.byId = new Map(entries.map((e) => [e.id, e]));
    if (!this.byId.has(defaultId)) throw new Error(`default store ${defaultId} is not configured`);
  }

  /** One store around one BlobStore (tests, tools, and PIR without PIR_STORES). */
  static single(blobs: BlobStore, id = 'local', properties: StoreProperties = {}): StoreRegistry {
    return new StoreRegistry([{ id, description: describeKind(blobs.kind), blobs, properties }], id, false);
  }

  get ids(): string[] {
    return [...this.byId.keys()];
  }

  get entries(): StoreEntry[] {
    return [...this.byId.values()];
  }

  get defaultStore(): BlobStore {
    return this.byId.get(this.defaultId)!.blobs;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** The store `id`; unknown → 404 store_not_found (internal: DELETE /v2/stores checks has() first, 409). */
  get(id: string): BlobStore {
    const entry = this.byId.get(id);
    if (!entry) throw fail('store_not_found', `There is no store '${id.slice(0, 64)}' here; GET /v2/info/stores lists them (${this.ids.join(', ')}).`);
    return entry.blobs;
  }

  /** Checks store ids a request names: unknown → 400 unknown_store (an import checks its own first: 409, api/store-targets.ts). */
  requireKnown(ids: string[]): string[] {
    for (const id of ids) {
      if (!this.byId.has(id)) throw fail('unknown_store', `Unknown store '${id.slice(0, 64)}'; GET /v2/info/stores lists them (${this.ids.join(', ')}).`);
    }
    return [...new Set(ids)];
  }
}

export function describeKind(kind: string): string {
  return kind === 's3' ? 'S3-compatible object store (the PIR_S3_* bucket)' : 'Local filesystem store under the PIR data directory';
}
