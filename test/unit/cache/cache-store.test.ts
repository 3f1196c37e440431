/**
 * The cache store on its own, with a fake upstream: fills shared and verified, mismatching or
 * short data never delivered as complete, LRU eviction that spares entries being read, and an
 * index rebuilt (and re-verified) from disk.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import pino from 'pino';
import { CacheStore, DISK_HEADROOM, type Lookup } from '../../../cache/cache-store.js';
import type { FillTarget, UpstreamBody } from '../../../cache/fill.js';
import { GrowingFileReader } from '../../../cache/growing-file-reader.js';
import { makeTempDir, removeDir } from '../../support/images.js';

const log = pino({ level: 'silent' });
const sha512 = (data: Buffer) => createHash('sha512').update(data).digest('hex');

/** An upstream answer that sends `data` in chunks, waiting `delayMs` between them. */
function slowResponse(data: Buffer, chunk = 64 * 1024, delayMs = 2): UpstreamBody {
  async function* chunks() {
    for (let offset = 0; offset < data.length; offset += chunk) {
      await new Promise((r) => setTimeout(r, delayMs));
      yield data.subarray(offset, offset + chunk);
    }
  }
  return { status: 200, body: Readable.from(chunks()) };
}

function newStore(dir: string, maxSize: number, freeDisk?: () => Promise<number | null>) {
  const counts = { upstream: 0, evicted: [] as string[], corrupt: 0 };
  const store = new CacheStore(dir, maxSize, log, {
    evicted: (entry, reason) => counts.evicted.push(`${entry.imageId}:${reason}`),
    corrupt: () => { counts.corrupt += 1; },
    upstreamBytes: (n) => { counts.upstream += n; },
  }, freeDisk);
  return { store, counts };
}

