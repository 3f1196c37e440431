/**
 * The image API's use cases, each on behalf of a caller: the request context Glance's gateway
 * layers policy on (glance/gateway.py). Every method first finds the image as the caller may
 * see it (404 otherwise), then asks the policy (core/policy.ts, 403), then changes the image
 * through the entity (core/image-entity.ts) inside one compare-and-set write with its events.
 * Workers drive the pipeline stages (workers/stage-runner.ts) through the same entity.
 */
import { randomUUID } from 'node:crypto';
import { IMAGE_STATUSES, type ResumableUpload, type ExternalLocation, type LocationFingerprint, type ShareLink, type ContainerFormat, type DiskFormat, type HashedBlob, type ImageDoc, type ImageMember, type MemberStatus, type ImportInput, type Visibility } from '../schemas/image.js';
import { requestedBy, SYSTEM_CALLER, type Caller } from './caller.js';
import { ShareLinkUseCounter } from './share-link-uses.js';
import { fail } from './error-catalog.js';
import { conflict, PirError } from './errors.js';
import { event, type NewEvent } from './events.js';
import * as entity from './image-entity.js';
import { applyPatch, galleriesNamed, type PatchOp } from './image-patch.js';
import { LIMITS } from './limits.js';
import type { Gallery } from './catalog-ports.js';
import { GALLERY_PROPERTY } from './gallery-rules.js';
import { relevance, searchMatches } from './search.js';
import { compareDocs, galleryStatuses, sortValues } from './list-access.js';
import { Manifest } from './manifest.js';
import { nextRunNumber } from './pipeline-state.js';
import { releaseLostClaim, type Claim } from './lost-claims.js';
import { canSee, enforce, isAdminCaller, membershipOf, requireVisible, type Action } from './policy.js';
import { removeImageBytes, removeRunStaging, removeStaging, stagingKey } from './blob-keys.js';
import { copiesOf, removeCopies } from './image-stores.js';
import { StoreRegistry } from './store-registry.js';
import { enforceAddLocation, enforceListLocations, type ParsedLocation } from './external-location.js';
import { ManifestConflictError, RetiredIdError, type BlobStore, type GalleryGrant, type ListQuery, type ListRequest, type ListScope, type SortValue } from './ports.js';

export interface CreateImageInput {
  id?: string;
  name?: string | null;
  owner?: string | null;
  disk_format?: DiskFormat | null;
  container_format?: ContainerFormat | null;
  visibility?: Visibility;
  protected?: boolean;
  os_hidden?: boolean;
  min_disk?: number;
  min_ram?: number;
  tags?: string[];
  properties?: Record<string, string>;
  /** Glance's os_hash_value at create: a digest the upload must match (sha512, hex). */
  expected_sha512?: string;
  /** The legacy import task (POST /v2/tasks) the image is made for. */
  import_task?: ImageDoc['import_task'];
}

export interface UploadTicket {
  run: number;
  /** When the claim was written (its upload record's started_at): with `run`, what releaseLater() compares. */
  startedAt: string;
  /** Blob key the bytes are written under. */
  stagingKey: string;
  /** The image's disk_format when it was claimed (formats are frozen from then on). */
  diskFormat: string | null;
}

export interface ServiceSettings {
  stageDeadlineSeconds: number;
  /** The configured stores (multi-store); default: `blobs` as the one store `local`. */
  stores?: StoreRegistry;
}

/** Where an upload or import places the image (X-Image-Meta-Store, the import body's stores). */
export interface StoreTargets {
  stores: string[];
  must_succeed: boolean;
}

/**
 * The catalog extension's hooks into the image use cases (core/catalog.ts provides them):
 * gallery lookups for PATCHes that place an image, and the record of every metadata change.
 */
export interface CatalogHooks {
  gallery(id: string): Promise<Gallery | null>;
  /** After a write that changed the image (before: null for a create); records a revision when its metadata changed. */
  changed(caller: Caller, action: string, before: ImageDoc | null, after: ImageDoc): Promise<void>;
  /** The gallery ids ?gallery=…&recursive=… selects; 404 for a gallery the caller cannot see. */
  galleryFilter(caller: Caller, id: string, recursive: boolean): Promise<string[]>;
  /**
   * The galleries shared with the caller's project (each shared gallery and all below it, once,
   * with the strongest answer), only those with one of `statuses` (default: any).
   */
  grants(caller: Caller, statuses?: readonly MemberStatus[]): Promise<GalleryGrant[]>;
  /** Whether the gallery is shared with the caller's project (it or a gallery above it), whatever the answer. */
  sharesGallery(caller: Caller, galleryId: string): Promise<boolean>;
}

const grantIndexes = new WeakMap<readonly GalleryGrant[], Map<string, GalleryGrant>>();

/**
 * The grants among `galleryIn` (all of them without it): a query restricted to some galleries
 * needs no access term for the others, and a count per gallery then sends one id, not every
 * shared gallery (O(|galleryIn|) once the grants are indexed, however many grants).
 */
function onlyIn(grants: GalleryGrant[], galleryIn: readonly string[] | undefined): GalleryGrant[] {
  if (!galleryIn || grants.length === 0) return grants;
  let index = grantIndexes.get(grants);
  if (!index) grantIndexes.set(grants, (index = new Map(grants.map((g) => [g.gallery_id, g]))));
  const out: GalleryGrant[] = [];
  for (const id of galleryIn) {
    const g = index.get(id);
    if (g) out.push(g);
  }
  return out;
}

/**
 * sort=relevance on a store without rankedList reads the matches this many at a time (large:
 * on FerretDB v1 each read is a collection scan whatever its limit).
 */
const RANK_SCAN_BATCH = 1000;

/** How far the list fallback reads past `limit` per round while it filters out what the caller may not see. */
const LIST_CHUNK = 200;

/**
 * The statuses a list shows: deleted images never; killed ones only when the status filter names
 * them. Glance never lists a killed image (glance/db/sqlalchemy/api.py, the `deleted` filter every
 * list sets), and every refused upload or import ends killed here, so a plain list stays as
 * Glance's clients expect; `status=killed` is PIR's way to find them (GET by id shows each one).
 */
function listedStatuses(requested: readonly string[] | undefined): string[] {
  return (requested ?? IMAGE_STATUSES.filter((s) => s !== 'killed')).filter((s) => s !== 'deleted');
}

