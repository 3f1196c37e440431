/**
 * The catalog extension's use cases: galleries (a tree of named folders per project), the
 * revisions of every image's metadata, and metafiles. Each call acts for a caller; images are
 * always reached through ImageService, so Glance's visibility rules and the policy decide about
 * them exactly as for the Image API (an image the caller cannot see is 404 here too).
 *
 * Galleries belong to one project: its readers see them, its members change them, and
 * administrators see and change every project's. A `shared` gallery's member projects see it
 * and every gallery below it, read-only, and the images in them as if each image were shared
 * with them (core/list-access.ts `gallery` term, policy canSee). Any other project learns
 * nothing of them (404, whether the gallery exists or not).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ImageDoc } from '../schemas/image.js';
import { SYSTEM_CALLER, type Caller } from './caller.js';
import { GalleryNameTakenError, type CatalogStore, type Gallery, type GalleryMember, type GalleryVisibility, type Revision } from './catalog-ports.js';
import { fail } from './error-catalog.js';
import { GALLERY_LIMITS, GALLERY_PROPERTY, GRANT_STRENGTH, checkGalleryName, childrenIndex, childrenOf, depthOf, expandShares, heightOf, pathOf, sameGalleryName, subtreeOf } from './gallery-rules.js';
import type { CatalogHooks, ImageService } from './image-service.js';
import type { PatchOp } from './image-patch.js';
import type { GalleryGrant, ListRequest } from './ports.js';
import { MEMBER_STATUSES, type MemberStatus } from '../schemas/image.js';
import { allowed, enforce, isAdminCaller } from './policy.js';
import { galleryStatuses } from './list-access.js';
import { diffMetadata, metadataOf, METADATA_FIELDS, type ImageMetadata } from './revisions.js';

export interface CatalogSettings {
  /** Revisions kept per image (PIR_REVISIONS_KEEP); older ones are pruned. */
  revisionsKeep: number;
  /** Where a revision that could not be written is reported (the next read of the history repairs it). */
  log?: Pick<Logger, 'warn'>;
}

export interface GalleryView {
  id: string;
  name: string;
  parent_id: string | null;
  path: string;
  owner: string;
  visibility: GalleryVisibility;
  created_at: string;
  updated_at: string;
}

/** Tries to append one revision while other writers of the image append theirs (then the read repair records it). */
const REVISION_ATTEMPTS = 50;

/** Members per gallery, as Glance's image_member_quota for an image. */
const GALLERY_MEMBERS_MAX = 128;
const MEMBER_ID_MAX = 255;

export interface GalleryCounts {
  /** Images the caller may list in the gallery (and, recursively, below it). */
  image_count: number;
  /** Galleries directly in it (recursively: all below it). */
  gallery_count: number;
}

/** A kamaki-style metafile: what registering an image again needs (and nothing PIR computes). */
export interface Metafile {
  name: string | null;
  disk_format: string | null;
  container_format: string | null;
  visibility: string;
  protected: boolean;
  min_disk: number;
  min_ram: number;
  tags: string[];
  properties: Record<string, string>;
  /** The gallery's path in the owner's tree, or null. */
  gallery: string | null;
  /** The image's newest revision: the metafile's version (its history: GET …/revisions). */
  revision: number | null;
}

const notFoundGallery = (id: string) => fail('gallery_not_found', `Gallery ${id.slice(0, 64)} was not found in your project; list yours with GET /v2/galleries.`);

export class CatalogService {
  constructor(
    private readonly store: CatalogStore,
    private readonly images: ImageService,
    private readonly settings: CatalogSettings,
  ) {}

  /** What ImageService calls back into (ImageService.attachCatalog). */
  hooks(): CatalogHooks {
    return {
      gallery: (id) => this.store.getGallery(id),
      changed: (caller, action, before, after) => this.record(caller, action, before, after),
      galleryFilter: (caller, id, recursive) => this.galleryFilter(caller, id, recursive),
      grants: (caller, statuses) => this.grants(caller, statuses),
      sharesGallery: async (caller, galleryId) => (await this.shareStatus(caller, galleryId)) !== null,
    };
  }

  // ---------------------------------------------------------------- galleries

  async createGallery(caller: Caller, body: unknown): Promise<GalleryView> {
    const input = objectBody(body, ['name', 'parent_id', 'visibility']);
    const owner = caller.project_id;
    mayChangeGalleries(caller, owner);
    const name = checkGalleryName(input.name);
    return this.store.exclusive(owner, () => this.createIn(caller, owner, name, input));
  }

