/** BlobStore contract against the filesystem adapter and the S3 adapter on the local SeaweedFS. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { stagingKey } from '../../core/blob-keys.js';
import { FsBlobStore } from '../../infra/storage/fs-blob-store.js';
import { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { requireServices, services, uniqueName } from '../support/services.js';
import { blobStoreContract } from './blob-store.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'pir-contract-blobs-'));
blobStoreContract('filesystem', async () => {
  const store = new FsBlobStore(dir);
  await store.init();
  return store;
}, { promotesInPlace: false, teardown: async () => rmSync(dir, { recursive: true, force: true }) });

// One key prefix per run in the shared bucket; everything under it is removed afterwards.
const prefix = `${uniqueName('contract')}/`;
let s3: S3BlobStore | null = null;
blobStoreContract('s3 (SeaweedFS)', async () => {
  // Small parts, so the 40 MiB write is a real multipart upload of several parts.
  s3 = new S3BlobStore({ ...services.s3, prefix, partSize: 5 * 1024 * 1024, queueSize: 2 });
  return s3;
}, {
  services: ['s3'],
  promotesInPlace: true,
  teardown: async () => {
    if (!s3) return;
    for (const blob of await s3.list('')) await s3.delete(blob.key);
    s3.close();
  },
});

test('S3 store: a multipart upload its writer abandoned (a killed api) is listed, and delete() aborts it', async (t) => {
  if (!(await requireServices(t, ['s3']))) return;
  const store = new S3BlobStore({ ...services.s3, prefix: `${uniqueName('abandoned')}/` });
  t.after(() => store.close());
  const key = stagingKey(randomUUID(), 1, 'upload');
  const objectKey = `${store.settings.prefix}${key}`;
  const { UploadId } = await store.client.send(new CreateMultipartUploadCommand({ Bucket: services.s3.bucket, Key: objectKey }));
  await store.client.send(new UploadPartCommand({ Bucket: services.s3.bucket, Key: objectKey, UploadId, PartNumber: 1, Body: randomBytes(5 * 1024 * 1024) }));
  const listed = await store.list('staging/');
  assert.deepEqual(listed.map((b) => b.key), [key], 'the unfinished upload is listed');
  assert.ok(listed[0]!.modifiedAt > Date.now() - 10 * 60_000);
  assert.equal(await store.stat(key), null, 'it is not an object');
  await store.delete(key);
  assert.deepEqual(await store.list('staging/'), [], 'aborted');
});
