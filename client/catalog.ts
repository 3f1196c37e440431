/** The catalog extension's calls (galleries, revisions, metafiles), over a PirClient's transport. */
import { imagePath, queryString, type PirClient } from './client.js';

export interface GalleryRecord {
  id: string;
  name: string;
  parent_id: string | null;
  path: string;
  owner: string;
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

export class CatalogClient {
  constructor(private readonly client: PirClient) {}

  createGallery(name: string, parentId: string | null): Promise<GalleryRecord> {
    return this.client.request('POST', '/v2/galleries', { name, parent_id: parentId }, [201]);
  }

  async listGalleries(): Promise<GalleryRecord[]> {
    return (await this.client.request<{ galleries: GalleryRecord[] }>('GET', '/v2/galleries')).galleries;
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

  /** A gallery named by id or by path (linux/debian/12) among the caller's project's galleries. */
  async resolveGallery(idOrPath: string): Promise<GalleryRecord> {
    const all = await this.listGalleries();
    const want = idOrPath.split('/').map((s) => s.trim()).filter(Boolean).join('/');
    const found = all.find((g) => g.id === idOrPath) ?? all.find((g) => g.path === want);
    if (!found) throw new GalleryNotFound(idOrPath);
    return found;
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
    super(`no gallery '${wanted}' in your project (pir gallery list shows them; pir gallery create makes one)`);
    this.name = 'GalleryNotFound';
  }
}