  private async createIn(caller: Caller, owner: string, name: string, input: Record<string, unknown>): Promise<GalleryView> {
    const all = await this.store.galleriesOf(owner);
    if (all.length >= GALLERY_LIMITS.perProject) throw fail('gallery_limit', `A project has at most ${GALLERY_LIMITS.perProject} galleries.`);
    const parentId = parentIdOf(input.parent_id);
    const byId = new Map(all.map((g) => [g.id, g]));
    if (parentId !== null) {
      const parent = byId.get(parentId);
      if (!parent) {
        // Another project's gallery the caller may see (shared with it; any, for an admin): 403 as
        // for every other change of it. One it may not see: 404, as if it did not exist.
        const { gallery: theirs } = await this.visibleGallery(caller, parentId);
        throw fail('policy_denied', `Gallery ${theirs.name} is project ${theirs.owner}'s; a gallery is created in your own project's tree (parent_id one of your galleries).`);
      }
      if (depthOf(byId, parent) + 1 > GALLERY_LIMITS.depth) throw fail('gallery_limit', `Galleries nest at most ${GALLERY_LIMITS.depth} deep.`);
    }
    nameFree(all, parentId, name, null);
    const now = new Date().toISOString();
    const visibility = 'visibility' in input ? visibilityOf(input.visibility) : 'shared';
    const gallery: Gallery = { id: randomUUID(), owner, name, parent_id: parentId, visibility, created_at: now, updated_at: now };
    await this.named(this.store.createGallery(gallery), name);
    byId.set(gallery.id, gallery);
    return view(byId, gallery);
  }

  async getGallery(caller: Caller, id: string): Promise<GalleryView> {
    const { gallery, byId } = await this.visibleGallery(caller, id);
    return view(byId, gallery);
  }

  /** The gallery with its counts: direct, or with `recursive` over everything below it. */
  async galleryWithCounts(caller: Caller, id: string, recursive: boolean): Promise<GalleryView & GalleryCounts> {
    const { gallery, seen, byId } = await this.visibleGallery(caller, id);
    const index = childrenIndex(seen);
    const ids = recursive ? subtreeOf(index, id) : [id];
    const image_count = await this.images.count(caller, imageQuery(ids));
    const gallery_count = recursive ? ids.length - 1 : childrenOf(index, id).length;
    return { ...view(byId, gallery), image_count, gallery_count };
  }

