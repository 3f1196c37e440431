/**
 * `pir cache` in front of a spawned `pir serve`, two cache nodes: cached downloads verified and
 * counted against the upstream's own served-bytes counter, shared fills, authorization exactly as
 * upstream, corruption detected, deletes followed by webhook, restarts keep the cache, the
 * Glance-style cache API. (The 1 GiB, 20-client case: cache-large.test.ts.)
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { testLogDir, waitFor } from '../support/pir-process.js';
import { inCI } from '../support/services.js';
import {
  ADMIN, ALICE, BOB, corrupt, download, makeActiveRawImage, metric, startCacheNode, startUpstream, type CacheNode,
} from '../support/cache-cluster.js';

const run = promisify(execFile);
const SIZE = 24 * 2 ** 20 + 3 * 512; // raw images are whole sectors
const SERVED = 'pir_served_bytes_total';

describe('pir cache', () => {
  let dir: string;
  let upstream: { url: string; process: { stop(): Promise<unknown> } };
  let nodeA: CacheNode;
  let nodeB: CacheNode;
  let image: { id: string; sha512: string };
  const logs = testLogDir('cache');

  before(async () => {
    dir = await makeTempDir('pir-e2e-cache-');
    upstream = await startUpstream(dir, logs);
    [nodeA, nodeB] = await Promise.all([
      startCacheNode(upstream.url, join(dir, 'cache-a'), logs, 'cache-a'),
      startCacheNode(upstream.url, join(dir, 'cache-b'), logs, 'cache-b', { PIR_CACHE_AUTH_TTL_SECONDS: '1', PIR_CACHE_EVENTS: 'off' }),
    ]);
    image = await makeActiveRawImage(upstream.url, ALICE, dir, SIZE, 'alice-private');
  });
  after(async () => {
    await nodeA?.process.stop();
    await nodeB?.process.stop();
    await upstream?.process.stop();
    if (dir) await removeDir(dir);
  });

  it('serves a miss while filling, then hits from disk: the upstream reads the image once', async () => {
    const before = await metric(upstream.url, SERVED);
    const first = await download(nodeA.url, image.id, ALICE);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('x-pir-cache'), 'miss');
    assert.equal(first.sha512, image.sha512);
    assert.equal(first.bytes, SIZE);
    await waitFor(async () => (await cacheList(nodeA)).cached_images.some((e) => e.image_id === image.id), 5000, 'entry to be recorded');
    const second = await download(nodeA.url, image.id, ALICE);
    assert.equal(second.headers.get('x-pir-cache'), 'hit');
    assert.equal(second.sha512, image.sha512);
    assert.equal(await metric(upstream.url, SERVED) - before, SIZE);
    assert.equal(await metric(nodeA.url, 'pir_cache_hits_total'), 1);
    assert.equal(await metric(nodeA.url, 'pir_cache_bytes_from_upstream_total'), SIZE);
  });

  it('answers Range and HEAD from the entry, as the upstream does', async () => {
    for (const range of ['bytes=0-99', `bytes=${SIZE - 10}-`, 'bytes=-4096', `bytes=1000-${SIZE + 50}`]) {
      const [cached, direct] = await Promise.all([download(nodeA.url, image.id, ALICE, { range }), download(upstream.url, image.id, ALICE, { range })]);
      assert.equal(cached.status, 206, range);
      assert.equal(cached.headers.get('content-range'), direct.headers.get('content-range'), range);
      assert.equal(cached.sha512, direct.sha512, range);
    }
    const bad = await download(nodeA.url, image.id, ALICE, { range: `bytes=${SIZE}-` });
    assert.equal(bad.status, 416);
    const head = await fetch(`${nodeA.url}/v2/images/${image.id}/file`, { method: 'HEAD', headers: { 'x-auth-token': ALICE } });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(SIZE));
  });

  it('answers a tenant without access, or no token, exactly as the upstream', async () => {
    for (const token of [BOB, null, 'not-a-token']) {
      const [cached, direct] = await Promise.all([download(nodeA.url, image.id, token), download(upstream.url, image.id, token)]);
      assert.ok(cached.status === 401 || cached.status === 403 || cached.status === 404, `status ${cached.status}`);
      assert.equal(cached.status, direct.status);
      assert.deepEqual(strip(JSON.parse(cached.body!)), strip(JSON.parse(direct.body!)));
    }
    const missing = await download(nodeA.url, '00000000-0000-4000-8000-000000000000', ALICE);
    assert.equal(missing.status, 404);
  });

  it('passes every other call to the upstream with the caller\'s token', async () => {
    const [viaCache, direct] = await Promise.all([
      fetch(`${nodeA.url}/v2/images/${image.id}`, { headers: { 'x-auth-token': ALICE } }),
      fetch(`${upstream.url}/v2/images/${image.id}`, { headers: { 'x-auth-token': ALICE } }),
    ]);
    assert.equal(viaCache.status, 200);
    assert.deepEqual(await viaCache.json(), await direct.json());
    const created = await fetch(`${nodeA.url}/v2/images`, { method: 'POST', headers: { 'x-auth-token': BOB, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'via-cache', disk_format: 'raw', container_format: 'bare' }) });
    assert.equal(created.status, 201);
    const bobImage = await created.json() as { id: string; owner: string };
    assert.equal(bobImage.owner, 'bob-project');
    // An upload through the cache: the body streams to the upstream.
    const bytes = Buffer.alloc(2 ** 20, 7);
    const put = await fetch(`${nodeA.url}/v2/images/${bobImage.id}/file`, { method: 'PUT', headers: { 'x-auth-token': BOB, 'content-type': 'application/octet-stream' }, body: bytes });
    assert.equal(put.status, 204);
    await waitFor(async () => (await (await fetch(`${upstream.url}/v2/images/${bobImage.id}`, { headers: { 'x-auth-token': BOB } })).json() as { status: string }).status === 'active', 30_000, 'upload to go active');
    const back = await download(nodeA.url, bobImage.id, BOB);
    assert.equal(back.bytes, bytes.length);
  });

  it('shares one upstream read among concurrent cold downloads', async () => {
    const other = await makeActiveRawImage(upstream.url, ALICE, dir, SIZE, 'concurrent');
    const before = await metric(upstream.url, SERVED);
    const results = await Promise.all(Array.from({ length: 8 }, () => download(nodeB.url, other.id, ALICE)));
    for (const result of results) {
      assert.equal(result.status, 200);
      assert.equal(result.sha512, other.sha512);
    }
    assert.equal(await metric(upstream.url, SERVED) - before, SIZE);
  });

  it('detects a corrupted cache file and fetches the image again', async () => {
    await corrupt(join(nodeA.dataDir, 'cache', 'entries', `${image.id}.data`), 5 * 2 ** 20);
    const before = await metric(upstream.url, SERVED);
    const again = await download(nodeA.url, image.id, ALICE);
    assert.equal(again.status, 200);
    assert.equal(again.sha512, image.sha512);
    assert.equal(again.headers.get('x-pir-cache'), 'miss');
    assert.equal(await metric(nodeA.url, 'pir_cache_corrupt_total'), 1);
    assert.equal(await metric(upstream.url, SERVED) - before, SIZE);
  });

  it('keeps its entries across a restart, verified again', async () => {
    await waitFor(async () => (await cacheList(nodeA)).cached_images.some((e) => e.image_id === image.id), 5000, 'entry to be recorded');
    await nodeA.process.stop();
    nodeA = await startCacheNode(upstream.url, nodeA.dataDir, logs, 'cache-a', {}, Number(new URL(nodeA.url).port));
    const listed = await cacheList(nodeA);
    assert.ok(listed.cached_images.some((e) => e.image_id === image.id));
    const before = await metric(upstream.url, SERVED);
    const hit = await download(nodeA.url, image.id, ALICE);
    assert.equal(hit.headers.get('x-pir-cache'), 'hit');
    assert.equal(hit.sha512, image.sha512);
    assert.equal(await metric(upstream.url, SERVED) - before, 0);
  });

  it('queues, lists, and deletes entries for administrators only (Glance\'s cache API)', async () => {
    const queued = await makeActiveRawImage(upstream.url, ALICE, dir, 3 * 2 ** 20 + 512, 'queued');
    const denied = await fetch(`${nodeB.url}/v2/cache/${queued.id}`, { method: 'PUT', headers: { 'x-auth-token': ALICE } });
    assert.equal(denied.status, 403);
    assert.equal((await fetch(`${nodeB.url}/v2/cache`, { headers: { 'x-auth-token': BOB } })).status, 403);
    assert.equal((await fetch(`${nodeB.url}/metrics`)).status, 401);
    const put = await fetch(`${nodeB.url}/v2/cache/${queued.id}`, { method: 'PUT', headers: { 'x-auth-token': ADMIN } });
    assert.equal(put.status, 202);
    await waitFor(async () => (await cacheList(nodeB)).cached_images.some((e) => e.image_id === queued.id), 10_000, 'queued image to be cached');
    const entry = (await cacheList(nodeB)).cached_images.find((e) => e.image_id === queued.id)!;
    assert.equal(entry.size, 3 * 2 ** 20 + 512);
    assert.equal(entry.hits, 0);
    assert.equal((await download(nodeB.url, queued.id, ALICE)).headers.get('x-pir-cache'), 'hit');
    assert.equal((await cacheList(nodeB)).cached_images.find((e) => e.image_id === queued.id)!.hits, 1);
    const removed = await fetch(`${nodeB.url}/v2/cache/${queued.id}`, { method: 'DELETE', headers: { 'x-auth-token': ADMIN } });
    assert.equal(removed.status, 204);
    assert.ok(!(await cacheList(nodeB)).cached_images.some((e) => e.image_id === queued.id));
    // As Glance: an image that exists but is not cached is removed with nothing to do (204); one that
    // does not exist is 404, and cannot be queued either.
    assert.equal((await fetch(`${nodeB.url}/v2/cache/${queued.id}`, { method: 'DELETE', headers: { 'x-auth-token': ADMIN } })).status, 204);
    const unknown = randomUUID();
    assert.equal((await fetch(`${nodeB.url}/v2/cache/${unknown}`, { method: 'DELETE', headers: { 'x-auth-token': ADMIN } })).status, 404);
    assert.equal((await fetch(`${nodeB.url}/v2/cache/${unknown}`, { method: 'PUT', headers: { 'x-auth-token': ADMIN } })).status, 404);
    assert.equal((await fetch(`${nodeB.url}/v2/cache`, { method: 'DELETE', headers: { 'x-auth-token': ADMIN } })).status, 204);
    assert.deepEqual((await cacheList(nodeB)).cached_images, []);
  });

  it('takes python-glanceclient\'s cache-queue, cache-list, cache-delete and cache-clear (it looks for v2.14 in the node\'s /versions)', async (t) => {
    const haveGlance = await run('glance', ['--version']).then(() => true, () => false);
    if (!haveGlance && !inCI) return t.skip('no glance command (python3-glanceclient): bash infra/local/services.sh install tools');
    assert.ok(haveGlance, 'CI is set but the glance command is missing: bash infra/local/services.sh install tools');
    const home = join(dir, 'glance-home');
    await mkdir(home, { recursive: true });
    const glance = async (url: string, ...args: string[]) => (await run('glance', ['--os-image-url', url, `--os-auth-token=${ADMIN}`, ...args], { env: { PATH: process.env.PATH ?? '', HOME: home } })).stdout;
    const queued = await makeActiveRawImage(upstream.url, ALICE, dir, 2 ** 20, 'glance-cache');
    await glance(nodeB.url, 'cache-queue', queued.id);
    await waitFor(async () => (await cacheList(nodeB)).cached_images.some((e) => e.image_id === queued.id), 10_000, 'queued image to be cached');
    const row = (await glance(nodeB.url, 'cache-list')).split('\n').find((line) => line.includes(queued.id));
    assert.match(row ?? '', /\|\s*cached\s*\|.*\|\s*1048576\s*\|\s*0\s*\|$/);
    await glance(nodeB.url, 'cache-delete', queued.id);
    assert.ok(!(await glance(nodeB.url, 'cache-list')).includes(queued.id));
    await glance(nodeB.url, 'cache-queue', queued.id);
    await waitFor(async () => (await cacheList(nodeB)).cached_images.some((e) => e.image_id === queued.id), 10_000, 'queued image to be cached again');
    await glance(nodeB.url, 'cache-clear');
    assert.deepEqual((await cacheList(nodeB)).cached_images, []);
    // The upstream has no cache API, and says so as Glance without a cache does.
    await assert.rejects(glance(upstream.url, 'cache-list'), /does not support image caching API \(v2\.14\)/);
  });

  it('drops an image deleted upstream within seconds (webhook), and never serves it again', async () => {
    const doomed = await makeActiveRawImage(upstream.url, ALICE, dir, 2 * 2 ** 20, 'doomed');
    assert.equal((await download(nodeA.url, doomed.id, ALICE)).status, 200);
    await waitFor(async () => (await cacheList(nodeA)).cached_images.some((e) => e.image_id === doomed.id), 5000, 'entry to be recorded');
    const deleted = await fetch(`${upstream.url}/v2/images/${doomed.id}`, { method: 'DELETE', headers: { 'x-auth-token': ALICE } });
    assert.equal(deleted.status, 204);
    const started = Date.now();
    await waitFor(async () => !(await cacheList(nodeA)).cached_images.some((e) => e.image_id === doomed.id), 10_000, 'entry to be dropped');
    assert.ok(Date.now() - started < 10_000);
    assert.equal((await download(nodeA.url, doomed.id, ALICE)).status, 404);
  });

  it('stops serving a deactivated image once the upstream says so (its answer kept at most PIR_CACHE_AUTH_TTL_SECONDS)', async () => {
    const paused = await makeActiveRawImage(upstream.url, ALICE, dir, 2 ** 20, 'paused');
    assert.equal((await download(nodeB.url, paused.id, ALICE)).status, 200);
    const deactivated = await fetch(`${upstream.url}/v2/images/${paused.id}/actions/deactivate`, { method: 'POST', headers: { 'x-auth-token': ADMIN } });
    assert.equal(deactivated.status, 204);
    // Past the authorization cache's TTL (1 s here) the status is asked again, event or not.
    await new Promise((r) => setTimeout(r, 1500));
    const [cached, direct] = await Promise.all([download(nodeB.url, paused.id, ALICE), download(upstream.url, paused.id, ALICE)]);
    assert.notEqual(direct.status, 200);
    assert.equal(cached.status, direct.status);
    assert.deepEqual(strip(JSON.parse(cached.body!)), strip(JSON.parse(direct.body!)));
    await waitFor(async () => !(await cacheList(nodeB)).cached_images.some((e) => e.image_id === paused.id), 10_000, 'entry to be dropped');
  });
});

interface Listed { cached_images: { image_id: string; size: number; hits: number }[]; queued_images: string[] }

async function cacheList(node: CacheNode): Promise<Listed> {
  const response = await fetch(`${node.url}/v2/cache`, { headers: { 'x-auth-token': ADMIN } });
  assert.equal(response.status, 200);
  return await response.json() as Listed;
}

/** Error bodies without the per-request id. */
function strip(body: Record<string, unknown>): Record<string, unknown> {
  const { request_id: _r, ...rest } = body;
  void _r;
  return rest;
}
