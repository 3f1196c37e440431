/** BlobStore contract against the filesystem adapter and the S3 adapter on the local SeaweedFS. */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { stagingKey } from '../../core/blob-keys.js';
import { BlobStoreUnavailableError } from '../../core/ports.js';
import { FsBlobStore } from '../../infra/storage/fs-blob-store.js';
import { PROBE_KEY, S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { countingProxy } from '../support/counting-proxy.js';
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
  // Small parts, so the 64 MiB write is a real multipart upload of several parts.
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

// Every shared part buffer in use (slow clients hold them): each part is filled in an ordinary
// buffer and copied into the hash pool's slots. The same contract holds.
const ordinaryPrefix = `${uniqueName('contract-ordinary')}/`;
let ordinary: S3BlobStore | null = null;
blobStoreContract('s3 (SeaweedFS), ordinary part buffers', async () => {
  ordinary = new S3BlobStore({ ...services.s3, prefix: ordinaryPrefix, partSize: 5 * 1024 * 1024, queueSize: 2, partBuffers: 0 });
  return ordinary;
}, {
  services: ['s3'],
  promotesInPlace: true,
  teardown: async () => {
    if (!ordinary) return;
    for (const blob of await ordinary.list('')) await ordinary.delete(blob.key);
    ordinary.close();
  },
});

test('filesystem store: a staging directory removed while PIR runs is made again by the next write', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'pir-staging-gone-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const store = new FsBlobStore(root);
  await store.init();
  const key = stagingKey(randomUUID(), 1, 'upload');
  rmSync(dirname(store.pathOf(key)), { recursive: true, force: true });
  const written = await store.write(key, Readable.from([Buffer.from('after the cleanup')]), { maxBytes: 100 });
  assert.equal(written.size, 17);
  assert.equal(Buffer.concat(await collect(await store.read(key))).toString(), 'after the cleanup');
});

test('filesystem store: promotion is a hard link that replaces stale bytes, and a copy where staging is on another filesystem', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'pir-promote-'));
  // /dev/shm: a tmpfs, another filesystem than the data directory's on Linux.
  const otherFs = mkdtempSync('/dev/shm/pir-staging-');
  t.after(() => { rmSync(root, { recursive: true, force: true }); rmSync(otherFs, { recursive: true, force: true }); });
  const readAll = async (store: FsBlobStore, key: string) => Buffer.concat(await collect(await store.read(key)));

  await t.test('the stored name is a second link to the staged file: no copy, and the staged bytes stay', async () => {
    const store = new FsBlobStore(root);
    await store.init();
    const imageId = randomUUID();
    const staged = stagingKey(imageId, 1, 'upload');
    await store.write(staged, Readable.from([Buffer.from('disk one')]), { maxBytes: 100 });
    const stored = await store.promote(staged, imageId);
    const [a, b] = [statSync(store.pathOf(staged)), statSync(store.pathOf(stored))];
    assert.equal(a.ino, b.ino, 'one file under two names');
    assert.equal(b.nlink, 2);
  });

  await t.test('stale bytes under the stored name (a run that died) are replaced by the new disk', async () => {
    const store = new FsBlobStore(root);
    await store.init();
    const imageId = randomUUID();
    await store.write(stagingKey(imageId, 1, 'unpacked'), Readable.from([Buffer.from('run one')]), { maxBytes: 100 });
    await store.promote(stagingKey(imageId, 1, 'unpacked'), imageId);
    // The unpacked disk is written again (a re-run), then promoted again.
    await store.write(stagingKey(imageId, 1, 'unpacked'), Readable.from([Buffer.from('run one, again')]), { maxBytes: 100 });
    const stored = await store.promote(stagingKey(imageId, 1, 'unpacked'), imageId);
    assert.equal((await readAll(store, stored)).toString(), 'run one, again');
    assert.deepEqual((await store.list(`images/${imageId}`)).map((b) => b.key), [stored], 'no temporary name left behind');
  });

  await t.test('staging on another filesystem: a durable copy, and the staged bytes stay', async () => {
    const store = new FsBlobStore(root, { stagingDir: otherFs });
    await store.init();
    const imageId = randomUUID();
    const staged = stagingKey(imageId, 1, 'upload');
    const bytes = randomBytes(300_000);
    await store.write(staged, Readable.from([bytes]), { maxBytes: bytes.length });
    const stored = await store.promote(staged, imageId);
    assert.ok((await readAll(store, stored)).equals(bytes));
    assert.ok((await readAll(store, staged)).equals(bytes));
    assert.notEqual(statSync(store.pathOf(staged)).dev, statSync(store.pathOf(stored)).dev);
    assert.equal(await store.promote(staged, imageId), stored, 'again: the copy is made again over the first');
    assert.ok((await readAll(store, stored)).equals(bytes));
    assert.deepEqual((await store.list(`images/${imageId}`)).map((b) => b.key), [stored]);
  });
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

