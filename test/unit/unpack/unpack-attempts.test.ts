/**
 * Two attempts of one run's unpack (a job taken over after its worker froze past the lock, then
 * the frozen one waking up): each writes its own disk, and the one that fails removes only its
 * own. They shared a key, and on S3, where the promoted staging key is the stored image, a stale
 * attempt's clean-up deleted an active image's bytes.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gzipSync } from 'node:zlib';
import { after, before, it } from 'node:test';
import { stagingKey } from '../../../core/blob-keys.js';
import { FsBlobStore } from '../../../infra/storage/fs-blob-store.js';
import type { ImageDoc } from '../../../schemas/image.js';
import { ChainReaders } from '../../../workers/chain-readers.js';
import { unpackStage } from '../../../workers/stages/unpack.stage.js';
import { makeDoc } from '../../contract/helpers.js';
import { makeTempDir, removeDir } from '../../support/images.js';

let dir: string;
let blobs: FsBlobStore;
before(async () => {
  dir = await makeTempDir('pir-unpack-attempts-');
  blobs = new FsBlobStore(dir);
  await blobs.init();
});
after(async () => { await removeDir(dir); });

const context = () => ({ attempt: 1, maxAttempts: 5, reportProgress: async () => {}, readers: new ChainReaders(blobs) });

it('each attempt writes its own disk; a failing attempt discards only its own, never the one recorded', async () => {
  const id = randomUUID();
  const disk = randomBytes(512 * 1024);
  const gz = gzipSync(disk);
  const upload = stagingKey(id, 1, 'upload');
  const staged = await blobs.write(upload, Readable.from([gz]), { maxBytes: gz.length });
  const doc = makeDoc({ id, status: 'importing', disk_format: 'raw', container_format: 'bare', staging: { key: upload, ...staged, received_at: new Date().toISOString() }, pipeline: { run: 1 } as ImageDoc['pipeline'] });
  const work = unpackStage(blobs, { maxOutputBytes: 2 ** 30, maxRatio: 1000 });

  const first = structuredClone(doc);
  (await work(doc, context()))(first);
  const second = structuredClone(doc);
  (await work(doc, context()))(second);
  const [a, b] = [first.pipeline!.unpacked!.key, second.pipeline!.unpacked!.key];
  assert.notEqual(a, b, 'two attempts, two keys');
  assert.match(a, new RegExp(`^staging/${id}\\.1\\.unpacked-[0-9a-f]{12}$`));

  // A third attempt finds the staged bytes cut short: it fails mid-unpack and cleans up after itself.
  const cut = gz.subarray(0, gz.length >> 1);
  const restaged = await blobs.write(upload, Readable.from([cut]), { maxBytes: cut.length });
  await assert.rejects(work({ ...doc, staging: { key: upload, ...restaged, received_at: new Date().toISOString() } }, context()));
  for (const key of [a, b]) assert.deepEqual(await buffer(await blobs.read(key)), disk, `${key} is whole`);
});
