/**
 * The two tus stagings (a local file; an S3 multipart upload on the local SeaweedFS) behave alike:
 * PATCH-sized appends across part boundaries, a cut append keeps what it took, a checksummed
 * append that fails keeps nothing, another instance (another API process) resumes with the
 * hash state of the staged bytes, and the finished key holds exactly the bytes with the same
 * digests. The upload leases in Redis: one holder, released, taken over after expiry.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { removeStaging } from '../../core/blob-keys.js';
import type { BlobStore } from '../../core/ports.js';
import { rebuildStats, type UploadDigests } from '../../ingest/tus/digests.js';
import { S3TusStaging, S3_MIN_PART_BYTES } from '../../ingest/tus/s3-staging.js';
import { FileTusStaging, type TusStaging } from '../../ingest/tus/staging.js';
import { RedisLeases } from '../../ingest/tus/upload-leases.js';
import { FsBlobStore } from '../../infra/storage/fs-blob-store.js';
import { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';
import { tcpForwarder } from '../support/tcp-forwarder.js';

const MiB = 1024 * 1024;
const s3Up = (await serviceUp('s3')).up;
const redisUp = (await serviceUp('redis')).up;
if (inCI && (!s3Up || !redisUp)) throw new Error('CI is set but S3 or Redis is not running: bash infra/local/services.sh start');

async function* chunksOf(data: Buffer, size = 64 * 1024, failAfter?: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) {
    if (failAfter !== undefined && at >= failAfter) throw new Error('connection cut');
    yield data.subarray(at, Math.min(data.length, at + size));
  }
}

const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

async function readAll(blobs: BlobStore, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of await blobs.read(key)) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

interface Subject {
  blobs: BlobStore;
  /** A fresh staging instance: what another API process would have. */
  staging(): TusStaging;
  /** Bytes a restore reads back (the file rebuilds from them; S3 loads a saved state). */
  readsBack: boolean;
}

