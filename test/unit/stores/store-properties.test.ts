/** GET /v2/info/stores/detail `properties` (infra/storage/store-properties.ts): Glance's keys per driver. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_EGRESS } from '../../../infra/egress/egress-client.js';
import { openBlobStore } from '../../../infra/storage/open-blob-store.js';
import { s3Properties } from '../../../infra/storage/store-properties.js';
import { HashPool } from '../../../ingest/hashing/index.js';

describe('store properties', () => {
  it("file stores show Glance's data_dir, chunk_size and thin_provisioning, with one store as with several", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pir-unit-props-'));
    const hashes = new HashPool();
    const glance = (d: string) => ({ data_dir: d, chunk_size: 65536, thin_provisioning: false });
    try {
      const single = await openBlobStore({ dataDir: dir, s3: null, egress: DEFAULT_EGRESS }, hashes);
      assert.deepEqual(single.stores.entries.map((e) => e.properties), [glance(dir)]);
      single.close();
      const stores = { stores: [{ id: 'fast', kind: 'fs' as const, dir: join(dir, 'a') }, { id: 'cheap', kind: 'fs' as const, dir: join(dir, 'b') }], defaultStore: 'fast' };
      const multi = await openBlobStore({ dataDir: dir, s3: null, egress: DEFAULT_EGRESS, stores }, hashes);
      assert.deepEqual(multi.stores.entries.map((e) => e.properties), [glance(join(dir, 'a')), glance(join(dir, 'b'))]);
      multi.close();
    } finally {
      await hashes.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("s3 stores show Glance's s3 keys (MB) with PIR's part size and parts in flight, then the bucket", () => {
    assert.deepEqual(s3Properties({ partSize: 8 * 1024 * 1024, queueSize: 2 }, 'b', 'pir/', 'http://s3'), {
      s3_store_large_object_size: 8, s3_store_large_object_chunk_size: 8, s3_store_thread_pools: 2, bucket: 'b', prefix: 'pir/', endpoint: 'http://s3',
    });
  });
});
