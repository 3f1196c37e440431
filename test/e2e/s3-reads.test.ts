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
import type { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import type { CountingProxy } from '../support/counting-proxy.js';
import { ensureQemuImg, makeImage } from '../support/images.js';
import type { PirClient } from '../support/pir-client.js';
import { serveOnS3BehindProxy, type ServeOnS3 } from '../support/s3-serve.js';
import { inCI, serviceUp } from '../support/services.js';

const TOKEN = 'e2e-s3-reads-token-0123456789abcdefg';
const MiB = 1024 * 1024;
const s3 = await serviceUp('s3');
if (!s3.up && !inCI) console.log(`# S3 reads e2e skipped: s3 not running (${s3.where}); bash infra/local/services.sh start s3`);

describe('pir serve on S3: reads and copies of an image after its upload', { skip: !s3.up && !inCI ? 's3 not running' : false }, () => {
  let s3serve: ServeOnS3;
  let dir: string;
  let proxy: CountingProxy;
  let client: PirClient;
  let store: S3BlobStore;

  before(async () => {
    if (!s3.up) throw new Error(`CI is set but s3 is not running (${s3.where}): bash infra/local/services.sh start s3`);
    ensureQemuImg();
    s3serve = await serveOnS3BehindProxy({ name: 's3-reads', token: TOKEN, env: { PIR_S3_PART_SIZE: '5MiB' } });
    ({ dir, proxy, client, store } = s3serve);
  });

  after(() => s3serve?.close());

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
