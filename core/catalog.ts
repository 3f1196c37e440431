/**
 * The catalog extension's use cases: galleries (a tree of named folders per project), the
 * revisions of every image's metadata, and metafiles. Each call acts for a caller; images are
 * always reached through ImageService, so Glance's visibility rules and the policy decide about
 * them exactly as for the Image API (an image the caller cannot see is 404 here too).
 *
 * Galleries belong to one project: its readers see them, its members change them, and
 * administrators see and change every project's. Another project learns nothing of them
 * (404, whether the gallery exists or not).
 */
import { randomUUID } from 'node:crypto';
import type { ImageDoc } from '../schemas/image.js';
import type { Caller } from './caller.js';
import { GalleryNameTakenError, type CatalogStore, type Gallery, type Revision } from './catalog-ports.js';
import { fail } from './error-catalog.js';
import { GALLERY_LIMITS, GALLERY_PROPERTY, checkGalleryName, childrenOf, depthOf, heightOf, pathOf, subtreeOf } from './gallery-rules.js';
import type { CatalogHooks, ImageService } from './image-service.js';
import type { PatchOp } from './image-patch.js';
import type { ListRequest } from './ports.js';
import { enforce, isAdminCaller } from './policy.js';
import { diffMetadata, metadataOf, METADATA_FIELDS, type ImageMetadata } from './revisions.js';

export interface CatalogSettings {
  /** Revisions kept per image (PIR_REVISIONS_KEEP); older ones are pruned. */
  revisionsKeep: number;
}

