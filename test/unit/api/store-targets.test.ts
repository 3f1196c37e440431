/** api/store-targets.ts: which stores an import names (Glance's utils.get_stores_from_request). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { importTargets, uploadTargets } from '../../../api/store-targets.js';
import { PirError } from '../../../core/errors.js';
import type { BlobStore } from '../../../core/ports.js';
import { StoreRegistry } from '../../../core/store-registry.js';

const blobs = {} as BlobStore;
const stores = new StoreRegistry([
  { id: 'fast', description: 'f', blobs, properties: {} },
  { id: 'cheap', description: 'c', blobs, properties: {} },
], 'fast', true);
const request = (headers: Record<string, string> = {}) => ({ headers }) as unknown as FastifyRequest;

describe('importTargets', () => {
  it('all_stores_must_succeed: false without multi-store is 400, as Glance without enabled_backends', () => {
    const single = StoreRegistry.single(blobs);
    assert.throws(() => importTargets(request(), { all_stores_must_succeed: false }, single),
      (e: PirError) => e.code === 'bad_stores' && e.kind === 'bad_request' && /only be set with enabled_backends/.test(e.message));
    assert.equal(importTargets(request(), { all_stores_must_succeed: true }, single), undefined);
    assert.deepEqual(importTargets(request(), { stores: ['cheap'], all_stores_must_succeed: false }, stores), { stores: ['cheap'], must_succeed: false });
  });

  it('without multi-store the stores named are not checked, as Glance without enabled_backends (stores = [None]); an import naming any reports on the one store', () => {
    const single = StoreRegistry.single(blobs);
    for (const [headers, body] of [
      [{}, { stores: ['nowhere'] }], [{}, { stores: [] }], [{}, { all_stores: true }], [{ 'x-image-meta-store': 'nowhere' }, {}],
      [{ 'x-image-meta-store': '' }, {}], [{ 'x-image-meta-store': 'local' }, { stores: ['local'], all_stores: true }],
    ] as const) {
      // os_glance_importing_to_stores, then os_glance_failed_import, name the one store, which such a client watches.
      assert.deepEqual(importTargets(request(headers), body as never, single), { stores: single.ids, must_succeed: true }, JSON.stringify([headers, body]));
    }
    assert.equal(importTargets(request(), {}, single), undefined);
    // An upload's header too (Glance's upload reads it only with enabled_backends).
    assert.equal(uploadTargets(request({ 'x-image-meta-store': 'nowhere' }), single), undefined);
    assert.throws(() => uploadTargets(request({ 'x-image-meta-store': 'nowhere' }), stores), (e: PirError) => e.code === 'unknown_store');
  });

  it('stores, or else the header, or else none named', () => {
    assert.deepEqual(importTargets(request(), { stores: ['cheap'] }, stores), { stores: ['cheap'], must_succeed: true });
    assert.deepEqual(importTargets(request({ 'x-image-meta-store': 'cheap' }), {}, stores), { stores: ['cheap'], must_succeed: true });
    assert.equal(importTargets(request(), {}, stores), undefined);
  });

  it('stores together with X-Image-Meta-Store is 400 bad_stores, as Glance', () => {
    assert.throws(() => importTargets(request({ 'x-image-meta-store': 'cheap' }), { stores: ['fast'] }, stores),
      (e: PirError) => e.code === 'bad_stores' && e.kind === 'bad_request' && /can't be both specified/.test(e.message));
  });
});
