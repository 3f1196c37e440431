/**
 * The filesystem and S3 stores (issue 10, points 2 and 8), beside this machine's limits measured
 * in the same run:
 * - a 2 GiB raw upload into `pir serve`, start of PUT → active: target ≥ 50% of the lower of the
 *   store's write limit (filesystem: write + fdatasync; S3: a raw multipart upload of the same
 *   bytes through the same client, part size and queue, unhashed) and the one-core sha512 rate;
 * - bytes PIR read back from the bucket after the upload, until active, counted by a proxy in
 *   front of SeaweedFS (a second `pir serve`, so the proxy is not in the rate figures):
 *   target ≤ 2 reads of the image (inspection reads a few ranges);
 * - last byte → active for 16 MiB, 256 MiB and 2 GiB on both stores: flat in image size;
 * - 2 GiB download throughput from each store with a client that does not hash, against a
 *   loopback HTTP download to the same client (target ≥ 70%).
 * Needs the local SeaweedFS (bash infra/local/services.sh start s3); without it, says so.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { S3BlobStore } from '../infra/storage/s3-blob-store.js';
import { countingProxy } from '../test/support/counting-proxy.js';
import { PirClient } from '../test/support/pir-client.js';
import { freePort, startPirProcess, type PirProcess } from '../test/support/pir-process.js';
import { serviceUp, services, uniqueName } from '../test/support/services.js';
import { TOKEN, uploadOne } from './ingest.bench.js';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand, type CompletedPart } from '@aws-sdk/client-s3';
import { GiB, MiB, discardingGet, loopbackHttpDownload, sequentialWriteWithFsync, sha512OneCore } from './limits.js';
import { median, type Bench, type BenchContext, type Figure } from './report.js';

async function startServe(dir: string, name: string, extra: Record<string, string>): Promise<{ client: PirClient; process: PirProcess }> {
  const port = await freePort();
  const env = { PIR_DATA_DIR: join(dir, `data-${name}`), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info', ...extra };
  const process = await startPirProcess('serve', env, join(dir, 'logs'), name);
  return { client: new PirClient(`http://127.0.0.1:${port}`, TOKEN), process };
}

/** Downloads image `id` whole with the loopback limit's client (discarding, no hashing); MiB/s. */
async function downloadRate(client: PirClient, id: string): Promise<number> {
  const t0 = performance.now();
  const size = await discardingGet(`${client.baseUrl}/v2/images/${id}/file`, { 'x-auth-token': client.token });
  return size / MiB / ((performance.now() - t0) / 1000);
}

/**
 * The S3 write limit: `bytes` (views of `data`) as one raw multipart upload through the store's
 * own client (same endpoint, signing, part size and parts in flight), with no hashing; MiB/s.
 */
async function s3RawWriteRead(store: S3BlobStore, data: Buffer, bytes: number): Promise<{ write: number; read: number }> {
  const Bucket = store.settings.bucket;
  const Key = `${store.settings.prefix ?? ''}limit/raw-${Date.now()}`;
  const t0 = performance.now();
  const { UploadId } = await store.client.send(new CreateMultipartUploadCommand({ Bucket, Key }));
  const parts: CompletedPart[] = [];
  let next = 0;
  const count = Math.ceil(bytes / store.partSize);
  await Promise.all(Array.from({ length: store.queueSize }, async () => {
    while (next < count) {
      const index = next++;
      const start = index * store.partSize;
      const length = Math.min(store.partSize, bytes - start);
      const at = start % data.length;
      // Parts are views of `data` (it holds whole parts: the part size divides 64 MiB).
      const Body = at + length <= data.length ? data.subarray(at, at + length) : Buffer.concat([data.subarray(at), data.subarray(0, length - (data.length - at))]);
      const { ETag } = await store.client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: index + 1, Body, ContentLength: length }));
      parts.push({ PartNumber: index + 1, ETag });
    }
  }));
  parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
  await store.client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
  const write = bytes / MiB / ((performance.now() - t0) / 1000);
  // The read limit: the same object back through the same client, discarded.
  const key = Key.slice((store.settings.prefix ?? '').length);
  const t1 = performance.now();
  let received = 0;
  for await (const chunk of await store.read(key)) received += (chunk as Buffer).length;
  const read = received / MiB / ((performance.now() - t1) / 1000);
  await store.delete(key);
  return { write, read };
}