/** 410: the image was deleted while its bytes were arriving (Glance's HTTPGone); nothing of them is kept. */
export function deletedWhileArriving(id: string): PirError {
  return new PirError('gone', 'image_deleted', `Image ${id} was deleted while its data was arriving; nothing was kept.`);
}

export class ImageService {
  readonly stores: StoreRegistry;

  /**
   * Whether the image is deleted (or gone): an upload whose store call failed asks, since on S3
   * the delete aborts the upload under it, and that is the answer (410), not a store fault.
   */
  async wasDeleted(id: string): Promise<boolean> {
    return this.get(SYSTEM_CALLER, id).then((doc) => doc.status === 'deleted', (e: unknown) => e instanceof PirError && e.kind === 'not_found');
  }

  constructor(
    private readonly manifest: Manifest,
    private readonly blobs: BlobStore,
    private readonly settings: ServiceSettings,
    private catalog: CatalogHooks | null = null,
  ) {
    this.stores = settings.stores ?? StoreRegistry.single(blobs);
  }

  /** Wires the catalog extension (galleries, revisions) in after construction. */
  attachCatalog(catalog: CatalogHooks): void {
    this.catalog = catalog;
  }

  // ---------------------------------------------------------------- metadata

  /**
   * Who may create this image (Glance's add_image, and publicize/communitize for its
   * visibility): checked by create, and by the route before it holds quota for the image.
   * Returns the owner the image will have.
   */
  authorizeCreate(caller: Caller, input: Pick<CreateImageInput, 'owner' | 'visibility'>): string | null {
    const owner = input.owner === undefined ? caller.project_id : input.owner;
    // Glance's add_image: admin, or a member creating an image its own project owns.
    enforce(caller, 'add_image', { owner: owner ?? null });
    if (input.owner !== undefined && owner !== caller.project_id && !isAdminCaller(caller)) {
      throw fail('policy_denied', `Only an administrator may create an image owned by another project (owner ${String(owner)}); leave owner out.`);
    }
    if (input.visibility !== undefined) this.enforceVisibility(caller, input.visibility as Visibility, 'shared', owner);
    return owner;
  }

  /** `chosenId`: the client chose `input.id` (only such an id can be a retired one; checking costs reads). */
  async create(caller: Caller, input: CreateImageInput, opts: { chosenId: boolean } = { chosenId: input.id !== undefined }): Promise<ImageDoc> {
    const owner = this.authorizeCreate(caller, input);
    const now = new Date().toISOString();
    const doc: ImageDoc = {
      // UUIDs are case-insensitive on input (RFC 9562 §4): one spelling, so that two cannot name two images.
      id: input.id?.toLowerCase() ?? randomUUID(),
      revision: 1,
      name: null,
      owner,
      status: 'queued',
      visibility: 'shared',
      protected: false,
      os_hidden: false,
      disk_format: null,
      container_format: null,
      min_disk: 0,
      min_ram: 0,
      size: null,
      virtual_size: null,
      checksum: null,
      os_hash_algo: null,
      os_hash_value: null,
      tags: [],
      properties: {},
      members: [],
      created_at: now,
      updated_at: now,
      expected: input.expected_sha512 ? { sha512: input.expected_sha512.toLowerCase() } : {},
      upload: null,
      staging: null,
      pipeline: null,
      failure: null,
      outbox: [],
      ...(input.import_task ? { import_task: input.import_task } : {}),
    };
    for (const key of entity.WRITABLE_FIELDS) {
      if (key !== 'owner' && input[key] !== undefined) entity.setField(doc, key, input[key]);
    }
    for (const [key, value] of Object.entries(input.properties ?? {})) entity.setProperty(doc, key, value);
    try {
      const created = await this.manifest.create(doc, [
        event('image.created', { name: doc.name, disk_format: doc.disk_format, container_format: doc.container_format }),
      ], { chosenId: opts.chosenId });
      await this.catalog?.changed(caller, 'create', null, created);
      return created;
    } catch (error) {
      if (error instanceof RetiredIdError) throw fail('duplicate_id', `The id ${doc.id} belonged to an image that was deleted; image ids are never reused, so that an id always names the same image. Leave id out to get a new one.`);
      if (error instanceof ManifestConflictError) throw fail('duplicate_id', `An image with id ${doc.id} already exists; leave id out to get a new one.`);
      throw error;
    }
  }

  /** The image, as the caller may see it (404 when it may not). */
  async get(caller: Caller, id: string): Promise<ImageDoc> {
    const doc = await this.visible(caller, await this.manifest.get(id), id);
    enforce(caller, 'get_image', { owner: doc.owner });
    return doc;
  }

  /**
   * Lists images the caller may see, Glance's default view unless a visibility filter is given
   * (deleted images, kept until their last event is relayed, are never shown). The scoping is a
   * filter over the store's pages here; the store will do it in its query.
   */
  /**
   * Lists the images the caller may see, filtered and sorted as asked, after the marker. Who
   * sees what (Glance's list rules, core/list-access.ts) is part of the store's query, so a page
   * costs one indexed query whatever the caller sees. Deleted images (kept until their last
   * event is relayed) are never shown. A marker that is no image, a deleted one, or one the
   * caller cannot see (policy canSee: Glance's is_image_visible) is refused alike, so a marker
   * cannot probe for other projects' images; an admin's marker may be a deleted image until it
   * is purged (the page after its place, as Glance's admin context sees deleted rows).
   */
  async list(caller: Caller, request: ListRequest): Promise<ImageDoc[]> {
    const plan = await this.listPlan(caller, request);
    if (plan.ranked) return this.ranked(caller, plan.grants, plan.query, request);
    return plan.empty ? [] : this.manifest.store.list(plan.query);
  }

