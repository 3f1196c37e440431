/**
 * Resumable uploads (tus) and share links end to end, in both modes: `pir serve` (embedded) and
 * `pir api` + `pir worker` on Kafka, Redis and FerretDB. The official tus-js-client uploads
 * through a proxy that cuts its connections; an upload half done survives a restart of the API
 * process (its hash state rebuilt from the staged bytes); a share link serves the bytes to a
 * client without a token until it is revoked.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tus from 'tus-js-client';
import { makeTempDir, removeDir } from '../support/images.js';
import { cuttingProxy } from '../support/cutting-proxy.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';

const TOKEN = 'e2e-resumable-token-0123456789abcdef';
const MiB = 1024 * 1024;
const TUS = { 'tus-resumable': '1.0.0', 'x-auth-token': TOKEN };
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');

function rawImage(size: number): Buffer {
  const data = randomBytes(size);
  data.fill(0, 0, 4096); // no format magic at the start: a raw disk
  return data;
}

interface Mode {
  name: string;
  /** Starts the API (and workers); `restartApi` stops the API process and starts it again on the same port. */
  start(dir: string, port: number): Promise<{ restartApi(): Promise<void>; stop(): Promise<void> }>;
}

const logDir = testLogDir('resumable-share');
const needed = ['redis', 'kafka', 'mongodb'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);

const MODES: Mode[] = [
  {
    name: 'embedded (pir serve)',
    async start(dir, port) {
      const env = { PIR_DATA_DIR: join(dir, 'data'), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port) };
      let serve: PirProcess = await startPirProcess('serve', env, logDir, 'serve');
      return {
        async restartApi() { await serve.kill(); serve = await startPirProcess('serve', env, logDir, 'serve-2'); },
        async stop() { await serve.stop(); },
      };
    },
  },
  {
    name: 'distributed (pir api + pir worker)',
    async start(dir, port) {
      if (missing.length) throw new Error(`CI is set but these services are not running: ${missing.map((m) => m.name).join(', ')}`);
      const run = uniqueName('tus').replace(/[^A-Za-z0-9]/g, '');
      const mongo = new URL(services.mongodbUrl);
      mongo.pathname = `/${run}`;
      const env = {
        PIR_DATA_DIR: join(dir, 'data'), PIR_ADMIN_TOKEN: TOKEN,
        PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','), PIR_REDIS_URL: services.redisUrl, PIR_MONGODB_URL: mongo.toString(),
        PIR_KAFKA_TOPIC: `pir.${run}`, PIR_REDIS_PREFIX: run,
      };
      let api = await startPirProcess('api', { ...env, PIR_PORT: String(port) }, logDir, 'api');
      const worker = await startPirProcess('worker', env, logDir, 'worker');
      return {
        async restartApi() { await api.kill(); api = await startPirProcess('api', { ...env, PIR_PORT: String(port) }, logDir, 'api-2'); },
        async stop() { await api.stop(); await worker.stop(); },
      };
    },
  },
];