export interface GalleryView {
  id: string;
  name: string;
  parent_id: string | null;
  path: string;
  owner: string;
  created_at: string;
  updated_at: string;
}

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
    };
  }

  // ---------------------------------------------------------------- galleries

  async createGallery(caller: Caller, body: unknown): Promise<GalleryView> {
    const input = objectBody(body, ['name', 'parent_id']);
    const owner = caller.project_id;
    enforce(caller, 'modify_image', { owner });
    const name = checkGalleryName(input.name);
    const all = await this.store.galleriesOf(owner);
    if (all.length >= GALLERY_LIMITS.perProject) throw fail('gallery_limit', `A project has at most ${GALLERY_LIMITS.perProject} galleries.`);
    const parentId = parentIdOf(input.parent_id);
    const byId = new Map(all.map((g) => [g.id, g]));
    if (parentId !== null) {
      const parent = byId.get(parentId);
      if (!parent) throw notFoundGallery(parentId);
      if (depthOf(byId, parent) + 1 > GALLERY_LIMITS.depth) throw fail('gallery_limit', `Galleries nest at most ${GALLERY_LIMITS.depth} deep.`);
    }
    const now = new Date().toISOString();
    const gallery: Gallery = { id: randomUUID(), owner, name, parent_id: parentId, created_at: now, updated_at: now };
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
    const { gallery, all, byId } = await this.visibleGallery(caller, id);
    const ids = recursive ? subtreeOf(all, id) : [id];
    const image_count = await this.images.count(caller, imageQuery(ids));
    const gallery_count = recursive ? ids.length - 1 : childrenOf(all, id).length;
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
    const { all, byId } = await this.visibleGallery(caller, id);
    const ids = recursive ? subtreeOf(all, id).slice(1) : childrenOf(all, id).map((g) => g.id);
    const out: (GalleryView & GalleryCounts)[] = [];
    for (const gid of ids) {
      const g = byId.get(gid)!;
      out.push({ ...view(byId, g), image_count: await this.images.count(caller, imageQuery([gid])), gallery_count: childrenOf(all, gid).length });
    }
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** Rename and/or move (parent_id: null moves to the root). */
  async updateGallery(caller: Caller, id: string, body: unknown): Promise<GalleryView> {
    const input = objectBody(body, ['name', 'parent_id']);
    const { gallery, all, byId } = await this.visibleGallery(caller, id);
    enforce(caller, 'modify_image', { owner: gallery.owner });
    const next: Gallery = { ...gallery, updated_at: new Date().toISOString() };
    if ('name' in input) next.name = checkGalleryName(input.name);
    if ('parent_id' in input) {
      const parentId = parentIdOf(input.parent_id);
      if (parentId !== null) {
        const parent = byId.get(parentId);
        if (!parent) throw notFoundGallery(parentId);
        if (subtreeOf(all, id).includes(parentId)) throw fail('gallery_cycle', `Gallery ${gallery.name} cannot move into itself or a gallery below it.`);
        if (depthOf(byId, parent) + heightOf(all, id) > GALLERY_LIMITS.depth) throw fail('gallery_limit', `Galleries nest at most ${GALLERY_LIMITS.depth} deep.`);
      }
      next.parent_id = parentId;
    }
    if (!(await this.named(this.store.updateGallery(next), next.name))) throw notFoundGallery(id);
    byId.set(id, next);
    return view(byId, next);
  }

  /** Deletes an empty gallery (no sub-gallery, no image of any status but deleted). */
  async deleteGallery(caller: Caller, id: string): Promise<void> {
    const { gallery, all } = await this.visibleGallery(caller, id);
    enforce(caller, 'modify_image', { owner: gallery.owner });
    if (childrenOf(all, id).length > 0) throw fail('gallery_not_empty', `Gallery ${gallery.name} holds galleries; move or delete them first.`);
    // Counted as an administrator: images the caller cannot list still keep the gallery.
    const held = await this.images.count({ project_id: gallery.owner, user_id: caller.user_id, roles: ['admin'] }, { ...imageQuery([id]), visibility: 'all', memberStatus: 'all' });
    if (held > 0) throw fail('gallery_not_empty', `Gallery ${gallery.name} holds ${held} image(s); move them out (PATCH pir_gallery_id) or delete them first.`);
    if (!(await this.store.deleteGallery(id))) throw notFoundGallery(id);
  }

  /** The gallery ids GET /v2/images?gallery=…[&recursive=true] selects (404 for a gallery the caller cannot see). */
  async galleryFilter(caller: Caller, id: string, recursive: boolean): Promise<string[]> {
    const { all } = await this.visibleGallery(caller, id);
    return recursive ? subtreeOf(all, id) : [id];
  }

  // ---------------------------------------------------------------- revisions

  async revisions(caller: Caller, imageId: string, after: number, limit: number): Promise<Revision[]> {
    await this.images.get(caller, imageId);
    return this.store.revisions(imageId, after, limit);
  }

  async revision(caller: Caller, imageId: string, n: number): Promise<Revision> {
    await this.images.get(caller, imageId);
    const revision = await this.store.getRevision(imageId, n);
    if (!revision) throw fail('revision_not_found', `Image ${imageId} has no revision ${n} (kept: the newest ${this.settings.revisionsKeep}); list them with GET /v2/images/${imageId}/revisions.`);
    return revision;
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
    if (gid && doc.owner) {
      const all = await this.store.galleriesOf(doc.owner);
      const byId = new Map(all.map((g) => [g.id, g]));
      const g = byId.get(gid);
      if (g) gallery = pathOf(byId, g);
    }
    const [newest] = await this.newestRevision(imageId);
    return {
      name: doc.name, disk_format: doc.disk_format, container_format: doc.container_format, visibility: doc.visibility,
      protected: doc.protected, min_disk: doc.min_disk, min_ram: doc.min_ram, tags: [...doc.tags], properties, gallery, revision: newest?.n ?? null,
    };
  }

  /** The caller's gallery at `path` (linux/debian/12), for registering from a metafile; 404 when there is none. */
  async galleryByPath(caller: Caller, path: string): Promise<GalleryView> {
    const all = await this.store.galleriesOf(caller.project_id);
    const byId = new Map(all.map((g) => [g.id, g]));
    const want = path.split('/').map((s) => s.trim()).filter(Boolean).join('/');
    const found = all.find((g) => pathOf(byId, g) === want);
    if (!found) throw fail('gallery_not_found', `Your project has no gallery at path '${path.slice(0, 200)}'; create it with POST /v2/galleries.`);
    return view(byId, found);
  }

  // ---------------------------------------------------------------- helpers

  private async newestRevision(imageId: string): Promise<Revision[]> {
    // Pages forward from the oldest kept; retention bounds how far.
    let last: Revision[] = [];
    let after = 0;
    for (;;) {
      const page = await this.store.revisions(imageId, after, 200);
      if (page.length === 0) return last;
      last = [page[page.length - 1]!];
      after = last[0]!.n;
      if (page.length < 200) return last;
    }
  }

  /** Records a revision when the image's metadata changed, then prunes beyond the retention. */
  private async record(caller: Caller, action: string, before: ImageDoc | null, after: ImageDoc): Promise<void> {
    const was = before ? metadataOf(before) : null;
    const now = metadataOf(after);
    const patch = diffMetadata(was, now);
    if (patch.length === 0) return;
    const revision = await this.store.appendRevision({
      image_id: after.id, at: after.updated_at, project_id: caller.project_id, user_id: caller.user_id, action, patch, metadata: now as unknown as Record<string, unknown>,
    });
    if (revision.n > this.settings.revisionsKeep) await this.store.pruneRevisions(after.id, this.settings.revisionsKeep);
  }

  /** The gallery if the caller may see it (its project's readers, and admins); 404 otherwise. */
  private async visibleGallery(caller: Caller, id: string): Promise<{ gallery: Gallery; all: Gallery[]; byId: Map<string, Gallery> }> {
    const gallery = await this.store.getGallery(id);
    if (!gallery || (gallery.owner !== caller.project_id && !isAdminCaller(caller))) throw notFoundGallery(id);
    enforce(caller, 'get_images', { owner: gallery.owner });
    const all = await this.store.galleriesOf(gallery.owner);
    return { gallery, all, byId: new Map(all.map((g) => [g.id, g])) };
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

function view(byId: Map<string, Gallery>, g: Gallery): GalleryView {
  return { id: g.id, name: g.name, parent_id: g.parent_id, path: pathOf(byId, g), owner: g.owner, created_at: g.created_at, updated_at: g.updated_at };
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