  /**
   * The page `request` asks for (at most its limit), in batches of at most `batch` images, each
   * read when the caller asks for it: a caller that stops early (a page ended by its byte budget)
   * reads no further, and holds one batch at a time. With a store that lists ids (listIds and
   * getMany), the page's ids come from one query and its documents in batches by id; an image
   * deleted or hidden from the caller between the two reads is left out, and the page is filled
   * up after the last one shown. Otherwise each batch is one list query after the last image's
   * keyset.
   */
  async *listBatches(caller: Caller, request: ListRequest, batch: number): AsyncGenerator<ImageDoc[], void, undefined> {
    const store = this.manifest.store;
    const limit = request.query.limit;
    let shown = 0;
    let last: ImageDoc | undefined;
    if (!request.relevance && store.listIds && store.getMany) {
      const plan = await this.listPlan(caller, request);
      if (plan.empty) return;
      const visible = new Set(plan.grants.map((g) => g.gallery_id));
      const ids = await store.listIds(plan.query);
      for (let i = 0; i < ids.length; i += batch) {
        const docs = (await store.getMany(ids.slice(i, i + batch))).filter((d) => d.status !== 'deleted' && canSee(caller, d, visible));
        shown += docs.length;
        last = docs.at(-1) ?? last;
        if (docs.length) yield docs;
      }
      if (ids.length < limit || shown === ids.length) return;
    }
    while (shown < limit) {
      const want = Math.min(batch, limit - shown);
      const after = last ? sortValues(last, request.query.sort) : undefined;
      const docs = await this.list(caller, after ? { ...request, marker: undefined, query: { ...request.query, limit: want }, after } : { ...request, query: { ...request.query, limit: want } });
      shown += docs.length;
      last = docs.at(-1) ?? last;
      if (docs.length) yield docs;
      if (docs.length < want) return;
    }
  }

  /** What a list request asks the store: the caller's scope, the statuses, the gallery, the marker's keyset. */
  private async listPlan(caller: Caller, request: ListRequest): Promise<{ query: ListQuery; grants: GalleryGrant[]; ranked: boolean; empty: boolean }> {
    enforce(caller, 'get_images', { owner: caller.project_id });
    const grants = await this.grants(caller, galleryStatuses(request.query));
    const scope: ListScope = { project_id: caller.project_id, admin: isAdminCaller(caller), galleries: grants };
    const status = listedStatuses(request.query.where.status);
    const query: ListQuery = { ...request.query, scope, where: { ...request.query.where, status } };
    if (request.gallery) {
      if (!this.catalog) throw fail('bad_gallery', 'Galleries are not served here.');
      query.galleryIn = await this.catalog.galleryFilter(caller, request.gallery.id, request.gallery.recursive);
      // Only the grants among the galleries asked for can let an image through.
      query.scope = { ...scope, galleries: onlyIn(grants, query.galleryIn) };
    }
    if (request.relevance && query.search) return { query, grants, ranked: true, empty: false };
    if (request.after) {
      query.after = request.after;
    } else if (request.marker !== undefined) {
      const marker = await this.manifest.store.get(request.marker);
      // An admin's marker may be a deleted image not purged yet: Glance's admin reads deleted rows.
      if (!marker || (marker.status === 'deleted' && !isAdminCaller(caller)) || !(await this.canSeeVia(caller, marker))) {
        throw fail('bad_marker', `Query parameter 'marker' must be the id of an image you can list (got '${request.marker.slice(0, 64)}'); start again without it.`);
      }
      query.after = sortValues(marker, query.sort);
    }
    return { query, grants, ranked: false, empty: status.length === 0 || query.limit === 0 };
  }

  /**
   * sort=relevance: every match ranked by core/search.ts `relevance`, best first, equal scores in
   * the list's order; the page after the marker (or after the id that ends the `after` keyset,
   * as the page builder continues). The marker's score and sort values are the position, so a
   * page costs what its tier costs, however deep the marker.
   */
  private async ranked(caller: Caller, grants: GalleryGrant[], query: ListQuery, request: ListRequest): Promise<ImageDoc[]> {
    const search = query.search!;
    const store = this.manifest.store;
    const lastId = request.after ? String(request.after[request.after.length - 1]) : request.marker;
    let marker: ImageDoc | null = null;
    if (lastId !== undefined) {
      marker = await store.get(lastId);
      if (!marker || marker.status === 'deleted' || !(await this.canSeeVia(caller, marker)) || !searchMatches(marker, search)) {
        throw fail('bad_marker', `Query parameter 'marker' must be the id of an image among this search's ranked results (got '${lastId.slice(0, 64)}'); start again without it.`);
      }
    }
    if (query.where.status?.length === 0 || query.limit === 0) return [];
    const from = marker ? { score: relevance(marker, search), after: sortValues(marker, query.sort) } : undefined;
    if (store.rankedList) return store.rankedList({ ...query, after: undefined }, from);
    return this.rankedByScan(query, marker);
  }

  /**
   * sort=relevance for a store that cannot rank: every match read in the list's order, in
   * batches, keeping only the best `limit` after the marker (memory: one page and one batch).
   */
  private async rankedByScan(query: ListQuery, marker: ImageDoc | null): Promise<ImageDoc[]> {
    const search = query.search!;
    const markerScore = marker ? relevance(marker, search) : Infinity;
    const best: { doc: ImageDoc; score: number }[] = [];
    let after: SortValue[] | undefined;
    for (;;) {
      const batch = await this.manifest.store.list({ ...query, limit: RANK_SCAN_BATCH, after });
      for (const doc of batch) {
        const score = relevance(doc, search);
        // Before the marker in the ranking: a better score, or the same score earlier in the list.
        if (marker && (score > markerScore || (score === markerScore && compareDocs(doc, marker, query.sort) <= 0))) continue;
        // The batch comes in list order, so a newcomer goes after every kept image of its score.
        let at = best.length;
        while (at > 0 && best[at - 1]!.score < score) at--;
        if (at < query.limit) {
          best.splice(at, 0, { doc, score });
          if (best.length > query.limit) best.pop();
        }
      }
      if (batch.length < RANK_SCAN_BATCH) break;
      after = sortValues(batch[batch.length - 1]!, query.sort);
    }
    return best.map((b) => b.doc);
  }

  /**
   * Marks the image deleted, then removes its bytes. The manifest write comes first (an image
   * that still shows must keep its bytes); if the process dies between the two, or a removal
   * fails, the store janitor (workers/sweepers.ts) removes the bytes of the deleted image later.
   */
  async remove(caller: Caller, id: string, onBytesLeft: (error: unknown) => void = () => {}): Promise<void> {
    const doc = await this.change(caller, id, 'delete_image', (draft) => entity.markDeleted(draft));
    // The image is gone for the client whatever happens next: a failure here is the janitor's job.
    await removeImageBytes(this.blobs, id).catch(onBytesLeft);
    // Copies in the other stores (multi-store).
    const elsewhere = copiesOf(doc, this.stores.defaultId).filter((c) => c.store !== this.stores.defaultId);
    await removeCopies(this.stores, elsewhere).catch(onBytesLeft);
  }

