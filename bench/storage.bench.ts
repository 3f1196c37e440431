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
 * - 2 GiB download throughput from each store with a client that does not hash, in a process of
 *   its own (download-client.ts), against a loopback HTTP download to the same client taken in
 *   the same minutes, page cache warm for
 *   both (target ≥ 70%); and the first download after the upload, cold on the filesystem (the
 *   upload wrote with O_DIRECT), beside a plain cold read of the same file. On S3, also the
 *   download path's CPU bound: the CPU per GiB of the S3 server, pir serve and the client
 *   during those downloads, divided into the machine's cores (three processes where the
 *   loopback limit has two).
 * Needs the local SeaweedFS (bash infra/local/services.sh start s3); without it, says so.
 * PIR_BENCH_STORES=filesystem (or s3) measures one store; PIR_BENCH_STORAGE=downloads measures
 * only the download figures (one 2 GiB upload per store, then its downloads).
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { S3BlobStore } from '../infra/storage/s3-blob-store.js';
import { countingProxy } from '../test/support/counting-proxy.js';
import { PirClient } from '../test/support/pir-client.js';
import { freePort, startPirProcess, type PirProcess } from '../test/support/pir-process.js';
import { serviceUp, services, uniqueName } from '../test/support/services.js';
import { TOKEN, uploadOne } from './ingest.bench.js';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand, type CompletedPart } from '@aws-sdk/client-s3';
import { GiB, MiB, discardingGetInOwnProcess, loopbackHttpDownload, processCpuMs, sequentialWriteWithFsync, sha512OneCore } from './limits.js';
import { listenerPid } from './process-cpu.js';
import { median, type Bench, type BenchContext, type Figure } from './report.js';

interface Serve {
  client: PirClient;
  process: PirProcess;
}

const STORES = (process.env.PIR_BENCH_STORES || 'filesystem,s3').split(',');
const DOWNLOADS_ONLY = process.env.PIR_BENCH_STORAGE === 'downloads';
/** Warm download rounds per store, each beside its own loopback (and raw GetObject) run. */
const DOWNLOAD_ROUNDS = 3;

async function startServe(dir: string, name: string, extra: Record<string, string>): Promise<Serve> {
  const port = await freePort();
  const env = { PIR_DATA_DIR: join(dir, `data-${name}`), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info', ...extra };
  const process = await startPirProcess('serve', env, join(dir, 'logs'), name);
  return { client: new PirClient(`http://127.0.0.1:${port}`, TOKEN), process };
}

interface DownloadRate {
  rate: number;
  /** pir serve's CPU s per GiB */
  cpu: number;
  /** this process's (the discarding client's) CPU s per GiB */
  client: number;
  /** the object store server's CPU s per GiB (S3 only) */
  store?: number;
}

/** CPU s per GiB of `bytes` used by the process `pid` (null: not measured) since `before`. */
const perGiB = (pid: number | null | undefined, before: number, bytes: number): number | undefined =>
  pid ? (processCpuMs(pid) - before) / 1000 / (bytes / GiB) : undefined;

/**
 * Downloads image `id` whole with the loopback limit's client (discarding, no hashing): MiB/s,
 * and the CPU s per GiB of pir serve, of the client and (S3) of the object store's server.
 */
async function downloadRate(serve: Serve, id: string, storePid?: number | null): Promise<DownloadRate> {
  const pid = serve.process.child.pid!;
  const c0 = processCpuMs(pid);
  const s0 = storePid ? processCpuMs(storePid) : 0;
  const got = await discardingGetInOwnProcess(`${serve.client.baseUrl}/v2/images/${id}/file`, { 'x-auth-token': serve.client.token });
  const rate = got.bytes / MiB / (got.ms / 1000);
  return { rate, cpu: perGiB(pid, c0, got.bytes)!, client: got.cpuSeconds / (got.bytes / GiB), store: perGiB(storePid, s0, got.bytes) };
}

/**
 * What the three processes of an S3 download (object store server, pir serve, client) can
 * reach together on this machine's cores, from the CPU each spent per GiB: cores ÷ the sum.
 * The loopback limit has two processes and none of the store's work.
 */
function cpuBound(downloads: DownloadRate[]): { value: number; note: string } {
  const value = median(downloads.map((d) => (availableParallelism() / ((d.store ?? 0) + d.cpu + d.client)) * 1024));
  const cpu = (of: (d: DownloadRate) => number) => median(downloads.map(of)).toFixed(2);
  return { value, note: `CPU s/GiB: S3 server ${cpu((d) => d.store ?? 0)}, pir serve ${cpu((d) => d.cpu)}, client ${cpu((d) => d.client)}, so at most ${value.toFixed(0)} MiB/s on ${availableParallelism()} cores` };
}

/** Reads a file to its end with 1 MiB reads, discarding (the filesystem store's read limit); MiB/s. */
async function fileReadRate(path: string): Promise<number> {
  const t0 = performance.now();
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: MiB })) bytes += (chunk as Buffer).length;
  return bytes / MiB / ((performance.now() - t0) / 1000);
}

