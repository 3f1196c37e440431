/**
 * The S3 store (issue 10, point 2/5), beside this machine's limits measured in the same run:
 * - a 2 GiB raw upload into `pir serve` on the S3 store (the local SeaweedFS), start of PUT →
 *   active: target ≥ 50% of the lower of the write+fsync and one-core sha512 rates;
 * - bytes PIR read back from the bucket after the upload, until active, counted by a proxy in
 *   front of SeaweedFS: target ≤ 2 reads of the image (inspection reads a few ranges);
 * - last byte → active for 1 MiB and 2 GiB on both stores: flat in image size;
 * - 2 GiB download throughput from each store, against loopback HTTP (target ≥ 70%).
 * Needs the local SeaweedFS (bash infra/local/services.sh start s3); without it, says so.
 */
import { randomBytes } from 'node:crypto';
import { request, createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { S3BlobStore } from '../infra/storage/s3-blob-store.js';
import { PirClient } from '../test/support/pir-client.js';
import { freePort, startPirProcess, type PirProcess } from '../test/support/pir-process.js';
import { serviceUp, services, uniqueName } from '../test/support/services.js';
import { TOKEN, uploadOne } from './ingest.bench.js';
import { GiB, MiB, loopbackHttp, sequentialWriteWithFsync, sha512OneCore } from './limits.js';
import { median, type Bench, type BenchContext, type Figure } from './report.js';

/** An HTTP proxy to the S3 endpoint that counts the body bytes of GET responses (the Host header is kept, so signatures hold). */
async function countingProxy(target: URL): Promise<{ url: string; getBytes(): number; reset(): void; close(): Promise<void> }> {
  let bytes = 0;
  const server: Server = createServer((req, res) => {
    const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (req.method === 'GET') up.on('data', (c: Buffer) => { bytes += c.length; });
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${port}`,
    getBytes: () => bytes,
    reset: () => { bytes = 0; },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

async function startServe(dir: string, name: string, extra: Record<string, string>): Promise<{ client: PirClient; process: PirProcess }> {
  const port = await freePort();
  const env = { PIR_DATA_DIR: join(dir, `data-${name}`), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info', ...extra };
  const process = await startPirProcess('serve', env, join(dir, 'logs'), name);
  return { client: new PirClient(`http://127.0.0.1:${port}`, TOKEN), process };
}

/** Downloads image `id` whole, discarding it; MiB/s. */
async function downloadRate(client: PirClient, id: string): Promise<number> {
  const t0 = performance.now();
  const { size } = await client.downloadDigests(id).catch(async () => { throw new Error('download failed'); });
  return size / MiB / ((performance.now() - t0) / 1000);
}

async function measureStore(label: string, ctx: BenchContext, serve: { client: PirClient }, data: Buffer, ceiling: number, http: number, proxy?: { getBytes(): number; reset(): void }): Promise<Figure[]> {
  const figures: Figure[] = [];
  ctx.log(`${label}: 2 GiB upload ×2`);
  const rates: number[] = [];
  const reads: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    proxy?.reset();
    const { id, result } = await timedUpload(serve.client, 2 * GiB, data);
    ids.push(id);
    rates.push((2 * GiB) / MiB / (result.totalMs / 1000));
    if (proxy) reads.push(proxy.getBytes() / (2 * GiB));
  }
  figures.push({ name: `${label}: 2 GiB raw, PUT start → active`, value: median(rates), unit: 'MiB/s', limit: ceiling, targetRatio: 0.5, note: `runs ${rates.map((r) => r.toFixed(0)).join(', ')}; limit = min(write+fsync, sha512)` });
  if (proxy) figures.push({ name: `${label}: image bytes read back from the bucket until active`, value: Math.max(...reads), unit: '× image', atMost: 2, note: `GET body bytes through a counting proxy: ${reads.map((r) => (r * 2 * GiB / 1024).toFixed(0)).join(', ')} KiB` });
  for (const [name, size, runs] of [['1 MiB', MiB, 9], ['2 GiB', 2 * GiB, 2]] as const) {
    ctx.log(`${label}: last byte → active, ${name} ×${runs}`);
    const waits: number[] = [];
    for (let i = 0; i < runs; i++) waits.push((await uploadOne(serve.client, size, data)).afterLastByteMs);
    figures.push({ name: `${label}: last byte → active, ${name}`, value: median(waits), unit: 'ms', note: `median of ${runs}; max ${Math.max(...waits).toFixed(0)} ms` });
  }
  ctx.log(`${label}: 2 GiB download ×2`);
  const downloads = [await downloadRate(serve.client, ids[0]!), await downloadRate(serve.client, ids[1]!)];
  figures.push({ name: `${label}: 2 GiB download`, value: median(downloads), unit: 'MiB/s', limit: http, targetRatio: 0.7, note: `runs ${downloads.map((r) => r.toFixed(0)).join(', ')}; limit = loopback HTTP` });
  return figures;
}

async function timedUpload(client: PirClient, size: number, data: Buffer) {
  const before = Date.now();
  const result = await uploadOne(client, size, data);
  // uploadOne creates the image itself: find it as the newest one.
  const { body } = await client.call('GET', `/v2/images?sort=created_at:desc&limit=1`);
  const id = body.images[0].id as string;
  if (Date.parse(body.images[0].created_at) < before - 2000) throw new Error('could not find the uploaded image');
  return { id, result };
}

const bench: Bench = {
  name: 'storage: the filesystem store and the S3 store (pir serve; SeaweedFS)',
  async run(ctx) {
    const data = randomBytes(64 * MiB);
    ctx.log('limits: sha512 on one core, write + fdatasync, loopback HTTP');
    const sha512 = await sha512OneCore();
    const write = await sequentialWriteWithFsync(ctx.dir, 2 * GiB);
    const http = await loopbackHttp(2 * GiB);
    const ceiling = Math.min(sha512, write);
    const figures: Figure[] = [
      { name: 'limit: sha512, one core', value: sha512, unit: 'MiB/s' },
      { name: 'limit: sequential write + fdatasync', value: write, unit: 'MiB/s' },
      { name: 'limit: loopback HTTP (discarding server)', value: http, unit: 'MiB/s' },
    ];
    const fs = await startServe(ctx.dir, 'fs', {});
    try {
      figures.push(...(await measureStore('filesystem store', ctx, fs, data, ceiling, http)));
    } finally {
      await fs.process.stop();
    }
    if (!(await serviceUp('s3')).up) {
      ctx.log('S3 store left out: SeaweedFS is not running (bash infra/local/services.sh start s3)');
      figures.push({ name: 'S3 store: not measured (s3 not running)', value: NaN, unit: '' });
      return figures;
    }
    const prefix = `${uniqueName('bench')}/`;
    const proxy = await countingProxy(new URL(services.s3.endpoint));
    const s3 = await startServe(ctx.dir, 's3', {
      PIR_S3_ENDPOINT: proxy.url, PIR_S3_BUCKET: services.s3.bucket, PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
      PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey, PIR_S3_REGION: services.s3.region, PIR_S3_PREFIX: prefix,
    });
    try {
      figures.push(...(await measureStore('S3 store', ctx, s3, data, ceiling, http, proxy)));
    } finally {
      await s3.process.stop();
      await proxy.close();
      const store = new S3BlobStore({ ...services.s3, prefix });
      for (const blob of await store.list('')) await store.delete(blob.key).catch(() => {});
      store.close();
    }
    return figures;
  },
};

export default bench;
