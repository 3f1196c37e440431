/** The image as Glance's API shows it, with PIR's pipeline progress beside Glance's fields. */
import type { ImageDoc, ImageMember } from '../schemas/image.js';
import { failureView, runningImportTask, stripMillis } from '../core/task-views.js';

export { stripMillis, taskViews } from '../core/task-views.js';

/**
 * Glance records an image's size when its bytes are staged (image_data.py stage()), so a client
 * sees it while the image is uploading or importing; PIR's own size is the stored disk's, known
 * once it is active.
 */
function stagedSize(doc: ImageDoc): number | null {
  return doc.staging && (doc.status === 'uploading' || doc.status === 'importing') ? doc.staging.size : null;
}

/** `extra`: fields only some callers see (core/external-location.ts locationFields: locations, direct_url). */
export function imageView(doc: ImageDoc, extra?: Record<string, unknown>): Record<string, unknown> {
  const pipeline = doc.pipeline;
  const view: Record<string, unknown> = {
    id: doc.id,
    name: doc.name,
    status: doc.status,
    visibility: doc.visibility,
    protected: doc.protected,
    os_hidden: doc.os_hidden,
    owner: doc.owner,
    container_format: doc.container_format,
    disk_format: doc.disk_format,
    min_disk: doc.min_disk,
    min_ram: doc.min_ram,
    size: doc.size ?? stagedSize(doc),
    virtual_size: doc.virtual_size,
    checksum: doc.checksum,
    os_hash_algo: doc.os_hash_algo,
    os_hash_value: doc.os_hash_value,
    tags: doc.tags,
    created_at: stripMillis(doc.created_at),
    updated_at: stripMillis(doc.updated_at),
    self: `/v2/images/${doc.id}`,
    file: `/v2/images/${doc.id}/file`,
    schema: '/v2/schemas/image',
  };
  // PIR's own fields only when they say something: SDKs that diff an image to build a PATCH
  // (openstacksdk) turn a null extra field into a `remove` of a read-only attribute.
  if (doc.status === 'importing' && pipeline) view.pir_stage = pipeline.stage;
  if (pipeline) {
    view.pir_pipeline = { run: pipeline.run, method: pipeline.method, stage: pipeline.stage, started_at: pipeline.started_at, deadline_at: pipeline.deadline_at, stages: pipeline.stages, findings: [...(pipeline.unpack?.findings ?? []), ...(pipeline.inspection?.findings ?? [])] };
  }
  if (doc.failure) view.pir_failure = failureView(doc.failure);
  const importTask = runningImportTask(doc);
  if (importTask) view.os_glance_import_task = importTask;
  // Multi-store (core/image-stores.ts): which stores hold it, and an import's progress, as Glance's strings.
  // In store-id order: Glance lists them in the order they were placed, which its own gate's
  // stores (cheap, fast, robust) make alphabetical, and tempest compares them so.
  if (doc.stores) view.stores = doc.stores.map((c) => c.store).sort().join(',');
  // The import lists sorted too, as Glance's merge_store_list writes them (the record keeps placement order).
  if (doc.store_import) {
    view.os_glance_importing_to_stores = [...doc.store_import.importing].sort().join(',');
    view.os_glance_failed_import = [...doc.store_import.failed].sort().join(',');
  }
  if (extra) Object.assign(view, extra);
  // Extra properties go in after the fixed fields, which win a clash (as in Glance). Spreading
  // them in first instead costs ~100 µs per image (V8 turns each view into a slow dictionary
  // object): 100 ms of a 1000-image list.
  for (const [key, value] of Object.entries(doc.properties)) {
    if (Object.hasOwn(view, key)) continue;
    if (key === '__proto__') Object.defineProperty(view, key, { value, enumerable: true, writable: true, configurable: true });
    else view[key] = value;
  }
  return view;
}

/** Glance's image member view. */
export function memberView(imageId: string, member: ImageMember): Record<string, unknown> {
  return {
    image_id: imageId,
    member_id: member.member_id,
    status: member.status,
    created_at: stripMillis(member.created_at),
    updated_at: stripMillis(member.updated_at),
    schema: '/v2/schemas/member',
  };
}
