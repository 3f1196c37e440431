/**
 * The image entity: every status change of an image, with the event it causes, and the rules
 * for its fields (modelled on Glance's glance/domain/__init__.py `Image`). Nothing else sets
 * `status`: the API (core/image-service.ts), the stage runner and the sweepers call these
 * functions on a draft inside `Manifest.update`, so a change and its event are written together
 * (test/unit/core/image-entity.test.ts checks no other module assigns a status).
 *
 * Each function changes the draft and returns the events to write with it.
 */
import { commonPropertyProblem } from './common-properties.js';
import type { ContainerFormat, DiskFormat, ExternalLocation, HashedBlob, ImageDoc, ImportFailure, LocationFingerprint, ImageMember, ImageStatus, MemberStatus, PipelineRun, ResumableUpload, StageName } from '../schemas/image.js';
import { CONTAINER_FORMATS, DISK_FORMATS, MEMBER_STATUSES, VISIBILITIES } from '../schemas/image.js';
import { canTransition } from '../schemas/state-machine.js';
import { fail } from './error-catalog.js';
import { conflict } from './errors.js';
import { event, type NewEvent } from './events.js';
import { characters, LIMITS } from './limits.js';
import { newRun, startStage } from './pipeline-state.js';
import { keepFinishedTasks } from './task-history.js';

/** Moves `draft` to `to`, refusing a move the state machine does not allow. Private to the entity. */
function transition(draft: ImageDoc, to: ImageStatus): void {
  if (draft.status === to) return;
  if (!canTransition(draft.status, to)) {
    throw conflict('invalid_status', `Image ${draft.id} is ${draft.status}; it cannot become ${to}.`);
  }
  draft.status = to;
}

// ------------------------------------------------------------------ data and pipeline

/** Bytes start arriving (PUT …/file → saving, PUT …/stage → uploading). */
export function beginReceiving(draft: ImageDoc, kind: 'upload' | 'stage', run: number): NewEvent[] {
  if (draft.status !== 'queued') {
    // Busy with another upload: one cut off (its client or PIR process gone) frees the image by itself.
    const advice = draft.status === 'saving' || draft.status === 'uploading'
      ? 'Another upload to it is under way; if that one was cut off, the image goes back to queued once it has been silent for PIR_UPLOAD_STALL_SECONDS: upload again to this image then.'
      : 'Create a new image to upload again.';
    throw conflict('invalid_status', `Image ${draft.id} is ${draft.status}; bytes can be uploaded only to a queued image. ${advice}`);
  }
  if (kind === 'upload' && (!draft.disk_format || !draft.container_format)) {
    throw fail('formats_required', 'Set disk_format and container_format on the image (PATCH or at create) before uploading its data.');
  }
  keepFinishedTasks(draft);
  transition(draft, kind === 'upload' ? 'saving' : 'uploading');
  draft.upload = { run, kind, started_at: new Date().toISOString() };
  draft.failure = null;
  return [event('image.upload.started', { run })];
}

/** A tus upload is created: the image is claimed as by PUT …/file, its bytes then come in many PATCHes. */
export function beginResumable(draft: ImageDoc, run: number, resumable: ResumableUpload): NewEvent[] {
  const events = beginReceiving(draft, 'upload', run);
  draft.upload!.resumable = resumable;
  return events;
}

/** 409 import_formats_required, as Glance, naming the first format missing before `what`; `next` says what to do. */
export function requireFormatsBefore(draft: ImageDoc, what: string, next: string): void {
  for (const field of ['container_format', 'disk_format'] as const) {
    if (!draft[field]) throw fail('import_formats_required', `'${field}' needs to be set before ${what}; ${next}`);
  }
}

/** The imports PIR downloads itself: from a URL, or from another region's Glance. */
export type DownloadMethod = 'web-download' | 'glance-download';

