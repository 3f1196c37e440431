/**
 * An abandoned upload (core/image-service.ts abortUpload) and the retry after it: the retry takes
 * a run number of its own, and the abandoned run's cleanup, however late, removes only that
 * run's staging (the crash sweep saw a retried web-download killed by it on S3).
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { domain, P } from './fixtures.js';

describe('abandoned uploads', () => {
  it('never give their run number to the retry, and their cleanup leaves the retry\'s staging alone', async () => {
    const d = await domain();
    try {
      const image = await d.images.create(P, { name: 'x', disk_format: 'raw', container_format: 'bare' });
      const first = await d.images.beginUpload(P, image.id, 'upload');
      await d.blobs.write(first.stagingKey, Readable.from([Buffer.from('half of it')]), { maxBytes: 100 });
      await d.images.abortUpload(P, image.id, first.run, 'the api died');
      assert.equal(await d.blobs.stat(first.stagingKey), null, 'the abandoned run\'s staging is removed');

      const retry = await d.images.beginUpload(P, image.id, 'upload');
      assert.ok(retry.run > first.run, `the retry took run ${retry.run} after ${first.run}`);
      assert.notEqual(retry.stagingKey, first.stagingKey);
      await d.blobs.write(retry.stagingKey, Readable.from([Buffer.from('all of it')]), { maxBytes: 100 });
      // The first run's cleanup once more, late (another process's sweeper): nothing of the retry goes.
      await d.images.abortUpload(P, image.id, first.run, 'the api died');
      const doc = (await d.manifest.get(image.id))!;
      assert.equal(doc.status, 'saving');
      assert.equal(doc.upload?.run, retry.run);
      assert.equal((await d.blobs.stat(retry.stagingKey))?.size, 'all of it'.length);
    } finally {
      await d.close();
    }
  });
});
