import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { HashPool, SizeLimitError, hashFile, writeHashedFile } from '../../../ingest/hashing/index.js';

const MiB = 1024 * 1024;
const data = randomBytes(33 * MiB + 3);
let dir: string;
let pool: HashPool;
let seq = 0;

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');
const nextPath = () => join(dir, `f${seq++}.img`);

/** Deterministic chunk sizes between 1 B and ~200 KiB, like sockets of varied speed. */
async function* chunked(bytes: Uint8Array, seed = 7): AsyncGenerator<Uint8Array> {
  let x = seed;
  for (let off = 0; off < bytes.length; ) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const n = Math.min(bytes.length - off, 1 + (x % (200 * 1024)));
    yield bytes.subarray(off, off + n);
    off += n;
  }
}

/** Yields `before` bytes, then throws or waits forever; counts the bytes it handed out. */
function feeder(before: number, then: 'throw' | 'hang', pulled = { bytes: 0, finished: false }) {
  const gen = async function* (): AsyncGenerator<Uint8Array> {
    try {
      for (let off = 0; off < before; off += 64 * 1024) {
        const c = data.subarray(off, Math.min(before, off + 64 * 1024));
        pulled.bytes += c.length;
        yield c;
      }
      if (then === 'throw') throw new Error('client went away');
      await new Promise(() => {});
    } finally {
      pulled.finished = true;
    }
  };
  return { source: gen(), pulled };
}

