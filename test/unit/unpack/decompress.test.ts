import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { CountingSource, decompress } from '../../../workers/unpack/decompress.js';
import { detectCodec } from '../../../workers/unpack/detect-codec.js';
import { UnpackRefusedError } from '../../../workers/unpack/errors.js';
import { chunksOf, collect, compressCli, sampleDisk, tempDir } from './helpers.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const roomy = { maxOutputBytes: 1 * GiB, maxRatio: 1000 };
const codecs = ['gzip', 'xz', 'zstd', 'bzip2'] as const;

/** Decoder processes still running under this test process. */
function childDecoders(): string[] {
  try {
    return execFileSync('ps', ['--ppid', String(process.pid), '-o', 'comm='], { encoding: 'utf8' })
      .split('\n')
      .map((s) => s.trim())
      .filter((s) => s === 'xz' || s === 'zstd' || s === 'bzip2');
  } catch {
    return []; // ps exits 1 when nothing matches
  }
}

async function assertRefused(promise: Promise<unknown>, code: string): Promise<UnpackRefusedError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof UnpackRefusedError, `expected UnpackRefusedError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected a refusal with code ${code}`);
}

test('detectCodec recognizes every magic', () => {
  assert.equal(detectCodec(Buffer.from([0x1f, 0x8b, 8, 0])), 'gzip');
  assert.equal(detectCodec(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0])), 'xz');
  assert.equal(detectCodec(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0])), 'zstd');
  assert.equal(detectCodec(Buffer.from('BZh91AY&SY')), 'bzip2');
  assert.equal(detectCodec(Buffer.from('BZh0')), 'none');
  assert.equal(detectCodec(Buffer.from('QFI\xfb', 'latin1')), 'none');
  assert.equal(detectCodec(new Uint8Array(0)), 'none');
  const posix = Buffer.alloc(512);
  posix.write('ustar\u000000', 257, 'latin1');
  assert.equal(detectCodec(posix), 'tar');
  const gnu = Buffer.alloc(512);
  gnu.write('ustar  \u0000', 257, 'latin1');
  assert.equal(detectCodec(gnu), 'tar');
  for (const codec of codecs) assert.equal(detectCodec(compressCli(codec, Buffer.from('x'))), codec);
});

/** What pzstd writes: before every zstd frame, a skippable frame (0x184D2A50, length 4) holding its size. */
function pzstdLike(data: Buffer, pieces: number): Buffer {
  const out: Buffer[] = [];
  const step = Math.ceil(data.length / pieces);
  for (let at = 0; at < data.length; at += step) {
    const frame = compressCli('zstd', data.subarray(at, at + step));
    const skip = Buffer.alloc(12);
    skip.writeUInt32LE(0x184d2a50, 0);
    skip.writeUInt32LE(4, 4);
    skip.writeUInt32LE(frame.length, 8);
    out.push(skip, frame);
  }
  return Buffer.concat(out);
}

test('zstd opening with skippable frames (pzstd) is detected and decoded', async () => {
  const data = sampleDisk(2 * MiB + 7);
  const packed = pzstdLike(data, 3);
  assert.deepEqual([...packed.subarray(0, 4)], [0x50, 0x2a, 0x4d, 0x18]);
  assert.equal(detectCodec(packed), 'zstd');
  assert.ok((await collect(decompress(chunksOf(packed), 'zstd', roomy))).equals(data));
  // Any of the 16 skippable magics, several in a row, or one whose data runs past the sniffed bytes.
  const skippable = (nibble: number, body: Buffer): Buffer => {
    const h = Buffer.alloc(8);
    h.writeUInt32LE(0x184d2a50 + nibble, 0);
    h.writeUInt32LE(body.length, 4);
    return Buffer.concat([h, body]);
  };
  const zstd = compressCli('zstd', Buffer.from('x'));
  assert.equal(detectCodec(Buffer.concat([skippable(0xf, Buffer.alloc(3)), skippable(7, Buffer.alloc(0)), zstd])), 'zstd');
  assert.equal(detectCodec(Buffer.concat([skippable(1, Buffer.alloc(600)), zstd]).subarray(0, 512)), 'zstd');
  // A skippable magic followed by something else is not zstd; nor is a lone zstd-like start of a disk.
  assert.equal(detectCodec(Buffer.concat([skippable(0, Buffer.alloc(4)), Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(100)])), 'none');
  assert.equal(detectCodec(Buffer.from([0x50, 0x2a, 0x4d, 0x18, 1])), 'none');
  assert.equal(detectCodec(Buffer.from([0x50, 0x2a, 0x4d, 0x19, 0, 0, 0, 0, 0x28, 0xb5, 0x2f, 0xfd])), 'none');
});