  /** PATCH: the operations apply to a draft; visibility and owner changes need their own rules. */
  async update(caller: Caller, id: string, ops: PatchOp[], action = 'update'): Promise<ImageDoc> {
    const galleries = new Map<string, Gallery>();
    for (const gid of galleriesNamed(ops)) {
      const gallery = await this.catalog?.gallery(gid);
      if (gallery) galleries.set(gid, gallery);
    }
    const doc = await this.change(caller, id, 'modify_image', (draft, before) => {
      applyPatch(draft, ops, galleries);
      // An image given to another project leaves its old owner's gallery.
      const gid = draft.properties[GALLERY_PROPERTY];
      if (draft.owner !== before.owner && gid !== undefined && galleries.get(gid)?.owner !== draft.owner) delete draft.properties[GALLERY_PROPERTY];
      // Nor do the old owner's share links follow it: the new owner never handed them out.
      if (draft.owner !== before.owner) {
        delete draft.share_links;
        delete draft.share_link_uses;
      }
      this.enforceVisibility(caller, draft.visibility, before.visibility, before.owner);
      // Glance refuses a non-admin's replace of /owner whatever the value (its own project too).
      if (!isAdminCaller(caller) && (draft.owner !== before.owner || ops.some((o) => o.name === 'owner' && o.op === 'replace'))) {
        throw fail('policy_denied', "Owner can't be updated by non admin: only an administrator may give an image to another project.");
      }
      return entity.updated(before, draft);
    }, ops.some((o) => o.name === GALLERY_PROPERTY) && ops.length === 1 ? 'gallery' : action);
    return this.placedInLiveGallery(caller, doc, galleries);
  }

  /**
   * The gallery an image was just put in may have been deleted between its lookup and the
   * image's write (CatalogService.deleteGallery checks again after its delete, which closes the
   * other order). Looked up again after the write: if it is gone, the image leaves it (one more
   * write, only if it still points there) and the PATCH answers 400 invalid_gallery.
   */
  private async placedInLiveGallery(caller: Caller, doc: ImageDoc, galleries: Map<string, Gallery>): Promise<ImageDoc> {
    const gid = doc.properties[GALLERY_PROPERTY];
    if (gid === undefined || !galleries.has(gid) || !this.catalog || (await this.catalog.gallery(gid))) return doc;
    await this.change(caller, doc.id, 'modify_image', (draft, before) => {
      if (draft.properties[GALLERY_PROPERTY] !== gid) return null;
      delete draft.properties[GALLERY_PROPERTY];
      return entity.updated(before, draft);
    }, 'gallery');
    throw fail('invalid_gallery', `Gallery ${gid.slice(0, 64)} was deleted while image ${doc.id} moved into it; the image is in no gallery now.`);
  }

  /**
   * How many images the caller may list match the query (gallery counts). `grants`: the caller's
   * gallery grants when already loaded (statuses galleryStatuses(query) at least), so counting
   * gallery after gallery reads and walks the shared trees once, not once per count.
   */
  async count(caller: Caller, query: ListRequest['query'], grants?: GalleryGrant[]): Promise<number> {
    enforce(caller, 'get_images', { owner: caller.project_id });
    const scope: ListScope = { project_id: caller.project_id, admin: isAdminCaller(caller), galleries: onlyIn(grants ?? await this.grants(caller, galleryStatuses(query)), query.galleryIn) };
    const status = listedStatuses(query.where.status);
    if (status.length === 0) return 0;
    return this.manifest.store.count({ ...query, scope, where: { ...query.where, status } });
  }

  async addTag(caller: Caller, id: string, tag: string): Promise<ImageDoc> {
    entity.checkTag(tag);
    return this.change(caller, id, 'modify_image', (draft, before) => {
      if (draft.tags.includes(tag)) return null;
      draft.tags.push(tag);
      entity.checkTagCount(draft);
      return entity.updated(before, draft);
    }, 'tags');
  }

  async removeTag(caller: Caller, id: string, tag: string): Promise<ImageDoc> {
    return this.change(caller, id, 'modify_image', (draft, before) => {
      if (!draft.tags.includes(tag)) throw fail('tag_not_found', `Image ${id} has no tag '${tag.slice(0, 255)}'.`);
      draft.tags = draft.tags.filter((t) => t !== tag);
      return entity.updated(before, draft);
    }, 'tags');
  }

  async deactivate(caller: Caller, id: string): Promise<ImageDoc> {
    return this.change(caller, id, 'deactivate', (draft) => entity.deactivate(draft));
  }

  async reactivate(caller: Caller, id: string): Promise<ImageDoc> {
    return this.change(caller, id, 'reactivate', (draft) => entity.reactivate(draft));
  }

  /** The image for GET …/file: a deactivated image is downloadable by administrators only, as Glance. */
  async forDownload(caller: Caller, id: string): Promise<ImageDoc> {
    const doc = await this.visible(caller, await this.manifest.get(id), id);
    enforce(caller, 'download_image', { owner: doc.owner });
    if (doc.status === 'deactivated' && !isAdminCaller(caller)) {
      throw fail('image_deactivated', `Image ${id} is deactivated; an administrator must reactivate it before it can be downloaded.`);
    }
    return doc;
  }

  // ---------------------------------------------------------------- members

  async addMember(caller: Caller, id: string, memberId: string): Promise<ImageMember> {
    const doc = await this.change(caller, id, 'add_member', (draft) => entity.addMember(draft, memberId), 'members');
    return entity.membersOf(doc).find((m) => m.member_id === memberId)!;
  }

  /** The members the caller may see: all of them for the owner (and admins), its own record for a member. */
  async listMembers(caller: Caller, id: string): Promise<ImageMember[]> {
    const doc = this.requireShared(await this.get(caller, id));
    if (isAdminCaller(caller) || doc.owner === caller.project_id) {
      enforce(caller, 'get_members', { owner: doc.owner });
      return entity.membersOf(doc);
    }
    enforce(caller, 'get_members', { owner: doc.owner, member_id: caller.project_id });
    const own = membershipOf(caller, doc);
    return own ? [own] : [];
  }

