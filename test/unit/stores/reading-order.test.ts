/** The order a download tries an image's copies in (core/image-stores.ts readingOrder). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readingOrder } from '../../../core/image-stores.js';

const copy = (store: string) => ({ store, key: `images/x`, at: '2026-12-04T00:00:00Z' });
const order = (stores: string[], preferred?: string[]) => readingOrder(stores.map(copy), 'fast', preferred).map((c) => c.store);

describe('readingOrder', () => {
  it('reads the default store first, then the others as recorded', () => {
    assert.deepEqual(order(['s3', 'spare', 'fast']), ['fast', 's3', 'spare']);
  });

  it('reads the preferred stores first, in the order given (?prefer=), then the default store', () => {
    assert.deepEqual(order(['s3', 'spare', 'fast'], ['spare', 's3']), ['spare', 's3', 'fast']);
    assert.deepEqual(order(['s3', 'spare', 'fast'], ['spare']), ['spare', 'fast', 's3']);
  });

  it('passes over preferred stores that hold no copy', () => {
    assert.deepEqual(order(['s3', 'fast'], ['spare']), ['fast', 's3']);
  });
});
