/** The BlobStore contract: the filesystem and the S3 adapter pass the same suite. */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { imageKey, removeImageBytes, removeStaging, stagingKey } from '../../core/blob-keys.js';
import { BlobNotFoundError, type BlobStore } from '../../core/ports.js';
import { SizeLimitError, SourceIdleError } from '../../ingest/hashing/index.js';
import { requireServices, type ServiceName } from '../support/services.js';

export interface BlobContractOptions {
  services?: ServiceName[];
  teardown?: () => Promise<void>;
  /** Whether promote() keeps the staged key as the stored one (object stores) or places the bytes at `images/<id>` too (filesystem). */
  promotesInPlace: boolean;
}

const MiB = 1024 * 1024;

function digests(bytes: Buffer) {
  return { size: bytes.length, md5: createHash('md5').update(bytes).digest('hex'), sha512: createHash('sha512').update(bytes).digest('hex') };
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** `total` bytes in chunks of one random MiB repeated (no whole buffer held for big sizes). */
const BLOCK = randomBytes(MiB);
async function* pattern(total: number, chunk = MiB): AsyncGenerator<Uint8Array> {
  const block = BLOCK;
  for (let sent = 0; sent < total; sent += chunk) yield block.subarray(0, Math.min(chunk, total - sent));
}

export function blobStoreContract(name: string, makeStore: () => Promise<BlobStore>, opts: BlobContractOptions): void {
  test(`BlobStore contract: ${name}`, { timeout: 300_000 }, async (t) => {
    if (!(await requireServices(t, opts.services ?? []))) return;
    const blobs = await makeStore();
    t.after(async () => { await opts.teardown?.(); });
    const id = () => randomUUID();

    await t.test('ping answers', async () => {
      await blobs.ping();
    });

    await t.test('write streams under a key and returns size, md5 and sha512 of exactly those bytes; read gives them back', async () => {
      const bytes = randomBytes(3 * MiB + 12345);
      const key = stagingKey(id(), 1, 'upload');
      const written = await blobs.write(key, Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]), { maxBytes: 10 * MiB });
      assert.deepEqual(written, digests(bytes));
      assert.ok((await collect(await blobs.read(key))).equals(bytes));
      const info = await blobs.stat(key);
      assert.equal(info?.key, key);
      assert.equal(info?.size, bytes.length);
      assert.ok(info!.modifiedAt > Date.now() - 10 * 60_000 && info!.modifiedAt < Date.now() + 60_000, 'modifiedAt is about now');
    });

    await t.test('an empty source stores an empty blob', async () => {
      const key = stagingKey(id(), 1, 'upload');
      assert.deepEqual(await blobs.write(key, Readable.from([]), { maxBytes: 10 }), digests(Buffer.alloc(0)));
      assert.equal((await blobs.stat(key))?.size, 0);
      assert.equal((await collect(await blobs.read(key))).length, 0);
    });

    await t.test('a big write streams as several parts (more than one multipart part on S3)', async () => {
      const key = stagingKey(id(), 1, 'upload');
      const total = 40 * MiB + 7;
      const md5 = createHash('md5');
      for await (const c of pattern(total)) md5.update(c);
      const written = await blobs.write(key, pattern(total), { maxBytes: total });
      assert.equal(written.size, total);
      assert.equal(written.md5, md5.digest('hex'));
      assert.equal((await blobs.stat(key))?.size, total);
    });

    await t.test('reads inclusive ranges, and bounded random access through openReader', async () => {
      const bytes = randomBytes(2 * MiB);
      const key = stagingKey(id(), 1, 'unpacked');
      await blobs.write(key, Readable.from([bytes]), { maxBytes: bytes.length });
      assert.ok((await collect(await blobs.read(key, { start: 0, end: 0 }))).equals(bytes.subarray(0, 1)));
      assert.ok((await collect(await blobs.read(key, { start: 1000, end: 1_500_000 }))).equals(bytes.subarray(1000, 1_500_001)));
      assert.ok((await collect(await blobs.read(key, { start: bytes.length - 5, end: bytes.length - 1 }))).equals(bytes.subarray(-5)));
      const reader = await blobs.openReader(key);
      try {
        assert.equal(reader.size, bytes.length);
        assert.ok((await reader.read(0, 512)).equals(bytes.subarray(0, 512)));
        assert.ok((await reader.read(300_000, 70_000)).equals(bytes.subarray(300_000, 370_000)), 'a read across a block edge');
        assert.ok((await reader.read(100, 1_200_000)).equals(bytes.subarray(100, 1_200_100)), 'a large read');
        assert.ok((await reader.read(bytes.length - 10, 100)).equals(bytes.subarray(-10)), 'short at the end');
        assert.equal((await reader.read(bytes.length + 5, 10)).length, 0, 'nothing past the end');
      } finally {
        await reader.close();
      }
    });

    await t.test('over maxBytes: SizeLimitError and nothing under the key', async () => {
      const key = stagingKey(id(), 1, 'upload');
      await assert.rejects(blobs.write(key, pattern(8 * MiB), { maxBytes: 5 * MiB }), SizeLimitError);
      assert.equal(await blobs.stat(key), null);
    });

    await t.test('a source that fails or goes idle leaves nothing under the key', async () => {
      const key = stagingKey(id(), 1, 'upload');
      async function* broken(): AsyncGenerator<Uint8Array> {
        yield randomBytes(MiB);
        throw new Error('client went away');
      }
      await assert.rejects(blobs.write(key, broken(), { maxBytes: 10 * MiB }), /client went away/);
      assert.equal(await blobs.stat(key), null);
      async function* stalls(): AsyncGenerator<Uint8Array> {
        yield randomBytes(1000);
        await new Promise((r) => setTimeout(r, 2000));
        yield randomBytes(1000);
      }
      await assert.rejects(blobs.write(key, stalls(), { maxBytes: 10 * MiB, idleMs: 200 }), SourceIdleError);
      assert.equal(await blobs.stat(key), null);
    });

    await t.test('write overwrites what a crashed attempt left under the key', async () => {
      const key = stagingKey(id(), 2, 'unpacked');
      await blobs.write(key, Readable.from([Buffer.from('left over by a crash')]), { maxBytes: 100 });
      const written = await blobs.write(key, Readable.from([Buffer.from('new')]), { maxBytes: 100 });
      assert.equal(written.size, 3);
      assert.equal((await collect(await blobs.read(key))).toString(), 'new');
    });

    await t.test('sparse writes keep every byte (zeros included)', async () => {
      const key = stagingKey(id(), 1, 'unpacked');
      const bytes = Buffer.concat([randomBytes(1000), Buffer.alloc(3 * MiB), randomBytes(10), Buffer.alloc(MiB)]);
      const written = await blobs.write(key, Readable.from([bytes]), { maxBytes: bytes.length, sparse: true });
      assert.deepEqual(written, digests(bytes));
      assert.ok((await collect(await blobs.read(key))).equals(bytes));
    });

    await t.test('a missing key: stat null, read and openReader reject with BlobNotFoundError, delete is quiet', async () => {
      const key = stagingKey(id(), 1, 'upload');
      assert.equal(await blobs.stat(key), null);
      await assert.rejects(blobs.read(key), BlobNotFoundError);
      await assert.rejects(blobs.openReader(key), BlobNotFoundError);
      await blobs.delete(key);
    });

    await t.test('list finds keys by prefix; delete removes one', async () => {
      const a = id();
      const b = id();
      const keys = [stagingKey(a, 1, 'upload'), stagingKey(a, 1, 'unpacked'), stagingKey(b, 1, 'upload')];
      for (const key of keys) await blobs.write(key, Readable.from([Buffer.from(key)]), { maxBytes: 1000 });
      const ofA = (await blobs.list(`staging/${a}.`)).map((i) => i.key).sort();
      assert.deepEqual(ofA, keys.slice(0, 2).sort());
      const all = (await blobs.list('staging/')).map((i) => i.key);
      for (const key of keys) assert.ok(all.includes(key));
      assert.equal((await blobs.list('staging/')).find((i) => i.key === keys[2])?.size, keys[2]!.length);
      await blobs.delete(keys[0]!);
      assert.deepEqual((await blobs.list(`staging/${a}.`)).map((i) => i.key), [keys[1]]);
    });

    await t.test('promote makes the staged bytes the stored ones, without a second copy where the store can', async () => {
      const imageId = id();
      const staged = stagingKey(imageId, 1, 'unpacked');
      const bytes = randomBytes(MiB);
      await blobs.write(staged, Readable.from([bytes]), { maxBytes: MiB });
      const stored = await blobs.promote(staged, imageId);
      if (opts.promotesInPlace) {
        assert.equal(stored, staged, 'an object store keeps the staged key');
      } else {
        assert.equal(stored, imageKey(imageId));
      }
      assert.ok((await collect(await blobs.read(stored))).equals(bytes));
      // Never destructive: the staged key reads the same bytes until activation removes it, and
      // promoting it again (a pipeline run again after its process died) is a no-op.
      assert.ok((await collect(await blobs.read(staged))).equals(bytes), 'the staged bytes stay in place');
      assert.equal(await blobs.promote(staged, imageId), stored);
      assert.ok((await collect(await blobs.read(stored))).equals(bytes));
      assert.deepEqual((await blobs.list(`images/${imageId}`)).map((i) => i.key), opts.promotesInPlace ? [] : [stored]);
      await assert.rejects(blobs.promote(stagingKey(imageId, 9, 'unpacked'), imageId), BlobNotFoundError, 'promoting a missing key fails as not found');
      // Removing the image's staging while keeping the stored key (an object store's case).
      await blobs.write(stagingKey(imageId, 1, 'upload'), Readable.from([Buffer.from('artifact')]), { maxBytes: 100 });
      await removeStaging(blobs, imageId, stored);
      assert.equal(await blobs.stat(stagingKey(imageId, 1, 'upload')), null);
      assert.equal((await blobs.stat(stored))?.size, MiB);
      await removeImageBytes(blobs, imageId);
      assert.equal(await blobs.stat(stored), null);
    });

    await t.test('localFile gives a real file with the bytes; release cleans up what it made', async () => {
      const key = stagingKey(id(), 1, 'upload');
      const bytes = randomBytes(100_000);
      await blobs.write(key, Readable.from([bytes]), { maxBytes: bytes.length });
      const local = await blobs.localFile(key);
      assert.ok((await readFile(local.path)).equals(bytes));
      await local.release();
      assert.ok((await blobs.stat(key)) !== null, 'the blob itself stays');
      await assert.rejects(blobs.localFile(stagingKey(id(), 1, 'upload')), BlobNotFoundError);
    });

    await t.test('keys that could escape their place are refused', async () => {
      for (const key of ['../etc/passwd', 'staging/../x', 'staging/', '/abs', 'staging//x']) {
        await assert.rejects(async () => blobs.write(key, Readable.from([Buffer.from('x')]), { maxBytes: 10 }), `refused ${key}`);
      }
      assert.throws(() => stagingKey('../x', 1, 'upload'));
    });
  });
}
