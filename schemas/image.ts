/** The image manifest: the one document that holds the truth about an image. */

export const IMAGE_STATUSES = [
  'queued', 'saving', 'uploading', 'importing', 'active',
  'killed', 'deactivated', 'deleted', 'pending_delete',
] as const;
export type ImageStatus = (typeof IMAGE_STATUSES)[number];

export const DISK_FORMATS = ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];
export const CONTAINER_FORMATS = ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'] as const;
export type ContainerFormat = (typeof CONTAINER_FORMATS)[number];
export const VISIBILITIES = ['public', 'community', 'shared', 'private'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

export const STAGES = ['unpack', 'inspect', 'checksum', 'promote'] as const;
export type StageName = (typeof STAGES)[number];

export type StageStatus = 'pending' | 'running' | 'done' | 'failed';

export interface StageProgress {
  status: StageStatus;
  attempts: number;
  started_at: string | null;
  ended_at: string | null;
  duration_ms: number | null;
}

/** Bytes as received or produced, with the digests computed while they streamed. */
export interface HashedBlob {
  /** Blob key in the store (core/blob-keys.ts); never a filesystem path. */
  key: string;
  size: number;
  md5: string;
  sha512: string;
}

/** Who started an import, and in which request (its x-openstack-request-id): Glance's task user_id and request_id. */
export interface Requester {
  user_id: string | null;
  request_id: string | null;
  /** An import call's: its task input as Glance's (absent for an upload, and on older documents). */
  input?: ImportInput;
}

/** Glance's import task input beside image_id: the call's whole body and its target stores ([null] without multi-store). */
export interface ImportInput {
  import_req: Record<string, unknown>;
  backend: (string | null)[];
}

export interface ImportFailure {
  stage: StageName | 'upload' | 'import';
  code: string;
  message: string;
  at: string;
  /**
   * An import that failed before its bytes were all in (a web-download, a location), so before any
   * pipeline run: its run number, method and who asked, for its task (absent otherwise).
   */
  run?: number;
  method?: 'web-download' | 'glance-download' | 'location';
  requested?: Requester;
  /** When that import's call was made: its task's created_at (absent in older documents: the image's creation). */
  started_at?: string;
}

/** One run of the pipeline over a staged upload. A new import starts a new run. */
export interface PipelineRun {
  run: number;
  method: 'glance-direct' | 'upload' | 'web-download' | 'glance-download' | 'location';
  /** The stage being worked on, or 'done' once the image is active. */
  stage: StageName | 'done';
  stages: Record<StageName, StageProgress>;
  started_at: string;
  /** When this run is considered stuck unless a stage moved it on. */
  deadline_at: string;
  /** How many times a stuck run was resumed by the sweeper. */
  resumes: number;
  /** Who started the run. */
  requested?: Requester | null;
  /**
   * The stage the previous stage's completion already started (marked running, attempt counted,
   * deadline set) in its own write: its job runs without a start write of its own.
   */
  handoff?: StageName | null;
  /** Output of the unpack stage: the disk image the later stages work on. */
  unpacked: HashedBlob | null;
  /** What the unpack stage found: the codec and container it took apart, and its notes. */
  unpack: { codec: string; container: string; findings: InspectionFinding[] } | null;
  /** Findings of the inspect stage. */
  inspection: { format: string; virtual_size: number | null; findings: InspectionFinding[] } | null;
}

export interface InspectionFinding {
  code: string;
  severity: 'info' | 'refuse';
  message: string;
}

export interface OutboxEvent {
  id: string;
  type: string;
  version: number;
  image_id: string;
  occurred_at: string;
  data: Record<string, unknown>;
  traceparent?: string;
}

export const MEMBER_STATUSES = ['pending', 'accepted', 'rejected'] as const;
export type MemberStatus = (typeof MEMBER_STATUSES)[number];

/** A project an image is shared with (Glance's image members); only `shared` images have them. */
export interface ImageMember {
  member_id: string;
  status: MemberStatus;
  created_at: string;
  updated_at: string;
}

/** A tus upload (ingest/tus/): its bytes arrive over many PATCH requests until `length`. */
export interface ResumableUpload {
  /** The upload's id in its URL (/v2/images/{image}/uploads/{id}). */
  id: string;
  length: number;
  /** Past this instant the upload is abandoned by the sweepers (tus expiration extension). */
  expires_at: string;
  /**
   * Upload-Metadata as the client sent it at creation (validated: ingest/tus/protocol.ts), given
   * back unchanged by HEAD. Stored and echoed only: no key sets anything of the image.
   */
  metadata?: string;
}

/** A download link for a third party without an account (api/routes/share-links.ts). */
export interface ShareLink {
  id: string;
  /** sha256 (hex) of the link's secret: the secret itself is never stored. */
  token_sha256: string;
  created_at: string;
  expires_at: string;
  created_by: { project_id: string; user_id: string };
}

/**
 * One copy of the image's bytes in a configured store (multi-store, core/image-stores.ts).
 * A location registered from outside (s3:// or http) can sit beside these in its own field.
 */
export interface StoredCopy {
  /** The store's id (PIR_STORES; `local` without it). */
  store: string;
  /** The blob key in that store. */
  key: string;
  /** When the copy was complete. */
  at: string;
}

/**
 * The stores an import or a copy-image is placing the image in: Glance's
 * os_glance_importing_to_stores and os_glance_failed_import, and all_stores_must_succeed.
 */
export interface StoreImport {
  importing: string[];
  failed: string[];
  must_succeed: boolean;
  /**
   * copy-image: the stores this copy placed the image in so far. A store failing for good with
   * must_succeed removes these copies again (Glance reverts the copies of the failed task).
   */
  copied?: string[];
  /** copy-image: the run number of its task (ImageDoc.copy_tasks), settled when `importing` empties. */
  task?: number;
}

/**
 * A copy-image's task (Glance records an api_image_import task for it too), id `<image>.<run>`:
 * made in the write that starts the copy, settled in the write that ends it (the last store copied,
 * failed, reverted or given up), so a crash never leaves it processing for a copy that is over.
 */
export interface CopyTask {
  run: number;
  status: 'processing' | 'success' | 'failure';
  /** Who asked, in which request, and Glance's task input (import_req, backend). */
  requested: Requester;
  started_at: string;
  /** When it was settled (its start while processing). */
  updated_at: string;
  /** Why it failed (empty otherwise, as Glance's message). */
  message: string;
}

/**
 * The finished task of an earlier import run, as its view stood (id `<image>.<run>`, status,
 * message, input, request_id, user_id, created_at, updated_at, result…) when the next run started:
 * Glance keeps every import call's task, and PIR derives only the current run's from the image.
 */
export interface KeptTask {
  id: string;
  status: 'success' | 'failure';
  created_at: string;
  updated_at: string;
  [field: string]: unknown;
}

/**
 * Where a registered image's bytes live outside PIR's store (Glance's image location), and what
 * they looked like when registered: a read that finds another size, ETag or Last-Modified fails
 * instead of serving different bytes. Read-only for PIR: it never writes or deletes there.
 */
export interface ExternalLocation {
  /** `s3://bucket/key` (a bucket of the configured S3 endpoint the operator allowed) or an http(s) URL. */
  url: string;
  /** Glance's free-form location metadata, as given. */
  metadata: Record<string, unknown>;
  /** Glance's validation_data: digests the bytes must have (checked before active). */
  validation_data: { checksum?: string; os_hash_algo?: string; os_hash_value?: string };
  /** The object as first seen: size, and ETag / Last-Modified when the server gave them. */
  fingerprint: LocationFingerprint | null;
  added_at: string;
  added_by: { project_id: string; user_id: string };
}

export interface LocationFingerprint {
  size: number;
  etag: string | null;
  last_modified: string | null;
}

/** Glance's legacy import task input (POST /v2/tasks, type import). */
export interface LegacyImportInput {
  import_from: string;
  import_from_format: string;
  image_properties: Record<string, unknown>;
}

export interface ImageDoc {
  id: string;
  /** Bumped by every state change: the compare-and-set token. */
  revision: number;
  name: string | null;
  owner: string | null;
  status: ImageStatus;
  visibility: Visibility;
  protected: boolean;
  os_hidden: boolean;
  disk_format: DiskFormat | null;
  container_format: ContainerFormat | null;
  min_disk: number;
  min_ram: number;
  size: number | null;
  virtual_size: number | null;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  tags: string[];
  /** Glance's extra properties: free-form string key/values. */
  properties: Record<string, string>;
  /** Projects the image is shared with. Absent on documents written before members existed: read as []. */
  members?: ImageMember[];
  created_at: string;
  updated_at: string;
  /**
   * Digests the client promised (verified by the checksum stage), and where each came from when
   * not os_hash_value at create ('the Repr-Digest trailer'), for the stage's message to name it.
   */
  expected: { md5?: string; sha512?: string; md5_from?: string; sha512_from?: string };
  /** An upload or stage call receiving bytes right now (heartbeat: updated_at). */
  upload: { run: number; kind: 'upload' | 'stage' | 'web-download' | 'glance-download' | 'location'; started_at: string; resumable?: ResumableUpload; input?: ImportInput; requested?: Omit<Requester, 'input'> } | null;
  /**
   * The image's last tus upload abandoned because it expired, so that its URL answers 410
   * upload_expired (not 404) once it is gone from `upload`. Absent: none expired.
   */
  expired_upload?: { id: string; expires_at: string } | null;
  /**
   * The image's last tus upload that brought all its bytes, so that a client which never heard
   * the last PATCH's answer (PIR died after the commit) finds it complete on HEAD, not 404.
   */
  finished_upload?: { id: string; length: number; expires_at: string } | null;
  /**
   * The run number of the image's last abandoned upload: the next run takes a higher one, so it
   * never shares staging keys with a run whose writer or cleanup may still be at work. Absent: none.
   */
  aborted_run?: number;
  /** The bytes in staging, once an upload or stage call has received them all. */
  staging: (HashedBlob & { received_at: string }) | null;
  pipeline: PipelineRun | null;
  /**
   * The blob key of the stored bytes when it is not `images/<id>` (an object store keeps the
   * promoted staging key: no copy). Absent on the filesystem store and on older documents.
   */
  blob_key?: string | null;
  /**
   * Bytes that already existed elsewhere, registered instead of uploaded (core/external-location.ts):
   * never shown except by core/location-exposure.ts rules. Absent: the bytes are PIR's own.
   */
  location?: ExternalLocation | null;
  failure: ImportFailure | null;
  /**
   * Set when the image was made by a legacy import task (POST /v2/tasks): the task's input, and who
   * created it in which request (its x-openstack-request-id), shown by its task (absent in older documents).
   */
  import_task?: { input: LegacyImportInput; user_id?: string | null; request_id?: string | null };
  /**
   * The stores holding the image's bytes, default store first when it holds them. Absent (older
   * documents, single store): one copy in the default store under blob_key / images/<id>.
   */
  stores?: StoredCopy[];
  /** Stores an import or copy-image is still writing, or failed to (absent: none). */
  store_import?: StoreImport | null;
  /** The tasks of its copy-image calls, oldest first (absent: none). */
  copy_tasks?: CopyTask[];
  /** The finished tasks of its earlier import runs, oldest first (absent: none; core/task-history.ts). */
  earlier_tasks?: KeptTask[];
  /** Share links of the image (absent: none). Uses are counted in `share_link_uses`. */
  share_links?: ShareLink[];
  /** Uses of each share link, by link id (kept apart so counting never bumps updated_at). */
  share_link_uses?: Record<string, number>;
  /** Events written with the state change that caused them, relayed to the bus afterwards. */
  outbox: OutboxEvent[];
}
