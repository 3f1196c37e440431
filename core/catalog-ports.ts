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
  /**
   * Glance's visibility, for what the gallery shares: `shared` (the default, as a new Glance
   * image) lets its members see the images in it and below it; `private` suspends them (kept).
   * Missing on galleries written before gallery sharing: read as `shared` (no members yet).
   */
  visibility?: GalleryVisibility;
  created_at: string;
  updated_at: string;
}

export type GalleryVisibility = 'private' | 'shared';

/** A project a gallery is shared with, and its answer (as a Glance image member). */
export interface GalleryMember {
  gallery_id: string;
  member_id: string;
  status: 'pending' | 'accepted' | 'rejected';
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
  /**
   * The image's own revision (its compare-and-set number) this metadata is from: a revision of an
   * older state is never recorded after a newer one. Absent on revisions written before it.
   */
  image_revision?: number;
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
  /**
   * Runs `fn` while no other `exclusive` of the same owner runs, in this process or any other
   * sharing the store: the changes of one project's gallery tree and memberships, one at a time.
   */
  exclusive<T>(owner: string, fn: () => Promise<T>): Promise<T>;
  /** Inserts a gallery; rejects with GalleryNameTakenError when its parent holds that name already. */
  createGallery(gallery: Gallery): Promise<void>;
  getGallery(id: string): Promise<Gallery | null>;
  /** Every gallery of a project (a project's tree is small: the API caps it). */
  galleriesOf(owner: string): Promise<Gallery[]>;
  /** Rewrites name, parent and updated_at; GalleryNameTakenError when the new place holds that name. Returns false if gone. */
  updateGallery(gallery: Gallery): Promise<boolean>;
  /** Deletes the gallery and its members. */
  deleteGallery(id: string): Promise<boolean>;

  /** Inserts or replaces the membership (gallery_id, member_id). */
  putGalleryMember(member: GalleryMember): Promise<void>;
  galleryMembers(galleryId: string): Promise<GalleryMember[]>;
  deleteGalleryMember(galleryId: string, memberId: string): Promise<boolean>;
  /** Every gallery membership of a project (what it was offered, whatever its answer). */
  galleryMembershipsOf(memberId: string): Promise<GalleryMember[]>;

  /**
   * Appends the image's next revision: `revision.n` is ignored and the store assigns the next
   * number (one more than the image's last, even after older ones were pruned). Returns it.
   */
  appendRevision(revision: Omit<Revision, 'n'>): Promise<Revision>;
  /**
   * Appends the revision as number `n` unless n is taken (null then): the caller passes one more
   * than the newest revision it read, whose metadata its patch starts from, so this is a
   * compare-and-set on the history (numbers have no gaps: a taken n means another came first).
   */
  appendRevisionAt(revision: Omit<Revision, 'n'>, n: number): Promise<Revision | null>;
  /**
   * Records a new image's first revision (n = 1) if it has none yet; null when it has (a read
   * repair came first). A new image needs no lookup of its newest revision: on the MongoDB-wire
   * server that lookup is a query, where this is one insert whose unique _id decides. Only for a
   * new image: after pruning, the MongoDB store may find n = 1 free again.
   */
  appendFirstRevision(revision: Omit<Revision, 'n'>): Promise<Revision | null>;
  /** Revisions of an image, oldest first, with n > after, at most `limit`. */
  revisions(imageId: string, after: number, limit: number): Promise<Revision[]>;
  getRevision(imageId: string, n: number): Promise<Revision | null>;
  /** The image's newest revision (null: none). */
  latestRevision(imageId: string): Promise<Revision | null>;
  /** Drops all but the newest `keep` revisions of the image. */
  pruneRevisions(imageId: string, keep: number): Promise<void>;
  /** Drops every revision of the image (it was purged). */
  dropRevisions(imageId: string): Promise<void>;
  close(): Promise<void>;
}
