/**
 * Issue 6 point 11's sibling: a long wait for an import adds no listener per poll. Issue 10 point
 * 7: a bus event that ended the upload's run answers it without reading the image; any other
 * signal reads, and a signal that comes while the waiter reads is not lost.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, it } from 'node:test';
import { waitForSettled } from '../../../api/wait-for-settled.js';
import type { PirEvent } from '../../../schemas/events.js';
import type { ImageDoc } from '../../../schemas/image.js';
import { domain } from '../core/fixtures.js';

const CALLER = { project_id: 'p', user_id: 'u', roles: ['admin'] };

/** An image importing in pipeline run 2, and a count of the reads the waiter makes. */
async function importingRun2() {
  const d = await domain();
  const doc = await d.images.create(CALLER, { name: 'importing' });
  const now = new Date().toISOString();
  await d.manifest.update(doc.id, (draft) => {
    draft.status = 'importing';
    draft.pipeline = { run: 2, method: 'upload', stage: 'inspect', stages: {}, started_at: now, deadline_at: now, resumes: 0 } as unknown as ImageDoc['pipeline'];
    return [];
  });
  const reads = { n: 0 };
  const get = d.manifest.get.bind(d.manifest);
  d.manifest.get = (id: string) => { reads.n++; return get(id); };
  return { d, id: doc.id, reads };
}

function busEvent(imageId: string, type: 'image.active' | 'image.killed', data: object): PirEvent {
  return { id: `${imageId}-${type}`, type, version: 1, image_id: imageId, occurred_at: new Date().toISOString(), data } as PirEvent;
}

describe('waitForSettled', () => {
  it('keeps at most one abort listener on the signal however many times it polls', async () => {
    const d = await domain();
    const doc = await d.images.create({ project_id: 'p', user_id: 'u', roles: ['admin'] }, { name: 'importing' });
    await d.manifest.update(doc.id, (draft) => { draft.status = 'importing'; return []; });
    const abort = new AbortController();
    const waiting = waitForSettled(d.manifest, doc.id, abort.signal);
    let most = 0;
    const started = Date.now();
    while (Date.now() - started < 3500) { // polls at 1,000 and 3,000 ms (FIRST_POLL_MS, doubling)
      most = Math.max(most, getEventListeners(abort.signal, 'abort').length);
      await new Promise((r) => setTimeout(r, 5));
    }
    await d.manifest.update(doc.id, (draft) => { draft.status = 'active'; return []; });
    assert.equal((await waiting)?.status, 'active');
    assert.ok(most <= 1, `${most} abort listeners at once`);
    assert.equal(getEventListeners(abort.signal, 'abort').length, 0);
    await d.close();
  });

  it("answers from the bus event that ended the upload's run, without reading the image", async () => {
    const { d, id, reads } = await importingRun2();
    const waiting = waitForSettled(d.manifest, id, new AbortController().signal);
    await new Promise((r) => setTimeout(r, 20));
    d.manifest.signalFromBus(busEvent(id, 'image.killed', { run: 2, stage: 'inspect', code: 'backing_file', message: 'The qcow2 names a backing file.' }));
    const settled = await waiting;
    assert.equal(settled?.status, 'killed');
    assert.deepEqual(settled?.failure, { stage: 'inspect', code: 'backing_file', message: 'The qcow2 names a backing file.' });
    assert.equal(reads.n, 0, 'the image was read');
    await d.close();
  });

  it("reads the image when the event ended another run, and keeps waiting while it is in flight", async () => {
    const { d, id, reads } = await importingRun2();
    const waiting = waitForSettled(d.manifest, id, new AbortController().signal);
    await new Promise((r) => setTimeout(r, 20));
    d.manifest.signalFromBus(busEvent(id, 'image.active', { run: 1, size: 1, virtual_size: 1, checksum: 'x', os_hash_algo: 'sha512', os_hash_value: 'y' }));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(reads.n, 1, 'one read after the other run\'s event');
    await d.manifest.update(id, (draft) => { draft.status = 'active'; return []; });
    assert.equal((await waiting)?.status, 'active');
    await d.close();
  });

  it('does not lose a signal that comes while it reads (no wait for the poll)', async () => {
    const { d, id } = await importingRun2();
    const peekOrGet = d.manifest.peekOrGet.bind(d.manifest);
    d.manifest.peekOrGet = async (i: string) => {
      const doc = await peekOrGet(i);
      d.manifest.signalFromBus(busEvent(id, 'image.active', { run: 2, size: 1, virtual_size: 1, checksum: 'x', os_hash_algo: 'sha512', os_hash_value: 'y' }));
      return doc;
    };
    const started = Date.now();
    const settled = await waitForSettled(d.manifest, id, new AbortController().signal);
    assert.equal(settled?.status, 'active');
    assert.ok(Date.now() - started < 500, `answered after ${Date.now() - started} ms: the signal waited for a poll`);
    await d.close();
  });
});
