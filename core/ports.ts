/**
 * The ports the pipeline and the API depend on. Adapters live in infra/: embedded ones
 * (SQLite, in-process) and distributed ones (MongoDB, Kafka, BullMQ on Redis). Every adapter
 * passes the same contract tests (test/contract/).
 */
import type { Readable } from 'node:stream';
import type { ImageDoc, ImageStatus, MemberStatus, StageName, Visibility } from '../schemas/image.js';
import type { PirEvent } from '../schemas/events.js';
import type { EnqueueOptions, JobHandler, JobKind } from './jobs.js';
import type { Search } from './search.js';

// ---------------------------------------------------------------- manifest

export const SORT_KEYS = ['created_at', 'updated_at', 'name', 'status', 'size', 'id', 'disk_format', 'container_format'] as const;
export type SortKey = (typeof SORT_KEYS)[number];
export type SortDir = 'asc' | 'desc';
export type SortValue = string | number | null;
export interface SortSpec {
  key: SortKey;
  dir: SortDir;
}

/** Who lists: Glance's request context as far as listing needs it. */
export interface ListScope {
  project_id: string;
  admin: boolean;
  /**
   * Galleries shared with the project (core/catalog.ts `grants`: each shared gallery and every
   * gallery below it, with the project's answer): their images list as if each were shared.
   */
  galleries?: GalleryGrant[];
}

export interface GalleryGrant {
  gallery_id: string;
  status: MemberStatus;
}

/** A range on an ISO-8601 timestamp column (`gte` inclusive, `lt` exclusive); `negate` selects the complement. */
export interface TimeRange {
  field: 'created_at' | 'updated_at';
  gte?: string;
  lt?: string;
  negate?: boolean;
}

export interface ListQuery {
  /** The caller: which images it may list at all (core/list-access.ts applies Glance's rules). */
  scope: ListScope;
  /** Glance's `visibility` filter; undefined means Glance's default view (no community images but one's own). */
  visibility?: Visibility | 'all';
  /** Which of the caller's memberships count for shared images (Glance's default: accepted). */
  memberStatus: MemberStatus | 'all';
  /** Equality filters on top-level fields; an array value means "any of" (an empty array matches nothing). */
  where: {
    id?: string[];
    name?: string[];
    status?: string[];
    disk_format?: string[];
    container_format?: string[];
    owner?: string;
    protected?: boolean;
    os_hidden?: boolean;
    checksum?: string;
    os_hash_value?: string;
  };
  sizeMin?: number;
  sizeMax?: number;
  times?: TimeRange[];
  /** Extra properties that must all be present with exactly these values. */
  properties?: Record<string, string>;
  /** Tags that must all be present. */
  tags?: string[];
  /** Keyword search (core/search.ts): every word, and a word starting with the prefix, among the image's words. */
  search?: Search;
  /** The image's gallery (its `pir_gallery_id` property) must be one of these (an empty array matches nothing). */
  galleryIn?: string[];
  /**
   * Sort keys in order. Stores apply normalizeSort (core/list-access.ts): repeated keys and keys
   * after `id` are dropped, and `id` (in the last key's direction) breaks any remaining tie.
   */
  sort: SortSpec[];
  limit: number;
  /**
   * Keyset pagination: only documents strictly after the one with these sort values, one per
   * key of normalizeSort(sort) (the last is the id). Order: NULLs first ascending, last
   * descending (SQLite's and MongoDB's default).
   */
  after?: SortValue[];
}

/** A position in a relevance ranking: just after the image with this score and these sort values (sortValues). */
export interface RankedAfter {
  score: number;
  after: SortValue[];
}

/** A list as a caller asks for it (ImageService.list adds the caller's scope and the marker's keyset). */
export interface ListRequest {
  query: Omit<ListQuery, 'scope' | 'after'>;
  /** Id of the last image of the previous page. */
  marker?: string;
  /** Instead of a marker: the sort keyset of the last image already listed (continuing a page in batches). */
  after?: SortValue[];
  /** Rank the keyword search's matches (query.search) best first (sort=relevance). */
  relevance?: boolean;
  /** Only images of this gallery (and, recursive, of the galleries below it): resolved by the catalog. */
  gallery?: { id: string; recursive: boolean };
}