/** What Glance checks of the image before a web-download's URI or a glance-download (409): queued, with both formats. */
export function requireWebDownloadable(draft: ImageDoc, method: DownloadMethod = 'web-download'): void {
  if (draft.status !== 'queued') {
    throw conflict('invalid_status', `Image ${draft.id} is ${draft.status}; it needs to be in 'queued' state to use the '${method}' method. Create a new image to import again.`);
  }
  requireFormatsBefore(draft, 'import', 'set it with PATCH first.');
}

/** A web-download or glance-download claims a queued image with both formats set (Glance answers 409 otherwise); bytes then stream in. */
export function beginWebDownload(draft: ImageDoc, run: number, method: DownloadMethod = 'web-download'): NewEvent[] {
  requireWebDownloadable(draft, method);
  keepFinishedTasks(draft);
  transition(draft, 'uploading');
  draft.upload = { run, kind: method, started_at: new Date().toISOString() };
  draft.failure = null;
  return [event('image.upload.started', { run })];
}

/**
 * What a glance-download takes from the remote image (Glance's _ImportMetadata): its formats and
 * the selected properties, set in the write that ends the download, so a download that fails
 * leaves the image's own as they were (Glance sets them first and reverts them on failure).
 */
export interface RemoteAdoption {
  disk_format: DiskFormat;
  container_format: ContainerFormat;
  properties: Record<string, string>;
}

export function adoptRemote(draft: ImageDoc, adoption: RemoteAdoption): void {
  draft.disk_format = adoption.disk_format;
  draft.container_format = adoption.container_format;
  for (const [key, value] of Object.entries(adoption.properties)) setProperty(draft, key, value);
}

/**
 * A glance-download that failed before its bytes were all in: as Glance's revert, the image is
 * `queued` again with its own metadata, and the failure is kept for its task (`failure`, with the
 * reason) until the next import.
 */
export function downloadFailedBackToQueued(draft: ImageDoc, code: string, message: string, beforeRun: Pick<ImportFailure, 'run' | 'method' | 'requested'>): NewEvent[] {
  const call = callOf(draft, beforeRun); // before backToQueued forgets the upload record
  const events = backToQueued(draft, message);
  draft.failure = { stage: 'import', code, message, at: new Date().toISOString(), ...call };
  failImportingStores(draft); // as kill
  return events;
}

/** An import that failed before its run, with when its call was made (its upload record's start): its task's created_at. */
function callOf(draft: ImageDoc, beforeRun?: Pick<ImportFailure, 'run' | 'method' | 'requested'>): Partial<ImportFailure> {
  if (!beforeRun) return {};
  const upload = draft.upload;
  return upload && upload.run === beforeRun.run ? { ...beforeRun, started_at: upload.started_at } : beforeRun;
}

/**
 * A location is registered (core/external-location.ts): as Glance, only on a queued image with no
 * data and both formats set. The image is `uploading` while PIR reads the bytes once for their
 * digests; then the pipeline runs on them where they are.
 */
export function beginRegistration(draft: ImageDoc, run: number, location: ExternalLocation): NewEvent[] {
  if (draft.status !== 'queued' || draft.location) {
    throw conflict('invalid_status', `Image ${draft.id} is ${draft.status}${draft.location ? ' and has a location' : ''}; a location can be added only to a queued image with no data. Create a new image to register other bytes.`);
  }
  requireFormatsBefore(draft, 'a location is added', 'set it with PATCH first.');
  keepFinishedTasks(draft);
  transition(draft, 'uploading');
  draft.upload = { run, kind: 'location', started_at: new Date().toISOString() };
  draft.location = location;
  draft.failure = null;
  return [event('image.upload.started', { run })];
}

/** The registered object as first seen (recorded before its bytes are read). */
export function fingerprinted(draft: ImageDoc, fingerprint: LocationFingerprint): NewEvent[] {
  draft.location = { ...draft.location!, fingerprint };
  return [];
}