function stagingContract(name: string, open: () => Promise<Subject>, skip: string | false, close: () => Promise<void>) {
  describe(`tus staging: ${name}`, { skip }, () => {
    after(close);

    it('appends PATCH-sized pieces across part boundaries; another instance resumes; the finished key holds the bytes', async () => {
      const { blobs, staging, readsBack } = await open();
      const id = `img-${randomBytes(6).toString('hex')}`;
      const data = randomBytes(2 * S3_MIN_PART_BYTES + 3 * MiB + 777);
      const first = staging();
      await first.create(id, 1, data.length);
      assert.equal(await first.offset(id, 1), 0);
      let digests: UploadDigests = await first.newDigests();
      // Cuts: inside the first part, exactly on a part boundary, inside the third (last) part.
      const cuts = [3 * MiB + 1, S3_MIN_PART_BYTES, 2 * S3_MIN_PART_BYTES + 12345, data.length];
      let offset = 0;
      for (const [i, end] of cuts.entries()) {
        // Every other PATCH lands on a new instance, which restores the hash state from the staging.
        const instance = i % 2 === 0 ? first : staging();
        if (i % 2 === 1) {
          const before = { ...rebuildStats };
          digests = await instance.restoreDigests(id, 1, offset);
          assert.equal(rebuildStats.uploads - before.uploads, 1);
          assert.equal(rebuildStats.bytes - before.bytes, readsBack ? offset : 0);
        }
        offset = await instance.append(id, 1, offset, chunksOf(data.subarray(offset, end), 100_003), digests);
        assert.equal(offset, end);
        assert.equal(await staging().offset(id, 1), end, 'another instance sees the same offset');
      }
      const key = await staging().finish(id, 1);
      assert.deepEqual(digests.digest(), { md5: md5(data), sha512: sha512(data) });
      const stored = await readAll(blobs, key);
      assert.equal(stored.length, data.length);
      assert.equal(sha512(stored), sha512(data));
      // Only the finished object is left under the image's staging prefix (S3: and the commit
      // object, which goes with the staging).
      assert.deepEqual((await blobs.list(`staging/${id}.`)).map((b) => b.key).filter((k) => k !== `${key}.tus`), [key]);
      await removeStaging(blobs, id);
      assert.deepEqual(await blobs.list(`staging/${id}.`), []);
    });

    it('a finish run again (its process died before the catalog recorded it) still has the length and hash state, and completes nothing twice', async () => {
      const { blobs, staging } = await open();
      const id = `img-${randomBytes(6).toString('hex')}`;
      const data = randomBytes(S3_MIN_PART_BYTES + 2 * MiB + 5);
      const first = staging();
      await first.create(id, 5, data.length);
      await first.append(id, 5, 0, chunksOf(data), await first.newDigests());
      const key = await first.finish(id, 5);
      // What a HEAD on another API process does to complete an upload found fully staged.
      const other = staging();
      assert.equal(await other.offset(id, 5), data.length);
      const digests = await other.restoreDigests(id, 5, data.length);
      assert.deepEqual(digests.digest(), { md5: md5(data), sha512: sha512(data) });
      assert.equal(await other.finish(id, 5), key);
      assert.equal(sha512(await readAll(blobs, key)), sha512(data));
      await removeStaging(blobs, id);
      assert.deepEqual(await blobs.list(`staging/${id}.`), []);
    });

    it('a cut append keeps the bytes it took; a checksummed append that fails keeps none', async () => {
      const { blobs, staging } = await open();
      const id = `img-${randomBytes(6).toString('hex')}`;
      const data = randomBytes(2 * S3_MIN_PART_BYTES + 2 * MiB);
      const one = staging();
      await one.create(id, 2, data.length);
      const digests = await one.newDigests();
      // Cut after 6 MiB: the first full part went in, the rest is kept as the tail.
      await assert.rejects(one.append(id, 2, 0, chunksOf(data, MiB, 6 * MiB), digests), /connection cut/);
      assert.equal(await staging().offset(id, 2), 6 * MiB);
      assert.equal(digests.offset, 6 * MiB);
      // A checksummed PATCH of damaged bytes whose check fails after taking them all (on S3, after
      // uploading part 2 of them): nothing of it is kept, and its part is not the one finished.
      const snapshot = await digests.snapshot();
      const damaged = Buffer.from(data.subarray(6 * MiB));
      damaged.fill(0xee, 0, MiB);
      await assert.rejects(one.append(id, 2, 6 * MiB, chunksOf(damaged), digests, { verify: () => { throw new Error('checksum mismatch'); } }), /checksum mismatch/);
      assert.equal(await staging().offset(id, 2), 6 * MiB, 'back at the offset before the PATCH');
      // Resumed elsewhere with the copy taken before; a tail that is not cut on a part boundary.
      const other = staging();
      const end = await other.append(id, 2, 6 * MiB, chunksOf(data.subarray(6 * MiB), 333_333), snapshot, { verify: () => {} });
      assert.equal(end, data.length);
      const key = await other.finish(id, 2);
      assert.equal(snapshot.digest().sha512, sha512(data));
      assert.equal(sha512(await readAll(blobs, key)), sha512(data));
      await removeStaging(blobs, id);
    });

    it('a checksummed append whose process died mid-body counts none of its bytes; the next append replaces them', async () => {
      const { blobs, staging } = await open();
      const id = `img-${randomBytes(6).toString('hex')}`;
      const data = randomBytes(S3_MIN_PART_BYTES + 3 * MiB);
      const one = staging();
      await one.create(id, 5, data.length);
      const digests = await one.newDigests();
      assert.equal(await one.append(id, 5, 0, chunksOf(data.subarray(0, MiB)), digests), MiB);
      // The "dead" PATCH: it hands over more than a part of damaged bytes, then never ends (its
      // process is gone; nothing of it runs again until the test lets it fail at the end).
      let wake: (reason: Error) => void = () => {};
      const asleep = new Promise<never>((_resolve, reject) => { wake = reject; });
      const damaged = Buffer.alloc(S3_MIN_PART_BYTES + MiB, 0xee);
      let taken = 0;
      async function* dying(): AsyncGenerator<Uint8Array> {
        for await (const chunk of chunksOf(damaged)) {
          taken += chunk.length;
          yield chunk;
        }
        await asleep;
      }
      const dead = one.append(id, 5, MiB, dying(), digests, { verify: () => {} }).catch((error: Error) => error);
      while (taken < damaged.length) await new Promise((resolve) => setTimeout(resolve, 20));
      await new Promise((resolve) => setTimeout(resolve, 200)); // its writes land
      // Another process: the unverified bytes are not counted, and its append starts where they began.
      const other = staging();
      assert.equal(await other.offset(id, 5), MiB, 'the dead PATCH\'s bytes are not counted');
      const restored = await other.restoreDigests(id, 5, MiB);
      assert.equal(restored.offset, MiB);
      const end = await other.append(id, 5, MiB, chunksOf(data.subarray(MiB), 333_333), restored, { verify: () => {} });
      assert.equal(end, data.length);
      assert.equal(await staging().offset(id, 5), data.length);
      const key = await other.finish(id, 5);
      assert.equal(sha512(await readAll(blobs, key)), sha512(data), 'the finished bytes are the verified ones');
      assert.equal(restored.digest().sha512, sha512(data));
      await removeStaging(blobs, id);
      wake(new Error('the dead process is gone'));
      await dead;
    });

    it('an abandoned upload is removed with the image\'s staging (S3: the multipart upload is aborted)', async () => {
      const { blobs, staging } = await open();
      const id = `img-${randomBytes(6).toString('hex')}`;
      const data = randomBytes(S3_MIN_PART_BYTES + MiB);
      const one = staging();
      await one.create(id, 3, data.length);
      await one.append(id, 3, 0, chunksOf(data.subarray(0, S3_MIN_PART_BYTES + 10)), await one.newDigests());
      assert.ok((await blobs.list(`staging/${id}.`)).length > 0);
      await removeStaging(blobs, id);
      assert.deepEqual(await blobs.list(`staging/${id}.`), [], 'nothing left, unfinished multipart uploads included');
      assert.equal(await staging().offset(id, 3), null);
    });

    it('an empty upload finishes as an empty object', async () => {
      const { blobs, staging } = await open();
      const id = `img-${randomBytes(6).toString('hex')}`;
      const one = staging();
      await one.create(id, 4, 0);
      const key = await one.finish(id, 4);
      assert.equal((await blobs.stat(key))?.size, 0);
      await removeStaging(blobs, id);
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'pir-contract-tus-'));
let fs: FsBlobStore | null = null;
stagingContract('file', async () => {
  if (!fs) {
    fs = new FsBlobStore(dir);
    await fs.init();
  }
  const blobs = fs;
  return { blobs, staging: () => new FileTusStaging(blobs), readsBack: true };
}, false, async () => rmSync(dir, { recursive: true, force: true }));

const prefix = `${uniqueName('tus-staging')}/`;
let s3: S3BlobStore | null = null;
stagingContract('S3 multipart (SeaweedFS)', async () => {
  s3 ??= new S3BlobStore({ ...services.s3, prefix });
  const blobs = s3;
  // The smallest part S3 allows, so a few MiB cross part boundaries.
  return { blobs, staging: () => new S3TusStaging(blobs, () => S3_MIN_PART_BYTES), readsBack: false };
}, s3Up ? false : 'S3 (SeaweedFS) is not running', async () => {
  if (!s3) return;
  for (const blob of await s3.list('')) await s3.delete(blob.key).catch(() => {});
  s3.close();
});

describe('tus staging: S3, a part upload that fails', { skip: s3Up ? false : 'S3 (SeaweedFS) is not running' }, () => {
  it('keeps the parts before it and every byte after it (a tail of several parts), and the next append sends them on', async () => {
    const blobs = new S3BlobStore({ ...services.s3, prefix: `${uniqueName('tus-failing-part')}/` });
    after(async () => {
      for (const blob of await blobs.list('')) await blobs.delete(blob.key).catch(() => {});
      blobs.close();
    });
    /** S3 refuses the 2nd part uploaded (once), while later parts may already be on their way. */
    class FailingOnce extends S3TusStaging {
      uploads = 0;
      protected override async uploadPart(imageId: string, run: number, uploadId: string, partNumber: number, body: Buffer): Promise<void> {
        this.uploads += 1;
        if (this.uploads === 2) throw new Error('S3 refused the part');
        return super.uploadPart(imageId, run, uploadId, partNumber, body);
      }
    }
    const id = `img-${randomBytes(6).toString('hex')}`;
    const data = randomBytes(5 * S3_MIN_PART_BYTES + MiB);
    const failing = new FailingOnce(blobs, () => S3_MIN_PART_BYTES);
    await failing.create(id, 1, data.length);
    const digests = await failing.newDigests();
    const taken = 4 * S3_MIN_PART_BYTES + 12345;
    await assert.rejects(failing.append(id, 1, 0, chunksOf(data.subarray(0, taken), 200_000), digests), /S3 refused the part/);
    // Part 1 is in; whatever came after it (the refused part, the next, the partial one) is the tail.
    const offset = await new S3TusStaging(blobs, () => S3_MIN_PART_BYTES).offset(id, 1);
    assert.ok(offset !== null && offset >= S3_MIN_PART_BYTES && offset <= taken, `offset ${offset}`);
    // Another process goes on from the committed offset with the saved hash state.
    const other = new S3TusStaging(blobs, () => S3_MIN_PART_BYTES);
    const restored = await other.restoreDigests(id, 1, offset!);
    assert.equal(await other.append(id, 1, offset!, chunksOf(data.subarray(offset!)), restored), data.length);
    const key = await other.finish(id, 1);
    assert.equal(restored.digest().sha512, sha512(data));
    assert.equal(sha512(await readAll(blobs, key)), sha512(data));
  });
});

describe('tus staging: S3 that stops answering mid-append', { skip: s3Up ? false : 'S3 (SeaweedFS) is not running' }, () => {
  it('fails the append once its part times out, without waiting out a tail commit too; what was committed stays', async () => {
    const target = new URL(services.s3.endpoint);
    const forwarder = await tcpForwarder({ host: target.hostname, port: Number(target.port) }, { open: true });
    const blobs = new S3BlobStore({ ...services.s3, endpoint: `http://127.0.0.1:${forwarder.port}`, prefix: `${uniqueName('tus-stalled')}/`, timeoutMs: 1000 });
    let stalled = false;
    let writesWhileStalled = 0;
    blobs.client.middlewareStack.add((next, context) => async (args) => {
      if (stalled && context.commandName === 'PutObjectCommand') writesWhileStalled += 1;
      return next(args);
    }, { step: 'initialize', name: 'countStalledCommits' });
    after(async () => {
      forwarder.open();
      const direct = new S3BlobStore({ ...services.s3, prefix: blobs.settings.prefix });
      for (const blob of await direct.list('')) await direct.delete(blob.key).catch(() => {});
      direct.close();
      blobs.close();
      await forwarder.close();
    });
    const staging = new S3TusStaging(blobs, () => S3_MIN_PART_BYTES);
    const id = `img-${randomBytes(6).toString('hex')}`;
    const data = randomBytes(3 * S3_MIN_PART_BYTES);
    await staging.create(id, 1, data.length);
    const digests = await staging.newDigests();
    async function* stallAfterFirstPart(): AsyncGenerator<Uint8Array> {
      for await (const chunk of chunksOf(data, 256 * 1024)) {
        yield chunk;
        if (!stalled && (chunk.byteOffset + chunk.byteLength) >= S3_MIN_PART_BYTES + MiB) {
          // The first part has had time to go in; the store then stops answering.
          await new Promise((r) => setTimeout(r, 500));
          forwarder.stall();
          stalled = true;
        }
      }
    }
    await assert.rejects(staging.append(id, 1, 0, stallAfterFirstPart(), digests), (e: Error) => e.name === 'BlobStoreUnavailableError');
    assert.equal(writesWhileStalled, 0, 'no tail commit was tried against a store that had stopped answering');
    forwarder.open();
    const direct = new S3BlobStore({ ...services.s3, prefix: blobs.settings.prefix });
    const offset = await new S3TusStaging(direct, () => S3_MIN_PART_BYTES).offset(id, 1).finally(() => direct.close());
    assert.ok(offset === 0 || offset === S3_MIN_PART_BYTES, `offset ${offset}: the committed parts, nothing else`);
  });
});

describe('tus upload leases in Redis', { skip: redisUp ? false : 'Redis is not running' }, () => {
  const redis = redisUp ? new Redis(services.redisUrl) : null;
  after(() => redis?.disconnect());
  const leasePrefix = uniqueName('tus-lease');

  it('has one holder at a time; released, it can be taken again', async () => {
    const a = new RedisLeases(redis!, { prefix: leasePrefix, ttlMs: 5_000 });
    const b = new RedisLeases(redis!, { prefix: leasePrefix, ttlMs: 5_000 });
    const held = await a.acquire('img.1');
    assert.ok(held);
    assert.equal(await b.acquire('img.1'), null, 'the second process is refused');
    assert.ok(await b.acquire('img.2'), 'another upload is free');
    await held.release();
    const again = await b.acquire('img.1');
    assert.ok(again);
    await again.release();
  });

  it('is renewed while held, and expires when its holder stops renewing (a killed process)', async () => {
    const ttlMs = 300;
    const leases = new RedisLeases(redis!, { prefix: leasePrefix, ttlMs });
    const held = await leases.acquire('img.3');
    assert.ok(held);
    await new Promise((r) => setTimeout(r, ttlMs * 3));
    assert.equal(await leases.acquire('img.3'), null, 'still held: renewed');
    assert.equal(held.signal.aborted, false);
    // A holder that died: its key is left to expire (no renewal, no release).
    const key = `${leasePrefix}:tus-lease:img.4`;
    await redis!.set(key, 'dead-holder', 'PX', ttlMs);
    assert.equal(await leases.acquire('img.4'), null);
    await new Promise((r) => setTimeout(r, ttlMs + 100));
    const taken = await leases.acquire('img.4');
    assert.ok(taken, 'taken over once expired');
    // The lost holder learns it at its next renewal: its signal aborts, so it stops writing.
    await redis!.set(`${leasePrefix}:tus-lease:img.3`, 'someone-else', 'PX', 10_000);
    await new Promise((r) => setTimeout(r, ttlMs));
    assert.equal(held.signal.aborted, true);
    await held.release();
    assert.equal(await redis!.get(`${leasePrefix}:tus-lease:img.3`), 'someone-else', 'a lost holder does not release the new holder\'s lease');
    await taken.release();
  });
});