test('S3 store: uploads from shared part buffers, hashed on the pool; failures leave no object and no unfinished upload', { timeout: 120_000 }, async (t) => {
  if (!(await requireServices(t, ['s3']))) return;
  const MiB = 1024 * 1024;
  const runPrefix = `${uniqueName('s3write')}/`;
  const store = new S3BlobStore({ ...services.s3, prefix: runPrefix, partSize: 5 * MiB, queueSize: 2 });
  const seen: { command: string; payload: string | undefined }[] = [];
  store.client.middlewareStack.add((next, context) => (args) => {
    const headers = (args.request as { headers?: Record<string, string> }).headers ?? {};
    seen.push({ command: context.commandName ?? '', payload: headers['x-amz-content-sha256'] });
    return next(args);
  }, { step: 'finalizeRequest', name: 'testSeeHeaders' });
  t.after(async () => {
    for (const blob of await store.list('')) await store.delete(blob.key);
    store.close();
  });
  const leftovers = async () => (await store.list('')).map((b) => b.key);

  await t.test('bodies go as UNSIGNED-PAYLOAD on loopback (no sha256 of every byte); a multipart write is hashed right', async () => {
    const bytes = randomBytes(12 * MiB + 5);
    const key = stagingKey(randomUUID(), 1, 'upload');
    async function* chunks() { for (let at = 0; at < bytes.length; at += 100_000) yield bytes.subarray(at, at + 100_000); }
    const written = await store.write(key, chunks(), { maxBytes: bytes.length });
    assert.equal(written.sha512, createHash('sha512').update(bytes).digest('hex'));
    assert.equal(written.md5, createHash('md5').update(bytes).digest('hex'));
    const parts = seen.filter((s) => s.command === 'UploadPartCommand');
    assert.equal(parts.length, 3, '12 MiB in 5 MiB parts');
    assert.ok(parts.every((p) => p.payload === 'UNSIGNED-PAYLOAD'), JSON.stringify(parts));
    assert.ok(seen.some((s) => s.command === 'CompleteMultipartUploadCommand'));
    assert.deepEqual(Buffer.compare(Buffer.concat(await collect(await store.read(key))), bytes), 0);
  });

  await t.test('with signPayload the body sha256 is signed, and the server accepts it', async () => {
    const signed = new S3BlobStore({ ...services.s3, prefix: runPrefix, signPayload: true });
    const headers: (string | undefined)[] = [];
    signed.client.middlewareStack.add((next) => (args) => {
      headers.push((args.request as { headers?: Record<string, string> }).headers?.['x-amz-content-sha256']);
      return next(args);
    }, { step: 'finalizeRequest', name: 'testSeeHeaders' });
    const bytes = Buffer.from('signed bytes');
    const key = stagingKey(randomUUID(), 1, 'upload');
    await signed.write(key, Readable.from([bytes]), { maxBytes: 100 });
    signed.close();
    assert.equal(headers[0], createHash('sha256').update(bytes).digest('hex'));
  });

  await t.test('ping (readiness) writes the probe object and reads it back, so a bucket that answers but stores nothing fails it', async () => {
    await store.ping();
    assert.ok(await store.stat(PROBE_KEY), 'the probe object is there');
    const before = seen.length;
    await store.ping();
    assert.deepEqual(seen.slice(before).map((s) => s.command), ['HeadBucketCommand', 'PutObjectCommand'], 'the bucket is there, then a write (the read back goes by the read client)');
    let refuse = true;
    store.client.middlewareStack.add((next, context) => (args) => {
      if (refuse && context.commandName === 'PutObjectCommand') throw Object.assign(new Error('We encountered an internal error'), { name: 'InternalError', $metadata: { httpStatusCode: 500 } });
      return next(args);
    }, { step: 'initialize', name: 'testRefusePuts' });
    await assert.rejects(store.ping(), /internal error/);
    refuse = false;
    await store.ping();
  });

  await t.test('a part the store fails: the write answers its BlobStoreUnavailableError without waiting for the abort of the multipart upload', async () => {
    const failing = new S3BlobStore({ ...services.s3, prefix: runPrefix, partSize: 5 * MiB, queueSize: 2 });
    let releaseAbort!: () => void;
    const abortHeld = new Promise<void>((resolve) => { releaseAbort = resolve; });
    failing.client.middlewareStack.add((next, context) => async (args) => {
      if (context.commandName === 'UploadPartCommand') throw Object.assign(new Error('Service Unavailable'), { name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } });
      if (context.commandName === 'AbortMultipartUploadCommand') await abortHeld; // a store that holds it for its timeouts
      return next(args);
    }, { step: 'initialize', name: 'testFailParts' });
    const key = stagingKey(randomUUID(), 1, 'upload');
    async function* chunks() { for (let i = 0; i < 12; i++) yield randomBytes(MiB); }
    const outcome = await Promise.race([
      failing.write(key, chunks(), { maxBytes: 100 * MiB }).then(() => 'stored', (e: Error) => e.name),
      new Promise<string>((resolve) => setTimeout(() => resolve('still waiting after 10 s'), 10_000)),
    ]);
    releaseAbort();
    assert.equal(outcome, 'BlobStoreUnavailableError');
    await new Promise((r) => setTimeout(r, 500)); // the abort, let go, finishes before the client closes
    failing.close();
  });

  await t.test('a source failing after several parts: its error, nothing stored, the multipart upload aborted', async () => {
    const before = await leftovers();
    const key = stagingKey(randomUUID(), 1, 'upload');
    async function* broken(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 12; i++) yield randomBytes(MiB);
      throw new Error('client went away');
    }
    await assert.rejects(store.write(key, broken(), { maxBytes: 100 * MiB }), /client went away/);
    assert.equal(await store.stat(key), null);
    assert.deepEqual(await leftovers(), before, 'no unfinished upload left under the key');
  });

  await t.test('an abort mid-upload rejects with its reason and leaves nothing', async () => {
    const before = await leftovers();
    const key = stagingKey(randomUUID(), 1, 'upload');
    const abort = new AbortController();
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (let i = 0; ; i++) {
        if (i === 11) abort.abort(new Error('client disconnected'));
        yield randomBytes(MiB);
      }
    }
    await assert.rejects(store.write(key, endless(), { maxBytes: 100 * MiB, signal: abort.signal }), /client disconnected/);
    assert.equal(await store.stat(key), null);
    assert.deepEqual(await leftovers(), before);
  });

  await t.test('the store refusing (bad credentials): BlobStoreUnavailableError, for one part and for many', async () => {
    const refused = new S3BlobStore({ ...services.s3, prefix: runPrefix, secretAccessKey: 'wrong-secret', partSize: 5 * MiB });
    t.after(() => refused.close());
    const key = stagingKey(randomUUID(), 1, 'upload');
    await assert.rejects(refused.write(key, Readable.from([Buffer.from('small')]), { maxBytes: 100 }), BlobStoreUnavailableError);
    async function* big(): AsyncGenerator<Uint8Array> { for (let i = 0; i < 20; i++) yield randomBytes(MiB); }
    await assert.rejects(refused.write(key, big(), { maxBytes: 100 * MiB }), BlobStoreUnavailableError);
    assert.equal(await store.stat(key), null);
  });
});