/** All bytes are in staging. The status stays (saving goes on to import, uploading waits for POST …/import). */
export function staged(draft: ImageDoc, run: number, blob: HashedBlob, claimed: ImageDoc['expected'] = {}): NewEvent[] {
  const kind = draft.upload!.kind;
  const resumable = draft.upload!.resumable;
  if (resumable) draft.finished_upload = { id: resumable.id, length: resumable.length, expires_at: resumable.expires_at };
  draft.upload = null;
  draft.staging = { ...blob, received_at: new Date().toISOString() };
  for (const key of ['md5', 'sha512'] as const) {
    const digest = claimed[key];
    // A digest the client sent with the bytes joins the one given at create; where either
    // contradicts the bytes, that one is kept, so the checksum stage refuses them.
    if (digest && (!draft.expected[key] || digest !== blob[key])) {
      draft.expected[key] = digest;
      const from = claimed[`${key}_from`];
      if (from) draft.expected[`${key}_from`] = from;
      else delete draft.expected[`${key}_from`];
    }
  }
  return [event('image.staged', { run, size: blob.size, method: kind === 'stage' ? 'glance-direct' : kind })];
}

/** The bytes never all arrived: back to queued, the staging forgotten. */
export function abortReceiving(draft: ImageDoc, reason: string, expired = false): NewEvent[] {
  // A legacy import task's download (POST /v2/tasks) is not started again by anyone: back in
  // `queued` its task would stay `pending` forever. It ends, with the reason, as a failed task.
  if (draft.import_task && draft.upload?.kind === 'web-download') {
    const { run } = draft.upload;
    return kill(draft, 'import', 'import_interrupted', `The task's download stopped before its last byte (${reason}); create the task again.`, { run, method: 'web-download' });
  }
  // An import call's download (its task shown `processing`) is not started again either: back in
  // `queued` with no failure its task would vanish. Its task ends `failure`, and it can be imported again.
  const upload = draft.upload;
  if (upload?.input && (upload.kind === 'web-download' || upload.kind === 'glance-download')) {
    return downloadFailedBackToQueued(draft, 'import_interrupted', `The ${upload.kind} stopped before its last byte (${reason}); import again.`,
      { run: upload.run, method: upload.kind, requested: { user_id: upload.requested?.user_id ?? null, request_id: upload.requested?.request_id ?? null, input: upload.input } });
  }
  return backToQueued(draft, reason, expired);
}

/**
 * A claim whose work never started (its call was refused after the claim, or the claim's own write
 * was thought lost): back to queued with nothing recorded, as a call Glance refuses makes no task.
 */
export function releaseClaim(draft: ImageDoc, reason: string): NewEvent[] {
  // A legacy task's download has nobody to start it again: it ends, as abortReceiving ends it.
  if (draft.import_task) return abortReceiving(draft, reason);
  draft.store_import = null; // the plan this claim made (every claim writes its own); nothing was imported
  return backToQueued(draft, reason);
}

function backToQueued(draft: ImageDoc, reason: string, expired = false): NewEvent[] {
  // A registration that never finished leaves no location: the image can be given one again.
  if (draft.upload?.kind === 'location') draft.location = null;
  // An expired tus upload is remembered, for its URL to answer 410 and not 404.
  const resumable = draft.upload?.resumable;
  if (expired && resumable) draft.expired_upload = { id: resumable.id, expires_at: resumable.expires_at };
  if (draft.upload) draft.aborted_run = Math.max(draft.aborted_run ?? 0, draft.upload.run);
  draft.upload = null;
  draft.staging = null;
  if (draft.status === 'saving' || draft.status === 'uploading') transition(draft, 'queued');
  return [event('image.upload.aborted', { reason })];
}

/** The pipeline starts on staged data, under run number `run`. */
export function beginImport(draft: ImageDoc, run: number, method: PipelineRun['method'], deadlineSeconds: number, requested: PipelineRun['requested'] = null): NewEvent[] {
  transition(draft, 'importing');
  keepFinishedTasks(draft);
  draft.pipeline = newRun(run, method, deadlineSeconds);
  if (requested) draft.pipeline.requested = requested;
  const first = draft.pipeline.stage as StageName;
  // The first stage starts in this same write, handed off to its job (one write fewer per image).
  return [event('image.import.started', { run, method, first_stage: first }), startStage(draft, first, deadlineSeconds, true)];
}

