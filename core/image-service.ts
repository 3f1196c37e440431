/**
 * The image lifecycle as the API drives it: create, receive bytes, import, delete. Workers
 * drive the pipeline stages (workers/stage-runner.ts); both change images only through Manifest.
 */
import { randomUUID } from 'node:crypto';
import { IMAGE_STATUSES, type ContainerFormat, type DiskFormat, type HashedBlob, type ImageDoc, type Visibility } from '../schemas/image.js';
import { badRequest, conflict, forbidden } from './errors.js';
import { event, type NewEvent } from './events.js';
import { assertMetadataBounds } from './image-limits.js';
import { Manifest, transition } from './manifest.js';
import { newRun, nextRunNumber } from './pipeline-state.js';
import type { BlobStore, ListQuery } from './ports.js';

export interface CreateImageInput {
  id?: string;
  name?: string | null;
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
}

export interface UploadTicket {
  run: number;
  stagingPath: string;
}

export interface ServiceSettings {
  stageDeadlineSeconds: number;
}

export class ImageService {
  constructor(
    private readonly manifest: Manifest,
    private readonly blobs: BlobStore,
    private readonly settings: ServiceSettings,
  ) {}

  async create(input: CreateImageInput, owner: string | null): Promise<ImageDoc> {
    assertMetadataBounds(input.properties ?? {}, input.tags ?? []);
    const now = new Date().toISOString();
    const doc: ImageDoc = {
      id: input.id ?? randomUUID(),
      revision: 1,
      name: input.name ?? null,
      owner,
      status: 'queued',
      visibility: input.visibility ?? 'shared',
      protected: input.protected ?? false,
      os_hidden: input.os_hidden ?? false,
      disk_format: input.disk_format ?? null,
      container_format: input.container_format ?? null,
      min_disk: input.min_disk ?? 0,
      min_ram: input.min_ram ?? 0,
      size: null,
      virtual_size: null,
      checksum: null,
      os_hash_algo: null,
      os_hash_value: null,
      tags: [...new Set(input.tags ?? [])],
      properties: input.properties ?? {},
      members: [],
      created_at: now,
      updated_at: now,
      expected: input.expected_sha512 ? { sha512: input.expected_sha512.toLowerCase() } : {},
      upload: null,
      staging: null,
      pipeline: null,
      failure: null,
      outbox: [],
    };
    return this.manifest.create(doc, [
      event('image.created', { name: doc.name, disk_format: doc.disk_format, container_format: doc.container_format }),
    ]);
  }

  get(id: string): Promise<ImageDoc> {
    return this.manifest.require(id);
  }

  /** Lists images; deleted ones (kept until their last event is relayed) are never shown. */
  async list(query: ListQuery): Promise<ImageDoc[]> {
    const requested = query.where.status === undefined ? IMAGE_STATUSES : [query.where.status].flat();
    const visible = requested.filter((s) => s !== 'deleted');
    if (visible.length === 0 || query.limit === 0) return [];
    return this.manifest.store.list({ ...query, where: { ...query.where, status: visible } });
  }

  /**
   * Marks the image deleted, then removes its bytes. The manifest write comes first (an image
   * that still shows must keep its bytes); if the process dies between the two, or a removal
   * fails, the store janitor (workers/sweepers.ts) removes the bytes of the deleted image later.
   */
  async remove(id: string, onBytesLeft: (error: unknown) => void = () => {}): Promise<void> {
    const current = await this.manifest.require(id);
    if (current.protected) {
      throw forbidden('protected_image', `Image ${id} is protected; set protected=false before deleting it.`);
    }
    await this.manifest.update(id, (draft) => {
      if (draft.status === 'deleted') return null;
      if (draft.protected) throw forbidden('protected_image', `Image ${id} is protected; set protected=false before deleting it.`);
      transition(draft, 'deleted');
      draft.upload = null;
      draft.staging = null;
      return [event('image.deleted', { owner: draft.owner })];
    });
    // The image is gone for the client whatever happens next: a failure here is the janitor's job.
    const results = await Promise.allSettled([this.blobs.remove(id), this.blobs.removeStaging(id)]);
    for (const r of results) if (r.status === 'rejected') onBytesLeft(r.reason);
  }

  /** Claims the image for receiving bytes: `upload` (PUT …/file) or `stage` (PUT …/stage). */
  async beginUpload(id: string, kind: 'upload' | 'stage'): Promise<UploadTicket> {
    let run = 0;
    await this.manifest.update(id, (draft) => {
      if (draft.status === 'deleted') throw conflict('invalid_status', `Image ${id} is deleted.`);
      if (draft.status !== 'queued') {
        throw conflict('invalid_status', `Image ${id} is ${draft.status}; bytes can be uploaded only to a queued image. Create a new image to upload again.`);
      }
      if (kind === 'upload' && (!draft.disk_format || !draft.container_format)) {
        throw badRequest('formats_required', 'Set disk_format and container_format on the image (PATCH or at create) before uploading its data.');
      }
      run = nextRunNumber(draft);
      transition(draft, kind === 'upload' ? 'saving' : 'uploading');
      draft.upload = { run, kind, started_at: new Date().toISOString() };
      draft.failure = null;
      return [event('image.upload.started', { run })];
    });
    return { run, stagingPath: this.blobs.stagingPath(id, run, 'upload') };
  }