for (const mode of MODES) {
  const skip = mode.name.startsWith('distributed') && missing.length && !inCI ? `not running: ${missing.map((m) => m.name).join(', ')}` : false;
  describe(`resumable uploads and share links: ${mode.name}`, { skip }, () => {
    let dir: string;
    let base: string;
    let pir: Awaited<ReturnType<Mode['start']>>;

    before(async () => {
      dir = await makeTempDir('pir-e2e-tus-');
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      pir = await mode.start(dir, port);
    });
    after(async () => {
      await pir?.stop();
      if (dir) await removeDir(dir);
    });

    const api = (path: string, init: RequestInit = {}) => fetch(`${base}${path}`, { ...init, headers: { 'x-auth-token': TOKEN, ...(init.headers as Record<string, string>) } });
    const createImage = async () => {
      const res = await api('/v2/images', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'tus', disk_format: 'raw', container_format: 'bare' }) });
      assert.equal(res.status, 201);
      return (await res.json()).id as string;
    };
    const settled = async (id: string) => {
      for (let i = 0; i < 1500; i++) {
        const doc = await (await api(`/v2/images/${id}`)).json();
        if (doc.status === 'active' || doc.status === 'killed') return doc;
        await new Promise((r) => setTimeout(r, 40));
      }
      throw new Error(`image ${id} did not settle`);
    };

    it('takes an upload from tus-js-client through a proxy that cuts it twice', async () => {
      const data = rawImage(6 * MiB);
      const id = await createImage();
      const proxy = await cuttingProxy(Number(new URL(base).port), [1 * MiB, 2 * MiB]);
      try {
        await new Promise<void>((resolve, reject) => {
          new tus.Upload(data, {
            endpoint: `http://127.0.0.1:${proxy.port}/v2/images/${id}/uploads`,
            headers: { 'X-Auth-Token': TOKEN },
            chunkSize: 2 * MiB,
            retryDelays: [0, 100, 300, 1000],
            uploadSize: data.length,
            onError: reject,
            onSuccess: () => resolve(),
          }).start();
        });
        assert.ok(proxy.cuts() >= 2);
      } finally {
        await proxy.close();
      }
      const doc = await settled(id);
      assert.equal(doc.status, 'active', JSON.stringify(doc.pir_failure));
      assert.equal(doc.os_hash_value, sha512(data));
    });

    it('keeps tus-js-client\'s Upload-Metadata and gives it back on HEAD; refuses malformed metadata and other tus versions as tus 1.0 says', async () => {
      const data = rawImage(3 * MiB);
      const id = await createImage();
      const metadata = { filename: 'disk ü.raw', visibility: 'public', empty: '' };
      // tus-js-client sends the first chunk, is stopped, then a second one resumes from its URL.
      const url = await new Promise<string>((resolve, reject) => {
        const upload: tus.Upload = new tus.Upload(data, {
          endpoint: `${base}/v2/images/${id}/uploads`, headers: { 'X-Auth-Token': TOKEN }, chunkSize: 1 * MiB, uploadSize: data.length, metadata,
          onChunkComplete: () => { upload.abort().then(() => resolve(upload.url!), reject); },
          onError: reject,
        });
        upload.start();
      });
      const head = await api(new URL(url).pathname, { method: 'HEAD', headers: TUS }); // tus-js-client's URL is absolute
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('upload-offset'), String(1 * MiB));
      const b64 = (s: string) => Buffer.from(s).toString('base64');
      // As sent, less the trailing space of the empty value: HTTP does not count it in the header's value.
      assert.equal(head.headers.get('upload-metadata'), `filename ${b64('disk ü.raw')},visibility ${b64('public')},empty`);
      await new Promise<void>((resolve, reject) => {
        new tus.Upload(data, { uploadUrl: url, headers: { 'X-Auth-Token': TOKEN }, uploadSize: data.length, metadata, onError: reject, onSuccess: () => resolve() }).start();
      });
      const doc = await settled(id);
      assert.equal(doc.status, 'active', JSON.stringify(doc.pir_failure));
      assert.equal(doc.os_hash_value, sha512(data));
      assert.equal(doc.visibility, 'shared', 'metadata is stored and echoed, never applied');

      const other = await createImage();
      for (const bad of ['filename not-base64!', `a ${b64('1')},a ${b64('2')}`, `a ${b64('1')},,b ${b64('2')}`]) {
        const res = await api(`/v2/images/${other}/uploads`, { method: 'POST', headers: { ...TUS, 'upload-length': '10', 'upload-metadata': bad } });
        assert.equal(res.status, 400, bad);
        assert.equal((await res.json()).error.error_code, 'tus_metadata_invalid');
      }
      const old = await api(`/v2/images/${other}/uploads`, { method: 'POST', headers: { 'x-auth-token': TOKEN, 'tus-resumable': '0.2.0', 'upload-length': '10' } });
      assert.equal(old.status, 412);
      assert.equal(old.headers.get('tus-version'), '1.0.0');
      assert.equal((await old.json()).error.error_code, 'tus_version_unsupported');
      assert.equal((await (await api(`/v2/images/${other}`)).json()).status, 'queued', 'refused creations claim nothing');
    });

    it('resumes an upload after the API process was killed and started again', async () => {
      const data = rawImage(4 * MiB);
      const id = await createImage();
      const created = await api(`/v2/images/${id}/uploads`, { method: 'POST', headers: { ...TUS, 'upload-length': String(data.length) } });
      assert.equal(created.status, 201);
      const location = created.headers.get('location')!;
      const half = 2 * MiB + 4096;
      const first = await api(location, { method: 'PATCH', headers: { ...TUS, 'content-type': 'application/offset+octet-stream', 'upload-offset': '0' }, body: new Uint8Array(data.subarray(0, half)) });
      assert.equal(first.status, 204);
      await pir.restartApi();
      const head = await api(location, { method: 'HEAD', headers: TUS });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('upload-offset'), String(half));
      const rest = await api(location, { method: 'PATCH', headers: { ...TUS, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(half) }, body: new Uint8Array(data.subarray(half)) });
      assert.equal(rest.status, 204, await rest.text());
      const doc = await settled(id);
      assert.equal(doc.status, 'active', JSON.stringify(doc.pir_failure));
      assert.equal(doc.os_hash_value, sha512(data));
      assert.equal(doc.checksum, createHash('md5').update(data).digest('hex'));
    });

    it('shows what the disk says of itself (pir_detected_*) after a tus upload', async () => {
      const path = join(dir, 'labelled.raw');
      await writeFile(path, Buffer.alloc(8 * MiB));
      execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'e2e-root', path], { stdio: 'ignore' });
      const data = await readFile(path);
      const id = await createImage();
      await new Promise<void>((resolve, reject) => {
        new tus.Upload(data, { endpoint: `${base}/v2/images/${id}/uploads`, headers: { 'X-Auth-Token': TOKEN }, uploadSize: data.length, onError: reject, onSuccess: () => resolve() }).start();
      });
      const doc = await settled(id);
      assert.equal(doc.status, 'active', JSON.stringify(doc.pir_failure));
      assert.equal(doc.pir_detected_fs, 'ext4');
      assert.equal(doc.pir_detected_fs_label, 'e2e-root');
    });

    it('serves an image through a share link without a token, counts the uses, and stops after revocation', async () => {
      const data = rawImage(1 * MiB);
      const id = await createImage();
      assert.equal((await api(`/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(data) })).status, 204);
      const link = await (await api(`/v2/images/${id}/share-links`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ expires_in: 600 }) })).json();
      assert.ok(link.url.startsWith(base));
      const got = await fetch(link.url);
      assert.equal(got.status, 200);
      assert.equal(sha512(Buffer.from(await got.arrayBuffer())), sha512(data));
      const part = await fetch(link.url, { headers: { range: 'bytes=0-9' } });
      assert.equal(part.status, 206);
      assert.deepEqual(Buffer.from(await part.arrayBuffer()), data.subarray(0, 10));
      let uses = 0;
      for (let i = 0; i < 100 && uses < 2; i++) {
        uses = (await (await api(`/v2/images/${id}/share-links`)).json()).share_links[0].uses;
        if (uses < 2) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(uses, 2);
      assert.equal((await api(`/v2/images/${id}/share-links/${link.id}`, { method: 'DELETE' })).status, 204);
      assert.equal((await fetch(link.url)).status, 404);
    });
  });
}