/**
 * A stuck run starts again from its current stage under a new run number (late jobs of the old
 * run become no-ops). A run whose stages were all done but which never became active is
 * finished here, with its image.active event.
 */
export function resumeImport(draft: ImageDoc, run: number, deadlineSeconds: number): NewEvent[] {
  const pipeline = draft.pipeline!;
  pipeline.run = run;
  pipeline.deadline_at = new Date(Date.now() + deadlineSeconds * 1000).toISOString();
  if (pipeline.stage === 'done') return activate(draft, run);
  const stage = pipeline.stage;
  pipeline.stages[stage].status = 'pending';
  return [event('image.import.started', { run, method: pipeline.method, first_stage: stage })];
}

/** The last stage is done: the image is available. */
export function activate(draft: ImageDoc, run: number): NewEvent[] {
  transition(draft, 'active');
  draft.staging = null;
  return [event('image.active', {
    run,
    size: draft.size!,
    virtual_size: draft.virtual_size,
    checksum: draft.checksum!,
    os_hash_algo: draft.os_hash_algo!,
    os_hash_value: draft.os_hash_value!,
  })];
}

/**
 * An import into stores (multi-store) that failed: every store still being imported to has failed
 * (Glance moves them from os_glance_importing_to_stores to os_glance_failed_import), so waiters on those stop.
 */
function failImportingStores(draft: ImageDoc): void {
  const plan = draft.store_import;
  if (plan?.importing.length) draft.store_import = { ...plan, importing: [], failed: [...new Set([...plan.failed, ...plan.importing])] };
}

/**
 * Ends an image's pipeline for good, recording why. `beforeRun`: an import that failed before its
 * bytes were in (web-download, location), so before any pipeline run, names its run for its task.
 */
export function kill(draft: ImageDoc, stage: string, code: string, message: string, beforeRun?: Pick<ImportFailure, 'run' | 'method' | 'requested'>): NewEvent[] {
  transition(draft, 'killed');
  draft.failure = { stage: stage as never, code, message, at: new Date().toISOString(), ...callOf(draft, beforeRun) };
  draft.upload = null;
  draft.staging = null;
  failImportingStores(draft);
  return [event('image.killed', { run: draft.pipeline?.run ?? null, stage, code, message })];
}

// ------------------------------------------------------------------ administrative states

/** Glance: only an active image can be deactivated; deactivating a deactivated one is a no-op. */
export function deactivate(draft: ImageDoc): NewEvent[] | null {
  if (draft.status === 'deactivated') return null;
  if (draft.status !== 'active') {
    throw fail('cannot_deactivate', `Image ${draft.id} is ${draft.status}; only an active image can be deactivated.`);
  }
  transition(draft, 'deactivated');
  // Share links die with the deactivation: reactivating does not bring them back.
  delete draft.share_links;
  delete draft.share_link_uses;
  return [event('image.deactivated', {})];
}

/** Glance: only a deactivated image can be reactivated; reactivating an active one is a no-op. */
export function reactivate(draft: ImageDoc): NewEvent[] | null {
  if (draft.status === 'active') return null;
  if (draft.status !== 'deactivated') {
    throw fail('cannot_reactivate', `Image ${draft.id} is ${draft.status}; only a deactivated image can be reactivated.`);
  }
  transition(draft, 'active');
  return [event('image.reactivated', {})];
}

export function markDeleted(draft: ImageDoc): NewEvent[] | null {
  if (draft.status === 'deleted') return null;
  if (draft.protected) {
    throw fail('protected_image', `Image ${draft.id} is protected; set protected=false (PATCH) before deleting it.`);
  }
  transition(draft, 'deleted');
  delete draft.share_links;
  delete draft.share_link_uses;
  draft.upload = null;
  draft.staging = null;
  // The owner rides along: the quota it counted against, after the document is purged.
  return [event('image.deleted', { owner: draft.owner })];
}