export interface ManifestStore {
  /** Inserts a new document; rejects with ManifestConflictError when the id exists. */
  /**
   * Inserts a new document. Refuses (RetiredIdError) an id that belonged to an image purged
   * before: image ids are never reused (OSSN-0075). `chosenId`: the client chose the id (a store
   * may skip the check for ids it generated, which cannot collide).
   */
  create(doc: ImageDoc, opts?: { chosenId?: boolean }): Promise<void>;
  get(id: string): Promise<ImageDoc | null>;
  list(query: ListQuery): Promise<ImageDoc[]>;
  /** How many documents list(query) would return without limit and keyset (`limit`, `after` and `sort` are ignored). */
  count(query: ListQuery): Promise<number>;
  /**
   * Optional, sort=relevance in the store's own query language: the first `query.limit` matches
   * of query.search ranked by core/search.ts `relevance`, best first, equal scores in the list's
   * order (query.sort), after the position `from` (query.after is ignored). Without it
   * ImageService reads every match and ranks them itself.
   */
  rankedList?(query: ListQuery, from?: RankedAfter): Promise<ImageDoc[]>;
  /**
   * Optional, with getMany: the ids of what list(query) returns, in order, without reading the
   * documents. A long page (GET /v2/images?limit=1000) then finds its ids in one query and reads
   * the documents in batches, where one list query per batch would start the plan over each
   * time (a driving set of 1,000 rows re-sorted twenty times).
   */
  listIds?(query: ListQuery): Promise<string[]>;
  /** The documents of these ids, in this order; an id gone meanwhile is left out. */
  getMany?(ids: readonly string[]): Promise<ImageDoc[]>;
  /**
   * Compare-and-set: writes `doc` (whose revision the caller has already bumped) only if the
   * stored revision is still `expectedRevision`. Returns false when someone else wrote first.
   * The state change and its outbox events are one atomic document write.
   */
  replace(doc: ImageDoc, expectedRevision: number): Promise<boolean>;
  /**
   * Optional: the newest version of the document this process has seen, without asking the
   * server (null when none is known). It may be stale; a compare-and-set based on a stale one
   * fails like any lost race. Stores whose reads are costly (MongoDB-wire) offer it so an update
   * right after this process's own write needs no read.
   */
  peek?(id: string): ImageDoc | null;
  /**
   * Optional, with `peek`: the image was written elsewhere since (a bus event says so), so the
   * version this process remembers is stale: forget it, and the next write reads first instead
   * of losing a compare-and-set on it.
   */
  forget?(id: string): void;
  /**
   * Optional: a read that may trail the newest write by moments, for a store whose exact read
   * costs more (MongoDB-wire: the image document alone, without following its journal). The
   * caller says which states are recent enough for it (e.g. "at least the run this event
   * started"); for any other the store returns what get() would. A stale state used as the base
   * of a compare-and-set fails like any lost race.
   */
  getRecent?(id: string, isRecentEnough: (doc: ImageDoc) => boolean): Promise<ImageDoc | null>;
  /**
   * Removes relayed events from the outbox without touching the revision. `addedBy`: the
   * revision of the newest write that added any of them (a state with this revision or a later
   * one that lacks them has had them dropped already, so a store may settle it from a cheap read).
   */
  ackEvents(id: string, eventIds: string[], addedBy?: number): Promise<void>;
  /** Documents whose outbox still holds events and which were last written before `updatedBefore` (ISO). */
  withPendingEvents(updatedBefore: string, limit: number): Promise<ImageDoc[]>;
  /** Documents in one of `statuses` last written before `updatedBefore` (ISO): the sweepers' work list. */
  findStale(statuses: ImageStatus[], updatedBefore: string, limit: number): Promise<ImageDoc[]>;
  /** Physically removes a document (after its image.deleted event was relayed), keeping its id as retired first. */
  purge(id: string): Promise<void>;
  /** How many images are in each status (for metrics; one count query per status). */
  countByStatus(): Promise<Record<ImageStatus, number>>;
  /** How many documents still hold unpublished outbox events (for metrics). */
  countPendingEvents(): Promise<number>;
  /** Resolves when the store answers a trivial query (readiness checks); rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class ManifestConflictError extends Error {
  constructor(id: string) {
    super(`image ${id} already exists`);
    this.name = 'ManifestConflictError';
  }
}

/** The id belonged to an image that was deleted: it is never given to another (OSSN-0075). */
export class RetiredIdError extends ManifestConflictError {
  constructor(id: string) {
    super(id);
    this.message = `image id ${id} belonged to a deleted image`;
    this.name = 'RetiredIdError';
  }
}

// ---------------------------------------------------------------- events

export type EventHandler = (event: PirEvent) => Promise<void>;

export interface EventBus {
  /** Publishes in order per image (the key). Resolves once the bus has the events durably. */
  publish(events: PirEvent[]): Promise<void>;
  /**
   * Delivers every event published after the group first subscribed, at least once, in order per
   * image, to one member of the consumer group. A handler that throws gets the event again later.
   */
  subscribe(group: string, handler: EventHandler): Promise<void>;
  /**
   * Every event published from now on, in this process, whoever else watches: best effort and
   * not durable, for waking waiters (never for work that must happen). Returns a stop function.
   */
  watch(handler: EventHandler): Promise<() => Promise<void>>;
  /** Resolves when the bus's broker answers (readiness checks); rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------- jobs

export interface StageJob {
  imageId: string;
  run: number;
  stage: StageName;
  traceparent?: string;
  /**
   * A small image's whole chain in one job: it runs from whichever of its stages the manifest
   * records as current (this one or a later one) to the end (workers/stage-runner.ts).
   */
  fused?: boolean;
}

export interface JobContext {
  /** 1 for the first try. */
  attempt: number;
  /**
   * This attempt was started before and never ended (its worker died and BullMQ's stalled-job
   * recovery put it back, or the process restarted): not a new attempt to the queue, but a new
   * start of its work. A job has run before when `attempt > 1 || redelivered`.
   */
  redelivered?: boolean;
  maxAttempts: number;
  reportProgress(percent: number): Promise<void>;
}

export type StageHandler = (job: StageJob, ctx: JobContext) => Promise<void>;

export interface RetryPolicy {
  attempts: number;
  /** First retry delay; doubled at each further attempt. */
  backoffMs: number;
}

export interface JobQueue {
  /**
   * Enqueues `jobs` as one chain: each job runs only after the one before it completed.
   * Job ids are stageJobId(job), so enqueueing the same chain again is a no-op.
   * A handler that throws is retried with exponential backoff up to the policy's attempts;
   * when the last attempt throws, the rest of the chain does not run.
   */
  enqueueChain(jobs: StageJob[]): Promise<void>;
  /** Starts a pool of `concurrency` workers for one stage in this process. */
  process(stage: StageName, concurrency: number, handler: StageHandler): Promise<void>;
  /**
   * Hears of a stage job the queue itself failed for good without its handler saying so: one
   * that stalled too often (the workers running it died or froze past its lock), which drops
   * the rest of its chain. The listener resumes the import at once instead of at its deadline.
   */
  onStageJobStalledOut?(listener: (job: StageJob) => void): void;
  /** Per stage: jobs waiting to run (depth), running, and how long the oldest waiting one has waited. */
  stats(): Promise<QueueStats[]>;
  /** Resolves when the queue's backend answers (readiness checks); rejects otherwise. */
  ping(): Promise<void>;
  /** Enqueues one job of a declared kind (core/jobs.ts); an id the queue still knows is a no-op. */
  enqueue<T>(kind: JobKind<T>, id: string, data: T, options?: EnqueueOptions): Promise<void>;
  /**
   * Starts a pool of `concurrency` workers for one job kind in this process. `onAbandoned` hears
   * of a job the queue gave up without its handler's last attempt (it stalled too often: the
   * workers running it died or froze past its lock), so the kind can record the failure its
   * handler would have; an in-process queue never gives a job up so.
   */
  work<T>(kind: JobKind<T>, concurrency: number, handler: JobHandler<T>, onAbandoned?: (data: T) => Promise<void>): Promise<void>;
  /** Stops taking jobs, waits for running ones (up to graceMs), then closes. */
  close(graceMs?: number): Promise<void>;
}

export interface QueueStats {
  stage: StageName;
  /** Jobs ready to run or waiting for a retry (not those waiting for an earlier stage). */
  waiting: number;
  active: number;
  /** Age of the oldest job ready to run, in seconds; 0 when none waits. */
  oldestWaitingSeconds: number;
}

export function stageJobId(job: Pick<StageJob, 'imageId' | 'run' | 'stage' | 'fused'>): string {
  return `${job.imageId}.${job.run}.${job.stage}${job.fused ? '.fused' : ''}`;
}

// ---------------------------------------------------------------- blobs

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/** One stored object. */
export interface BlobInfo {
  key: string;
  size: number;
  /** When it was last written or moved into place (ms since epoch). */
  modifiedAt: number;
}

export interface BlobWriteOptions {
  /** More bytes than this → SizeLimitError (ingest/hashing) and nothing under the key. */
  maxBytes: number;
  /** The source brought no byte for this long → SourceIdleError (0/absent: no limit). */
  idleMs?: number;
  signal?: AbortSignal;
  /** All-zero blocks may become holes (filesystem); object stores store them as written. */
  sparse?: boolean;
}

/** What a write stored: the size and the digests computed over exactly those bytes, in the same pass. */
export interface WrittenBlob {
  size: number;
  md5: string;
  sha512: string;
}

/** Random access for inspectors: every read is one bounded range. */
export interface BlobReader {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Image bytes by key (model: immich's StorageBackend). Keys are '/'-separated, chosen by
 * core/blob-keys.ts (`staging/<id>.<run>.<kind>`, `images/<id>`); no caller sees a path, except
 * through localFile. Adapters: infra/storage/fs-blob-store.ts, infra/storage/s3-blob-store.ts;
 * both pass test/contract/blob-store.contract.ts.
 */
export interface BlobStore {
  /** 'filesystem' or 's3' (logs, /readyz, doctor). */
  readonly kind: string;
  /**
   * Streams `source` under `key` while md5 and sha512 are computed in the same pass. The key
   * holds all of the bytes or none: on any failure nothing is left under it. Overwrites.
   */
  write(key: string, source: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, options: BlobWriteOptions): Promise<WrittenBlob>;
  /** A stream of the key's bytes, or of one inclusive range; rejects with BlobNotFoundError. */
  read(key: string, range?: ByteRange): Promise<Readable>;
  /** Bounded range reads (inspection reads headers and tables, never the whole image). */
  openReader(key: string): Promise<BlobReader>;
  /** Size and time of the key, or null when nothing is stored under it. */
  stat(key: string): Promise<BlobInfo | null>;
  /** Removes the key and whatever an unfinished write left under it; no error when it is absent. */
  delete(key: string): Promise<void>;
  /**
   * Every key starting with `prefix`, including writes a dead writer left unfinished (a partial
   * file; an object store's multipart upload, listed with size 0), so sweepers can delete them.
   */
  list(prefix: string): Promise<BlobInfo[]>;
  /**
   * A local file holding the key's bytes, for a tool that needs a real file (random access over
   * an archive). The filesystem adapter gives its own file (no copy); others download a
   * temporary copy, removed by release().
   */
  localFile(key: string): Promise<{ path: string; release(): Promise<void> }>;
  /**
   * Only stores whose blobs are local files: the file of `key`, to be written in place (tus
   * appends to a staged upload at an offset, which an object store cannot do).
   */
  filePath?(key: string): string;
  /**
   * Makes the blob at `stagedKey` the image's stored bytes, all at once and without copying
   * them a second time; returns the key they are stored under (record it: core/blob-keys.ts
   * storedKeyOf). Filesystem: a hard link at `images/<id>` (one fsync). Object stores: the staged
   * key itself (S3 has no rename; a server-side copy would copy the bytes). Rejects with
   * BlobNotFoundError when nothing is stored under `stagedKey`.
   *
   * Never destructive: the staged key still reads the same bytes afterwards (activation removes
   * it: core/blob-keys.ts removeStaging), and promoting the same staged blob again is a no-op, so
   * a pipeline that dies after promotion can run again from any stage before it.
   */
  promote(stagedKey: string, imageId: string): Promise<string>;
  /** Resolves when the store answers (readiness, `pir doctor`); rejects otherwise. */
  ping(): Promise<void>;
  /**
   * Only object stores: the multipart uploads under `prefix` that were started and neither
   * completed nor aborted, whether a writer is still at work on them or died (the janitor
   * aborts those no live image owns: workers/sweepers.ts).
   */
  unfinishedWrites?(prefix: string): Promise<UnfinishedWrite[]>;
  /** Aborts one unfinished write (its parts are freed); the key's completed object, if any, stays. */
  abortUnfinishedWrite?(write: UnfinishedWrite): Promise<void>;
}

/** A multipart upload in progress (or abandoned) in an object store. */
export interface UnfinishedWrite {
  key: string;
  uploadId: string;
  /** When it was started (ms since the epoch). */
  startedAt: number;
}

/** The store itself failed (an object store unreachable or refusing), not the source of the bytes. */
export class BlobStoreUnavailableError extends Error {
  readonly code = 'blob_store_unavailable';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlobStoreUnavailableError';
  }
}

export class BlobNotFoundError extends Error {
  readonly code = 'blob_not_found';
  constructor(key: string) {
    super(`no blob stored under ${key}`);
    this.name = 'BlobNotFoundError';
  }
}