  /** 404 for an image that is not shared, too: as Glance, which hides why, lest it tell anything. */
  async getMember(caller: Caller, id: string, memberId: string): Promise<ImageMember> {
    const doc = await this.get(caller, id);
    const member = doc.visibility === 'shared' ? entity.membersOf(doc).find((m) => m.member_id === memberId) : undefined;
    const mayLook = isAdminCaller(caller) || doc.owner === caller.project_id || memberId === caller.project_id;
    if (!member || !mayLook) throw fail('member_not_found', `Project ${memberId} is not a member of image ${id}.`);
    enforce(caller, 'get_member', { owner: doc.owner, member_id: memberId });
    return member;
  }

  /** Accept, reject or reconsider an invitation: only the member project itself (or an admin). */
  async updateMember(caller: Caller, id: string, memberId: string, status: unknown): Promise<ImageMember> {
    const doc = await this.answerInvitation(caller, id, memberId, (draft) => entity.setMemberStatus(draft, memberId, status));
    return entity.membersOf(doc).find((m) => m.member_id === memberId)!;
  }

  async removeMember(caller: Caller, id: string, memberId: string): Promise<void> {
    await this.change(caller, id, 'delete_member', (draft) => {
      this.requireShared(draft);
      return entity.removeMember(draft, memberId);
    }, 'members');
  }

  // ---------------------------------------------------------------- tasks

  /** Tasks API access (GET /v2/tasks…): administrators only, as Glance's tasks_api_access. */
  assertTasksAccess(caller: Caller): void {
    enforce(caller, 'tasks_api_access', { owner: null });
  }

