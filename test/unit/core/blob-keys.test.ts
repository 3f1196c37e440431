import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { imageIdOfKey, imageKey, isPartialKey, keyOf, stagingKey, stagingPrefix, storedKeyOf } from '../../../core/blob-keys.js';

const ID = '5f0c2a1e-3b4d-4e5f-8a9b-0c1d2e3f4a5b';

describe('blob keys', () => {
  it('names staging and stored keys, and finds the image of a key', () => {
    assert.equal(stagingKey(ID, 3, 'upload'), `staging/${ID}.3.upload`);
    assert.equal(stagingKey(ID, 3, 'unpacked'), `staging/${ID}.3.unpacked`);
    assert.equal(imageKey(ID), `images/${ID}`);
    assert.ok(stagingKey(ID, 3, 'upload').startsWith(stagingPrefix(ID)));
    assert.equal(imageIdOfKey(stagingKey(ID, 3, 'upload')), ID);
    assert.equal(imageIdOfKey(imageKey(ID)), ID);
    assert.equal(imageIdOfKey(`images/${ID}.partial-123`), ID);
    assert.equal(isPartialKey(`images/${ID}.partial-123`), true);
    assert.equal(isPartialKey(imageKey(ID)), false);
    assert.equal(imageIdOfKey('elsewhere/x'), '');
  });

  it('refuses ids that could escape their place', () => {
    for (const bad of ['../x', 'a/b', '', '.hidden', 'x'.repeat(200)]) assert.throws(() => stagingKey(bad, 1, 'upload'), /unsafe image id/);
  });

  it('the stored key is images/<id> unless the manifest names another (an object store keeps the staged key)', () => {
    assert.equal(storedKeyOf({ id: ID }), imageKey(ID));
    assert.equal(storedKeyOf({ id: ID, blob_key: null }), imageKey(ID));
    assert.equal(storedKeyOf({ id: ID, blob_key: stagingKey(ID, 1, 'upload') }), stagingKey(ID, 1, 'upload'));
  });

  it('reads documents written before keys: a staging file path becomes its staging key', () => {
    assert.equal(keyOf({ key: stagingKey(ID, 1, 'upload'), size: 1, md5: 'm', sha512: 's' }), stagingKey(ID, 1, 'upload'));
    const legacy = { path: `/var/lib/pir/staging/${ID}.2.unpacked`, size: 1, md5: 'm', sha512: 's' } as unknown as Parameters<typeof keyOf>[0];
    assert.equal(keyOf(legacy), `staging/${ID}.2.unpacked`);
  });
});