  /** The galleries of the caller's project (an admin may name another project), optionally only one parent's children. */
  async listGalleries(caller: Caller, options: { owner?: string; parent_id?: string | null }): Promise<GalleryView[]> {
    const owner = options.owner ?? caller.project_id;
    if (owner !== caller.project_id && !isAdminCaller(caller)) return [];
    enforce(caller, 'get_images', { owner });
    const all = await this.store.galleriesOf(owner);
    const byId = new Map(all.map((g) => [g.id, g]));
    const picked = options.parent_id === undefined ? all : all.filter((g) => g.parent_id === options.parent_id);
    return picked.map((g) => view(byId, g)).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** A gallery's sub-galleries (recursive: all below it), each with its own counts. */
  async subGalleries(caller: Caller, id: string, recursive: boolean): Promise<(GalleryView & GalleryCounts)[]> {
    const { seen, byId } = await this.visibleGallery(caller, id);
    const index = childrenIndex(seen);
    const ids = recursive ? subtreeOf(index, id).slice(1) : childrenOf(index, id).map((g) => g.id);
    const out: (GalleryView & GalleryCounts)[] = [];
    // The caller's grants once for every count (a count loads them otherwise: per gallery, a walk of the shared trees).
    const grants = isAdminCaller(caller) ? [] : await this.grants(caller, galleryStatuses(imageQuery([])));
    for (const gid of ids) {
      const g = byId.get(gid)!;
      out.push({ ...view(byId, g), image_count: await this.images.count(caller, imageQuery([gid]), grants), gallery_count: index.get(gid)?.length ?? 0 });
    }
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** Rename and/or move (parent_id: null moves to the root). */
  async updateGallery(caller: Caller, id: string, body: unknown): Promise<GalleryView> {
    const input = objectBody(body, ['name', 'parent_id', 'visibility']);
    return this.changing(caller, id, async ({ gallery, all, byId }) => {
    mayChangeGalleries(caller, gallery.owner, gallery);
    const next: Gallery = { ...gallery, updated_at: new Date().toISOString() };
    if ('name' in input) next.name = checkGalleryName(input.name);
    if ('visibility' in input) next.visibility = visibilityOf(input.visibility);
    if ('parent_id' in input) {
      const parentId = parentIdOf(input.parent_id);
      if (parentId !== null) {
        const parent = byId.get(parentId);
        if (!parent) throw notFoundGallery(parentId);
        if (isAtOrBelow(byId, parent, id)) throw fail('gallery_cycle', `Gallery ${gallery.name} cannot move into itself or a gallery below it.`);
        if (depthOf(byId, parent) + heightOf(childrenIndex(all), id) > GALLERY_LIMITS.depth) throw fail('gallery_limit', `Galleries nest at most ${GALLERY_LIMITS.depth} deep.`);
      }
      next.parent_id = parentId;
    }
    // Nothing changed (an empty body, or the values it has): no write, updated_at stays.
    if (next.name === gallery.name && next.parent_id === gallery.parent_id && next.visibility === gallery.visibility) return view(byId, gallery);
    if (next.name !== gallery.name || next.parent_id !== gallery.parent_id) nameFree(all, next.parent_id, next.name, id);
    if (!(await this.named(this.store.updateGallery(next), next.name))) throw notFoundGallery(id);
    byId.set(id, next);
    return view(byId, next);
    });
  }

  /** Deletes an empty gallery (no sub-gallery, no image of any status but deleted). */
  async deleteGallery(caller: Caller, id: string): Promise<void> {
    return this.changing(caller, id, async ({ gallery, all }) => {
    mayChangeGalleries(caller, gallery.owner, gallery);
    if (childrenOf(all, id).length > 0) throw fail('gallery_not_empty', `Gallery ${gallery.name} holds galleries; move or delete them first.`);
    // Counted as an administrator: images the caller cannot list still keep the gallery.
    const asOwnerAdmin: Caller = { project_id: gallery.owner, user_id: caller.user_id, roles: ['admin'] };
    const held = await this.images.count(asOwnerAdmin, { ...imageQuery([id]), visibility: 'all', memberStatus: 'all' });
    if (held > 0) throw fail('gallery_not_empty', `Gallery ${gallery.name} holds ${held} image(s); move them out (PATCH pir_gallery_id) or delete them first.`);
    const members = await this.store.galleryMembers(id);
    if (!(await this.store.deleteGallery(id))) throw notFoundGallery(id);
    // An image may have moved in between the count and the delete (ImageService re-checks after
    // its write, which closes the other order): count again, and put the gallery back if so.
    const movedIn = await this.images.count(asOwnerAdmin, { ...imageQuery([id]), visibility: 'all', memberStatus: 'all' });
    if (movedIn > 0) {
      await this.named(this.store.createGallery(gallery), gallery.name);
      for (const m of members) await this.store.putGalleryMember(m);
      throw fail('gallery_not_empty', `An image moved into gallery ${gallery.name} while it was being deleted; it is kept.`);
    }
    });
  }

  /** The gallery ids GET /v2/images?gallery=…[&recursive=true] selects (404 for a gallery the caller cannot see). */
  async galleryFilter(caller: Caller, id: string, recursive: boolean): Promise<string[]> {
    const { seen } = await this.visibleGallery(caller, id);
    return recursive ? subtreeOf(seen, id) : [id];
  }

  // ---------------------------------------------------------------- gallery members

  /** Shares the gallery (and everything below it) with a project: pending until that project accepts, as a Glance image member. */
  async addGalleryMember(caller: Caller, id: string, body: unknown): Promise<GalleryMember> {
    const input = objectBody(body, ['member']);
    return this.changing(caller, id, async ({ gallery }) => {
    enforce(caller, 'add_member', { owner: gallery.owner });
    if (visibilityOfGallery(gallery) !== 'shared') throw fail('members_only_shared', `Gallery ${gallery.name} is private; PATCH its visibility to shared before adding members.`);
    const memberId = input.member;
    if (typeof memberId !== 'string' || memberId.length === 0 || memberId.length > MEMBER_ID_MAX) throw fail('bad_gallery', `'member' is a project id of 1 to ${MEMBER_ID_MAX} characters.`);
    const members = await this.store.galleryMembers(id);
    if (members.some((m) => m.member_id === memberId)) throw fail('member_exists', `Project ${memberId} is already a member of gallery ${gallery.name}.`);
    if (members.length >= GALLERY_MEMBERS_MAX) throw fail('too_many_members', `A gallery has at most ${GALLERY_MEMBERS_MAX} members; remove one first.`);
    const now = new Date().toISOString();
    const member: GalleryMember = { gallery_id: id, member_id: memberId, status: 'pending', created_at: now, updated_at: now };
    await this.store.putGalleryMember(member);
    return member;
    });
  }

  /** The owner's readers (and admins) see every member; a member project sees its own record. */
  async listGalleryMembers(caller: Caller, id: string): Promise<GalleryMember[]> {
    const { gallery } = await this.visibleGallery(caller, id);
    const members = await this.store.galleryMembers(id);
    if (isAdminCaller(caller) || gallery.owner === caller.project_id) {
      enforce(caller, 'get_members', { owner: gallery.owner });
      return members;
    }
    enforce(caller, 'get_members', { owner: gallery.owner, member_id: caller.project_id });
    return members.filter((m) => m.member_id === caller.project_id);
  }

  async getGalleryMember(caller: Caller, id: string, memberId: string): Promise<GalleryMember> {
    const { gallery } = await this.visibleGallery(caller, id);
    const mayLook = isAdminCaller(caller) || gallery.owner === caller.project_id || memberId === caller.project_id;
    const member = mayLook ? (await this.store.galleryMembers(id)).find((m) => m.member_id === memberId) : undefined;
    if (!member) throw fail('member_not_found', `Project ${memberId.slice(0, 64)} is not a member of gallery ${id.slice(0, 64)}.`);
    enforce(caller, 'get_member', { owner: gallery.owner, member_id: memberId });
    return member;
  }

  /** Accept, reject or reconsider: only the member project itself (or an admin). */
  async updateGalleryMember(caller: Caller, id: string, memberId: string, body: unknown): Promise<GalleryMember> {
    const input = objectBody(body, ['status']);
    return this.changing(caller, id, async ({ gallery }) => {
    const member = (await this.store.galleryMembers(id)).find((m) => m.member_id === memberId);
    if (!isAdminCaller(caller) && memberId !== caller.project_id) {
      if (gallery.owner === caller.project_id) throw fail('member_status_by_member_only', `Only project ${memberId.slice(0, 64)} can accept or reject its membership of gallery ${gallery.name}; the owner may add or remove members.`);
      throw fail('member_not_found', `Project ${memberId.slice(0, 64)} is not a member of gallery ${id.slice(0, 64)}.`);
    }
    if (!member) throw fail('member_not_found', `Project ${memberId.slice(0, 64)} is not a member of gallery ${id.slice(0, 64)}.`);
    enforce(caller, 'modify_member', { owner: gallery.owner, member_id: memberId });
    const status = input.status;
    if (typeof status !== 'string' || !(MEMBER_STATUSES as readonly string[]).includes(status)) throw fail('bad_gallery', `'status' is one of ${MEMBER_STATUSES.join(', ')}.`);
    if (member.status === status) return member;
    const next: GalleryMember = { ...member, status: status as GalleryMember['status'], updated_at: new Date().toISOString() };
    await this.store.putGalleryMember(next);
    return next;
    });
  }

  async removeGalleryMember(caller: Caller, id: string, memberId: string): Promise<void> {
    return this.changing(caller, id, async ({ gallery }) => {
      enforce(caller, 'delete_member', { owner: gallery.owner });
      if (!(await this.store.deleteGalleryMember(id, memberId))) throw fail('member_not_found', `Project ${memberId.slice(0, 64)} is not a member of gallery ${gallery.name}.`);
    });
  }

  /**
   * Galleries shared with the caller's project whose owner still shares them: each shared gallery
   * and all below it, each once, with the project's strongest answer among the shares it sits in
   * (accepted, then pending, then rejected: GRANT_STRENGTH). Only those whose answer is one of
   * `statuses` (default: any) are returned, and only the shares that can decide such an answer
   * are loaded and walked: the default list (accepted) never walks a pending or rejected share.
   * Cost: one query for the memberships, then per owner sharing something one gallery read and
   * one read of its tree, walked once (gallery-rules.ts expandShares: O(galleries), however the
   * shares nest or overlap).
   */
  async grants(caller: Caller, statuses: readonly MemberStatus[] = MEMBER_STATUSES): Promise<GalleryGrant[]> {
    if (statuses.length === 0) return [];
    const weakest = Math.max(...statuses.map((s) => GRANT_STRENGTH.indexOf(s)));
    const memberships = (await this.store.galleryMembershipsOf(caller.project_id)).filter((m) => GRANT_STRENGTH.indexOf(m.status) <= weakest);
    if (memberships.length === 0) return [];
    const shares = await this.sharesOf(caller, memberships);
    const out: GalleryGrant[] = [];
    for (const { tree, roots } of shares.values()) {
      for (const [gallery_id, status] of expandShares(tree.filter(isShared), roots)) if (statuses.includes(status)) out.push({ gallery_id, status });
    }
    return out;
  }

  /**
   * The project's answer for the gallery when it is shared with it (it or a gallery above it,
   * the strongest answer), else null: the memberships and the gallery's ancestors, no subtree.
   */
  private async shareStatus(caller: Caller, galleryId: string, tree?: Map<string, Gallery>): Promise<MemberStatus | null> {
    const memberships = await this.store.galleryMembershipsOf(caller.project_id);
    if (memberships.length === 0) return null;
    const answer = new Map(memberships.map((m) => [m.gallery_id, m.status]));
    let best: MemberStatus | null = null;
    let at = tree ? tree.get(galleryId) : await this.store.getGallery(galleryId);
    for (let depth = 0; at && depth <= GALLERY_LIMITS.depth + 1; depth++) {
      // A private gallery is shared with no one, nor through it is anything below it.
      if (!isShared(at)) break;
      const status = answer.get(at.id);
      if (status && at.owner !== caller.project_id && (best === null || GRANT_STRENGTH.indexOf(status) < GRANT_STRENGTH.indexOf(best))) best = status;
      if (!at.parent_id) break;
      at = tree ? tree.get(at.parent_id) : await this.store.getGallery(at.parent_id);
    }
    return best;
  }

  /** The memberships' galleries still shared, by owner: the owner's tree (read once) and the shared galleries with their answers. */
  private async sharesOf(caller: Caller, memberships: GalleryMember[], ownToo = false): Promise<Map<string, { tree: Gallery[]; byId: Map<string, Gallery>; roots: { gallery_id: string; status: MemberStatus; gallery: Gallery }[] }>> {
    const owners = new Map<string, { tree: Gallery[]; byId: Map<string, Gallery>; roots: { gallery_id: string; status: MemberStatus; gallery: Gallery }[] }>();
    for (const m of memberships) {
      // A gallery of an owner already read comes from its tree: one gallery read per owner, not per membership.
      let gallery: Gallery | null | undefined;
      for (const o of owners.values()) if ((gallery = o.byId.get(m.gallery_id))) break;
      gallery ??= await this.store.getGallery(m.gallery_id);
      if (!gallery || visibilityOfGallery(gallery) !== 'shared' || (gallery.owner === caller.project_id && !ownToo)) continue;
      let owner = owners.get(gallery.owner);
      if (!owner) {
        const tree = await this.store.galleriesOf(gallery.owner);
        owners.set(gallery.owner, (owner = { tree, byId: new Map(tree.map((g) => [g.id, g])), roots: [] }));
      }
      owner.roots.push({ gallery_id: gallery.id, status: m.status, gallery });
    }
    return owners;
  }

  /** The galleries shared with the caller's project directly (its invitations, with their answer). */
  async sharedWithMe(caller: Caller): Promise<(GalleryView & { member_status: string })[]> {
    enforce(caller, 'get_images', { owner: caller.project_id });
    const memberships = await this.store.galleryMembershipsOf(caller.project_id);
    const shown = new Map<string, GalleryView & { member_status: string }>();
    for (const { byId, roots } of (await this.sharesOf(caller, memberships, true)).values()) {
      for (const r of roots) shown.set(r.gallery_id, { ...view(byId, r.gallery), member_status: r.status });
    }
    return memberships.flatMap((m) => shown.get(m.gallery_id) ?? []);
  }

  // ---------------------------------------------------------------- revisions

  async revisions(caller: Caller, imageId: string, after: number, limit: number): Promise<Revision[]> {
    const doc = await this.historyOf(caller, imageId);
    await this.repair(doc);
    return this.store.revisions(imageId, Math.max(after, await this.tenureStart(caller, doc)), limit);
  }

  async revision(caller: Caller, imageId: string, n: number): Promise<Revision> {
    const doc = await this.historyOf(caller, imageId);
    await this.repair(doc);
    const revision = n > (await this.tenureStart(caller, doc)) ? await this.store.getRevision(imageId, n) : null;
    if (!revision) throw fail('revision_not_found', `Image ${imageId} has no revision ${n} that you may read (kept: at most the newest ${this.settings.revisionsKeep}, and of an image given to your project only those from then on); list them with GET /v2/images/${imageId}/revisions.`);
    return revision;
  }

  /**
   * The last revision made while the image belonged to another project: a project the image was
   * given to reads its history from the transfer on, not the previous owner's (its past members,
   * the values of properties it removed). Administrators read all of it.
   */
  private async tenureStart(caller: Caller, doc: ImageDoc): Promise<number> {
    if (isAdminCaller(caller)) return 0;
    let start = 0;
    for (const r of await this.store.revisions(doc.id, 0, this.settings.revisionsKeep + 1)) {
      if ((r.metadata as { owner?: string | null }).owner !== doc.owner) start = r.n;
    }
    return start;
  }

  /** The image whose history the caller may read: 404 where it may not see the image, 403 where it is not the owner's. */
  private async historyOf(caller: Caller, imageId: string): Promise<ImageDoc> {
    const doc = await this.images.get(caller, imageId);
    enforce(caller, 'get_image_revisions', { owner: doc.owner });
    return doc;
  }

  /**
   * Brings the image's attributes, tags, properties and gallery back to revision n, as one PATCH
   * (so one new revision, and the same policy checks as any PATCH). Owner and members are not
   * restored: they change through their own calls and rules.
   */
  async restore(caller: Caller, imageId: string, n: number): Promise<ImageDoc> {
    const target = (await this.revision(caller, imageId, n)).metadata as unknown as ImageMetadata;
    const image = await this.images.get(caller, imageId);
    // A restore is a PATCH: refused to those who may not modify the image, even when it would change nothing.
    enforce(caller, 'modify_image', { owner: image.owner });
    const current = metadataOf(image);
    const ops: PatchOp[] = [];
    for (const key of METADATA_FIELDS) {
      if (key === 'owner') continue;
      if (JSON.stringify(current[key]) !== JSON.stringify(target[key])) ops.push({ op: 'replace', name: key, value: target[key] });
    }
    if (JSON.stringify(current.tags) !== JSON.stringify(target.tags)) ops.push({ op: 'replace', name: 'tags', value: target.tags });
    const restorable = (key: string) => !key.startsWith('pir_') || key === GALLERY_PROPERTY;
    for (const key of Object.keys(current.properties)) {
      if (restorable(key) && !Object.hasOwn(target.properties, key)) ops.push({ op: 'remove', name: key });
    }
    for (const [key, value] of Object.entries(target.properties)) {
      if (restorable(key) && current.properties[key] !== value) ops.push({ op: 'add', name: key, value });
    }
    if (ops.length === 0) return this.images.get(caller, imageId);
    return this.images.update(caller, imageId, ops, `restore:${n}`);
  }

  // ---------------------------------------------------------------- metafiles

  async metafile(caller: Caller, imageId: string): Promise<Metafile> {
    const doc = await this.images.get(caller, imageId);
    const properties: Record<string, string> = {};
    for (const [k, v] of Object.entries(doc.properties)) if (!k.startsWith('pir_')) properties[k] = v;
    let gallery: string | null = null;
    const gid = doc.properties[GALLERY_PROPERTY];
    // The gallery's path names the owner's galleries: shown to whom may see that gallery only.
    const seesGallery = async () => doc.owner === caller.project_id || isAdminCaller(caller) || (await this.shareStatus(caller, gid!)) !== null;
    if (gid && doc.owner && (await seesGallery())) {
      const all = await this.store.galleriesOf(doc.owner);
      const byId = new Map(all.map((g) => [g.id, g]));
      const g = byId.get(gid);
      if (g) gallery = pathOf(byId, g);
    }
    await this.repair(doc);
    const newest = await this.store.latestRevision(imageId);
    return {
      name: doc.name, disk_format: doc.disk_format, container_format: doc.container_format, visibility: doc.visibility,
      protected: doc.protected, min_disk: doc.min_disk, min_ram: doc.min_ram, tags: [...doc.tags], properties, gallery, revision: newest?.n ?? null,
    };
  }

  /** The caller's gallery at `path` (linux/debian/12), for registering from a metafile; 404 when there is none. */
  async galleryByPath(caller: Caller, path: string): Promise<GalleryView> {
    const all = await this.store.galleriesOf(caller.project_id);
    const byId = new Map(all.map((g) => [g.id, g]));
    const want = path.normalize('NFC').split('/').map((s) => s.trim()).filter(Boolean).join('/');
    const found = all.find((g) => pathOf(byId, g).normalize('NFC') === want);
    if (!found) throw fail('gallery_not_found', `Your project has no gallery at path '${path.slice(0, 200)}'; create it with POST /v2/galleries.`);
    return view(byId, found);
  }

  // ---------------------------------------------------------------- helpers

  /**
   * Records a revision when the image's metadata changed, then prunes beyond the retention. The
   * image's write is already made (another store: no transaction spans both), so a failure here
   * does not fail the request: it is logged, and the next read of the history repairs the gap.
   */
  private async record(caller: Caller, action: string, before: ImageDoc | null, after: ImageDoc): Promise<void> {
    try {
      await this.append(caller, action, before ? metadataOf(before) : null, after);
    } catch (error) {
      this.settings.log?.warn({ err: error, image_id: after.id, action }, 'metadata revision not written; the next read of the image history records it as a repair');
    }
  }

  /**
   * Read repair: when the newest revision is not the image's metadata (a revision write failed,
   * the process died between the two writes, or the pipeline changed metadata), one `repair`
   * revision by PIR brings the history up to date before it is shown.
   */
  private async repair(image: ImageDoc): Promise<void> {
    const latest = await this.store.latestRevision(image.id);
    const now = metadataOf(image);
    if (latest && diffMetadata(latest.metadata as unknown as ImageMetadata, now).length === 0) return;
    await this.append(SYSTEM_CALLER, 'repair', latest ? (latest.metadata as unknown as ImageMetadata) : null, image);
  }

  /**
   * Records the image's metadata after a write. Each revision's patch goes from the revision
   * before it, and it is appended only if that one is still the newest (appendRevisionAt), so
   * concurrent writers, in any order and process, keep the history a chain. A writer whose
   * image revision is older than the newest recorded one records nothing: the newer state
   * holds its change. (Patches from the request's own `before`, appended in whatever order the
   * writers finished, made revisions that dropped properties and runs of no-op revisions.)
   */
  private async append(who: Pick<Caller, 'project_id' | 'user_id'>, action: string, was: ImageMetadata | null, after: ImageDoc): Promise<void> {
    const now = metadataOf(after);
    // A write that changed no metadata (an upload's claim, the pipeline's steps) records nothing, and reads nothing.
    if (was !== null && diffMetadata(was, now).length === 0) return;
    const fields = (patch: Revision['patch']) => ({ image_id: after.id, at: after.updated_at, project_id: who.project_id, user_id: who.user_id, action, image_revision: after.revision, patch, metadata: now as unknown as Record<string, unknown> });
    // A new image's history is empty unless a read repaired it first; then fall through.
    if (was === null && (await this.store.appendFirstRevision(fields(diffMetadata(null, now))))) return;
    for (let attempt = 0; attempt < REVISION_ATTEMPTS; attempt++) {
      const latest = await this.store.latestRevision(after.id);
      if (latest?.image_revision !== undefined && latest.image_revision >= after.revision) return;
      const patch = diffMetadata(latest ? (latest.metadata as unknown as ImageMetadata) : was, now);
      if (patch.length === 0) return;
      const revision = await this.store.appendRevisionAt(fields(patch), (latest?.n ?? 0) + 1);
      if (!revision) continue; // another writer appended first: diff from its revision
      if (revision.n > this.settings.revisionsKeep) await this.store.pruneRevisions(after.id, this.settings.revisionsKeep);
      return;
    }
    throw new Error(`the history of image ${after.id} kept changing under this revision (${REVISION_ATTEMPTS} attempts)`);
  }

  /** The gallery if the caller may see it (its project's readers, and admins); 404 otherwise. */
  /**
   * The gallery, its owner's whole tree (`all`), and the part of it the caller may walk (`seen`):
   * all of it for the owner and administrators; for a member project, without the private
   * galleries (so without what lies below them too, walks being from parent to children).
   */
  private async visibleGallery(caller: Caller, id: string): Promise<{ gallery: Gallery; all: Gallery[]; seen: Gallery[]; byId: Map<string, Gallery> }> {
    const gallery = await this.store.getGallery(id);
    if (!gallery) throw notFoundGallery(id);
    const owned = gallery.owner === caller.project_id || isAdminCaller(caller);
    // A member project of a shared gallery (or one above it) sees it, read-only: its ancestors are looked at, no subtree.
    if (!owned && (await this.shareStatus(caller, id)) === null) throw notFoundGallery(id);
    enforce(caller, 'get_images', { owner: gallery.owner });
    const all = await this.store.galleriesOf(gallery.owner);
    return { gallery, all, seen: owned ? all : all.filter(isShared), byId: new Map(all.map((g) => [g.id, g])) };
  }

  /**
   * A change of a gallery or its members: checked and written while no other change of the
   * owner's tree runs, in any process (CatalogStore.exclusive), on a fresh read of the tree. Two
   * moves at once made a cycle, a delete and a create in it an orphan, concurrent edits lost some.
   * The first read finds the owner (and answers 404 to whoever may not see the gallery).
   */
  private async changing<T>(caller: Caller, id: string, change: (seen: Awaited<ReturnType<CatalogService['visibleGallery']>>) => Promise<T>): Promise<T> {
    const { gallery } = await this.visibleGallery(caller, id);
    return this.store.exclusive(gallery.owner, async () => change(await this.visibleGallery(caller, id)));
  }

  private async named<T>(write: Promise<T>, name: string): Promise<T> {
    try {
      return await write;
    } catch (error) {
      if (error instanceof GalleryNameTakenError) throw fail('gallery_name_taken', `The parent gallery already holds a gallery named '${name}'; choose another name.`);
      throw error;
    }
  }
}

/** 409 gallery_name_taken when a sibling (other than `self`) has the name in NFC (the stores' unique keys compare exact strings). */
function nameFree(all: Gallery[], parentId: string | null, name: string, self: string | null): void {
  const taken = all.some((g) => g.id !== self && (g.parent_id ?? null) === parentId && sameGalleryName(g.name, name));
  if (taken) throw fail('gallery_name_taken', `The parent gallery already holds a gallery named '${name}'; choose another name.`);
}

/** Whether `at` is the gallery `id` or below it (its ancestors, at most the depth limit). */
function isAtOrBelow(byId: Map<string, Gallery>, at: Gallery, id: string): boolean {
  let g: Gallery | undefined = at;
  for (let depth = 0; g && depth <= GALLERY_LIMITS.depth + 1; depth++) {
    if (g.id === id) return true;
    g = g.parent_id ? byId.get(g.parent_id) : undefined;
  }
  return false;
}

function view(byId: Map<string, Gallery>, g: Gallery): GalleryView {
  return { id: g.id, name: g.name, parent_id: g.parent_id, path: pathOf(byId, g), owner: g.owner, visibility: visibilityOfGallery(g), created_at: g.created_at, updated_at: g.updated_at };
}

/** Galleries written before gallery sharing have no visibility: `shared`, with no members yet. */
function isShared(g: Gallery): boolean {
  return visibilityOfGallery(g) === 'shared';
}

function visibilityOfGallery(g: Gallery): GalleryVisibility {
  return g.visibility ?? 'shared';
}

function visibilityOf(value: unknown): GalleryVisibility {
  if (value !== 'private' && value !== 'shared') throw fail('bad_gallery', "A gallery's 'visibility' is 'shared' (its members see its images) or 'private' (they do not).");
  return value;
}

/** A list query of every image in these galleries (counts: no status filter beyond "not deleted"). */
function imageQuery(galleryIds: string[]): ListRequest['query'] {
  return { where: {}, memberStatus: 'accepted', visibility: 'all', galleryIn: galleryIds, sort: [{ key: 'created_at', dir: 'desc' }], limit: 0 };
}

function objectBody(body: unknown, allowed: string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw fail('bad_gallery', `The body is a JSON object with ${allowed.join(' and/or ')}.`);
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  if (extra.length) throw fail('bad_gallery', `Unknown field(s) ${extra.slice(0, 5).map((k) => `'${k.slice(0, 40)}'`).join(', ')}; a gallery takes ${allowed.join(' and ')}.`);
  return body as Record<string, unknown>;
}

function parentIdOf(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length === 0 || value.length > 64) throw fail('bad_gallery', "'parent_id' is a gallery id (a string), or null for the root.");
  return value;
}

/**
 * Galleries change as images do (the owner project's member role, or an administrator), but the
 * refusal speaks of galleries, not of the image policy it borrows.
 */
function mayChangeGalleries(caller: Caller, owner: string, gallery?: Gallery): void {
  if (allowed(caller, 'modify_image', { owner })) return;
  throw fail('policy_denied', owner === caller.project_id
    ? `Policy does not allow changing galleries: your roles (${caller.roles.join(', ') || 'none'}) only read; it needs the member role.`
    : `Policy does not allow changing gallery ${gallery?.name ?? ''}: it is project ${owner}'s, shared with yours read-only; only its own project or an administrator may change it.`);
}
