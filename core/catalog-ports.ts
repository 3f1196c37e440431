/**
 * The catalog extension's port (galleries and metadata revisions), beside the ManifestStore:
 * one adapter per mode (infra/embedded/sqlite-catalog-store.ts, infra/mongo/mongo-catalog-store.ts),
 * both held to test/contract/catalog-store.contract.ts.
 */

/** A named folder of one project's images; galleries nest (parent_id) into a tree per project. */
export interface Gallery {
  id: string;
  owner: string;
  name: string;
  parent_id: string | null;
  created_at: string;
  updated_at: string;
}

/** One recorded change of an image's metadata. */
export interface Revision {
  image_id: string;
  /** 1, 2, 3… per image, in the order the changes were written. */
  n: number;
  at: string;
  /** Who: the caller's project and user. */
  project_id: string;
  user_id: string;
  /** What kind of change (create, update, tags, members, gallery, restore…). */
  action: string;
  /** The RFC 6902 JSON Patch from the previous revision's metadata to this one's. */
  patch: JsonPatchOp[];
  /** The whole metadata after the change (core/revisions.ts `metadataOf`). */
  metadata: Record<string, unknown>;
}

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace';
  path: string;
  value?: unknown;
}

export class GalleryNameTakenError extends Error {
  constructor(name: string) {
    super(`a gallery named ${name} exists there already`);
    this.name = 'GalleryNameTakenError';
  }
}

export interface CatalogStore {
  /** Inserts a gallery; rejects with GalleryNameTakenError when its parent holds that name already. */
  createGallery(gallery: Gallery): Promise<void>;
  getGallery(id: string): Promise<Gallery | null>;
  /** Every gallery of a project (a project's tree is small: the API caps it). */
  galleriesOf(owner: string): Promise<Gallery[]>;
  /** Rewrites name, parent and updated_at; GalleryNameTakenError when the new place holds that name. Returns false if gone. */
  updateGallery(gallery: Gallery): Promise<boolean>;
  deleteGallery(id: string): Promise<boolean>;

  /**
   * Appends the image's next revision: `revision.n` is ignored and the store assigns the next
   * number (one more than the image's last, even after older ones were pruned). Returns it.
   */
  appendRevision(revision: Omit<Revision, 'n'>): Promise<Revision>;
  /** Revisions of an image, oldest first, with n > after, at most `limit`. */
  revisions(imageId: string, after: number, limit: number): Promise<Revision[]>;
  getRevision(imageId: string, n: number): Promise<Revision | null>;
  /** Drops all but the newest `keep` revisions of the image. */
  pruneRevisions(imageId: string, keep: number): Promise<void>;
  /** Drops every revision of the image (it was purged). */
  dropRevisions(imageId: string): Promise<void>;
  close(): Promise<void>;
}
