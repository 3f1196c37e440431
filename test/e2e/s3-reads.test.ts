/**
 * What `pir serve` on the S3 store does with an image's bytes after the upload (issue 10 point 2):
 * through a counting proxy in front of SeaweedFS, the bytes it reads back from the bucket until
 * the image is active stay within 2 reads of the image (inspection reads bounded ranges), it
 * never copies an object server-side, and the image ends up as one object (the uploaded one).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { countingProxy, type CountingProxy } from '../support/counting-proxy.js';
import { ensureQemuImg, makeImage, makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';

const TOKEN = 'e2e-s3-reads-token-0123456789abcdefg';
const MiB = 1024 * 1024;
const s3 = await serviceUp('s3');
if (!s3.up && !inCI) console.log(`# S3 reads e2e skipped: s3 not running (${s3.where}); bash infra/local/services.sh start s3`);

describe('pir serve on S3: reads and copies of an image after its upload', { skip: !s3.up && !inCI ? 's3 not running' : false }, () => {
  let dir: string;
  let proxy: CountingProxy;
  let serve: PirProcess;
  let client: PirClient;
  let store: S3BlobStore;
  const prefix = `${uniqueName('e2ereads')}/`;

  before(async () => {
    if (!s3.up) throw new Error(`CI is set but s3 is not running (${s3.where}): bash infra/local/services.sh start s3`);
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-s3-reads-');
    proxy = await countingProxy(new URL(services.s3.endpoint));
    const port = await freePort();
    serve = await startPirProcess('serve', {
      PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_DATA_DIR: join(dir, 'data'),
      PIR_S3_ENDPOINT: proxy.url, PIR_S3_BUCKET: services.s3.bucket, PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
      PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey, PIR_S3_REGION: services.s3.region, PIR_S3_PREFIX: prefix,
      PIR_S3_PART_SIZE: '5MiB',
    }, testLogDir('s3-reads'), 'serve');
    client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
    store = new S3BlobStore({ ...services.s3, prefix });
  });

  after(async () => {
    await serve?.stop();
    await proxy?.close();
    if (store) {
      for (const blob of await store.list('')) await store.delete(blob.key).catch(() => {});
      store.close();
    }
    if (dir) await removeDir(dir);
  });

  const cases: { name: string; format: string; file: () => Promise<string> }[] = [
    {
      name: 'raw, 24 MiB (5 parts)',
      format: 'raw',
      file: async () => {
        const path = join(dir, 'disk.raw');
        await writeFile(path, randomBytes(24 * MiB));
        return path;
      },
    },
    {
      name: 'qcow2 with data, 20 MiB',
      format: 'qcow2',
      file: async () => {
        // qemu-img writes no data into a new image: make a raw one with bytes, then convert.
        const raw = join(dir, 'src.raw');
        await writeFile(raw, randomBytes(16 * MiB));
        const target = await makeImage(dir, 'qcow2', { size: '20M', name: 'disk.qcow2' });
        const { execFileSync } = await import('node:child_process');
        execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, target]);
        return target;
      },
    },
  ];

  for (const c of cases) {
    it(`${c.name}: active, at most 2 reads of its bytes, no server-side copy, one object`, { timeout: 120_000 }, async () => {
      const path = await c.file();
      const bytes = (await import('node:fs')).readFileSync(path);
      const image = await client.createImage({ name: c.name, disk_format: c.format, container_format: 'bare' });
      proxy.reset();
      const put = await client.putData(image.id, path);
      assert.equal(put.status, 204, JSON.stringify(put.body));
      const done = await client.waitSettled(image.id);
      assert.equal(done.status, 'active', JSON.stringify(done));
      assert.equal(done.checksum, createHash('md5').update(bytes).digest('hex'));
      const read = proxy.getBytes();
      assert.ok(read <= 2 * bytes.length, `read back ${read} bytes of a ${bytes.length}-byte image`);
      assert.equal(proxy.copies(), 0, 'no CopyObject / UploadPartCopy');
      const objects = (await store.list('')).filter((b) => b.key.includes(image.id));
      assert.equal(objects.length, 1, JSON.stringify(objects));
      assert.equal(objects[0]!.size, bytes.length, 'the stored object is the uploaded bytes');
      console.log(`# ${c.name}: read back ${(read / 1024).toFixed(0)} KiB (${(read / bytes.length).toFixed(4)} × image)`);
    });
  }
});