async function measureStore(label: string, ctx: BenchContext, serve: { client: PirClient }, data: Buffer, ceiling: number, limitNote: string, download: number): Promise<Figure[]> {
  const figures: Figure[] = [];
  ctx.log(`${label}: 2 GiB upload ×2`);
  const rates: number[] = [];
  const bigWaits: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const { id, result } = await timedUpload(serve.client, 2 * GiB, data);
    ids.push(id);
    rates.push((2 * GiB) / MiB / (result.totalMs / 1000));
    bigWaits.push(result.afterLastByteMs);
  }
  figures.push({ name: `${label}: 2 GiB raw, PUT start → active`, value: median(rates), unit: 'MiB/s', limit: ceiling, targetRatio: 0.5, note: `runs ${rates.map((r) => r.toFixed(0)).join(', ')}; limit = ${limitNote}` });
  for (const [name, size, runs] of [['16 MiB', 16 * MiB, 7], ['256 MiB', 256 * MiB, 3]] as const) {
    ctx.log(`${label}: last byte → active, ${name} ×${runs}`);
    const waits: number[] = [];
    for (let i = 0; i < runs; i++) waits.push((await uploadOne(serve.client, size, data)).afterLastByteMs);
    figures.push({ name: `${label}: last byte → active, ${name}`, value: median(waits), unit: 'ms', note: `median of ${runs}; max ${Math.max(...waits).toFixed(0)} ms` });
  }
  figures.push({ name: `${label}: last byte → active, 2 GiB`, value: median(bigWaits), unit: 'ms', note: `the two 2 GiB uploads above: ${bigWaits.map((w) => w.toFixed(0)).join(', ')} ms` });
  ctx.log(`${label}: 2 GiB download ×2`);
  const downloads = [await downloadRate(serve.client, ids[0]!), await downloadRate(serve.client, ids[1]!)];
  figures.push({ name: `${label}: 2 GiB download (client discards, no hashing)`, value: median(downloads), unit: 'MiB/s', limit: download, targetRatio: 0.7, note: `runs ${downloads.map((r) => r.toFixed(0)).join(', ')}; limit = loopback HTTP download, same client` });
  return figures;
}

/** Bytes PIR reads back from the bucket between the upload and active, through a counting proxy. */
async function readsAfterUpload(ctx: BenchContext, serve: { client: PirClient }, proxy: { getBytes(): number; copies(): number; reset(): void }, data: Buffer): Promise<Figure[]> {
  const figures: Figure[] = [];
  for (const [name, size] of [['256 MiB', 256 * MiB], ['2 GiB', 2 * GiB]] as const) {
    ctx.log(`S3 store via counting proxy: reads after a ${name} upload`);
    proxy.reset();
    await uploadOne(serve.client, size, data);
    const read = proxy.getBytes();
    figures.push({ name: `S3 store: image bytes read back from the bucket until active, ${name}`, value: read / size, unit: '× image', atMost: 2, note: `GET body bytes through a counting proxy: ${(read / 1024).toFixed(0)} KiB; server-side copies: ${proxy.copies()}` });
  }
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
    ctx.log('limits: sha512 on one core, write + fdatasync, loopback HTTP download');
    const sha512 = await sha512OneCore();
    const write = await sequentialWriteWithFsync(ctx.dir, 2 * GiB);
    const download = await loopbackHttpDownload(2 * GiB);
    const figures: Figure[] = [
      { name: 'limit: sha512, one core', value: sha512, unit: 'MiB/s' },
      { name: 'limit: sequential write + fdatasync', value: write, unit: 'MiB/s' },
      { name: 'limit: loopback HTTP download (client discards)', value: download, unit: 'MiB/s' },
    ];
    const fs = await startServe(ctx.dir, 'fs', {});
    try {
      figures.push(...(await measureStore('filesystem store', ctx, fs, data, Math.min(sha512, write), 'min(write+fsync, sha512)', download)));
    } finally {
      await fs.process.stop();
    }
    if (!(await serviceUp('s3')).up) {
      ctx.log('S3 store left out: SeaweedFS is not running (bash infra/local/services.sh start s3)');
      figures.push({ name: 'S3 store: not measured (s3 not running)', value: NaN, unit: '' });
      return figures;
    }
    const prefix = `${uniqueName('bench')}/`;
    const s3env = (endpoint: string) => ({
      PIR_S3_ENDPOINT: endpoint, PIR_S3_BUCKET: services.s3.bucket, PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
      PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey, PIR_S3_REGION: services.s3.region, PIR_S3_PREFIX: prefix,
    });
    // The same client settings as pir serve's store (defaults: part size, parts in flight, signing).
    const store = new S3BlobStore({ ...services.s3, prefix });
    try {
      ctx.log(`limit: raw S3 multipart upload and GetObject, 1 GiB (${store.partSize / MiB} MiB parts, ${store.queueSize} in flight)`);
      const { write: s3write, read: s3read } = await s3RawWriteRead(store, data, GiB);
      figures.push({ name: 'limit: S3 write (raw multipart, same client settings, no hashing)', value: s3write, unit: 'MiB/s' });
      figures.push({ name: 'limit: S3 read (raw GetObject of it, same client, discarded)', value: s3read, unit: 'MiB/s' });
      const s3 = await startServe(ctx.dir, 's3', s3env(services.s3.endpoint));
      try {
        figures.push(...(await measureStore('S3 store', ctx, s3, data, Math.min(sha512, s3write), 'min(S3 raw write, sha512)', download)));
      } finally {
        await s3.process.stop();
      }
      const proxy = await countingProxy(new URL(services.s3.endpoint));
      const counted = await startServe(ctx.dir, 's3-counted', s3env(proxy.url));
      try {
        figures.push(...(await readsAfterUpload(ctx, counted, proxy, data)));
      } finally {
        await counted.process.stop();
        await proxy.close();
      }
    } finally {
      for (const blob of await store.list('')) await store.delete(blob.key).catch(() => {});
      store.close();
    }
    return figures;
  },
};

export default bench;