/** Drops a file's pages from the page cache (GNU dd's nocache: posix_fadvise DONTNEED); false where that is not available. */
function dropFromPageCache(path: string): boolean {
  try {
    execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * 2 GiB download figures of one store. First the download right after the upload: on the
 * filesystem the image was written with O_DIRECT, so it is not in the page cache and this is a
 * disk read (beside a plain read of the same file after dropping it from the cache again). Then
 * warm rounds, each a loopback download, a PIR download (and on S3 a raw GetObject of the same
 * object) back to back, so the limit is taken in the same minutes as the figure on this shared
 * machine; medians of the rounds.
 */
async function downloadFigures(label: string, ctx: BenchContext, serve: Serve, id: string, source: DownloadSourceOf): Promise<Figure[]> {
  const figures: Figure[] = [];
  ctx.log(`${label}: 2 GiB download, first after the upload`);
  const first = await downloadRate(serve, id, source.storePid);
  if (source.file) {
    const cold = dropFromPageCache(source.file) ? await fileReadRate(source.file) : undefined;
    figures.push({ name: `${label}: 2 GiB download, first after the upload (cold page cache)`, value: first.rate, unit: 'MiB/s', ...(cold ? { limit: cold } : {}), note: `server CPU ${first.cpu.toFixed(2)} s/GiB; limit = ${cold ? 'a plain 1 MiB-read of the same file, dropped from the page cache' : 'none (no dd to drop the page cache)'}; load ${loadavg()[0].toFixed(1)}` });
  } else {
    figures.push({ name: `${label}: 2 GiB download, first after the upload`, value: first.rate, unit: 'MiB/s', note: `server CPU ${first.cpu.toFixed(2)} s/GiB; load ${loadavg()[0].toFixed(1)}` });
  }
  const loopbacks: number[] = [];
  const downloads: DownloadRate[] = [];
  const raws: RawRead[] = [];
  const loads: number[] = [];
  const alternates: DownloadRate[] = [];
  for (let round = 0; round < DOWNLOAD_ROUNDS; round++) {
    ctx.log(`${label}: warm 2 GiB download round ${round + 1}/${DOWNLOAD_ROUNDS} (loopback, PIR${source.alternate ? `, PIR with ${source.alternate.label}` : ''}${source.rawRead ? ', raw GetObject' : ''})`);
    loopbacks.push(await loopbackHttpDownload(2 * GiB));
    // The alternate first on odd rounds, so neither always follows the loopback run.
    if (source.alternate && round % 2 === 1) alternates.push(await downloadRate(source.alternate.serve, source.alternate.id, source.storePid));
    downloads.push(await downloadRate(serve, id, source.storePid));
    if (source.alternate && round % 2 === 0) alternates.push(await downloadRate(source.alternate.serve, source.alternate.id, source.storePid));
    if (source.rawRead) raws.push(await source.rawRead());
    loads.push(loadavg()[0]);
  }
  const rates = downloads.map((d) => d.rate);
  const cpus = downloads.map((d) => d.cpu);
  figures.push({
    name: `${label}: 2 GiB download, warm (client discards, no hashing)`, value: median(rates), unit: 'MiB/s', limit: median(loopbacks), targetRatio: 0.7,
    note: `rounds ${rates.map((r) => r.toFixed(0)).join(', ')} beside loopback ${loopbacks.map((r) => r.toFixed(0)).join(', ')}; server CPU ${median(cpus).toFixed(2)} s/GiB (${cpus.map((c) => c.toFixed(2)).join(', ')}); load ${loads.map((l) => l.toFixed(1)).join(', ')}`,
  });
  if (source.storePid) {
    figures.push({ name: `${label}: the download path's CPU bound`, unit: 'MiB/s', limit: median(loopbacks), ...cpuBound(downloads) });
  }
  if (source.alternate) {
    const altRates = alternates.map((d) => d.rate);
    const altCpus = alternates.map((d) => d.cpu);
    figures.push({
      name: `${label}: the same download with ${source.alternate.label}`, value: median(altRates), unit: 'MiB/s', limit: median(loopbacks),
      note: `rounds ${altRates.map((r) => r.toFixed(0)).join(', ')}; server CPU ${median(altCpus).toFixed(2)} s/GiB (${altCpus.map((c) => c.toFixed(2)).join(', ')}) against ${median(cpus).toFixed(2)} above`,
    });
  }
  if (raws.length) {
    const rawStore = raws.map((r) => r.store).filter((c): c is number => c !== undefined);
    figures.push({ name: `${label}: the same download against a raw GetObject of its object`, value: median(rates), unit: 'MiB/s', limit: median(raws.map((r) => r.rate)), note: `raw GetObject (same client settings as the store, discarded) ${raws.map((r) => r.rate.toFixed(0)).join(', ')}${rawStore.length ? `; the S3 server's CPU ${median(rawStore).toFixed(2)} s/GiB for it` : ''}` });
  }
  return figures;
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

/**
 * What a store's download figures stand beside: the file (filesystem), a raw read of the object
 * (S3), and an `alternate` pir serve holding the same bytes under other settings, downloaded in
 * the same rounds (S3: PIR_S3_READ_CLIENT=node, the A/B of the read client).
 */
interface DownloadSourceOf { file?: string; rawRead?: () => Promise<RawRead>; alternate?: { label: string; serve: Serve; id: string }; storePid?: number | null }
type DownloadSource = (id: string) => Promise<DownloadSourceOf>;

async function measureStore(label: string, ctx: BenchContext, serve: Serve, data: Buffer, ceiling: number, limitNote: string, source: DownloadSource): Promise<Figure[]> {
  const figures: Figure[] = [];
  if (DOWNLOADS_ONLY) {
    ctx.log(`${label}: one 2 GiB upload (downloads only)`);
    const { id } = await timedUpload(serve.client, 2 * GiB, data);
    return downloadFigures(label, ctx, serve, id, await source(id));
  }
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
  // The second image: the first was written long before, it may have left the cache meanwhile.
  figures.push(...(await downloadFigures(label, ctx, serve, ids[1]!, await source(ids[1]!))));
  return figures;
}

interface RawRead {
  rate: number;
  /** the S3 server's CPU s per GiB, if its process was found */
  store?: number;
}

/** A raw GetObject of the object holding image `id` through `store`'s client, discarded: MiB/s and the S3 server's CPU per GiB. */
async function rawObjectRead(store: S3BlobStore, id: string, storePid: number | null): Promise<() => Promise<RawRead>> {
  const blob = (await store.list(`staging/${id}`)).find((b) => b.size === 2 * GiB);
  if (!blob) throw new Error(`no 2 GiB object for image ${id} in the bucket`);
  return async () => {
    const s0 = storePid ? processCpuMs(storePid) : 0;
    const t0 = performance.now();
    let received = 0;
    for await (const chunk of await store.read(blob.key)) received += (chunk as Buffer).length;
    return { rate: received / MiB / ((performance.now() - t0) / 1000), store: perGiB(storePid, s0, received) };
  };
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
    ctx.log(`stores: ${STORES.join(', ')}${DOWNLOADS_ONLY ? ' (downloads only)' : ''}; load ${loadavg()[0].toFixed(1)}`);
    const figures: Figure[] = [
      { name: 'limit: sha512, one core', value: sha512, unit: 'MiB/s' },
      { name: 'limit: sequential write + fdatasync', value: write, unit: 'MiB/s' },
      { name: 'limit: loopback HTTP download (client discards)', value: download, unit: 'MiB/s' },
    ];
    if (STORES.includes('filesystem')) {
      const fs = await startServe(ctx.dir, 'fs', {});
      try {
        const file = async (id: string) => ({ file: join(ctx.dir, 'data-fs', 'images', id) });
        figures.push(...(await measureStore('filesystem store', ctx, fs, data, Math.min(sha512, write), 'min(write+fsync, sha512)', file)));
      } finally {
        await fs.process.stop();
      }
    }
    if (!STORES.includes('s3')) return figures;
    if (!(await serviceUp('s3')).up) {
      ctx.log('S3 store left out: SeaweedFS is not running (bash infra/local/services.sh start s3)');
      figures.push({ name: 'S3 store: not measured (s3 not running)', value: NaN, unit: '' });
      return figures;
    }
    const prefix = `${uniqueName('bench')}/`;
    const readClient = process.env.PIR_S3_READ_CLIENT as 'undici' | 'node' | undefined;
    const s3env = (endpoint: string) => ({
      PIR_S3_ENDPOINT: endpoint, PIR_S3_BUCKET: services.s3.bucket, PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
      PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey, PIR_S3_REGION: services.s3.region, PIR_S3_PREFIX: prefix,
      // PIR_S3_READ_CLIENT=node measures downloads on the SDK's node:http handler (A/B against undici).
      ...(readClient ? { PIR_S3_READ_CLIENT: readClient } : {}),
    });
    // The same client settings as pir serve's store (defaults: part size, parts in flight, signing).
    const store = new S3BlobStore({ ...services.s3, prefix, ...(readClient ? { readClient } : {}) });
    try {
      ctx.log(`limit: raw S3 multipart upload and GetObject, 1 GiB (${store.partSize / MiB} MiB parts, ${store.queueSize} in flight)`);
      const { write: s3write, read: s3read } = await s3RawWriteRead(store, data, GiB);
      figures.push({ name: 'limit: S3 write (raw multipart, same client settings, no hashing)', value: s3write, unit: 'MiB/s' });
      figures.push({ name: 'limit: S3 read (raw GetObject of it, same client, discarded)', value: s3read, unit: 'MiB/s' });
      const s3 = await startServe(ctx.dir, 's3', s3env(services.s3.endpoint));
      // Downloads only: a second pir serve on the SDK's node:http read client (its own prefix, so
      // neither's janitor sees the other's objects) holding the same bytes, for the A/B.
      const viaNode = DOWNLOADS_ONLY && readClient !== 'node'
        ? await startServe(ctx.dir, 's3-node', { ...s3env(services.s3.endpoint), PIR_S3_PREFIX: `${prefix}node/`, PIR_S3_READ_CLIENT: 'node' })
        : null;
      try {
        // The S3 server's process (SeaweedFS here), whose CPU per GiB the download figures show.
        const storePid = listenerPid(Number(new URL(services.s3.endpoint).port || 80));
        const raw = async (id: string): Promise<DownloadSourceOf> => {
          const same = { rawRead: await rawObjectRead(store, id, storePid), storePid };
          if (!viaNode) return same;
          ctx.log('S3 store: the same 2 GiB into a pir serve reading with PIR_S3_READ_CLIENT=node');
          const other = await timedUpload(viaNode.client, 2 * GiB, data);
          return { ...same, alternate: { label: 'PIR_S3_READ_CLIENT=node', serve: viaNode, id: other.id } };
        };
        figures.push(...(await measureStore('S3 store', ctx, s3, data, Math.min(sha512, s3write), 'min(S3 raw write, sha512)', raw)));
      } finally {
        await s3.process.stop();
        await viaNode?.process.stop();
      }
      if (DOWNLOADS_ONLY) return figures;
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
