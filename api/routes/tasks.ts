/**
 * Glance's tasks (glance/api/v2/tasks.py) and an image's tasks (GET /v2/images/{id}/tasks).
 * PIR keeps no separate task records: each image's pipeline run is its task, id `<image>.<run>`,
 * and the image a legacy import task (POST /v2/tasks) creates carries that task, id `<image>.0`.
 * The tasks API is for administrators (Glance's tasks_api_access); an image's own tasks are
 * shown to whoever may see the image.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ImageDoc, LegacyImportInput } from '../../schemas/image.js';
import { SYSTEM_CALLER } from '../../core/caller.js';
import { allowed } from '../../core/policy.js';
import { badRequest, notFound } from '../../core/errors.js';
import type { ImageService } from '../../core/image-service.js';
import type { Quotas } from '../../core/quota.js';
import type { WebDownloads } from '../../ingest/web-download.js';
import { checkCreateNames, createImage } from '../image-create.js';
import { taskViews } from '../glance-view.js';
import { pythonInt } from '../python-int.js';
import { CreateImageBody } from '../image-schema.js';

const TASK_ID = /^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.(\d{1,9})$/;
const TASK_STATUSES = new Set(['pending', 'processing', 'success', 'failure']);
/** The task types PIR shows: Glance's legacy import, and its interoperable import's (Glance filters on the first only). */
const TASK_TYPES = new Set(['import', 'api_image_import']);
const TASK_QUERY = new Set(['limit', 'marker', 'status', 'type', 'sort_key', 'sort_dir']);
/** Glance's task sort keys. */
const TASK_SORT_KEYS = new Set(['created_at', 'updated_at', 'id', 'type', 'status']);

const compare = (a: unknown, b: unknown) => String(a ?? '').localeCompare(String(b ?? ''));

/**
 * Glance's task order (glance/db/sqlalchemy/api.py _task_get_all): by sort_key, then created_at,
 * then id, every key in sort_dir.
 */
export function taskOrder(sortKey: string, sortDir: 'asc' | 'desc'): (a: Record<string, unknown>, b: Record<string, unknown>) => number {
  const keys = [sortKey, ...['created_at', 'id'].filter((key) => key !== sortKey)];
  const sign = sortDir === 'asc' ? 1 : -1;
  return (a, b) => {
    for (const key of keys) {
      const order = compare(a[key], b[key]);
      if (order) return sign * order;
    }
    return 0;
  };
}

export function sortTasks<T extends Record<string, unknown>>(tasks: T[], sortKey: string, sortDir: 'asc' | 'desc'): T[] {
  return tasks.sort(taskOrder(sortKey, sortDir));
}

/**
 * The first `size` of `tasks` in `order` that come after `after`: memory bounded by the page,
 * however many images have tasks (a sort of at most twice the page now and then).
 */
export async function pageOfTasks<T extends Record<string, unknown>>(tasks: AsyncIterable<T>, order: (a: T, b: T) => number, after: T | null, size: number): Promise<T[]> {
  let kept: T[] = [];
  if (size <= 0) return kept;
  for await (const task of tasks) {
    if (after && order(task, after) <= 0) continue;
    kept.push(task);
    if (kept.length >= 2 * size) kept = kept.sort(order).slice(0, size);
  }
  return kept.sort(order).slice(0, size);
}

/** Glance's legacy import task: the image's attributes, and the http(s) URL its bytes come from. */
const CreateTaskBody = Type.Object({
  type: Type.String({ maxLength: 64 }),
  input: Type.Object({
    import_from: Type.String({ maxLength: 2048 }),
    import_from_format: Type.String({ maxLength: 64 }),
    image_properties: CreateImageBody,
  }),
});

