/** Issue 6 point 11's sibling: a long wait for an import adds no listener per poll. */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, it } from 'node:test';
import { waitForSettled } from '../../../api/wait-for-settled.js';
import { domain } from '../core/fixtures.js';

describe('waitForSettled', () => {
  it('keeps at most one abort listener on the signal however many times it polls', async () => {
    const d = await domain();
    const doc = await d.images.create({ project_id: 'p', user_id: 'u', roles: ['admin'] }, { name: 'importing' });
    await d.manifest.update(doc.id, (draft) => { draft.status = 'importing'; return []; });
    const abort = new AbortController();
    const waiting = waitForSettled(d.manifest, doc.id, abort.signal);
    let most = 0;
    const started = Date.now();
    while (Date.now() - started < 2500) { // polls at 250, 750 and 1,750 ms (FIRST_POLL_MS, doubling)
      most = Math.max(most, getEventListeners(abort.signal, 'abort').length);
      await new Promise((r) => setTimeout(r, 5));
    }
    await d.manifest.update(doc.id, (draft) => { draft.status = 'active'; return []; });
    assert.equal((await waiting)?.status, 'active');
    assert.ok(most <= 1, `${most} abort listeners at once`);
    assert.equal(getEventListeners(abort.signal, 'abort').length, 0);
    await d.close();
  });
});
