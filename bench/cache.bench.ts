/**
 * The cache role (`pir cache` in front of `pir serve`, both spawned):
 * - cached download throughput (a hit, client counting bytes) vs loopback HTTP in this run (target ≥ 80%);
 * - time to first byte on a hit and on a miss, beside the upstream's own TTFB for the same image;
 * - upstream bytes read for N concurrent cold downloads, in images (target exactly 1).
 */
import { mkdir, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { ALICE, makeActiveRawImage, metric, startCacheNode, startUpstream } from '../test/support/cache-cluster.js';
import { loopbackHttp, MiB } from './limits.js';
import { median, type Bench, type Figure } from './report.js';

const SIZE = 512 * MiB;
const SMALL = 8 * MiB;
const CONCURRENT = 10;

/** GETs the image, counting bytes (no hashing: the client must not be the bottleneck); ms to first byte and to the end. */
function timedGet(base: string, id: string): Promise<{ ttfbMs: number; totalMs: number; bytes: number; cache: string }> {
  const url = new URL(`${base}/v2/images/${id}/file`);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, headers: { 'x-auth-token': ALICE } }, (res) => {
      let first = 0;
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        if (bytes === 0) first = performance.now();
        bytes += chunk.length;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`download answered ${res.statusCode}`));
        resolve({ ttfbMs: first - t0, totalMs: performance.now() - t0, bytes, cache: String(res.headers['x-pir-cache'] ?? '') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const bench: Bench = {
  name: 'cache',
  async run(ctx) {
    const dir = join(ctx.dir, 'cache-bench');
    const logs = join(dir, 'logs');
    await mkdir(dir, { recursive: true });
    const upstream = await startUpstream(dir, logs);
    const node = await startCacheNode(upstream.url, join(dir, 'cache'), logs, 'cache', { PIR_CACHE_MAX_SIZE: '4GiB' }).catch(async (error: Error) => {
      await upstream.process.stop();
      throw error;
    });
    try {
      ctx.log(`making a ${SIZE / MiB} MiB raw image`);
      const big = await makeActiveRawImage(upstream.url, ALICE, dir, SIZE, 'bench-big');
      const cold = await timedGet(node.url, big.id);
      if (cold.cache !== 'miss' || cold.bytes !== SIZE) throw new Error(`cold download: ${cold.cache}, ${cold.bytes} bytes`);
      await new Promise((r) => setTimeout(r, 200));
      // Interleaved with the limit, round by round: this machine is shared and its load moves.
      const hits: number[] = [];
      const loopbacks: number[] = [];
      for (let i = 0; i < 3; i++) {
        loopbacks.push(await loopbackHttp(SIZE));
        const hit = await timedGet(node.url, big.id);
        if (hit.cache !== 'hit') throw new Error(`expected a hit, got ${hit.cache}`);
        hits.push(SIZE / MiB / (hit.totalMs / 1000));
      }
      const loopback = median(loopbacks);

      ctx.log('time to first byte');
      const hitTtfb: number[] = [];
      const warmTtfb: number[] = [];
      const missTtfb: number[] = [];
      const directTtfb: number[] = [];
      for (let i = 0; i < 3; i++) {
        const small = await makeActiveRawImage(upstream.url, ALICE, dir, SMALL, `bench-ttfb-${i}`);
        directTtfb.push((await timedGet(upstream.url, small.id)).ttfbMs);
        const miss = await timedGet(node.url, small.id);
        if (miss.cache !== 'miss') throw new Error(`expected a miss, got ${miss.cache}`);
        missTtfb.push(miss.ttfbMs);
        await new Promise((r) => setTimeout(r, 100));
        const warm = await timedGet(node.url, small.id);
        if (warm.cache !== 'hit') throw new Error(`expected a hit, got ${warm.cache}`);
        warmTtfb.push(warm.ttfbMs);
        await new Promise((r) => setTimeout(r, 6000)); // past the authorization cache's TTL: a hit asks the upstream again
        const hit = await timedGet(node.url, small.id);
        if (hit.cache !== 'hit') throw new Error(`expected a hit, got ${hit.cache}`);
        hitTtfb.push(hit.ttfbMs);
      }

      ctx.log(`${CONCURRENT} concurrent cold downloads`);
      const shared = await makeActiveRawImage(upstream.url, ALICE, dir, 128 * MiB, 'bench-shared');
      const before = await metric(upstream.url, 'pir_served_bytes_total');
      const all = await Promise.all(Array.from({ length: CONCURRENT }, () => timedGet(node.url, shared.id)));
      if (all.some((r) => r.bytes !== 128 * MiB)) throw new Error('a concurrent download was short');
      const upstreamImages = (await metric(upstream.url, 'pir_served_bytes_total') - before) / (128 * MiB);

      const directMedian = median(directTtfb);
      return [
        { name: 'cached download (hit), 512 MiB', value: median(hits), unit: 'MiB/s', limit: loopback, targetRatio: 0.8, note: `median of 3, each beside a loopback HTTP run (${loopbacks.map((l) => l.toFixed(0)).join(', ')} MiB/s)` },
        { name: 'cold download (miss), 512 MiB', value: SIZE / MiB / (cold.totalMs / 1000), unit: 'MiB/s', limit: loopback, note: 'upstream read, hashed and written while served' },
        { name: 'time to first byte, hit, authorization cached', value: median(warmTtfb), unit: 'ms', limit: directMedian, note: 'within PIR_CACHE_AUTH_TTL_SECONDS of the last check: no upstream call' },
        { name: 'time to first byte, hit (8 MiB)', value: median(hitTtfb), unit: 'ms', limit: directMedian, note: `limit: the upstream's own TTFB (${directMedian.toFixed(1)} ms); a hit still asks the upstream (HEAD + GET) once its authorization expired` },
        { name: 'time to first byte, miss (8 MiB)', value: median(missTtfb), unit: 'ms', limit: directMedian, note: 'authorization (HEAD + GET upstream) + the upstream fetch starting' },
        { name: `upstream reads for ${CONCURRENT} concurrent cold downloads`, value: upstreamImages, unit: 'images', atLeast: 1, atMost: 1, note: 'the upstream\'s pir_served_bytes_total ÷ image size' },
      ] satisfies Figure[];
    } finally {
      await node.process.stop();
      await upstream.process.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
};

export default bench;