for (const codec of codecs) {
  test(`${codec}: round trip, multi-member, in small chunks`, async () => {
    const data = sampleDisk(3 * MiB + 123);
    const packed = Buffer.concat([compressCli(codec, data.subarray(0, MiB)), compressCli(codec, data.subarray(MiB))]);
    const out = await collect(decompress(chunksOf(packed, 7777), codec, roomy));
    assert.ok(out.equals(data));
  });

  test(`${codec}: corrupt data is refused as corrupt_archive`, async () => {
    const packed = compressCli(codec, sampleDisk(512 * 1024));
    for (let i = Math.floor(packed.length / 2); i < Math.floor(packed.length / 2) + 64; i++) packed[i] = packed[i]! ^ 0x5a;
    const error = await assertRefused(collect(decompress(chunksOf(packed), codec, roomy)), 'corrupt_archive');
    assert.match(error.message, /corrupt or truncated/);
  });

  test(`${codec}: truncated data is refused as corrupt_archive`, async () => {
    const packed = compressCli(codec, sampleDisk(512 * 1024));
    const error = await assertRefused(collect(decompress(chunksOf(packed.subarray(0, packed.length - 20)), codec, roomy)), 'corrupt_archive');
    // The decoder's complaint, not bzip2's "*Possible* reason" (an ioctl on a pipe) and advice.
    assert.doesNotMatch(error.message, /ioctl|Input file =|bzip2recover|Possible/);
    assert.deepEqual(childDecoders(), []);
  });

  test(`${codec}: maxOutputBytes stops the decoder early`, async () => {
    const packed = compressCli(codec, Buffer.alloc(64 * MiB), codec === 'bzip2' ? 1 : undefined);
    const started = Date.now();
    const error = await assertRefused(collect(decompress(chunksOf(packed), codec, { maxOutputBytes: 4 * MiB, maxRatio: 1e9 })), 'decompressed_too_large');
    assert.match(error.message, /4 MiB/);
    assert.ok(Date.now() - started < 5000);
    assert.deepEqual(childDecoders(), []);
  });

  test(`${codec}: an error of the source is rethrown as is, not as corrupt data`, async () => {
    const packed = compressCli(codec, sampleDisk(2 * MiB));
    const boom = new Error('disk read failed');
    async function* failing() {
      yield packed.subarray(0, 4096);
      throw boom;
    }
    await assert.rejects(collect(decompress(failing(), codec, roomy)), (e) => e === boom);
    assert.deepEqual(childDecoders(), []);
  });
}

test('gzip bomb: 10 MiB expanding to 10 GiB is stopped after reading little', async (t) => {
  const dir = tempDir(t);
  const member = zlib.gzipSync(Buffer.alloc(64 * MiB), { level: 9 });
  const bomb = Buffer.concat(Array.from({ length: 160 }, () => member)); // 160 × 64 MiB = 10 GiB of zeros
  assert.ok(bomb.length < 11 * MiB, `bomb is ${bomb.length} bytes`);
  const path = join(dir, 'bomb.gz');
  writeFileSync(path, bomb);

  const source = new CountingSource(createReadStream(path, { highWaterMark: 256 * 1024 }));
  const started = Date.now();
  let out = 0;
  const error = await assertRefused(
    (async () => {
      for await (const chunk of decompress(source, 'gzip', { maxOutputBytes: 16 * GiB, maxRatio: 100 })) out += chunk.length;
    })(),
    'expansion_ratio',
  );
  const elapsed = Date.now() - started;
  assert.ok(source.bytes < 2 * MiB, `read ${source.bytes} bytes of the bomb`);
  assert.ok(out < 256 * MiB, `let ${out} bytes out`);
  assert.ok(elapsed < 3000, `took ${elapsed} ms`);
  assert.match(error.message, /100:1/);
});

