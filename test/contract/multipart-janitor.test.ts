/**
 * The store janitor aborts S3 multipart uploads no live image owns (workers/sweepers.ts
 * abortAbandonedUploads), on the local SeaweedFS: the leftover of a copy killed mid-way (even
 * when the retried copy completed under the same key), of an upload whose run is over, and of a
 * tus upload once it expired; never one younger than the age limit, one an import or a copy into
 * that store still owns, nor a tus upload while it is alive.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { ImageService } from '../../core/image-service.js';
import { StoreRegistry } from '../../core/store-registry.js';
import { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import type { ImageDoc } from '../../schemas/image.js';
import { Sweepers } from '../../workers/sweepers.js';
import { domain, silent } from '../unit/core/fixtures.js';
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';

const s3Up = (await serviceUp('s3')).up;
if (inCI && !s3Up) throw new Error('CI is set but S3 (SeaweedFS) is not running: bash infra/local/services.sh start s3');
const OWNER = { project_id: 'p', user_id: 'u', roles: ['member'] };
const HOUR = 3600_000;

describe('store janitor: abandoned S3 multipart uploads', { skip: s3Up ? false : 'S3 (SeaweedFS) is not running' }, () => {
  it('aborts those no live image owns once older than the limit; keeps owned and young ones and the completed objects', async () => {
    const d = await domain();
    const s3 = new S3BlobStore({ ...services.s3, prefix: `${uniqueName('mpjanitor').replace(/[^A-Za-z0-9]/g, '')}/s3/` });
    const stores = new StoreRegistry([
      { id: 'fast', description: 'f', blobs: d.blobs, properties: {} },
      { id: 's3', description: 's', blobs: s3, properties: {} },
    ], 'fast', true);
    const images = new ImageService(d.manifest, d.blobs, { stageDeadlineSeconds: 60, stores });
    const sweepers = new Sweepers(d.manifest, images, d.relay, d.blobs,
      { stageDeadlineSeconds: 60, uploadStallSeconds: 30, maxResumes: 1, outboxGraceMs: 0, multipartMaxAgeMs: HOUR }, silent);
    try {
      const image = async (change: (draft: ImageDoc) => void) => {
        const doc = await images.create(OWNER, { name: 'x', disk_format: 'raw', container_format: 'bare' });
        await d.manifest.update(doc.id, (draft) => { change(draft); return []; });
        return doc.id;
      };
      /** What a writer killed after its first part leaves: a multipart upload with one part. */
      const startUpload = async (key: string) => {
        const Key = s3.bucketKey(key);
        const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: services.s3.bucket, Key }));
        await s3.client.send(new UploadPartCommand({ Bucket: services.s3.bucket, Key, UploadId, PartNumber: 1, Body: randomBytes(1024) }));
        return UploadId!;
      };
      const active = (draft: ImageDoc) => Object.assign(draft, { status: 'active', size: 1024, os_hash_algo: 'sha512', os_hash_value: 'f'.repeat(128) });

      // A copy into s3 killed mid-way, retried, and completed under the same key: the object is
      // recorded, the first attempt's multipart upload is left beside it.
      const copied = await image((draft) => {
        active(draft);
        draft.stores = [{ store: 'fast', key: `images/${draft.id}`, at: draft.created_at }, { store: 's3', key: `images/${draft.id}`, at: draft.created_at }];
        draft.store_import = { importing: [], failed: [], must_succeed: true, copied: ['s3'] };
      });
      const leftover = await startUpload(`images/${copied}`);
      await s3.write(`images/${copied}`, Readable.from([randomBytes(1024)]), { maxBytes: 1024 });
      // A copy into s3 still running: owned.
      const copying = await image((draft) => { active(draft); draft.store_import = { importing: ['s3'], failed: [], must_succeed: true }; });
      await startUpload(`images/${copying}`);
      // A PUT whose api process died: the image went back to queued (no upload run), its multipart upload stayed.
      const abandoned = await image(() => {});
      await startUpload(`staging/${abandoned}.1.upload`);
      // A tus upload alive for another day, then past its expiry.
      const expires = new Date(Date.now() + 24 * HOUR).toISOString();
      const tus = await image((draft) => {
        draft.status = 'uploading';
        draft.upload = { run: 2, kind: 'upload', started_at: draft.created_at, resumable: { id: 'u1', length: 10 * 1024 * 1024, expires_at: expires } };
      });
      await startUpload(`staging/${tus}.2.upload`);
      // A tus upload's earlier run (a new run started after it): not owned.
      await startUpload(`staging/${tus}.1.upload`);

      const open = async () => (await s3.unfinishedWrites('')).map((w) => w.key).sort();
      assert.equal((await open()).length, 5);
      assert.equal(await sweepers.abortAbandonedUploads(Date.now()), 0, 'nothing younger than the limit');

      const inTwoHours = Date.now() + 2 * HOUR;
      assert.equal(await sweepers.abortAbandonedUploads(inTwoHours), 3);
      assert.deepEqual(await open(), [`images/${copying}`, `staging/${tus}.2.upload`].sort());
      assert.equal((await s3.stat(`images/${copied}`))?.size, 1024, 'the completed copy stays');
      assert.ok(!(await s3.unfinishedWrites(`images/${copied}`)).some((w) => w.uploadId === leftover));

      // Past the tus upload's expiry it is abandoned too; the running copy stays owned.
      assert.equal(await sweepers.abortAbandonedUploads(Date.parse(expires) + HOUR), 1);
      assert.deepEqual(await open(), [`images/${copying}`]);
      // Once the copy is no longer running, its upload goes as well.
      await d.manifest.update(copying, (draft) => { draft.store_import = { importing: [], failed: ['s3'], must_succeed: true }; return []; });
      assert.equal(await sweepers.abortAbandonedUploads(inTwoHours), 1);
      assert.deepEqual(await open(), []);
    } finally {
      for (const w of await s3.unfinishedWrites('')) await s3.abortUnfinishedWrite(w).catch(() => {});
      for (const blob of await s3.list('')) await s3.delete(blob.key).catch(() => {});
      s3.close();
      await d.close();
    }
  });
});