  /** Keeps a long upload from looking abandoned to the sweeper. */
  async heartbeat(id: string, run: number): Promise<void> {
    await this.manifest.update(id, (draft) => (draft.upload?.run === run ? [] : null));
  }

  /**
   * All bytes are in staging. An upload goes straight on to import; a staged image waits in
   * `uploading` for POST …/import.
   */
  async completeUpload(id: string, run: number, blob: HashedBlob, contentMd5: string | null): Promise<ImageDoc> {
    const { doc } = await this.manifest.update(id, (draft) => {
      if (draft.upload?.run !== run) {
        throw conflict('upload_superseded', `Image ${id} changed while its data was arriving (${draft.status}); the upload was discarded.`);
      }
      const kind = draft.upload.kind;
      draft.upload = null;
      draft.staging = { ...blob, received_at: new Date().toISOString() };
      if (contentMd5) draft.expected.md5 = contentMd5;
      const method = kind === 'stage' ? 'glance-direct' : kind;
      const events: NewEvent[] = [event('image.staged', { run, size: blob.size, method })];
      // A staged image waits for POST …/import; an upload or a web-download goes straight on.
      if (kind !== 'stage') events.push(...this.beginImport(draft, run, method));
      return events;
    });
    return doc;
  }

  /** The bytes never all arrived: back to queued, staging removed. */
  async abortUpload(id: string, run: number, reason: string): Promise<void> {
    try {
      await this.manifest.update(id, (draft) => {
        if (draft.upload?.run !== run) return null;
        draft.upload = null;
        draft.staging = null;
        if (draft.status === 'saving' || draft.status === 'uploading') transition(draft, 'queued');
        return [event('image.upload.aborted', { reason })];
      });
    } finally {
      await this.blobs.removeStaging(id);
    }
  }

  /** POST …/import with glance-direct: a staged image starts the pipeline. */
  async importStaged(id: string): Promise<ImageDoc> {
    const { doc } = await this.manifest.update(id, (draft) => {
      if (draft.status !== 'uploading' || !draft.staging) {
        throw conflict('not_staged', `Image ${id} is ${draft.status}${draft.upload ? ' and its data is still arriving' : ''}; glance-direct import needs data staged with PUT /v2/images/${id}/stage first.`);
      }
      if (!draft.disk_format || !draft.container_format) {
        throw badRequest('formats_required', 'Set disk_format and container_format on the image before importing it.');
      }
      return this.beginImport(draft, nextRunNumber(draft), 'glance-direct');
    });
    return doc;
  }

  /**
   * POST …/import with web-download: Glance's preconditions (a queued image with both formats
   * set, else 409), then the image is `uploading` while the URL's body streams into staging.
   */
  async beginWebDownload(id: string): Promise<UploadTicket> {
    let run = 0;
    await this.manifest.update(id, (draft) => {
      if (draft.status !== 'queued') {
        throw conflict('invalid_status', `Image ${id} is ${draft.status}; it needs to be in 'queued' state to use the 'web-download' method. Create a new image to import again.`);
      }
      if (!draft.container_format) throw conflict('formats_required', "'container_format' needs to be set before import; set it with PATCH first.");
      if (!draft.disk_format) throw conflict('formats_required', "'disk_format' needs to be set before import; set it with PATCH first.");
      run = nextRunNumber(draft);
      transition(draft, 'uploading');
      draft.upload = { run, kind: 'web-download', started_at: new Date().toISOString() };
      draft.failure = null;
      return [event('image.upload.started', { run })];
    });
    return { run, stagingPath: this.blobs.stagingPath(id, run, 'upload') };
  }

  /**
   * A web-download that failed (refused address, HTTP error, too large, broken off) kills the
   * image with the reason: terminal and explicit, as every failed PIR import (Glance would put
   * the image back in `queued`, where pollers wait forever).
   */
  async failWebDownload(id: string, run: number, code: string, message: string): Promise<void> {
    try {
      await this.manifest.update(id, (draft) => {
        if (draft.upload?.run !== run || draft.upload.kind !== 'web-download') return null;
        transition(draft, 'killed');
        draft.failure = { stage: 'import', code, message, at: new Date().toISOString() };
        draft.upload = null;
        draft.staging = null;
        return [event('image.killed', { run, stage: 'import', code, message })];
      });
    } finally {
      await this.blobs.removeStaging(id);
    }
  }

  private beginImport(draft: ImageDoc, run: number, method: 'upload' | 'glance-direct' | 'web-download'): NewEvent[] {
    transition(draft, 'importing');
    draft.pipeline = newRun(run, method, this.settings.stageDeadlineSeconds);
    return [event('image.import.started', { run, method, first_stage: draft.pipeline.stage as 'unpack' })];
  }
}