test('ratio limit: refused only above the grace, and only above the ratio', async () => {
  const zeros = zlib.gzipSync(Buffer.alloc(8 * MiB)); // ~1000:1
  await assertRefused(collect(decompress(chunksOf(zeros), 'gzip', { maxOutputBytes: GiB, maxRatio: 50 })), 'expansion_ratio');
  // under the grace: a tiny very compressible file is fine
  const small = zlib.gzipSync(Buffer.alloc(512 * 1024));
  assert.equal((await collect(decompress(chunksOf(small), 'gzip', { maxOutputBytes: GiB, maxRatio: 2 }))).length, 512 * 1024);
  // ordinary data under the ratio passes
  const data = sampleDisk(4 * MiB);
  const packed = zlib.gzipSync(data);
  const ratio = data.length / packed.length;
  assert.ok((await collect(decompress(chunksOf(packed), 'gzip', { maxOutputBytes: GiB, maxRatio: ratio * 2 }))).equals(data));
  // the xz tool path enforces the same limits
  const xzZeros = compressCli('xz', Buffer.alloc(32 * MiB), 1);
  await assertRefused(collect(decompress(chunksOf(xzZeros), 'xz', { maxOutputBytes: GiB, maxRatio: 100 })), 'expansion_ratio');
  assert.deepEqual(childDecoders(), []);
});

test('a consumer stopping early kills the decoder process', async () => {
  const packed = compressCli('zstd', sampleDisk(32 * MiB));
  const gen = decompress(chunksOf(packed), 'zstd', roomy);
  const first = await gen.next();
  assert.equal(first.done, false);
  assert.equal(childDecoders().length, 1);
  await gen.return(undefined);
  assert.deepEqual(childDecoders(), []);
});

test('abort kills the decoder and rejects with the abort reason', async () => {
  const packed = compressCli('xz', sampleDisk(16 * MiB), 1);
  const controller = new AbortController();
  let n = 0;
  await assert.rejects(
    (async () => {
      for await (const chunk of decompress(chunksOf(packed), 'xz', { ...roomy, signal: controller.signal })) {
        n += chunk.length;
        if (n > MiB) controller.abort(new Error('stop please'));
      }
    })(),
    /stop please/,
  );
  assert.deepEqual(childDecoders(), []);
  const gz = zlib.gzipSync(sampleDisk(8 * MiB));
  const c2 = new AbortController();
  await assert.rejects(
    (async () => {
      for await (const _ of decompress(chunksOf(gz), 'gzip', { ...roomy, signal: c2.signal })) c2.abort(new Error('gzip stop'));
    })(),
    /gzip stop/,
  );
});

test('decoder memory limit: an xz stream needing a big dictionary is refused as unsupported', async () => {
  const packed = execFileSync('xz', ['-c', '--lzma2=preset=1,dict=64MiB'], { input: sampleDisk(MiB) });
  const error = await assertRefused(collect(decompress(chunksOf(packed), 'xz', { ...roomy, decoderMemoryLimitBytes: 16 * MiB })), 'unsupported_archive');
  assert.match(error.message, /decoder memory/);
});

test('bzip2 trailing garbage succeeds with a warning', async () => {
  const data = sampleDisk(100_000);
  const warnings: string[] = [];
  const out = await collect(decompress(chunksOf(Buffer.concat([compressCli('bzip2', data), Buffer.from('garbage')])), 'bzip2', { ...roomy, onWarning: (w) => warnings.push(w) }));
  assert.ok(out.equals(data));
  assert.match(warnings.join('\n'), /trailing garbage/);
});

test('invalid limits are a programming error', async () => {
  await assert.rejects(collect(decompress(chunksOf(Buffer.alloc(1)), 'gzip', { maxOutputBytes: 0, maxRatio: 1 })), TypeError);
  await assert.rejects(collect(decompress(chunksOf(Buffer.alloc(1)), 'gzip', { maxOutputBytes: 1, maxRatio: Number.NaN })), TypeError);
});

test('a missing decoder tool is an environment error (retryable), not a refusal', async () => {
  const packed = compressCli('xz', Buffer.from('x'));
  const saved = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    await assert.rejects(collect(decompress(chunksOf(packed), 'xz', roomy)), (e: unknown) => !(e instanceof UnpackRefusedError) && /apt-get install -y xz-utils/.test((e as Error).message));
  } finally {
    process.env.PATH = saved;
  }
});
