/**
 * An image's tasks as Glance shows them (GET /v2/images/{id}/tasks, /v2/tasks): derived from the
 * image document, pure, so that the write starting a new run can keep the finished task as it
 * stood (core/task-history.ts) and the API can show it (api/glance-view.ts).
 */
import type { CopyTask, ImageDoc, KeptTask, PipelineRun, Requester } from '../schemas/image.js';

/** Glance prints timestamps without fractions of a second ("2026-11-22T11:30:00Z"). */
export function stripMillis(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

/**
 * Glance's import lock, `os_glance_import_task`: the id of the import task working on the image,
 * shown while it runs (a plain `PUT …/file` upload is no task in Glance, so it shows none).
 */
export function runningImportTask(doc: ImageDoc): string | null {
  // A copy-image holds the lock while it copies (Glance's copy flow takes it like any import).
  const copying = doc.copy_tasks?.find((t) => t.status === 'processing');
  if (copying) return `${doc.id}.${copying.run}`;
  if (doc.import_task) return doc.status === 'importing' || doc.status === 'uploading' ? `${doc.id}.0` : null;
  const downloading = downloadRun(doc);
  if (downloading) return `${doc.id}.${downloading.run}`;
  const pipeline = doc.pipeline;
  return doc.status === 'importing' && pipeline && pipeline.method !== 'upload' ? `${doc.id}.${pipeline.run}` : null;
}

/**
 * A web-download or glance-download an import call started, still bringing its bytes in: Glance's
 * task exists from the call on, so its task is shown `processing` (a client waiting for the task to
 * end must not find none and stop waiting).
 */
function downloadRun(doc: ImageDoc): NonNullable<ImageDoc['upload']> | null {
  const upload = doc.upload;
  return doc.status === 'uploading' && upload?.input && (upload.kind === 'web-download' || upload.kind === 'glance-download') ? upload : null;
}

/**
 * The image's tasks, Glance-style (GET /v2/images/{id}/tasks): those of its earlier import runs as
 * kept, its current import's, then its copy-images'.
 */
export function taskViews(doc: ImageDoc): Record<string, unknown>[] {
  const current = importTaskViews(doc);
  // Until the new run replaces it, the document still shows the kept run: shown once.
  const live = new Set(current.map((t) => t.id));
  const earlier = (doc.earlier_tasks ?? []).filter((t) => !live.has(t.id)).map((t) => withExpiry(t));
  return [...earlier, ...current, ...(doc.copy_tasks ?? []).map((task) => withExpiry(copyTaskView(doc, task)))];
}

/** The image's import tasks that have ended (success or failure), as shown now, for core/task-history.ts to keep. */
export function finishedImportTasks(doc: ImageDoc): KeptTask[] {
  return importTaskViews(doc)
    .filter((t) => t.status === 'success' || t.status === 'failure')
    // expires_at is derived again when shown.
    .map(({ expires_at: _expires, ...task }) => task as KeptTask);
}

/** A copy-image's task (core/store-operations.ts records and settles it). */
function copyTaskView(doc: ImageDoc, task: CopyTask): Record<string, unknown> {
  return {
    ...taskBase(`${doc.id}.${task.run}`, doc), status: task.status,
    user_id: task.requested.user_id, request_id: task.requested.request_id,
    input: taskInput(doc, 'copy-image', task.requested),
    result: task.status === 'success' ? { image_id: doc.id } : null, message: task.message,
    created_at: stripMillis(task.started_at), updated_at: stripMillis(task.updated_at),
  };
}

function importTaskViews(doc: ImageDoc): Record<string, unknown>[] {
  if (doc.import_task) return [withExpiry(legacyImportTask(doc, doc.import_task))];
  const pipeline = doc.pipeline;
  const downloading = downloadRun(doc);
  if (!pipeline && downloading) {
    return [{
      ...taskBase(`${doc.id}.${downloading.run}`, doc), status: 'processing',
      request_id: downloading.requested?.request_id ?? null, user_id: downloading.requested?.user_id ?? null,
      input: taskInput(doc, downloading.kind, { input: downloading.input } as Requester), result: null, message: '',
      created_at: stripMillis(downloading.started_at), updated_at: stripMillis(doc.updated_at),
    }];
  }
  if (!pipeline) return doc.failure ? [withExpiry(failureTask(doc))] : [];
  const status = runStatus(doc, pipeline);
  return [withExpiry({
    ...taskBase(`${doc.id}.${pipeline.run}`, doc),
    request_id: pipeline.requested?.request_id ?? null,
    user_id: pipeline.requested?.user_id ?? null,
    status,
    // Glance's api_image_import input (image_id, import_req, backend), and PIR's method beside it.
    input: taskInput(doc, pipeline.method, pipeline.requested),
    result: status === 'success' ? { image_id: doc.id } : null,
    message: failureMessage(doc),
    created_at: stripMillis(pipeline.started_at),
    updated_at: stripMillis(runUpdatedAt(doc, pipeline)),
    pir_stage: pipeline.stage,
    pir_stages: pipeline.stages,
    pir_failure: doc.failure && failureView(doc.failure),
  })];
}

/** Glance's task_time_to_live default: a task expires this long after it succeeded or failed. */
const TASK_TIME_TO_LIVE_HOURS = 48;

/**
 * A finished task's expires_at, as Glance's Task.succeed() and fail() set it: its end (the view's
 * updated_at) plus the time to live. PIR derives tasks from their images and never deletes one
 * for expiring: a task lives as long as its image.
 */
function withExpiry(task: Record<string, unknown>): Record<string, unknown> {
  if (task.status !== 'success' && task.status !== 'failure') return task;
  const end = Date.parse(task.updated_at as string);
  return { ...task, expires_at: stripMillis(new Date(end + TASK_TIME_TO_LIVE_HOURS * 3_600_000).toISOString()) };
}

/**
 * The task a legacy import (POST /v2/tasks) made the image for: one task from creation on, id
 * `<image>.0`, pending until the download starts, then as the image's import goes.
 */
function legacyImportTask(doc: ImageDoc, task: NonNullable<ImageDoc['import_task']>): Record<string, unknown> {
  const status = doc.pipeline ? runStatus(doc, doc.pipeline)
    : doc.status === 'killed' || doc.status === 'deleted' ? 'failure'
      : doc.status === 'queued' ? 'pending' : 'processing';
  return {
    ...taskBase(`${doc.id}.0`, doc), type: 'import', status, input: task.input,
    // Who created the task, in which request (Glance's task user_id and request_id).
    user_id: task.user_id ?? null, request_id: task.request_id ?? null,
    result: status === 'success' ? { image_id: doc.id } : null,
    message: failureMessage(doc),
    created_at: stripMillis(doc.created_at), updated_at: stripMillis(doc.pipeline ? runUpdatedAt(doc, doc.pipeline) : doc.updated_at),
    ...(doc.pipeline ? { pir_stage: doc.pipeline.stage, pir_stages: doc.pipeline.stages } : {}),
    pir_failure: doc.failure && failureView(doc.failure),
  };
}

/**
 * A run's task status. A task that finished stays finished, as Glance's do: the image's later
 * changes (deactivation, a PATCH) are not the task's, so a run that reached 'done' is a success
 * whatever the image's status is now.
 */
function runStatus(doc: ImageDoc, pipeline: PipelineRun): 'success' | 'failure' | 'processing' {
  if (pipeline.stage === 'done') return 'success';
  return doc.status === 'killed' || doc.status === 'deleted' ? 'failure' : 'processing';
}

/** When a run's task last changed: its last stage's end once it finished, else the image's last write. */
function runUpdatedAt(doc: ImageDoc, pipeline: PipelineRun): string {
  if (pipeline.stage !== 'done') return doc.status === 'killed' && doc.failure ? doc.failure.at : doc.updated_at;
  const ends = Object.values(pipeline.stages).map((s) => s.ended_at).filter((at): at is string => at !== null);
  return ends.length > 0 ? ends.reduce((a, b) => (a > b ? a : b)) : doc.updated_at;
}

function failureTask(doc: ImageDoc): Record<string, unknown> {
  const failure = doc.failure!;
  // An import that failed before it had a pipeline run (web-download, location) names its run.
  const method = failure.method;
  return {
    ...taskBase(`${doc.id}.${failure.run ?? 0}`, doc), status: 'failure',
    ...(failure.requested ? { user_id: failure.requested.user_id, request_id: failure.requested.request_id } : {}),
    input: method ? taskInput(doc, method, failure.requested) : {}, result: null, message: failureMessage(doc),
    // When its call was made (older documents: the image's creation) and when it failed.
    created_at: stripMillis(failure.started_at ?? doc.created_at), updated_at: stripMillis(failure.at), pir_failure: failureView(failure),
  };
}

/** The call's body and stores when recorded (an import call), else just its method (an upload, older documents). */
function taskInput(doc: ImageDoc, method: string, requested: Requester | null | undefined): Record<string, unknown> {
  const input = requested?.input;
  return input ? { method, image_id: doc.id, import_req: input.import_req, backend: input.backend } : { method, image_id: doc.id, import_req: { method: { name: method } } };
}

/** pir_failure as shown: who asked is the task's user_id and request_id (shown where tasks are), not the image's. */
export function failureView(failure: NonNullable<ImageDoc['failure']>): Omit<NonNullable<ImageDoc['failure']>, 'requested'> {
  const { requested: _requested, ...shown } = failure;
  return shown;
}

/** Glance's task message: the stage that refused or failed the image and why (empty while none did). */
function failureMessage(doc: ImageDoc): string {
  return doc.failure ? `${doc.failure.stage}: ${doc.failure.message}` : '';
}

function taskBase(id: string, doc: ImageDoc) {
  return {
    id, type: 'api_image_import', owner: doc.owner, image_id: doc.id, request_id: null, user_id: null, expires_at: null,
    self: `/v2/tasks/${id}`, schema: '/v2/schemas/task',
  };
}