test('S3 store: reads go over undici (PIR_S3_READ_CLIENT), hold back when the reader does, and a reader that stops closes the request', { timeout: 120_000 }, async (t) => {
  if (!(await requireServices(t, ['s3']))) return;
  const MiB = 1024 * 1024;
  const runPrefix = `${uniqueName('s3read')}/`;
  const proxy = await countingProxy(new URL(services.s3.endpoint));
  // Through the proxy, which sees how much SeaweedFS sent and whether PIR hung up.
  const store = new S3BlobStore({ ...services.s3, endpoint: proxy.url, prefix: runPrefix });
  const viaNode = new S3BlobStore({ ...services.s3, endpoint: proxy.url, prefix: runPrefix, readClient: 'node' });
  t.after(async () => {
    for (const blob of await store.list('')) await store.delete(blob.key);
    store.close();
    viaNode.close();
    await proxy.close();
  });
  const bytes = randomBytes(64 * MiB);
  const key = stagingKey(randomUUID(), 1, 'upload');
  await store.write(key, Readable.from([bytes]), { maxBytes: bytes.length });

  await t.test('undici by default, node:http on request: the same bytes, whole and ranged', async () => {
    const body = await store.read(key);
    assert.ok(!(body instanceof IncomingMessage), 'not node:http');
    assert.equal(Buffer.compare(Buffer.concat(await collect(body)), bytes), 0);
    const nodeBody = await viaNode.read(key, { start: 5, end: 3 * MiB });
    assert.ok(nodeBody instanceof IncomingMessage);
    assert.equal(Buffer.compare(Buffer.concat(await collect(nodeBody)), bytes.subarray(5, 3 * MiB + 1)), 0);
    assert.equal(Buffer.compare(Buffer.concat(await collect(await store.read(key, { start: 5, end: 3 * MiB }))), bytes.subarray(5, 3 * MiB + 1)), 0);
  });

  await t.test('a reader that stops reading holds the object back (no buffering of the rest); destroying it closes the request', async () => {
    proxy.reset();
    const body = await store.read(key);
    await new Promise<void>((resolve) => body.once('readable', () => resolve()));
    // Nobody reads: what crosses is bounded by socket buffers and the stream's high-water mark.
    await sleep(1000);
    const sent = proxy.getBytes();
    // Loopback socket buffers alone may hold ~10 MiB (Linux autotuning); 17 MiB was seen under load.
    assert.ok(sent < 32 * MiB, `${(sent / MiB).toFixed(1)} MiB of 64 sent to a reader that is not reading`);
    body.destroy();
    const deadline = Date.now() + 5000;
    while (proxy.cutGets() === 0 && Date.now() < deadline) await sleep(50);
    assert.equal(proxy.cutGets(), 1, 'the GET was hung up before its end');
    assert.ok(proxy.getBytes() < 32 * MiB, `${(proxy.getBytes() / MiB).toFixed(1)} MiB of 64 read in all`);
    // The store still reads after the cut (the agent did not keep a broken connection).
    assert.equal(Buffer.compare(Buffer.concat(await collect(await store.read(key, { start: 0, end: 9 }))), bytes.subarray(0, 10)), 0);
  });
});

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of stream) out.push(c as Buffer);
  return out;
}