// ------------------------------------------------------------------ fields

/** Base attributes a client may set (create or PATCH). */
export const WRITABLE_FIELDS = ['name', 'disk_format', 'container_format', 'visibility', 'protected', 'os_hidden', 'min_disk', 'min_ram', 'tags', 'owner'] as const;
export type WritableField = (typeof WRITABLE_FIELDS)[number];

/** Attributes PIR sets (Glance's _readonly_properties, plus PIR's own view fields). */
export const READ_ONLY_ATTRIBUTES = new Set([
  'id', 'status', 'checksum', 'size', 'virtual_size', 'os_hash_algo', 'os_hash_value', 'created_at', 'updated_at',
  'self', 'file', 'schema', 'direct_url', 'locations', 'owner_specified', 'stores', 'members',
  'pir_stage', 'pir_pipeline', 'pir_failure',
]);
/** Properties the inspect stage fills from the image's own headers (formats/embedded/). */
export const DETECTED_PREFIX = 'pir_detected_';

/**
 * Adds detected properties the image does not have yet (a property the user set wins), as many
 * as the property limits leave room for: detection never makes an image fail.
 */
export function addDetectedProperties(draft: ImageDoc, detected: Record<string, string>): void {
  let count = Object.keys(draft.properties).length;
  let bytes = Object.entries(draft.properties).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  for (const [key, value] of Object.entries(detected)) {
    if (key in draft.properties) continue;
    const cost = Buffer.byteLength(key) + Buffer.byteLength(value);
    if (count + 1 > LIMITS.imageProperties || bytes + cost > LIMITS.propertiesTotalBytes || value.length > 255 || key.length > LIMITS.propertyKeyLength) continue;
    draft.properties[key] = value;
    count += 1;
    bytes += cost;
  }
}

/** Glance's _reserved_properties. */
export const RESERVED_ATTRIBUTES = new Set(['location', 'deleted', 'deleted_at']);

export const isWritableField = (key: string): key is WritableField => (WRITABLE_FIELDS as readonly string[]).includes(key);

/** Refuses names a client may not set as base attribute or extra property: 403, as Glance. */
export function checkSettable(key: string): void {
  // JSON parsers treat this name specially (prototype poisoning): never a property name.
  if (key === '__proto__') throw fail('reserved_property', "Attribute '__proto__' is reserved. Choose another name.");
  // Glance reserves the whole os_glance namespace (glance/api/v2/images.py), not only os_glance_*.
  if (key.startsWith('os_glance')) throw fail('reserved_property', `Attribute '${key}' is reserved: the os_glance prefix belongs to Glance itself. Choose another name.`);
  if (RESERVED_ATTRIBUTES.has(key)) throw fail('reserved_property', `Attribute '${key}' is reserved. Choose another name.`);
  if (READ_ONLY_ATTRIBUTES.has(key)) throw fail('read_only_property', `Attribute '${key}' is read-only; leave it out of the request.`);
  // pir_detected_* (what the image says of itself) may be set by its owner, whose value wins.
  if (key.startsWith('pir_') && !key.startsWith(DETECTED_PREFIX)) throw fail('reserved_property', `Attribute '${key}' is reserved: the pir_ prefix belongs to PIR itself (only pir_detected_* may be set). Choose another name.`);
}

const invalid = (message: string) => fail('invalid_value', message);

function checkString(key: string, value: unknown, max: number, nullable: boolean): string | null {
  if (value === null && nullable) return null;
  if (typeof value !== 'string') throw invalid(`'${key}' must be a string${nullable ? ' or null' : ''}.`);
  if (value.length > max && characters(value) > max) throw invalid(`'${key}' is at most ${max} characters (got ${characters(value)}).`);
  return value;
}

