/**
 * `pir cache` following the image event topic on Kafka (distributed upstream: `pir serve` on
 * Kafka, Redis, FerretDB): an image deleted upstream leaves the cache within seconds, and a
 * restarted cache node keeps its consumer group (and its entries).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { testLogDir, waitFor } from '../support/pir-process.js';
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';
import { ADMIN, ALICE, download, makeActiveRawImage, startCacheNode, startUpstream, type CacheNode } from '../support/cache-cluster.js';

const needed = ['redis', 'kafka', 'mongodb'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);
const missingText = missing.map((s) => `${s.name} (${s.where})`).join(', ');

describe('pir cache on Kafka events', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  let dir: string;
  let upstream: { url: string; process: { stop(): Promise<unknown> } };
  let node: CacheNode;
  const run = uniqueName('e2ecache').replace(/[^A-Za-z0-9]/g, '');
  const logs = testLogDir('cache-kafka');
  const kafka = { PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','), PIR_KAFKA_TOPIC: `pir.${run}` };

  before(async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}. Start them with bash infra/local/services.sh start`);
    dir = await makeTempDir('pir-e2e-cache-kafka-');
    const mongo = new URL(services.mongodbUrl);
    mongo.pathname = `/${run}`;
    upstream = await startUpstream(dir, logs, { ...kafka, PIR_REDIS_URL: services.redisUrl, PIR_REDIS_PREFIX: run, PIR_MONGODB_URL: mongo.toString() });
    node = await startCacheNode(upstream.url, join(dir, 'cache'), logs, 'cache', { ...kafka, PIR_CACHE_EVENTS: 'kafka' });
  });
  after(async () => {
    await node?.process.stop();
    await upstream?.process.stop();
    if (dir) await removeDir(dir);
  });

  it('drops an image deleted upstream within seconds, and keeps following after a restart', async () => {
    const listed = async () => {
      const response = await fetch(`${node.url}/v2/cache`, { headers: { 'x-auth-token': ADMIN } });
      return ((await response.json()) as { cached_images: { image_id: string }[] }).cached_images.map((e) => e.image_id);
    };
    const cacheOne = async (name: string) => {
      const image = await makeActiveRawImage(upstream.url, ALICE, dir, 2 ** 20, name);
      const got = await download(node.url, image.id, ALICE);
      assert.equal(got.sha512, image.sha512);
      await waitFor(async () => (await listed()).includes(image.id), 10_000, 'entry to be recorded');
      return image;
    };
    const deleteAndWait = async (id: string) => {
      assert.equal((await fetch(`${upstream.url}/v2/images/${id}`, { method: 'DELETE', headers: { 'x-auth-token': ALICE } })).status, 204);
      await waitFor(async () => !(await listed()).includes(id), 15_000, 'entry to be dropped');
    };
    const first = await cacheOne('kafka-first');
    await deleteAndWait(first.id);

    const second = await cacheOne('kafka-second');
    await node.process.stop();
    node = await startCacheNode(upstream.url, node.dataDir, logs, 'cache', { ...kafka, PIR_CACHE_EVENTS: 'kafka' }, Number(new URL(node.url).port));
    assert.ok((await listed()).includes(second.id), 'the entry survived the restart');
    await deleteAndWait(second.id);
  });
});