  /**
   * Every image that has a task (hasTasks), a chunk at a time: tasks are derived from the images, so
   * the admin-only tasks list reads them all and keeps what it needs, never the whole catalog.
   */
  async *imagesWithTasks(caller: Caller): AsyncGenerator<ImageDoc> {
    this.assertTasksAccess(caller);
    const sort: ListQuery['sort'] = [{ key: 'created_at', dir: 'asc' }];
    let cursor: ListQuery['after'];
    for (;;) {
      const docs = await this.manifest.store.list({
        scope: { project_id: caller.project_id, admin: true }, visibility: 'all', memberStatus: 'all', where: {}, sort, limit: LIST_CHUNK, ...(cursor ? { after: cursor } : {}),
      });
      for (const doc of docs) if (doc.status !== 'deleted' && hasTasks(doc)) yield doc;
      if (docs.length < LIST_CHUNK) return;
      cursor = sortValues(docs[docs.length - 1]!, sort);
      // Embedded mode reads SQLite synchronously: let other requests run between chunks, so a
      // large catalog's walk slows this admin call rather than every tenant's.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  // ---------------------------------------------------------------- data

  /** Claims the image for receiving bytes: `upload` (PUT …/file) or `stage` (PUT …/stage). */
  async beginUpload(caller: Caller, id: string, kind: 'upload' | 'stage', targets?: StoreTargets): Promise<UploadTicket> {
    return this.claim(caller, id, (draft, run) => {
      const events = entity.beginReceiving(draft, kind, run);
      if (targets || draft.store_import) draft.store_import = importPlan(targets);
      return events;
    });
  }

  /** Claims the image for a tus upload (same rules as PUT …/file), recording its length and expiry. */
  async beginResumableUpload(caller: Caller, id: string, resumable: ResumableUpload): Promise<UploadTicket> {
    return this.claim(caller, id, (draft, run) => entity.beginResumable(draft, run, resumable));
  }

  /**
   * The image and its tus upload `uploadId`, for a caller continuing it (HEAD, PATCH, DELETE):
   * visibility and the upload_image policy are checked on every request, as for PUT …/file.
   * A finished, terminated or unknown upload is 404; one abandoned because it expired, 410.
   */
  async resumableUpload(caller: Caller, id: string, uploadId: string): Promise<{ doc: ImageDoc; run: number; resumable: ResumableUpload }> {
    const doc = requireVisible(caller, await this.manifest.get(id), id);
    enforce(caller, 'upload_image', { owner: doc.owner });
    const resumable = doc.upload?.resumable;
    if (!doc.upload || !resumable || resumable.id !== uploadId) {
      if (doc.expired_upload?.id === uploadId) {
        throw fail('upload_expired', `Upload ${uploadId} of image ${id} expired at ${doc.expired_upload.expires_at} and was abandoned with its bytes; start a new upload with POST /v2/images/${id}/uploads.`);
      }
      throw fail('upload_not_found', `Image ${id} has no resumable upload ${uploadId.slice(0, 64)} in progress (finished, terminated, expired or never created); create one with POST /v2/images/${id}/uploads.`);
    }
    return { doc, run: doc.upload.run, resumable };
  }

  /**
   * Keeps a long upload from looking abandoned to the sweeper. This and the two calls below
   * continue an upload `beginUpload` authorized: the run number is the ticket. Answers whether
   * the run still holds the image (false once it is deleted, aborted or claimed again).
   */
  async heartbeat(_caller: Caller, id: string, run: number): Promise<boolean> {
    const { doc } = await this.manifest.update(id, (draft) => (draft.upload?.run === run ? [] : null));
    return doc.upload?.run === run && doc.status !== 'deleted';
  }

  /**
   * All bytes are in staging. An upload goes straight on to import; a staged image waits in
   * `uploading` for POST …/import.
   */
  async completeUpload(caller: Caller, id: string, run: number, blob: HashedBlob, claimed: ImageDoc['expected'] = {}, adoption?: entity.RemoteAdoption): Promise<ImageDoc> {
    const { doc } = await this.manifest.update(id, (draft) => {
      if (draft.status === 'deleted') throw deletedWhileArriving(id);
      if (draft.upload?.run !== run) {
        throw conflict('upload_superseded', `Image ${id} changed while its data was arriving (${draft.status}); the upload was discarded.`);
      }
      const { kind, input } = draft.upload;
      // A glance-download's remote formats and properties, in the write that starts the pipeline on them.
      if (adoption && kind === 'glance-download') entity.adoptRemote(draft, adoption);
      const events: NewEvent[] = entity.staged(draft, run, blob, claimed);
      // A staged image waits for POST …/import; an upload or a web-download goes straight on.
      if (kind !== 'stage') events.push(...entity.beginImport(draft, run, kind, this.settings.stageDeadlineSeconds, requestedBy(caller, input)));
      return events;
    }).catch(async (error: unknown) => {
      const gone = (error as { kind?: string }).kind === 'not_found' || (error as { code?: string }).code === 'image_deleted';
      if (!gone) throw error;
      // Deleted while its bytes streamed in: nothing is kept, and the client is told so (410, as Glance).
      await this.dropStaging(id).catch(() => {});
      throw deletedWhileArriving(id);
    });
    return doc;
  }

  /**
   * The bytes never all arrived: back to queued, this run's staging removed. Only this run's: a
   * retry may already be writing under the next run number (S3: deleting its key would abort the
   * retry's multipart upload).
   */
  /** `neverStarted`: the call that claimed the image was refused before its work began (nothing is recorded). */
  async abortUpload(_caller: Caller, id: string, run: number, reason: string, options: { expired?: boolean; neverStarted?: boolean } = {}): Promise<void> {
    const abort = (draft: ImageDoc) => (options.neverStarted ? entity.releaseClaim(draft, reason) : entity.abortReceiving(draft, reason, options.expired));
    try {
      await this.manifest.update(id, (draft) => (draft.upload?.run === run ? abort(draft) : null));
    } finally {
      await removeRunStaging(this.blobs, id, run);
    }
  }

  /**
   * POST …/import with web-download: Glance's preconditions (a queued image with both formats
   * set, else 409), then the image is `uploading` while the URL's body streams into staging.
   */
  async beginWebDownload(caller: Caller, id: string, targets?: StoreTargets, importReq?: Record<string, unknown>, method: entity.DownloadMethod = 'web-download'): Promise<UploadTicket> {
    return this.claim(caller, id, (draft, run) => {
      const events = entity.beginWebDownload(draft, run, method);
      const plan = targets ?? this.defaultImportTargets();
      if (plan || draft.store_import) draft.store_import = importPlan(plan);
      // Kept until the run (or its failure) names it for the task.
      if (importReq) {
        draft.upload!.input = this.importInput(draft, importReq);
        // Who asked, for the task shown while the bytes come in.
        draft.upload!.requested = requestedBy(caller);
      }
      return events;
    });
  }

  /**
   * Adds a registered location to a queued image (POST …/locations, PATCH add /locations/-):
   * the upload_image policy (owner's member or admin), then who may add which kind of location
   * (core/external-location.ts enforceAddLocation). Claims the image (`uploading`).
   */
  async beginRegistration(caller: Caller, id: string, location: ExternalLocation, kind: ParsedLocation['kind'], action: 'add_image_location' | 'modify_image' = 'add_image_location'): Promise<{ run: number }> {
    let run = 0;
    await this.change(caller, id, action, (draft, before) => {
      enforceAddLocation(caller, before, kind);
      run = nextRunNumber(draft);
      return entity.beginRegistration(draft, run, location);
    });
    return { run };
  }

  /** Records what the registered object looked like before its bytes are read (continues beginRegistration's run). */
  async recordFingerprint(id: string, run: number, fingerprint: LocationFingerprint): Promise<void> {
    await this.manifest.update(id, (draft) => {
      if (draft.upload?.run !== run || draft.upload.kind !== 'location') {
        throw conflict('upload_superseded', `Image ${id} changed while its location was being registered (${draft.status}).`);
      }
      return entity.fingerprinted(draft, fingerprint);
    });
  }

  /** The image's registered location, for GET /v2/images/{id}/locations (service users and admins). */
  async locationOf(caller: Caller, id: string): Promise<ExternalLocation | null> {
    const doc = await this.visible(caller, await this.manifest.get(id), id, 'fetch_image_location');
    enforceListLocations(caller);
    return doc.location ?? null;
  }

  /**
   * A web-download or a location registration that failed (refused address, HTTP error, too
   * large, broken off, digests not as validation_data said) kills the image with the reason: terminal and explicit, as every failed PIR import (Glance would put
   * the image back in `queued`, where pollers wait forever). Continues what beginWebDownload authorized.
   */
  async failWebDownload(caller: Caller, id: string, run: number, code: string, message: string): Promise<void> {
    try {
      await this.manifest.update(id, (draft) => {
        const method = draft.upload?.run === run ? draft.upload.kind : null;
        if (method !== 'web-download' && method !== 'location') return null;
        return entity.kill(draft, 'import', code, message, { run, method, requested: requestedBy(caller, draft.upload?.input) });
      });
    } finally {
      await this.dropStaging(id);
    }
  }

  /**
   * A glance-download that failed before its bytes were all in (no endpoint for the region, the
   * remote image missing or not active, its data refused or cut short): back to `queued` with the
   * image's own metadata, as Glance's revert, and the failure kept for the task. Continues what
   * beginWebDownload authorized.
   */
  async failGlanceDownload(caller: Caller, id: string, run: number, code: string, message: string): Promise<void> {
    try {
      await this.manifest.update(id, (draft) => {
        if (draft.upload?.run !== run || draft.upload.kind !== 'glance-download') return null;
        return entity.downloadFailedBackToQueued(draft, code, message, { run, method: 'glance-download', requested: requestedBy(caller, draft.upload.input) });
      });
    } finally {
      await removeRunStaging(this.blobs, id, run);
    }
  }

  /**
   * Claims the image for receiving bytes under the next run number (`begin` sets its upload
   * record). If the write failed once sent (a refusal is a PirError thrown before anything is
   * written), it may have landed with nobody to run the upload: it is released in the background.
   */
  private async claim(caller: Caller, id: string, begin: (draft: ImageDoc, run: number) => NewEvent[]): Promise<UploadTicket> {
    let claimed = null as Claim | null; // set by the write's mutator
    try {
      const doc = await this.change(caller, id, 'upload_image', (draft) => {
        const run = nextRunNumber(draft);
        const events = begin(draft, run);
        claimed = { run, started_at: draft.upload!.started_at };
        return events;
      });
      const { run, started_at: startedAt } = claimed!;
      return { run, startedAt, stagingKey: stagingKey(doc.id, run, 'upload'), diskFormat: doc.disk_format };
    } catch (error) {
      if (claimed && !(error instanceof PirError)) this.releaseLater(id, claimed, null);
      throw error;
    }
  }

  /**
   * An upload that failed because the manifest did not answer (its claim, its completion or its
   * abort could not be written) is put back in queued in the background once it answers again
   * (core/lost-claims.ts), and its staged bytes, if any, removed: the client's retry finds the
   * image free instead of 409 until the stale sweep. Only that claim is released.
   */
  releaseLater(id: string, claim: Claim, stagedKey: string | null): void {
    void releaseLostClaim(this.manifest, id, claim)
      .then(async (released) => { if (released && stagedKey) await this.blobs.delete(stagedKey); })
      .catch(() => {}); // the stale sweep and the staging janitor do the same later
  }

  /** Removes the image's staging blobs, but never the one an object store holds the image under. */
  private async dropStaging(id: string): Promise<void> {
    const doc = await this.manifest.get(id);
    await removeStaging(this.blobs, id, doc?.blob_key);
  }

  /** POST …/import with glance-direct: a staged image starts the pipeline (its task names the caller's request). */
  async importStaged(caller: Caller, id: string, targets?: StoreTargets, importReq?: Record<string, unknown>): Promise<ImageDoc> {
    return this.change(caller, id, 'modify_image', (draft) => {
      if (draft.status !== 'uploading' || !draft.staging) {
        throw conflict('not_staged', `Image ${id} is ${draft.status}${draft.upload ? ' and its data is still arriving' : ''}; glance-direct import needs data staged with PUT /v2/images/${id}/stage first.`);
      }
      // The formats cannot change once data is staged, so the way out is a new image.
      entity.requireFormatsBefore(draft, 'import', 'it cannot be set once data is staged: create the image again with disk_format and container_format, then stage and import.');
      // Stores named at import win over the X-Image-Meta-Store of PUT …/stage; neither: the default store.
      if (targets) draft.store_import = importPlan(targets);
      else if (!draft.store_import?.importing.length) {
        const plan = this.defaultImportTargets(); // undefined with one store: nothing to list
        if (plan) draft.store_import = importPlan(plan);
      }
      const input = importReq ? this.importInput(draft, importReq) : undefined;
      return entity.beginImport(draft, nextRunNumber(draft), 'glance-direct', this.settings.stageDeadlineSeconds, requestedBy(caller, input));
    });
  }

  /** Glance's task input (images.py import_image): the whole body, and the stores it imports to ([None] without multi-store). */
  private importInput(draft: ImageDoc, importReq: Record<string, unknown>): ImportInput {
    return { import_req: importReq, backend: this.stores.multi ? [...(draft.store_import?.importing ?? [])] : [null] };
  }

  /**
   * An import that names no store, with multi-store: Glance's target is the default store, listed in
   * os_glance_importing_to_stores like a named one (and in os_glance_failed_import if it fails).
   */
  private defaultImportTargets(): StoreTargets | undefined {
    return this.stores.multi ? { stores: [this.stores.defaultId], must_succeed: true } : undefined;
  }

  // ---------------------------------------------------------------- share links

  /** Adds a share link (owner or admin: the modify_image policy on an image the caller owns). */
  async addShareLink(caller: Caller, id: string, link: ShareLink): Promise<ImageDoc> {
    return this.change(caller, id, 'modify_image', (draft, before) => {
      this.requireOwner(caller, before);
      if (draft.status !== 'active') throw conflict('invalid_status', `Image ${id} is ${draft.status}; only an active image can be shared by link.`);
      const live = (draft.share_links ?? []).filter((l) => Date.parse(l.expires_at) > Date.now());
      if (live.length >= LIMITS.shareLinksPerImage) throw fail('too_many_share_links', `Image ${id} already has ${live.length} live share links; revoke one first.`);
      // Expired links go with this write: the list never grows without bound.
      draft.share_links = [...live, link];
      return [];
    });
  }

  /** The image's share links with their use counts (owner or admin only). */
  async listShareLinks(caller: Caller, id: string): Promise<{ doc: ImageDoc; links: ShareLink[] }> {
    const doc = await this.get(caller, id);
    enforce(caller, 'modify_image', { owner: doc.owner });
    this.requireOwner(caller, doc);
    return { doc, links: doc.share_links ?? [] };
  }

  async revokeShareLink(caller: Caller, id: string, linkId: string): Promise<void> {
    await this.change(caller, id, 'modify_image', (draft, before) => {
      this.requireOwner(caller, before);
      const links = draft.share_links ?? [];
      if (!links.some((l) => l.id === linkId)) throw fail('share_link_not_found', `Image ${id} has no share link ${linkId.slice(0, 64)}.`);
      draft.share_links = links.filter((l) => l.id !== linkId);
      if (draft.share_link_uses) delete draft.share_link_uses[linkId];
      return [];
    });
  }

  /** Counts one use of a link (no caller: the third party has none); updated_at does not move. */
  countShareLinkUse(id: string, linkId: string): Promise<void> {
    return this.shareLinkUses.count(id, linkId);
  }

  /** Uses counted meanwhile, one write (core/share-link-uses.ts); a revoked link's uses are dropped. */
  private readonly shareLinkUses = new ShareLinkUseCounter(async (id, uses) => {
    await this.manifest.update(id, (draft) => {
      const live = [...uses].filter(([linkId]) => (draft.share_links ?? []).some((l) => l.id === linkId));
      if (live.length === 0) return null;
      draft.share_link_uses = { ...draft.share_link_uses };
      for (const [linkId, n] of live) draft.share_link_uses[linkId] = (draft.share_link_uses[linkId] ?? 0) + n;
      return [];
    }, { touch: false });
  });

  /** Share links are the owner's: a member or a reader of a public image may not mint them. */
  private requireOwner(caller: Caller, doc: ImageDoc): void {
    if (!isAdminCaller(caller) && doc.owner !== caller.project_id) {
      throw fail('policy_denied', `Only the owner of image ${doc.id} (or an administrator) may manage its share links.`);
    }
  }

  // ---------------------------------------------------------------- helpers

  /**
   * One authorized change: the image as the caller sees it (404), the policy for `action` (403),
   * then `apply` on a draft (with the image as it was, for diffs) in one compare-and-set write.
   * The visibility and policy checks run again on every compare-and-set retry, on fresh data.
   * Member changes keep the image's updated_at, as Glance (which keeps members apart).
   */
  private async change(
    caller: Caller,
    id: string,
    action: 'delete_image' | 'modify_image' | 'upload_image' | 'deactivate' | 'reactivate' | 'add_member' | 'delete_member' | 'add_image_location',
    apply: (draft: ImageDoc, before: ImageDoc) => NewEvent[] | null,
    recordAs = action as string,
  ): Promise<ImageDoc> {
    let before: ImageDoc | null = null;
    const { doc, changed } = await this.viaGalleriesRetry(caller, (via) => this.manifest.update(id, (draft) => {
      before = requireVisible(caller, structuredClone(draft), id, via.of(draft), action);
      enforce(caller, action, { owner: before.owner });
      return apply(draft, before);
    }, { touch: recordAs !== 'members' }));
    if (changed && before) await this.catalog?.changed(caller, recordAs, before, doc);
    return doc;
  }

  /** Member status changes: the member itself (or an admin) decides, the owner gets 403. */
  private async answerInvitation(caller: Caller, id: string, memberId: string, apply: (draft: ImageDoc) => NewEvent[] | null): Promise<ImageDoc> {
    let before: ImageDoc | null = null;
    const { doc, changed } = await this.viaGalleriesRetry(caller, (via) => this.manifest.update(id, (draft) => {
      before = structuredClone(draft);
      const image = this.requireShared(requireVisible(caller, draft, id, via.of(draft)));
      enforce(caller, 'get_image', { owner: image.owner });
      if (!isAdminCaller(caller) && memberId !== caller.project_id) {
        // Glance looks the member up first (_lookup_member, then modify_member): 404 for a project that is no member.
        if (image.owner === caller.project_id && entity.membersOf(image).some((m) => m.member_id === memberId)) {
          throw fail('member_status_by_member_only', `Only project ${memberId} can accept or reject its membership of image ${id}; the owner may add or remove members.`);
        }
        throw fail('member_not_found', `Project ${memberId} is not a member of image ${id}.`);
      }
      enforce(caller, 'modify_member', { owner: image.owner, member_id: memberId });
      return apply(draft);
    }, { touch: false }));
    if (changed && before) await this.catalog?.changed(caller, 'members', before, doc);
    return doc;
  }

  /** Galleries shared with the caller's project with one of `statuses` (none for admins, who see everything anyway). */
  private async grants(caller: Caller, statuses?: readonly MemberStatus[]): Promise<GalleryGrant[]> {
    if (!this.catalog || isAdminCaller(caller) || statuses?.length === 0) return [];
    return this.catalog.grants(caller, statuses);
  }

  /**
   * The galleries through which the caller may see this image (policy canSee `viaGalleries`):
   * asked of the catalog only for an image the caller would not see otherwise and that sits in a
   * gallery, and then only about that gallery (its ancestors' shares), never every grant.
   */
  private async viaGalleries(caller: Caller, doc: ImageDoc | null): Promise<ReadonlySet<string> | undefined> {
    if (!doc || doc.status === 'deleted' || !this.catalog || isAdminCaller(caller) || canSee(caller, doc)) return undefined;
    const gid = doc.properties[GALLERY_PROPERTY];
    if (gid === undefined || !(await this.catalog.sharesGallery(caller, gid))) return undefined;
    return new Set([gid]);
  }

  /** canSee, with the galleries shared with the caller asked about only when they matter. */
  private async canSeeVia(caller: Caller, doc: ImageDoc): Promise<boolean> {
    return canSee(caller, doc, await this.viaGalleries(caller, doc));
  }

  /**
   * A compare-and-set write whose callback checks visibility (requireVisible) with `via.of(draft)`:
   * first without the galleries shared with the caller (nothing asked of the catalog, the usual
   * case); when that refuses an image that sits in a gallery, once more with what the catalog says
   * about that gallery (fresh data then: the retry reads the image again).
   */
  private async viaGalleriesRetry<T>(caller: Caller, write: (via: { of(draft: ImageDoc): ReadonlySet<string> | undefined }) => Promise<T>): Promise<T> {
    let hidden = null as ImageDoc | null;
    try {
      return await write({
        of: (draft) => {
          if (this.catalog && !isAdminCaller(caller) && draft.status !== 'deleted' && !canSee(caller, draft) && draft.properties[GALLERY_PROPERTY] !== undefined) hidden = structuredClone(draft);
          return undefined;
        },
      });
    } catch (error) {
      const via = hidden ? await this.viaGalleries(caller, hidden) : undefined;
      if (!via) throw error;
      return write({ of: () => via });
    }
  }

  /** requireVisible, asking the catalog only for an image the caller would not see otherwise and that sits in a gallery. */
  private async visible(caller: Caller, doc: ImageDoc | null, id: string, action: Action = 'get_image'): Promise<ImageDoc> {
    return requireVisible(caller, doc, id, await this.viaGalleries(caller, doc), action);
  }

  private requireShared(doc: ImageDoc): ImageDoc {
    if (doc.visibility !== 'shared') {
      throw fail('members_only_shared', `Image ${doc.id} is ${doc.visibility}; only images with visibility 'shared' have members.`);
    }
    return doc;
  }

  /** publicize_image for a move to public, communitize_image for a move to community. */
  private enforceVisibility(caller: Caller, to: Visibility, from: Visibility, owner: string | null): void {
    if (to === from) return;
    if (to === 'public') enforce(caller, 'publicize_image', { owner });
    if (to === 'community') enforce(caller, 'communitize_image', { owner });
  }
}

/** The record of an import's target stores; null: the default store alone, as without multi-store. */
function importPlan(targets: StoreTargets | undefined): ImageDoc['store_import'] {
  return targets ? { importing: [...targets.stores], failed: [], must_succeed: targets.must_succeed } : null;
}

/** Whether taskViews shows the image any task: a run, a failure, a legacy import, a download under way, a copy-image, an earlier import's. */
function hasTasks(doc: ImageDoc): boolean {
  return Boolean(doc.pipeline || doc.failure || doc.import_task || doc.upload?.input || doc.copy_tasks?.length || doc.earlier_tasks?.length);
}