function checkEnum<T extends string>(key: string, value: unknown, allowed: readonly T[], nullable: boolean): T | null {
  if (value === null && nullable) return null;
  if (typeof value !== 'string' || !allowed.includes(value as T)) throw invalid(`'${key}' must be one of ${allowed.join(', ')}${nullable ? ' or null' : ''}.`);
  return value as T;
}

function checkInteger(key: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > LIMITS.minDiskOrRam) {
    throw invalid(`'${key}' must be a whole number from 0 to ${LIMITS.minDiskOrRam}.`);
  }
  return value;
}

function checkBoolean(key: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalid(`'${key}' must be true or false.`);
  return value;
}

/** Validates one tag (Glance: a non-empty string of at most 255 characters). */
export function checkTag(tag: unknown): string {
  if (typeof tag !== 'string' || tag.length === 0) throw invalid('A tag is a non-empty string.');
  if (tag.length > LIMITS.tagLength && characters(tag) > LIMITS.tagLength) throw fail('tag_too_long', `Tags are at most ${LIMITS.tagLength} characters (got ${characters(tag)}).`);
  return tag;
}

/** Sets a base attribute with Glance's field rules. Policy (who may) was checked by the caller. */
export function setField(draft: ImageDoc, key: WritableField, value: unknown): void {
  switch (key) {
    case 'name': draft.name = checkString(key, value, LIMITS.nameLength, true); break;
    case 'owner': draft.owner = checkString(key, value, LIMITS.memberIdLength, true); break;
    case 'disk_format':
    case 'container_format': {
      const next = key === 'disk_format' ? checkEnum(key, value, DISK_FORMATS, true) : checkEnum(key, value, CONTAINER_FORMATS, true);
      if (draft[key] !== next && draft.status !== 'queued') {
        throw fail('field_frozen', `Attribute ${key} can be only replaced for a queued image (image ${draft.id} is ${draft.status}).`);
      }
      (draft as unknown as Record<string, unknown>)[key] = next;
      break;
    }
    case 'visibility': draft.visibility = checkEnum(key, value, VISIBILITIES, false)!; break;
    case 'protected': draft.protected = checkBoolean(key, value); break;
    case 'os_hidden': draft.os_hidden = checkBoolean(key, value); break;
    case 'min_disk': draft.min_disk = checkInteger(key, value); break;
    case 'min_ram': draft.min_ram = checkInteger(key, value); break;
    case 'tags': {
      if (!Array.isArray(value)) throw invalid("'tags' must be a list of strings.");
      draft.tags = [...new Set(value.map(checkTag))];
      checkTagCount(draft);
      break;
    }
  }
}

/** Sets an extra property (a string, as Glance's schema says). */
export function setProperty(draft: ImageDoc, key: string, value: unknown): void {
  checkSettable(key);
  if (key.length === 0 || characters(key) > LIMITS.propertyKeyLength) throw fail('property_name_too_long', `A property name is 1 to ${LIMITS.propertyKeyLength} characters ('${key.slice(0, 40)}…' is ${characters(key)}).`);
  if (typeof value !== 'string') throw invalid(`Extra property '${key}' must be a string (Glance's schema types every extra property as a string).`);
  if (value.length > LIMITS.propertyValueLength && characters(value) > LIMITS.propertyValueLength) throw fail('property_value_too_long', `Property '${key}' is longer than ${LIMITS.propertyValueLength} characters.`);
  const problem = commonPropertyProblem(key, value);
  if (problem) throw invalid(problem);
  draft.properties[key] = value;
  checkPropertyQuota(draft);
}

/** 413: more extra properties than Glance's image_property_quota; `made`: how many the change makes. */
export function tooManyProperties(made: string | number) {
  return fail('too_many_properties', `An image has at most ${LIMITS.imageProperties} extra properties (Glance's image_property_quota); this change makes ${made}. Remove some first.`);
}

/**
 * Glance's image_property_quota counts the client's properties: PIR's own (`pir_gallery_id`, the
 * detected `pir_detected_*` facts, `pir_uploaded_*`) are not the client's to spend it on.
 */
