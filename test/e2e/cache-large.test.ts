/**
 * The headline case: 20 concurrent downloads of a 1 GiB raw image through one cache
 * node cost the upstream exactly one read of the image (its own pir_served_bytes_total), and a
 * second node reads it once more for itself.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { testLogDir } from '../support/pir-process.js';
import { ALICE, download, makeActiveRawImage, metric, startCacheNode, startUpstream, type CacheNode } from '../support/cache-cluster.js';

const GIB = 2 ** 30;
const CLIENTS = 20;
const HASHED = 4;
const SERVED = 'pir_served_bytes_total';

describe('pir cache: 20 concurrent downloads of a 1 GiB image', { timeout: 600_000 }, () => {
  let dir: string;
  let upstream: { url: string; process: { stop(): Promise<unknown> } };
  let nodes: CacheNode[] = [];
  let image: { id: string; sha512: string };
  const logs = testLogDir('cache-large');

  before(async () => {
    dir = await makeTempDir('pir-e2e-cache-large-');
    upstream = await startUpstream(dir, logs);
    nodes = await Promise.all(['a', 'b'].map((n) => startCacheNode(upstream.url, join(dir, `cache-${n}`), logs, `cache-${n}`, { PIR_CACHE_MAX_SIZE: '2GiB' })));
    image = await makeActiveRawImage(upstream.url, ALICE, dir, GIB, 'one-gib');
  });
  after(async () => {
    for (const node of nodes) await node.process.stop();
    await upstream?.process.stop();
    if (dir) await removeDir(dir);
  });

  it('reads the image from the upstream once per node, whatever the number of clients', async () => {
    const before = await metric(upstream.url, SERVED);
    // Four clients hash what they got; all count it (the cache verified the sha512 before any client could finish).
    const results = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => download(nodes[0].url, image.id, ALICE, {}, i < HASHED)));
    for (const [i, result] of results.entries()) {
      assert.equal(result.status, 200);
      assert.equal(result.bytes, GIB);
      if (i < HASHED) assert.equal(result.sha512, image.sha512);
    }
    assert.equal(await metric(upstream.url, SERVED) - before, GIB, 'upstream bytes for 20 cold downloads through one node');
    assert.equal(await metric(nodes[0].url, 'pir_cache_bytes_from_upstream_total'), GIB);
    const other = await download(nodes[1].url, image.id, ALICE);
    assert.equal(other.sha512, image.sha512);
    assert.equal(await metric(upstream.url, SERVED) - before, 2 * GIB, 'the second node reads it once for itself');
  });
});