/** Waits until the store lists the entry (it is recorded just after its fill resolves). */
async function recorded(store: CacheStore, id: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!store.list().entries.some((e) => e.imageId === id)) {
    if (Date.now() > deadline) throw new Error(`${id} never recorded`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** 1 MiB images of random bytes, named `<prefix><name>`. */
function mebiImages(prefix: string, names: string[]) {
  return names.map((name) => {
    const data = randomBytes(2 ** 20);
    return { data, target: { imageId: `${prefix}${name}`, size: data.length, algo: 'sha512', hash: sha512(data) } };
  });
}

/** Looks the image up and, when that starts or joins a fill, waits until it is an entry. */
async function cacheWhole(store: CacheStore, image: { data: Buffer; target: FillTarget }): Promise<Lookup | null> {
  const found = await store.lookup(image.target, async () => slowResponse(image.data, 2 ** 20, 0));
  if (found?.kind === 'fill') {
    await found.fill.done;
    await recorded(store, image.target.imageId);
  }
  return found;
}

const read = (found: Lookup, start = 0, end?: number) => {
  if (found.kind === 'hit') throw new Error('expected a fill');
  return buffer(new GrowingFileReader(found.fill, start, end ?? found.fill.target.size - 1));
};

describe('cache store', () => {
  let dir: string;
  before(async () => { dir = await makeTempDir('pir-cache-unit-'); });
  after(async () => { await removeDir(dir); });

  it('shares one fill among concurrent readers and serves the entry once verified', async () => {
    const { store, counts } = newStore(join(dir, 'shared'), 10 * 2 ** 20);
    await store.open();
    const data = randomBytes(2 * 2 ** 20 + 100);
    const target = { imageId: 'img-shared', size: data.length, algo: 'sha512', hash: sha512(data) };
    let fetches = 0;
    const fetchBody = async () => { fetches += 1; return slowResponse(data); };
    const lookups = await Promise.all(Array.from({ length: 5 }, () => store.lookup(target, fetchBody)));
    // One fill, started by whichever lookup got there first (each first awaits the disk's free space).
    assert.deepEqual(lookups.map((l) => l?.kind), ['fill', 'fill', 'fill', 'fill', 'fill']);
    assert.equal(lookups.filter((l) => l?.kind === 'fill' && l.started).length, 1);
    const bodies = await Promise.all(lookups.map((l) => read(l!)));
    for (const body of bodies) assert.ok(body.equals(data));
    assert.equal(fetches, 1);
    assert.equal(counts.upstream, data.length);
    await recorded(store, target.imageId);
    const hit = await store.lookup(target, fetchBody);
    assert.equal(hit?.kind, 'hit');
    assert.equal(fetches, 1);
  });

  it('never lets a reader finish on bytes that do not match os_hash_value, and keeps nothing', async () => {
    const cacheDir = join(dir, 'mismatch');
    const { store } = newStore(cacheDir, 10 * 2 ** 20);
    await store.open();
    const data = randomBytes(2 ** 20);
    const target = { imageId: 'img-bad', size: data.length, algo: 'sha512', hash: sha512(randomBytes(16)) };
    const found = await store.lookup(target, async () => slowResponse(data));
    assert.ok(found && found.kind === 'fill');
    // A joiner reading the whole image and one reading only the first bytes: both fail.
    const joiner = await store.lookup(target, async () => { throw new Error('second fetch'); });
    await assert.rejects(read(found), /hashes to sha512/);
    await assert.rejects(read(joiner!, 0, 99), /hashes to sha512/);
    assert.equal(store.list().entries.length, 0);
    assert.deepEqual(await readdir(join(cacheDir, 'tmp')), []);
    assert.deepEqual(await readdir(join(cacheDir, 'entries')), []);
  });

  it('holds back the last byte of a range read from a fill until the whole image verified', async () => {
    const { store } = newStore(join(dir, 'range-mismatch'), 10 * 2 ** 20);
    await store.open();
    const data = randomBytes(2 ** 20);
    const bad = { imageId: 'img-range-bad', size: data.length, algo: 'sha512', hash: sha512(randomBytes(16)) };
    // The range's bytes arrive long before the image's last: they must still not make a complete answer.
    const found = await store.lookup(bad, async () => slowResponse(data, 16 * 1024, 3));
    await assert.rejects(read(found!, 0, 999), /hashes to sha512/);
    const good = { imageId: 'img-range-good', size: data.length, algo: 'sha512', hash: sha512(data) };
    const fill = await store.lookup(good, async () => slowResponse(data, 16 * 1024, 3));
    assert.ok((await read(fill!, 10, 1009)).equals(data.subarray(10, 1010)));
  });

  it('evicts entries for room on a disk fuller than its size bound says, and passes through when it cannot', async () => {
    let free = 2 ** 30;
    const { store, counts } = newStore(join(dir, 'disk'), 100 * 2 ** 20, async () => free);
    await store.open();
    const images = mebiImages('img-disk-', ['a', 'b', 'c']);
    const cache = (i: number) => cacheWhole(store, images[i]);
    await cache(0);
    await cache(1);
    // Half a MiB short of the new image plus the headroom: the least recently used entry goes.
    free = DISK_HEADROOM + 2 ** 19;
    assert.equal((await cache(2))?.kind, 'fill');
    assert.deepEqual(counts.evicted, ['img-disk-a:lru']);
    // Every entry being read and the disk full: streamed from upstream, not cached.
    free = 0;
    const releases = store.list().entries.map((e) => store.claim(e));
    assert.equal(await store.lookup(images[0].target, async () => slowResponse(images[0].data)), null);
    for (const release of releases) release();
  });

  it('fails readers of a short upstream answer', async () => {
    const { store } = newStore(join(dir, 'short'), 10 * 2 ** 20);
    await store.open();
    const data = randomBytes(2 ** 20);
    const target = { imageId: 'img-short', size: data.length + 512, algo: 'sha512', hash: sha512(data) };
    const found = await store.lookup(target, async () => slowResponse(data));
    await assert.rejects(read(found!), /sent 1048576 of the image's 1049088 bytes/);
    // The reader can fail before the fill has closed and removed its temporary file (two disk
    // operations, slow on a loaded machine) and been dropped: wait for the fill's end, not 10 ms.
    if (found?.kind === 'fill') await found.fill.done.catch(() => {});
    assert.equal(store.has('img-short'), false);
  });

  it('evicts the least recently used entry, never one being read, and refuses when nothing can go', async () => {
    const { store, counts } = newStore(join(dir, 'lru'), 3 * 2 ** 20);
    await store.open();
    const images = mebiImages('img-', ['a', 'b', 'c', 'd']);
    const cache = (i: number) => cacheWhole(store, images[i]);
    for (const i of [0, 1, 2]) await cache(i);
    // a is used again: b is now the least recently used.
    assert.equal((await store.lookup(images[0].target, async () => { throw new Error('no'); }))?.kind, 'hit');
    await cache(3);
    assert.deepEqual(counts.evicted, ['img-b:lru']);
    assert.deepEqual(store.list().entries.map((e) => e.imageId).sort(), ['img-a', 'img-c', 'img-d']);
    // Every entry being read: no room for a new one.
    const releases = store.list().entries.map((e) => store.claim(e));
    assert.equal(await store.lookup(images[1].target, async () => slowResponse(images[1].data)), null);
    for (const release of releases) release();
    assert.equal((await cache(1))?.kind, 'fill');
    assert.equal(counts.evicted.length, 2);
  });

  it('rebuilds its index from disk and drops an entry whose file changed', async () => {
    const cacheDir = join(dir, 'restart');
    const first = newStore(cacheDir, 10 * 2 ** 20);
    await first.store.open();
    const good = randomBytes(2 ** 20);
    const bad = randomBytes(2 ** 20);
    for (const [id, data] of [['img-good', good], ['img-bad', bad]] as const) {
      const found = await first.store.lookup({ imageId: id, size: data.length, algo: 'sha512', hash: sha512(data) }, async () => slowResponse(data));
      assert.ok(found?.kind === 'fill');
      await found.fill.done;
      await recorded(first.store, id);
    }
    await first.store.flush();
    await writeFile(join(cacheDir, 'entries', 'img-bad.data'), randomBytes(2 ** 20));
    await writeFile(join(cacheDir, 'tmp', 'leftover'), 'partial');
    await writeFile(join(cacheDir, 'entries', 'orphan.data'), 'no sidecar');

    const second = newStore(cacheDir, 10 * 2 ** 20);
    await second.store.open();
    assert.deepEqual(second.store.list().entries.map((e) => e.imageId).sort(), ['img-bad', 'img-good']);
    assert.deepEqual(await readdir(join(cacheDir, 'tmp')), []);
    await second.store.verifyAll();
    assert.deepEqual(second.store.list().entries.map((e) => e.imageId), ['img-good']);
    assert.equal(second.counts.corrupt, 1);
    assert.deepEqual((await readdir(join(cacheDir, 'entries'))).sort(), ['img-good.data', 'img-good.json']);
    const hit = await second.store.lookup({ imageId: 'img-good', size: good.length, algo: 'sha512', hash: sha512(good) }, async () => { throw new Error('no'); });
    assert.equal(hit?.kind, 'hit');
  });

  it('drops an entry replaced upstream (another hash) and fetches the new bytes', async () => {
    const { store, counts } = newStore(join(dir, 'replaced'), 10 * 2 ** 20);
    await store.open();
    const v1 = randomBytes(2 ** 20);
    const v2 = randomBytes(2 ** 20);
    const first = await store.lookup({ imageId: 'img-r', size: v1.length, algo: 'sha512', hash: sha512(v1) }, async () => slowResponse(v1));
    if (first?.kind === 'fill') await first.fill.done;
    await recorded(store, 'img-r');
    const second = await store.lookup({ imageId: 'img-r', size: v2.length, algo: 'sha512', hash: sha512(v2) }, async () => slowResponse(v2));
    assert.equal(second?.kind, 'fill');
    assert.ok((await read(second!)).equals(v2));
    assert.deepEqual(counts.evicted, ['img-r:replaced upstream']);
  });
});
