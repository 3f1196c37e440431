/**
 * Resumable (tus) uploads against plain PUT …/file, on one `pir serve` over loopback, same file:
 * - PUT …/file (sync, start → active): the reference;
 * - tus in one PATCH, and in 64 MiB PATCHes (start of POST → active);
 * - tus through a proxy that cuts the connection at 50% (the client resumes from the offset);
 * - tus resumed after the API process was killed at 50% and started again (the rest's PATCH
 *   includes reading back the staged half to rebuild md5/sha512).
 * Throughputs count the image's bytes once. PIR_BENCH_TUS_MB sets the size (default 512).
 * Run on the filesystem store, then on the S3 store (the local SeaweedFS, when it runs): there
 * every PATCH goes into S3 multipart parts, and the restart case loads the saved hash state
 * instead of reading back (ingest/tus/s3-staging.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PirClient } from '../client/index.js';
import { S3BlobStore } from '../infra/storage/s3-blob-store.js';
import { cuttingProxy } from '../test/support/cutting-proxy.js';
import { freePort, startPirProcess, type PirProcess } from '../test/support/pir-process.js';
import { serviceUp, services, uniqueName } from '../test/support/services.js';
import { MiB } from './limits.js';
import type { Bench, BenchContext, Figure } from './report.js';

const TOKEN = 'bench-tus-token-0123456789abcdefghij';

async function writeRandomFile(path: string, size: number): Promise<void> {
  const handle = await open(path, 'w');
  const block = randomBytes(4 * MiB);
  block.fill(0, 0, 4096);
  try {
    for (let at = 0; at < size; at += block.length) await handle.write(block, 0, Math.min(block.length, size - at), at);
  } finally {
    await handle.close();
  }
}

/** The figures of one store: `store` labels them, `storeEnv` points `pir serve` at it. */
async function runOn(store: string, storeEnv: Record<string, string>, { dir, log }: BenchContext, file: string, size: number): Promise<Figure[]> {
  const port = await freePort();
  const env = { PIR_DATA_DIR: join(dir, 'tus-data'), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info', ...storeEnv };
  let serve: PirProcess = await startPirProcess('serve', env, join(dir, 'logs'), `tus-serve-${store}`);
  const client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
  const create = async (name: string) => (await client.createImage({ name, disk_format: 'raw', container_format: 'bare' })).id;
  const rate = (ms: number) => size / MiB / (ms / 1000);
  const figures: Figure[] = [];
  try {
    log(`PUT …/file of ${size / MiB} MiB`);
    let id = await create('put');
    let t0 = performance.now();
    await client.uploadFile(id, file);
    const put = rate(performance.now() - t0);
    figures.push({ name: 'PUT …/file, start → active', value: put, unit: 'MiB/s' });

    const tus = async (label: string, opts: Parameters<PirClient['resumableUpload']>[2], via: PirClient = client) => {
      log(label);
      const imageId = await create(label);
      const start = performance.now();
      const result = await via.resumableUpload(imageId, file, opts);
      const image = await client.waitForImage(imageId);
      if (image.os_hash_value !== result.digests.sha512) throw new Error(`${label}: sha512 differs`);
      return { rate: rate(performance.now() - start), resumes: result.resumes };
    };
    const one = await tus('tus, one PATCH', {});
    figures.push({ name: 'tus, one PATCH, POST → active', value: one.rate, unit: 'MiB/s', limit: put, targetRatio: 0.8 });
    const chunked = await tus('tus, 64 MiB PATCHes', { chunkBytes: 64 * MiB });
    figures.push({ name: 'tus, 64 MiB PATCHes, POST → active', value: chunked.rate, unit: 'MiB/s', limit: put, targetRatio: 0.7 });

    const proxy = await cuttingProxy(port, [Math.floor(size / 2)]);
    try {
      const cut = await tus('tus, cut at 50% and resumed', { backoffMs: 50 }, new PirClient(`http://127.0.0.1:${proxy.port}`, TOKEN));
      figures.push({ name: 'tus, connection cut at 50%, resumed', value: cut.rate, unit: 'MiB/s', limit: put, targetRatio: 0.6, note: `${cut.resumes} resume(s); counts the image's bytes once` });
    } finally {
      await proxy.close();
    }

    log('tus across an API restart at 50%');
    id = await create('restart');
    const created = await client.raw('POST', `/v2/images/${id}/uploads`, undefined, { 'tus-resumable': '1.0.0', 'upload-length': String(size) });
    const location = created.headers.location!;
    const half = Math.floor(size / 2 / 512) * 512;
    const patch = async (from: number, to: number) => {
      const handle = await open(file, 'r');
      try {
        const { req, response } = client.transport.open('PATCH', location, { 'tus-resumable': '1.0.0', 'content-type': 'application/offset+octet-stream', 'upload-offset': String(from), 'content-length': String(to - from) });
        for await (const chunk of handle.createReadStream({ start: from, end: to - 1, highWaterMark: MiB })) {
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
        }
        req.end();
        const res = await response;
        res.resume();
        if (res.statusCode !== 204) throw new Error(`PATCH answered ${res.statusCode}`);
      } finally {
        await handle.close();
      }
    };
    await patch(0, half);
    await serve.kill();
    serve = await startPirProcess('serve', env, join(dir, 'logs'), `tus-serve-${store}-2`);
    t0 = performance.now();
    await patch(half, size);
    const restPatch = performance.now() - t0;
    const image = await client.waitForImage(id);
    const expected = createHash('sha512');
    for await (const chunk of (await open(file, 'r')).createReadStream({ highWaterMark: 4 * MiB })) expected.update(chunk);
    if (image.os_hash_value !== expected.digest('hex')) throw new Error('restart: sha512 differs');
    const restoreNote = storeEnv.PIR_S3_ENDPOINT ? 'hash state loaded from the commit object, nothing read back' : `rebuilt from ${half / MiB} MiB read back`;
    figures.push({ name: 'tus after restart: second half PATCH incl. hash restore', value: (size - half) / MiB / (restPatch / 1000), unit: 'MiB/s', limit: put, note: restoreNote });
  } finally {
    await serve.stop();
    await rm(env.PIR_DATA_DIR, { recursive: true, force: true });
  }
  return figures.map((f) => ({ ...f, name: `${store}: ${f.name}` }));
}

const bench: Bench = {
  name: 'resumable uploads (tus) vs PUT, filesystem and S3 stores',
  async run(ctx) {
    const size = Number(process.env.PIR_BENCH_TUS_MB ?? 512) * MiB;
    const file = join(ctx.dir, 'tus-bench.raw');
    await writeRandomFile(file, size);
    try {
      const figures = await runOn('filesystem', {}, ctx, file, size);
      if (!(await serviceUp('s3')).up) {
        ctx.log('S3 store left out: SeaweedFS is not running (bash infra/local/services.sh start s3)');
        return [...figures, { name: 'S3 store: not measured (s3 not running)', value: NaN, unit: '' }];
      }
      const prefix = `${uniqueName('bench-tus')}/`;
      try {
        figures.push(...(await runOn('S3', {
          PIR_S3_ENDPOINT: services.s3.endpoint, PIR_S3_BUCKET: services.s3.bucket, PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
          PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey, PIR_S3_REGION: services.s3.region, PIR_S3_FORCE_PATH_STYLE: 'true', PIR_S3_PREFIX: prefix,
        }, ctx, file, size)));
      } finally {
        const store = new S3BlobStore({ ...services.s3, prefix });
        for (const blob of await store.list('')) await store.delete(blob.key).catch(() => {});
        store.close();
      }
      return figures;
    } finally {
      await rm(file, { force: true });
    }
  },
};

export default bench;