export async function taskRoutes(app: FastifyInstance, images: ImageService, quotas: Quotas, webDownloads: WebDownloads): Promise<void> {
  /**
   * The legacy import (deprecated by Glance for the interoperable import, still served by it):
   * creates the image from input.image_properties and web-downloads input.import_from into it,
   * through the same SSRF-safe egress client. PIR converts nothing, so import_from_format is the
   * disk_format (or must equal the one given).
   */
  app.post('/v2/tasks', {
    schema: { body: CreateTaskBody },
    // Administrators only (403 before any 400), and Glance's 403 for reserved image attributes.
    preValidation: async (request) => {
      images.assertTasksAccess(request.caller);
      const input = (request.body as { input?: { image_properties?: unknown } } | null)?.input;
      if (typeof input?.image_properties === 'object' && input.image_properties !== null) checkCreateNames(input.image_properties);
    },
  }, async (request, reply) => {
    const body = request.body as { type: string; input: LegacyImportInput };
    if (body.type !== 'import') throw badRequest('invalid_request', `PIR's tasks API creates 'import' tasks only (not '${body.type.slice(0, 64)}'); for the other imports use POST /v2/images/{id}/import.`);
    const { import_from: uri, import_from_format: format, image_properties: properties } = body.input;
    const declared = properties.disk_format;
    if (declared !== undefined && declared !== format) {
      throw badRequest('invalid_request', `import_from_format '${format.slice(0, 64)}' differs from image_properties.disk_format '${String(declared).slice(0, 64)}'; PIR converts no image, so give one format.`);
    }
    webDownloads.checkUri(uri);
    const image = { container_format: 'bare', ...properties, disk_format: format };
    const importTask = { input: body.input, user_id: request.caller.user_id ?? null, request_id: request.id };
    const doc = await createImage(request.caller, image, images, quotas, { import_task: importTask });
    try {
      await webDownloads.start(request.caller, doc.id, uri);
    } catch (error) {
      // Nothing was downloaded: no image is left behind for a task that could not start.
      await images.remove(SYSTEM_CALLER, doc.id).catch(() => {});
      await quotas.releaseAll(doc.owner, doc.id).catch(() => {});
      throw error;
    }
    const [task] = taskViews(await images.get(request.caller, doc.id));
    reply.header('Location', task!.self as string);
    return reply.code(201).send(task);
  });

  app.get('/v2/images/:id/tasks', async (request) => {
    const doc = await images.get(request.caller, (request.params as { id: string }).id);
    return { tasks: allowed(request.caller, 'get_image_tasks', { owner: doc.owner }) ? taskViews(doc) : [] };
  });

  app.get('/v2/tasks', async (request) => {
    images.assertTasksAccess(request.caller);
    const query = request.query as Record<string, unknown>;
    for (const key of Object.keys(query)) {
      if (!TASK_QUERY.has(key)) throw badRequest('invalid_request', `GET /v2/tasks has no parameter '${key.slice(0, 60)}'; use limit, marker, status, type, sort_key or sort_dir.`);
      if (typeof query[key] !== 'string') throw badRequest('invalid_request', `Give '${key}' once.`);
    }
    const limitText = query.limit as string | undefined;
    // Glance: min(api_limit_max, int(limit)), so '+5' is 5.
    const asked = pythonInt(limitText ?? '25');
    if (asked === null || asked < 0) throw badRequest('bad_limit', 'limit must be a whole number, 0 or more (a page holds at most 1000 tasks).');
    const limit = Math.min(asked, 1000);
    const status = query.status as string | undefined;
    if (status !== undefined && !TASK_STATUSES.has(status)) throw badRequest('invalid_request', `status must be one of ${[...TASK_STATUSES].join(', ')}.`);
    const type = query.type as string | undefined;
    if (type !== undefined && type !== '' && !TASK_TYPES.has(type)) throw badRequest('invalid_request', `Invalid type value: '${type.slice(0, 64)}'; type is one of ${[...TASK_TYPES].join(', ')}.`);
    const sortKey = (query.sort_key ?? 'created_at') as string;
    if (!TASK_SORT_KEYS.has(sortKey)) throw badRequest('bad_sort_key', `Tasks sort by ${[...TASK_SORT_KEYS].join(', ')} (not '${sortKey.slice(0, 40)}').`);
    const sortDir = (query.sort_dir ?? 'desc') as string;
    if (sortDir !== 'asc' && sortDir !== 'desc') throw badRequest('bad_sort_dir', 'sort_dir must be asc or desc.');
    const listed = (t: Record<string, unknown>) => (!status || t.status === status) && (!type || t.type === type);
    let after: Record<string, unknown> | null = null;
    if (query.marker !== undefined) {
      const markerId = String(query.marker);
      const image = await taskImage(images, request.caller, markerId).catch(() => null);
      after = (image && taskViews(image).find((t) => t.id === markerId && listed(t))) ?? null;
      if (!after) throw badRequest('bad_marker', `marker ${markerId.slice(0, 80)} is not a task id from this list.`);
    }
    // Glance's list view omits input and result.
    async function* candidates() {
      for await (const image of images.imagesWithTasks(request.caller)) {
        for (const { input: _input, result: _result, ...task } of taskViews(image)) if (listed(task)) yield task;
      }
    }
    // One more than the page: whether there is a next page.
    const found = await pageOfTasks(candidates(), taskOrder(sortKey, sortDir), after, limit + 1);
    const tasks = found.slice(0, limit);
    // As Glance's tasks serializer: `first` keeps every parameter but the marker, `next` moves it.
    const params = new URLSearchParams(query as Record<string, string>);
    params.delete('marker');
    const firstQuery = params.toString();
    const result: Record<string, unknown> = { tasks, first: firstQuery ? `/v2/tasks?${firstQuery}` : '/v2/tasks', schema: '/v2/schemas/tasks' };
    if (limit > 0 && found.length > limit) {
      params.set('marker', String(tasks[tasks.length - 1].id));
      result.next = `/v2/tasks?${params.toString()}`;
    }
    return result;
  });

  app.get('/v2/tasks/:task_id', async (request) => {
    images.assertTasksAccess(request.caller);
    const taskId = (request.params as { task_id: string }).task_id;
    const task = taskViews(await taskImage(images, request.caller, taskId)).find((t) => t.id === taskId);
    if (!task) throw notFound(`Task ${taskId}`);
    return task;
  });
}

/** The image a task id names (`<image id>.<run>`), or 404. */
async function taskImage(images: ImageService, caller: Parameters<ImageService['get']>[0], taskId: string): Promise<ImageDoc> {
  const match = TASK_ID.exec(taskId);
  if (!match) throw notFound(`Task ${taskId.slice(0, 80)}`);
  return images.get(caller, match[1]).catch(() => { throw notFound(`Task ${taskId}`); });
}