function assertNoFile(path: string) {
  assert.equal(existsSync(path), false, `${path} must not exist`);
  assert.deepEqual(
    readdirSync(dir).filter((f) => path.endsWith(f)),
    [],
  );
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pir-hashing-'));
  pool = new HashPool();
});
after(async () => {
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

/** How a file is written: O_DIRECT from the first byte, buffered, or buffered then O_DIRECT (the default's shape, sooner). */
const WRITE_MODES = [
  { label: 'O_DIRECT where possible', direct: true, directFromBytes: 0 },
  { label: 'buffered', direct: false },
  { label: 'buffered, then O_DIRECT from 4 MiB', direct: true, directFromBytes: 4 * MiB },
];

describe('writeHashedFile', () => {
  for (const size of [0, 1, MiB - 1, MiB, MiB + 1, 33 * MiB + 3]) {
    for (const { label, ...mode } of WRITE_MODES) {
      const { direct } = mode;
      it(`${size} B (${label}): digests and bytes match node:crypto`, async () => {
        const bytes = data.subarray(0, size);
        const path = nextPath();
        const r = await writeHashedFile(chunked(bytes, size + 1), path, { maxBytes: 64 * MiB, pool, ...mode });
        assert.deepEqual(r, { size, md5: md5(bytes), sha512: sha512(bytes) });
        const written = readFileSync(path);
        assert.equal(written.length, size);
        assert.ok(written.equals(bytes), 'file content equals the source');
        assert.equal(statSync(path).mode & 0o777, 0o600);
        assert.deepEqual(await hashFile(path, pool, { direct }), r);
      });
    }
  }

  /** A mostly-empty disk: data at the start, in the middle (unaligned), and in the last bytes. */
  function mostlyZeros(size: number): Buffer {
    const b = Buffer.alloc(size);
    data.copy(b, 0, 0, 512);
    data.copy(b, 5 * MiB + 12345, 0, 100_000);
    if (size > 16 * MiB) data.copy(b, size - 3, 0, 3);
    return b;
  }

  for (const { label, ...mode } of WRITE_MODES) {
    for (const size of [0, 100, 16 * MiB, 16 * MiB + 7, 40 * MiB]) {
      it(`sparse, ${size} B (${label}): zero blocks are holes, digests cover every byte`, async () => {
        const bytes = mostlyZeros(size);
        const path = nextPath();
        const r = await writeHashedFile(chunked(bytes, size + 3), path, { maxBytes: 64 * MiB, pool, ...mode, sparse: true });
        assert.deepEqual(r, { size, md5: md5(bytes), sha512: sha512(bytes) });
        assert.ok(readFileSync(path).equals(bytes), 'file content equals the source');
        // Only the blocks holding data were written: a few 64 KiB blocks, not the whole size.
        const allocated = statSync(path).blocks * 512;
        assert.ok(allocated <= 512 * 1024, `${allocated} bytes allocated for ${size} bytes of mostly zeros`);
      });
    }
  }

  it('sparse with random data writes everything, like the dense path', async () => {
    const bytes = data.subarray(0, 9 * MiB + 5);
    const path = nextPath();
    const r = await writeHashedFile(chunked(bytes), path, { maxBytes: 64 * MiB, pool, sparse: true });
    assert.deepEqual(r, { size: bytes.length, md5: md5(bytes), sha512: sha512(bytes) });
    assert.ok(readFileSync(path).equals(bytes));
    assert.ok(statSync(path).blocks * 512 >= bytes.length);
  });

  /** Bytes of `path` in the page cache (util-linux fincore). */
  const residentBytes = (path: string) => Number(execFileSync('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES', path], { encoding: 'utf8' }).trim());

  it('writes with O_DIRECT from the first byte by default, and buffered up to directFromBytes when asked', async () => {
    const small = nextPath();
    await writeHashedFile(chunked(data.subarray(0, MiB + 100)), small, { maxBytes: 64 * MiB, pool });
    assert.ok(residentBytes(small) <= 4096, `${residentBytes(small)} bytes cached: at most the last, partial block (buffered); the rest bypassed the page cache`);
    assert.ok(readFileSync(small).equals(data.subarray(0, MiB + 100)));

    const mixed = nextPath();
    const bytes = data.subarray(0, 12 * MiB);
    const r = await writeHashedFile(chunked(bytes), mixed, { maxBytes: 64 * MiB, pool, directFromBytes: 4 * MiB });
    assert.deepEqual(r, { size: bytes.length, md5: md5(bytes), sha512: sha512(bytes) });
    const cached = residentBytes(mixed);
    assert.ok(cached >= 4 * MiB && cached <= 5 * MiB, `${cached} bytes cached: the first 4 MiB (buffered), not the rest (O_DIRECT)`);
    assert.ok(readFileSync(mixed).equals(bytes), 'file content equals the source');
  });

  it('accepts a node Readable and the shared pool', async () => {
    const bytes = data.subarray(0, 3 * MiB + 17);
    const path = nextPath();
    const r = await writeHashedFile(Readable.from(chunked(bytes)), path, { maxBytes: 4 * MiB });
    assert.deepEqual(r, { size: bytes.length, md5: md5(bytes), sha512: sha512(bytes) });
    await HashPool.shared().close();
  });

  it('many concurrent uploads share the pool and stay within its memory budget', async () => {
    const small = new HashPool({ slotBytes: 256 * 1024, slotsPerStream: 4, memoryBudgetBytes: 4 * MiB });
    try {
      const jobs = Array.from({ length: 24 }, (_, i) => {
        const start = (i * 977_777) % (20 * MiB);
        const bytes = data.subarray(start, start + ((i * 524_287) % (3 * MiB)) + i);
        const path = nextPath();
        return writeHashedFile(chunked(bytes, i), path, { maxBytes: 8 * MiB, pool: small }).then((r) => ({ r, bytes, path }));
      });
      for (const { r, bytes, path } of await Promise.all(jobs)) {
        assert.deepEqual(r, { size: bytes.length, md5: md5(bytes), sha512: sha512(bytes) });
        assert.ok(readFileSync(path).equals(bytes));
      }
      // 24 uploads × 2 guaranteed slots may exceed the budget while they run; idle, it is back under.
      assert.ok(small.slotMemoryBytes <= 4 * MiB, `slot memory ${small.slotMemoryBytes}`);
    } finally {
      await small.close();
    }
  });

  it('exactly maxBytes is accepted', async () => {
    const bytes = data.subarray(0, 2 * MiB);
    const r = await writeHashedFile(chunked(bytes), nextPath(), { maxBytes: 2 * MiB, pool });
    assert.equal(r.size, 2 * MiB);
  });

  it('over maxBytes: SizeLimitError, stops reading, leaves no file', async () => {
    const path = nextPath();
    const { source, pulled } = feeder(20 * MiB, 'hang');
    await assert.rejects(writeHashedFile(source, path, { maxBytes: 5 * MiB, pool }), (err: unknown) => {
      assert.ok(err instanceof SizeLimitError);
      assert.equal(err.code, 'size_limit');
      assert.equal(err.limit, 5 * MiB);
      return true;
    });
    assert.ok(pulled.bytes <= 5 * MiB + 64 * 1024, `read ${pulled.bytes} bytes past the limit`);
    assert.ok(pulled.finished, 'the source was told to stop');
    assertNoFile(path);
  });

  it('over maxBytes from a Readable: the stream is left to the caller (not destroyed)', async () => {
    const path = nextPath();
    const stream = Readable.from(chunked(data.subarray(0, 3 * MiB)));
    await assert.rejects(writeHashedFile(stream, path, { maxBytes: MiB, pool }), SizeLimitError);
    assert.equal(stream.destroyed, false);
    stream.destroy();
    assertNoFile(path);
  });

  it('abort mid-upload: rejects with the abort reason and leaves no file', async () => {
    const path = nextPath();
    const ac = new AbortController();
    const { source, pulled } = feeder(3 * MiB, 'hang');
    const p = writeHashedFile(source, path, { maxBytes: 64 * MiB, pool, signal: ac.signal });
    while (pulled.bytes < 3 * MiB) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await assert.rejects(p, { name: 'AbortError' });
    assertNoFile(path);
  });

  it('already aborted: rejects before creating the file', async () => {
    const path = nextPath();
    await assert.rejects(
      writeHashedFile(chunked(data.subarray(0, 10)), path, { maxBytes: 100, pool, signal: AbortSignal.abort() }),
      { name: 'AbortError' },
    );
    assertNoFile(path);
  });

  it('source error: rethrows it and leaves no file', async () => {
    const path = nextPath();
    const { source } = feeder(5 * MiB + 123, 'throw');
    await assert.rejects(writeHashedFile(source, path, { maxBytes: 64 * MiB, pool }), /client went away/);
    assertNoFile(path);
  });

  it('source error from a Readable: rethrows it and leaves no file', async () => {
    const path = nextPath();
    const stream = Readable.from(feeder(2 * MiB, 'throw').source);
    await assert.rejects(writeHashedFile(stream, path, { maxBytes: 64 * MiB, pool }), /client went away/);
    assertNoFile(path);
  });

  it('a string chunk is refused and leaves no file', async () => {
    const path = nextPath();
    async function* text() {
      yield 'not bytes' as unknown as Uint8Array;
    }
    await assert.rejects(writeHashedFile(text(), path, { maxBytes: 100, pool }), TypeError);
    assertNoFile(path);
  });

  it('never overwrites: an existing destination is an error and stays untouched', async () => {
    const path = nextPath();
    writeFileSync(path, 'precious');
    await assert.rejects(writeHashedFile(chunked(data.subarray(0, 10)), path, { maxBytes: 100, pool }), { code: 'EEXIST' });
    assert.equal(readFileSync(path, 'utf8'), 'precious');
  });

  it('the pool keeps working after failed uploads', async () => {
    const bytes = data.subarray(MiB, 4 * MiB);
    const r = await writeHashedFile(chunked(bytes), nextPath(), { maxBytes: 64 * MiB, pool });
    assert.deepEqual(r, { size: bytes.length, md5: md5(bytes), sha512: sha512(bytes) });
  });
});

describe('hashFile', () => {
  it('hashes an existing file in big chunks with the pool', async () => {
    const path = nextPath();
    const bytes = data.subarray(5, 9 * MiB + 5);
    writeFileSync(path, bytes);
    assert.deepEqual(await hashFile(path, pool), { size: bytes.length, md5: md5(bytes), sha512: sha512(bytes) });
  });

  it('a missing file rejects with ENOENT', async () => {
    await assert.rejects(hashFile(join(dir, 'missing'), pool), { code: 'ENOENT' });
  });
});

describe('HashPool', () => {
  it('shared() hands out one pool until it is closed, then a new one', async () => {
    const a = HashPool.shared();
    assert.equal(HashPool.shared(), a);
    await a.close();
    const b = HashPool.shared();
    assert.notEqual(b, a);
    await b.close();
  });

  it('a closed pool refuses new work', async () => {
    const p = new HashPool();
    await p.close();
    const path = nextPath();
    await assert.rejects(writeHashedFile(chunked(data.subarray(0, 10)), path, { maxBytes: 100, pool: p }), /closed/);
    assertNoFile(path);
  });
});