export function checkPropertyQuota(draft: ImageDoc): void {
  const entries = Object.entries(draft.properties).filter(([key]) => !key.startsWith('pir_'));
  if (entries.length > LIMITS.imageProperties) throw tooManyProperties(entries.length);
  const total = entries.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  if (total > LIMITS.propertiesTotalBytes) {
    throw fail('properties_too_large', `An image's extra properties hold at most ${LIMITS.propertiesTotalBytes} bytes in all (names and values, UTF-8); this change makes ${total}. Keep large data out of image properties.`);
  }
}

export function tooManyTags(made: string | number) {
  return fail('too_many_tags', `An image has at most ${LIMITS.imageTags} tags (Glance's image_tag_quota); this change makes ${made}. Remove some first.`);
}

export function checkTagCount(draft: ImageDoc): void {
  if (draft.tags.length > LIMITS.imageTags) throw tooManyTags(draft.tags.length);
}

/** The fields that differ between two versions of an image, for image.updated. */
export function changedFields(before: ImageDoc, after: ImageDoc): string[] {
  const changed: string[] = [];
  for (const key of WRITABLE_FIELDS) {
    if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) changed.push(key);
  }
  const keys = new Set([...Object.keys(before.properties), ...Object.keys(after.properties)]);
  for (const key of keys) if (before.properties[key] !== after.properties[key]) changed.push(key);
  return changed;
}

/** image.updated for what changed, or null when nothing did (a no-op write is skipped). */
export function updated(before: ImageDoc, after: ImageDoc): NewEvent[] | null {
  const changes = changedFields(before, after);
  return changes.length ? [event('image.updated', { changes })] : null;
}

// ------------------------------------------------------------------ members

export const membersOf = (doc: ImageDoc): ImageMember[] => doc.members ?? [];

export function addMember(draft: ImageDoc, memberId: string): NewEvent[] {
  if (draft.visibility !== 'shared') {
    throw fail('members_only_shared', `Image ${draft.id} is ${draft.visibility}; only images with visibility 'shared' can have members. PATCH visibility to shared first.`);
  }
  if (typeof memberId !== 'string' || memberId.length === 0 || characters(memberId) > LIMITS.memberIdLength) {
    throw invalid(`member is a project id of 1 to ${LIMITS.memberIdLength} characters.`);
  }
  const members = membersOf(draft);
  if (members.some((m) => m.member_id === memberId)) throw fail('member_exists', `Project ${memberId} is already a member of image ${draft.id}.`);
  if (members.length >= LIMITS.imageMembers) {
    throw fail('too_many_members', `An image has at most ${LIMITS.imageMembers} members (Glance's image_member_quota); remove one first.`);
  }
  const now = new Date().toISOString();
  draft.members = [...members, { member_id: memberId, status: 'pending', created_at: now, updated_at: now }];
  return [event('image.member.created', { member_id: memberId, status: 'pending' })];
}

export function setMemberStatus(draft: ImageDoc, memberId: string, status: unknown): NewEvent[] | null {
  if (typeof status !== 'string' || !(MEMBER_STATUSES as readonly string[]).includes(status)) {
    throw invalid(`status must be one of ${MEMBER_STATUSES.join(', ')}.`);
  }
  const member = membersOf(draft).find((m) => m.member_id === memberId);
  if (!member) throw fail('member_not_found', `Project ${memberId} is not a member of image ${draft.id}.`);
  if (member.status === status) return null;
  member.status = status as MemberStatus;
  member.updated_at = new Date().toISOString();
  return [event('image.member.updated', { member_id: memberId, status: member.status })];
}

export function removeMember(draft: ImageDoc, memberId: string): NewEvent[] {
  const members = membersOf(draft);
  if (!members.some((m) => m.member_id === memberId)) throw fail('member_not_found', `Project ${memberId} is not a member of image ${draft.id}.`);
  draft.members = members.filter((m) => m.member_id !== memberId);
  return [event('image.member.deleted', { member_id: memberId })];
}
