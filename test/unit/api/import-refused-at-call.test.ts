/**
 * An import refused at its call after it claimed the image (here the project's in-flight quota, 413)
 * leaves the image as it was: queued, no failure, no task, no store plan (Glance checks its quota
 * before it makes a task). A download that was cut off once running records its failure instead.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Quotas, UNLIMITED } from '../../../core/quota.js';
import { taskViews } from '../../../core/task-views.js';
import { HashPool } from '../../../ingest/hashing/index.js';
import { WebDownloads } from '../../../ingest/web-download.js';
import { DEFAULT_EGRESS, EgressClient } from '../../../infra/egress/egress-client.js';
import { SqliteQuotaStore } from '../../../infra/embedded/sqlite-quota-store.js';
import { domain } from '../core/fixtures.js';

describe('an import refused at its call', () => {
  it('records no failure and no task on the image', async () => {
    const d = await domain();
    const caller = { project_id: 'p1', user_id: 'u1', roles: ['member', 'reader'] };
    const quotas = new Quotas(new SqliteQuotaStore({ path: ':memory:' }), { default: { ...UNLIMITED, image_count_uploading: 0 }, projects: {} });
    const webDownloads = new WebDownloads({
      images: d.images, quotas, blobs: d.blobs, hashes: new HashPool(), egress: new EgressClient(DEFAULT_EGRESS), log: pino({ level: 'silent' }),
      upload: { maxImageSize: 1 << 20, heartbeatMs: 50, idleMs: 60_000 },
    });
    try {
      const doc = await d.images.create(caller, { name: 'x', disk_format: 'raw', container_format: 'bare' });
      const uri = 'https://example.org/disk.raw';
      await assert.rejects(webDownloads.start(caller, doc.id, uri, undefined, { method: { name: 'web-download', uri } }), (e: Error & { code?: string }) => /image_count_uploading|limit/.test(`${e.code} ${e.message}`));
      const after = (await d.manifest.get(doc.id))!;
      assert.equal(after.status, 'queued');
      assert.equal(after.failure, null, 'a refused call records no failure');
      assert.deepEqual(taskViews(after), [], 'a refused call leaves no task');
      assert.equal(after.store_import ?? null, null, 'nor a store plan');
    } finally {
      await webDownloads.close();
      await d.close();
    }
  });
});
