import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { downloadFailedBackToQueued, beginWebDownload } from '../../../core/image-entity.js';
import { KEPT_EARLIER_TASKS, KEPT_TASKS_BYTES, newestWithin } from '../../../core/task-history.js';
import { taskViews } from '../../../core/task-views.js';
import type { ImageDoc } from '../../../schemas/image.js';

/** A queued image with both formats, as a glance-download finds it. */
function queuedImage(): ImageDoc {
  const now = new Date(0).toISOString();
  return {
    id: 'img', revision: 1, name: null, owner: 'p1', status: 'queued', visibility: 'private', protected: false, os_hidden: false,
    disk_format: 'raw', container_format: 'bare', min_disk: 0, min_ram: 0, size: null, virtual_size: null, checksum: null,
    os_hash_algo: null, os_hash_value: null, tags: [], properties: {}, created_at: now, updated_at: now, expected: {},
    upload: null, staging: null, pipeline: null, failure: null, outbox: [],
  };
}

/** One glance-download that fails back to queued, as the API's writes make it. */
function failedDownload(doc: ImageDoc, run: number): void {
  beginWebDownload(doc, run, 'glance-download');
  const input = { import_req: { method: { name: 'glance-download' } }, backend: [null] };
  doc.upload!.input = input;
  downloadFailedBackToQueued(doc, 'glance_endpoint_not_found', `no region (${run})`, { run, method: 'glance-download', requested: { user_id: 'u1', request_id: `req-${run}`, input } });
}

describe('task history: the finished tasks of earlier imports', () => {
  it('keeps a failed import\'s task when the next import starts, with the time of its call', () => {
    const doc = queuedImage();
    failedDownload(doc, 1);
    const [failed] = taskViews(doc);
    assert.equal(failed.created_at, doc.failure!.started_at!.replace(/\.\d+Z$/, 'Z'));
    beginWebDownload(doc, 2, 'glance-download');
    doc.upload!.input = { import_req: {}, backend: [null] };
    const views = taskViews(doc);
    assert.deepEqual(views.map((t) => [t.id, t.status]), [['img.1', 'failure'], ['img.2', 'processing']]);
    assert.deepEqual(views[0], failed);
  });

  it(`keeps the ${KEPT_EARLIER_TASKS} newest, each once, and never a running one`, () => {
    const doc = queuedImage();
    for (let run = 1; run <= KEPT_EARLIER_TASKS + 5; run++) failedDownload(doc, run);
    beginWebDownload(doc, KEPT_EARLIER_TASKS + 6, 'glance-download');
    const kept = doc.earlier_tasks!.map((t) => t.id);
    assert.equal(kept.length, KEPT_EARLIER_TASKS);
    assert.equal(kept[0], 'img.6');
    assert.equal(kept.at(-1), `img.${KEPT_EARLIER_TASKS + 5}`);
    assert.ok(doc.earlier_tasks!.every((t) => t.status === 'failure'));
  });

  it(`weighs the kept tasks: large inputs (8 KiB of a call's body each) keep the list within ${KEPT_TASKS_BYTES} bytes, whatever the count`, () => {
    const doc = queuedImage();
    for (let run = 1; run <= KEPT_EARLIER_TASKS + 5; run++) {
      beginWebDownload(doc, run, 'glance-download');
      const input = { import_req: { method: { name: 'glance-download', padding: 'x'.repeat(8000) } }, backend: [null] };
      doc.upload!.input = input;
      downloadFailedBackToQueued(doc, 'glance_endpoint_not_found', 'no region', { run, method: 'glance-download', requested: { user_id: 'u1', request_id: `req-${run}`, input } });
    }
    beginWebDownload(doc, KEPT_EARLIER_TASKS + 6, 'glance-download');
    const kept = doc.earlier_tasks!;
    assert.ok(JSON.stringify(kept).length <= KEPT_TASKS_BYTES, `${JSON.stringify(kept).length} bytes kept`);
    assert.ok(kept.length >= 3 && kept.length < KEPT_EARLIER_TASKS, `${kept.length} kept`);
    assert.equal(kept.at(-1)!.id, `img.${KEPT_EARLIER_TASKS + 5}`, 'the newest stays');
  });

  it('newestWithin keeps what must stay (a running task) whatever it weighs, and the order', () => {
    const big = (id: string, status: string) => ({ id, status, pad: 'x'.repeat(KEPT_TASKS_BYTES) });
    const tasks = [big('a', 'processing'), { id: 'b', status: 'success' }, big('c', 'success'), { id: 'd', status: 'success' }];
    assert.deepEqual(newestWithin(tasks, 10, (t) => t.status === 'processing').map((t) => t.id), ['a', 'b', 'd']);
    assert.deepEqual(newestWithin(tasks, 1).map((t) => t.id), ['d']);
  });
});
