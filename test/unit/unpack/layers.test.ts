/**
 * One layer of compression, no more (issue 6, points 2 and 3): mostly-empty disks are not bombs,
 * real bombs still are, nested compression is refused, and a single-member zip is unpacked.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { unpack, UnpackRefusedError, type UnpackLimits } from '../../../workers/unpack/unpack.js';
import { compressCli, digests, makeZip, mostlyEmptyDisk, sampleDisk, tempDir } from './helpers.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** The production defaults: ratio 200, floor 1 GiB (PIR_UNPACK_RATIO_FLOOR). */
const limits: UnpackLimits = { maxOutputBytes: 64 * GiB, maxRatio: 200 };

function setup(t: { after: (fn: () => void) => void }) {
  const dir = tempDir(t, 'pir-layers-');
  let n = 0;
  return {
    dir,
    input(data: Uint8Array): string {
      const path = join(dir, `in-${n++}`);
      writeFileSync(path, data);
      return path;
    },
    out: () => join(dir, `out-${n++}`),
  };
}

async function refused(input: string, output: string, code: string, pattern?: RegExp, lim: UnpackLimits = limits, containerFormat = 'compressed'): Promise<UnpackRefusedError> {
  try {
    await unpack(input, output, { containerFormat, limits: lim });
  } catch (error) {
    assert.ok(error instanceof UnpackRefusedError, `expected a refusal, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    assert.throws(() => statSync(output), /ENOENT/, 'no output is left behind');
    return error;
  }
  assert.fail(`expected ${code}`);
}

async function unpacksTo(input: string, output: string, expected: Buffer, codec: string): Promise<void> {
  const result = await unpack(input, output, { containerFormat: 'compressed', limits });
  assert.equal(result.codec, codec);
  assert.deepEqual(result.output, { path: output, ...digests(expected) });
  assert.ok(readFileSync(output).equals(expected), 'the unpacked bytes are the disk');
}

// ------------------------------------------------------------------ mostly-empty disks (point 2)

const disk = mostlyEmptyDisk(16 * MiB);

function multiMemberGzip(data: Buffer, members: number): Buffer {
  const step = data.length / members;
  return Buffer.concat(Array.from({ length: members }, (_, i) => zlib.gzipSync(data.subarray(i * step, (i + 1) * step))));
}

const mostlyEmpty: Array<[string, 'gzip' | 'xz' | 'zstd', () => Buffer]> = [
  ['gzip', 'gzip', () => compressCli('gzip', disk)],
  ['xz', 'xz', () => compressCli('xz', disk)],
  ['zstd', 'zstd', () => compressCli('zstd', disk)],
  ['multi-member gzip', 'gzip', () => multiMemberGzip(disk, 4)],
];

for (const [label, codec, make] of mostlyEmpty) {
  test(`a 16 MiB mostly-empty raw disk, ${label}-compressed, unpacks with its size and digests, zeros as holes`, async (t) => {
    const s = setup(t);
    const packed = make();
    assert.ok(packed.length < 64 * 1024, `${label}: ${packed.length} bytes (a ratio of ${(disk.length / packed.length).toFixed(0)}:1)`);
    const out = s.out();
    await unpacksTo(s.input(packed), out, disk, codec);
    // Only the blocks with data take disk space: the MBR and the 4 KiB at 1 MiB.
    assert.ok(statSync(out).blocks * 512 <= 256 * 1024, `${statSync(out).blocks * 512} bytes allocated`);
  });
}

test('the same disk is refused when the ratio floor is below it (what PIR did before the floor)', async (t) => {
  const s = setup(t);
  await refused(s.input(compressCli('gzip', disk)), s.out(), 'expansion_ratio', /200:1 ratio beyond the first 1 MiB/, { ...limits, ratioFloorBytes: MiB });
});

test('a zstd of 2 GiB of zeros (~65 KiB) is refused once past the 1 GiB floor, without a dense file', async (t) => {
  const s = setup(t);
  const packed = execFileSync('bash', ['-c', 'head -c 2G /dev/zero | zstd -q -c'], { maxBuffer: 64 * MiB });
  assert.ok(packed.length < 256 * 1024);
  const started = Date.now();
  await refused(s.input(packed), s.out(), 'expansion_ratio', /200:1 ratio beyond the first 1 GiB/);
  assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
});

test('a disk over the floor is still held to the ratio', async (t) => {
  const s = setup(t);
  // 48 MiB of zeros with a floor of 16 MiB: ratio ~1000:1 past the floor
  await refused(s.input(zlib.gzipSync(Buffer.alloc(48 * MiB))), s.out(), 'expansion_ratio', /beyond the first 16 MiB/, { ...limits, ratioFloorBytes: 16 * MiB });
});

// ------------------------------------------------------------------ one layer only (point 3)

test('compressed data inside compressed data is a format mismatch', async (t) => {
  const s = setup(t);
  const inner = compressCli('gzip', sampleDisk(MiB));
  await refused(s.input(zlib.gzipSync(inner)), s.out(), 'format_mismatch', /gzip decompression the upload is gzip-compressed again/);
  await refused(s.input(compressCli('xz', compressCli('zstd', sampleDisk(MiB)))), s.out(), 'format_mismatch', /xz decompression the upload is zstd-compressed again/);
  await refused(s.input(zlib.gzipSync(makeZip([{ name: 'disk.raw', data: disk }]))), s.out(), 'format_mismatch', /zip-compressed again/);
  await refused(s.input(makeZip([{ name: 'disk.raw.gz', data: compressCli('gzip', disk) }])), s.out(), 'format_mismatch', /zip decompression the upload is gzip-compressed again/);
  // whatever container_format says
  await refused(s.input(zlib.gzipSync(inner)), s.out(), 'format_mismatch', undefined, limits, 'bare');
});

// ------------------------------------------------------------------ zip (point 3)

test('a single-member zip unpacks: deflated, stored, with a data descriptor, zip64, and as the zip tool writes it', async (t) => {
  const s = setup(t);
  const data = sampleDisk(3 * MiB + 512);
  await unpacksTo(s.input(makeZip([{ name: 'disk.raw', data }])), s.out(), data, 'zip');
  await unpacksTo(s.input(makeZip([{ name: 'disk.raw', data, method: 0 }])), s.out(), data, 'zip');
  await unpacksTo(s.input(makeZip([{ name: 'disk.raw', data, descriptor: true }], { comment: 'made by hand' })), s.out(), data, 'zip');
  await unpacksTo(s.input(makeZip([{ name: 'disk.raw', data, zip64: true }])), s.out(), data, 'zip');
  await unpacksTo(s.input(makeZip([{ name: 'disk.raw', data: disk }])), s.out(), disk, 'zip');

  const raw = join(s.dir, 'disk.raw');
  writeFileSync(raw, data);
  const zipped = join(s.dir, 'tool.zip');
  execFileSync('zip', ['-q', '-j', zipped, raw]);
  await unpacksTo(zipped, s.out(), data, 'zip');
  // a streamed zip: `zip -` writes a data descriptor and zip64 fields for unknown sizes
  const streamed = execFileSync('bash', ['-c', `zip -q - - < ${raw}`], { maxBuffer: 64 * MiB });
  await unpacksTo(s.input(streamed), s.out(), data, 'zip');
  // from a pipe, Info-ZIP also writes the zip64 end record and locator, though nothing needs them
  const piped = execFileSync('bash', ['-c', `cat ${raw} | zip -q - -`], { maxBuffer: 64 * MiB });
  await unpacksTo(s.input(piped), s.out(), data, 'zip');
  await unpacksTo(s.input(makeZip([{ name: 'disk.raw', data }], { zip64End: true })), s.out(), data, 'zip');
});

test('zips PIR cannot vouch for are refused with the reason', async (t) => {
  const s = setup(t);
  const data = sampleDisk(256 * 1024);
  const one = { name: 'disk.raw', data };
  await refused(s.input(makeZip([one, { name: 'other.raw', data }])), s.out(), 'unsupported_archive', /holds 2 files/);
  await refused(s.input(makeZip([])), s.out(), 'unsupported_archive', /is empty/);
  await refused(s.input(makeZip([{ name: 'dir/', data: Buffer.alloc(0), method: 0 }])), s.out(), 'unsupported_archive', /directory/);
  await refused(s.input(makeZip([{ ...one, flags: 1 }])), s.out(), 'unsupported_archive', /encrypted/);
  await refused(s.input(makeZip([{ ...one, method: 12 }])), s.out(), 'unsupported_archive', /method 12/);
  await refused(s.input(makeZip([{ ...one, crc: 1234 }])), s.out(), 'corrupt_archive', /CRC-32/);
  // a hidden entry (or another file) in front of the member the directory names
  const hidden = makeZip([{ name: 'hidden.raw', data: Buffer.from('not listed') }]);
  await refused(s.input(makeZip([one], { prefix: hidden.subarray(0, hidden.indexOf(Buffer.from([0x50, 0x4b, 1, 2]))) })), s.out(), 'corrupt_archive', /not at the start/);
  const good = makeZip([one]);
  await refused(s.input(good.subarray(0, good.length - 30)), s.out(), 'corrupt_archive', /end-of-central-directory/);
  const cut = Buffer.concat([good.subarray(0, 2000), good.subarray(good.length - 100)]);
  await refused(s.input(cut), s.out(), 'corrupt_archive');
  // zip64 end records the end record contradicts: readers would disagree on the directory
  const optional = makeZip([one], { zip64End: true });
  const lying = Buffer.from(optional);
  lying.writeUInt32LE(lying.readUInt32LE(lying.length - 6) + 1, lying.length - 6); // 32-bit cd offset
  await refused(s.input(lying), s.out(), 'corrupt_archive', /disagree/);

  // zip -P: classic encryption, made by the tool
  const raw = join(s.dir, 'secret.raw');
  writeFileSync(raw, data);
  const locked = join(s.dir, 'locked.zip');
  execFileSync('zip', ['-q', '-j', '-P', 'hunter2', locked, raw]);
  await refused(locked, s.out(), 'unsupported_archive', /encrypted/);
  // two files, made by the tool
  const two = join(s.dir, 'two.zip');
  execFileSync('zip', ['-q', '-j', two, raw, locked]);
  await refused(two, s.out(), 'unsupported_archive', /holds 2 files/);
});

test('a zip bomb is held to the same limits as gzip', async (t) => {
  const s = setup(t);
  const bomb = s.input(makeZip([{ name: 'disk.raw', data: Buffer.alloc(272 * MiB) }]));
  await refused(bomb, s.out(), 'expansion_ratio', /200:1 ratio beyond the first 1 MiB/, { ...limits, ratioFloorBytes: MiB });
  await refused(bomb, s.out(), 'decompressed_too_large', /256 MiB/, { maxOutputBytes: 256 * MiB, maxRatio: 1e6 });
});
