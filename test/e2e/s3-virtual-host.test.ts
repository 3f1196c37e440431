/**
 * S3 virtual-host addressing (issue 10 point 2): `pir serve` with PIR_S3_FORCE_PATH_STYLE=false
 * addresses the bucket as `<bucket>.<endpoint host>` against the real SeaweedFS, through a proxy
 * that records each request's Host and path. The image is uploaded, inspected, served and
 * deleted, and no request names the bucket in its path.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import type { CountingProxy } from '../support/counting-proxy.js';
import { ensureQemuImg } from '../support/images.js';
import type { PirClient } from '../support/pir-client.js';
import { waitFor } from '../support/pir-process.js';
import { serveOnS3BehindProxy, type ServeOnS3 } from '../support/s3-serve.js';
import { inCI, serviceUp, services } from '../support/services.js';

const TOKEN = 'e2e-s3-vhost-token-0123456789abcdefg';
const MiB = 1024 * 1024;
const RESOLVER = pathToFileURL(new URL('../support/localhost-resolver.js', import.meta.url).pathname).href;
const s3 = await serviceUp('s3');
if (!s3.up && !inCI) console.log(`# S3 virtual-host e2e skipped: s3 not running (${s3.where}); bash infra/local/services.sh start s3`);

describe('pir serve on S3 with virtual-host addressing (PIR_S3_FORCE_PATH_STYLE=false)', { skip: !s3.up && !inCI ? 's3 not running' : false }, () => {
  let s3serve: ServeOnS3;
  let dir: string;
  let proxy: CountingProxy;
  let client: PirClient;
  let store: S3BlobStore;
  let port: number;
  let bucketHost: string;

  before(async () => {
    if (!s3.up) throw new Error(`CI is set but s3 is not running (${s3.where}): bash infra/local/services.sh start s3`);
    ensureQemuImg();
    s3serve = await serveOnS3BehindProxy({
      name: 's3-virtual-host', token: TOKEN,
      endpoint: (proxyPort) => `http://localhost:${proxyPort}`,
      env: { PIR_S3_FORCE_PATH_STYLE: 'false', PIR_S3_PART_SIZE: '5MiB', NODE_OPTIONS: `--import=${RESOLVER}` },
    });
    ({ dir, proxy, client, store, port } = s3serve);
    bucketHost = `${services.s3.bucket}.localhost:${new URL(proxy.url).port}`;
  });

  after(() => s3serve?.close());

  it('uploads (multipart), inspects, serves and deletes a qcow2 with the bucket in the host name, never in the path', { timeout: 120_000 }, async () => {
    const raw = join(dir, 'src.raw');
    await writeFile(raw, randomBytes(12 * MiB));
    const path = join(dir, 'disk.qcow2');
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, path]);
    const bytes = readFileSync(path);

    proxy.reset();
    assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200, 'ready: the bucket took the probe object and gave it back');
    const image = await client.createImage({ name: 'vhost', disk_format: 'qcow2', container_format: 'bare' });
    const put = await client.putData(image.id, path);
    assert.equal(put.status, 204, JSON.stringify(put.body));
    const done = await client.waitSettled(image.id);
    assert.equal(done.status, 'active', JSON.stringify(done.pir_failure));
    assert.equal(done.checksum, createHash('md5').update(bytes).digest('hex'));
    assert.equal(done.virtual_size, 12 * MiB, 'the virtual size of the converted disk');
    const downloaded = await client.downloadDigests(image.id);
    assert.equal(downloaded.sha512, createHash('sha512').update(bytes).digest('hex'));
    assert.equal((await store.list('')).filter((b) => b.key.includes(image.id)).length, 1, 'one object in the bucket');

    assert.equal((await client.call('DELETE', `/v2/images/${image.id}`)).status, 204);
    await waitFor(async () => (await store.list('')).every((b) => !b.key.includes(image.id)), 20_000, 'the deleted image has no objects');

    const requests = proxy.requests();
    const methods = new Set(requests.map((r) => r.method));
    for (const m of ['HEAD', 'PUT', 'POST', 'GET', 'DELETE']) assert.ok(methods.has(m), `a ${m} request went through (saw ${[...methods].join(', ')})`);
    for (const r of requests) {
      assert.equal(r.host, bucketHost, `${r.method} ${r.path}: the bucket is in the host name`);
      assert.ok(!r.path.startsWith(`/${services.s3.bucket}/`) && r.path.split('?')[0] !== `/${services.s3.bucket}`, `${r.method} ${r.path}: the bucket is not in the path`);
    }
  });
});
