/** The catalog extension's calls (galleries, revisions, metafiles), over a PirClient's transport. */
import { imagePath, queryString, type PirClient } from './client.js';
import { NotFoundError } from './errors.js';

export interface GalleryRecord {
  id: string;
  name: string;
  parent_id: string | null;
  path: string;
  owner: string;
  /** `shared` (members let in) or `private`. */
  visibility?: string;
  /** In GET /v2/galleries?shared=true: the caller's project's answer (pending, accepted, rejected). */
  member_status?: string;
  image_count?: number;
  gallery_count?: number;
  created_at: string;
  updated_at: string;
}

export interface RevisionRecord {
  n: number;
  at: string;
  project_id: string;
  user_id: string;
  action: string;
  patch: { op: string; path: string; value?: unknown }[];
  metadata?: Record<string, unknown>;
}

export interface MetafileRecord {
  name: string | null;
  disk_format: string | null;
  container_format: string | null;
  visibility: string;
  protected?: boolean;
  min_disk?: number;
  min_ram?: number;
  tags: string[];
  properties: Record<string, string>;
  gallery: string | null;
  revision?: number | null;
}

const galleryPath = (id: string) => `/v2/galleries/${encodeURIComponent(id)}`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** How an argument names a gallery by id whatever it looks like: `id:<id>`. */
const ID_PREFIX = 'id:';

/** A gallery path as the API writes it: `linux/debian/12` (no empty or outer-space segments). */
const normalPath = (path: string) => path.split('/').map((s) => s.trim()).filter(Boolean).join('/');

export class CatalogClient {
  constructor(private readonly client: PirClient) {}

  createGallery(name: string, parentId: string | null): Promise<GalleryRecord> {
    return this.client.request('POST', '/v2/galleries', { name, parent_id: parentId }, [201]);
  }

  async listGalleries(): Promise<GalleryRecord[]> {
    return (await this.client.request<{ galleries: GalleryRecord[] }>('GET', '/v2/galleries')).galleries;
  }

  /** The galleries other projects shared with the caller's project, each with its `member_status`. */
  async sharedGalleries(): Promise<GalleryRecord[]> {
    return (await this.client.request<{ galleries: GalleryRecord[] }>('GET', '/v2/galleries?shared=true')).galleries;
  }

  getGallery(id: string, recursive = false): Promise<GalleryRecord> {
    return this.client.request('GET', galleryPath(id) + queryString({ recursive: recursive || undefined }));
  }

  async subGalleries(id: string, recursive = false): Promise<GalleryRecord[]> {
    return (await this.client.request<{ galleries: GalleryRecord[] }>('GET', `${galleryPath(id)}/galleries` + queryString({ recursive: recursive || undefined }))).galleries;
  }

  updateGallery(id: string, change: { name?: string; parent_id?: string | null }): Promise<GalleryRecord> {
    return this.client.request('PATCH', galleryPath(id), change);
  }

  async deleteGallery(id: string): Promise<void> {
    await this.client.request('DELETE', galleryPath(id), undefined, [204]);
  }

  /**
   * A gallery named on the command line:
   * - `id:<id>`: the gallery with that id, asked of the API (GET /v2/galleries/{id}), so one of
   *   the caller's project's or one shared with it (or, for an administrator, any);
   * - `/path` (a leading `/`): the caller's project's gallery at that path, whatever it looks like;
   * - a UUID: the gallery with that id, asked of the API, unless one of the caller's galleries
   *   has that path too (a gallery may be named with a UUID): then GalleryAmbiguous;
   * - anything else: a path (linux/debian/12) among the caller's project's galleries.
   * With `own`, a gallery that is not the caller's project's is GalleryReadOnly (for a gallery
   * to put images or galleries in: the API only takes the image's or gallery's owner's).
   */
  async resolveGallery(arg: string, options: { own?: boolean } = {}): Promise<GalleryRecord> {
    let found: GalleryRecord | undefined;
    let mine: GalleryRecord[] | undefined;
    if (arg.startsWith(ID_PREFIX)) {
      found = await this.galleryById(arg.slice(ID_PREFIX.length).trim());
    } else if (UUID.test(arg.trim()) && !arg.startsWith('/')) {
      const id = arg.trim();
      mine = await this.listGalleries();
      const byPath = mine.find((g) => g.path === id);
      const byId = await this.galleryById(id);
      if (byPath && byId) throw new GalleryAmbiguous(id, byId, byPath);
      found = byId ?? byPath;
    } else {
      mine = await this.listGalleries();
      const want = normalPath(arg);
      found = mine.find((g) => g.path === want);
    }
    if (!found) throw new GalleryNotFound(arg);
    const gallery = found;
    if (options.own) {
      mine ??= await this.listGalleries();
      if (!mine.some((g) => g.id === gallery.id)) throw new GalleryReadOnly(gallery, 'not yours: images and galleries go only into galleries of your own project');
    }
    return gallery;
  }

  /** Whether a gallery is one of the caller's project's (not one shared with it). */
  async isMine(id: string): Promise<boolean> {
    return (await this.listGalleries()).some((g) => g.id === id);
  }

  /** GET /v2/galleries/{id}, or undefined where the API answers 404. */
  private async galleryById(id: string): Promise<GalleryRecord | undefined> {
    if (!id) return undefined;
    try {
      return await this.getGallery(id);
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
  }

  async *revisions(imageId: string): AsyncGenerator<RevisionRecord> {
    let marker = 0;
    for (;;) {
      const page = await this.client.request<{ revisions: RevisionRecord[]; next?: string }>('GET', `${imagePath(imageId)}/revisions` + queryString({ limit: 200, marker: marker || undefined }));
      yield* page.revisions;
      if (!page.next || page.revisions.length === 0) return;
      marker = page.revisions[page.revisions.length - 1]!.n;
    }
  }

  revision(imageId: string, n: number): Promise<RevisionRecord> {
    return this.client.request('GET', `${imagePath(imageId)}/revisions/${n}`);
  }

  restore(imageId: string, n: number): Promise<Record<string, unknown>> {
    return this.client.request('POST', `${imagePath(imageId)}/revisions/${n}/restore`);
  }

  metafile(imageId: string): Promise<MetafileRecord> {
    return this.client.request('GET', `${imagePath(imageId)}/metafile`);
  }
}

export class GalleryNotFound extends Error {
  constructor(readonly wanted: string) {
    super(`no gallery '${wanted}' in your project; a gallery shared with you is named by its id (pir gallery list shows yours, pir gallery list --shared those shared with you; pir gallery create makes one)`);
    this.name = 'GalleryNotFound';
  }
}

/** A UUID that is both a gallery's id and the path of one of the caller's galleries. */
export class GalleryAmbiguous extends Error {
  constructor(readonly wanted: string, readonly byId: GalleryRecord, readonly byPath: GalleryRecord) {
    super(`'${wanted}' names two galleries: the id of gallery '${byId.path}' (project ${byId.owner}) and the path of your gallery ${byPath.id}; say which: id:${wanted} for the first, /${wanted} for the second`);
    this.name = 'GalleryAmbiguous';
  }
}

/** A gallery of another project (shared with the caller's) that the caller asked to change or fill. */
export class GalleryReadOnly extends Error {
  /** `detail` goes on from "gallery 'PATH' (ID) is project OWNER's, …". */
  constructor(readonly gallery: GalleryRecord, detail: string) {
    super(`gallery '${gallery.path}' (${gallery.id}) is project ${gallery.owner}'s, ${detail}`);
    this.name = 'GalleryReadOnly';
  }
}
