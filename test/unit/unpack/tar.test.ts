import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { UnpackRefusedError } from '../../../workers/unpack/errors.js';
import { normalizeMemberName, parseNumeric, TarReader, type TarEntry } from '../../../workers/unpack/tar.js';
import { chunksOf, collect, makeTar, tempDir, type TarMember } from './helpers.js';

interface Listed extends TarEntry {
  data: Buffer;
}

async function list(tar: Uint8Array, opts: { totalSize?: number; chunk?: number } = {}): Promise<Listed[]> {
  const reader = new TarReader(chunksOf(tar, opts.chunk ?? 1000), opts.totalSize === undefined ? {} : { totalSize: opts.totalSize });
  const out: Listed[] = [];
  try {
    for (let e = await reader.next(); e; e = await reader.next()) out.push({ ...e, data: e.type === 'file' ? await collect(reader.body()) : Buffer.alloc(0) });
  } finally {
    await reader.close();
  }
  return out;
}

async function refused(members: TarMember[] | Buffer, code: string, pattern?: RegExp, totalSize?: number): Promise<void> {
  const tar = Buffer.isBuffer(members) ? members : makeTar(members);
  await assert.rejects(list(tar, totalSize === undefined ? {} : { totalSize }), (e: unknown) => {
    assert.ok(e instanceof UnpackRefusedError, `expected a refusal, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test('reads ustar, GNU long names, pax paths and sizes, ustar prefixes, base-256 sizes', async () => {
  const long = `${'d'.repeat(120)}/disk-${'x'.repeat(90)}.vmdk`;
  const entries = await list(
    makeTar([
      { name: './' },
      { name: './a.ovf', data: '<Envelope/>' },
      { name: long, data: 'gnu', longName: 'gnu', format: 'gnu' },
      { name: `p/${long}`, data: 'pax', longName: 'pax' },
      { name: 'some/dir/prefixed.bin', data: 'prefix', longName: 'prefix' },
      { name: 'big.bin', data: 'b256', base256Size: true },
      { name: 'sizes.bin', data: 'paxsize', pax: { size: '7', mtime: '1700000000.5', 'SCHILY.xattr.user.x': 'y' }, headerSize: 0 },
      { name: 'empty.txt' },
      { name: 'ctg.bin', data: 'contiguous', type: '7' },
    ]),
  );
  assert.deepEqual(
    entries.map((e) => [e.name, e.type, e.data.toString()]),
    [
      ['', 'directory', ''],
      ['a.ovf', 'file', '<Envelope/>'],
      [long, 'file', 'gnu'],
      [`p/${long}`, 'file', 'pax'],
      ['some/dir/prefixed.bin', 'file', 'prefix'],
      ['big.bin', 'file', 'b256'],
      ['sizes.bin', 'file', 'paxsize'],
      ['empty.txt', 'file', ''],
      ['ctg.bin', 'file', 'contiguous'],
    ],
  );
});

test('reads archives made by the tar CLI (gnu and pax formats), skipping unread bodies', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'in', 'sub'), { recursive: true });
  const long = `${'n'.repeat(150)}.bin`;
  writeFileSync(join(dir, 'in', 'one.ovf'), 'descriptor');
  writeFileSync(join(dir, 'in', 'sub', long), Buffer.alloc(70_000, 7));
  writeFileSync(join(dir, 'in', 'z.txt'), 'last');
  for (const format of ['gnu', 'pax', 'ustar'] as const) {
    if (format === 'ustar') continue; // ustar cannot hold the 150-byte name
    const path = join(dir, `${format}.tar`);
    execFileSync('tar', ['--format', format, '-cf', path, '-C', join(dir, 'in'), 'one.ovf', 'sub', 'z.txt']);
    const tar = readFileSync(path);
    const reader = new TarReader(chunksOf(tar, 4096), { totalSize: tar.length });
    const names: string[] = [];
    for (let e = await reader.next(); e; e = await reader.next()) {
      names.push(e.name);
      if (e.name === 'z.txt') assert.equal((await collect(reader.body())).toString(), 'last'); // other bodies are skipped
    }
    assert.deepEqual(names, ['one.ovf', 'sub', `sub/${long}`, 'z.txt'], format);
  }
});

test('name normalization and validation', () => {
  assert.equal(normalizeMemberName('./a//b/./c'), 'a/b/c');
  assert.equal(normalizeMemberName('./'), '');
  for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a/..', 'C:/x', 'a\\b', 'a\u0000b', 'a\nb', 'a\u007fb', '']) {
    assert.throws(() => normalizeMemberName(bad), (e: unknown) => e instanceof UnpackRefusedError && e.code === 'unsafe_archive', bad);
  }
});

test('parseNumeric: octal, spaces, base-256; rejects garbage and negatives', () => {
  assert.equal(parseNumeric(Buffer.from('00000001750\0')), 0o1750);
  assert.equal(parseNumeric(Buffer.from('  1750 \0')), 0o1750);
  assert.equal(parseNumeric(Buffer.from('\0\0\0')), 0);
  assert.equal(parseNumeric(Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0])), 512);
  assert.equal(parseNumeric(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), null);
  assert.equal(parseNumeric(Buffer.from('0000008\0')), null);
  assert.equal(parseNumeric(Buffer.from('12 34\0')), null);
});

test('refuses path traversal, absolute paths, and traversal hidden in long names', async () => {
  await refused([{ name: 'a.ovf', data: 'x' }, { name: '../x', data: 'evil' }], 'unsafe_archive', /path traversal/);
  await refused([{ name: 'ok/../../etc/cron.d/x', data: 'evil' }], 'unsafe_archive', /\.\./);
  await refused([{ name: '/etc/passwd', data: 'evil' }], 'unsafe_archive', /absolute/);
  await refused([{ name: `${'a/'.repeat(60)}../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../x`, data: 'e', longName: 'gnu', format: 'gnu' }], 'unsafe_archive');
  await refused([{ name: 'innocent', data: 'e', pax: { path: '../../escape' } }], 'unsafe_archive');
  await refused([{ name: 'dir/sub', longName: 'prefix', data: 'x' }, { name: '/abs/file', longName: 'prefix', data: 'y' }], 'unsafe_archive');
});

test('refuses symlinks, hardlinks, devices and FIFOs', async () => {
  await refused([{ name: 'disk.vmdk', type: '2', linkname: '/etc/shadow' }], 'unsafe_archive', /symbolic link/);
  await refused([{ name: 'disk.vmdk', type: '1', linkname: 'other' }], 'unsafe_archive', /hard link/);
  await refused([{ name: 'tty', type: '3' }], 'unsafe_archive', /character device/);
  await refused([{ name: 'sda', type: '4' }], 'unsafe_archive', /block device/);
  await refused([{ name: 'pipe', type: '6' }], 'unsafe_archive', /FIFO/);
  await refused([{ name: 'link', type: 'K', data: 'target\0' }], 'unsafe_archive');
});

test('refuses duplicate names (also after normalization), control characters, NUL in long names', async () => {
  await refused([{ name: 'disk.vmdk', data: 'a' }, { name: './disk.vmdk', data: 'b' }], 'unsafe_archive', /two members/);
  await refused([{ name: 'd/' }, { name: 'd', type: '5' }], 'unsafe_archive', /two members/);
  await refused([{ name: 'evil\u001b[2J.vmdk', data: 'a' }], 'unsafe_archive', /control characters/);
  await refused([{ name: 'x', data: 'a', pax: { path: 'a\u0000b' } }], 'unsafe_archive', /NUL/);
  const gnuNul = makeTar([{ name: 'innocent.vmdk', data: 'x', longName: 'gnu', format: 'gnu' }]);
  // rewrite the long-name record body "innocent.vmdk\0" into "inn\0cent.vmdk\0"
  gnuNul[512 + 3] = 0;
  fixChecksum(gnuNul, 0);
  await refused(gnuNul, 'unsafe_archive', /NUL/);
  const badUtf8 = makeTar([{ name: 'disk.vmdk', data: 'x' }]);
  badUtf8[2] = 0xff;
  fixChecksum(badUtf8, 0);
  await refused(badUtf8, 'unsafe_archive', /UTF-8/);
});

function fixChecksum(tar: Buffer, offset: number): void {
  tar.write('        ', offset + 148, 'ascii');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += tar[offset + i]!;
  tar.write(sum.toString(8).padStart(6, '0') + '\0 ', offset + 148, 'ascii');
}

test('refuses members larger than the remaining input, truncation, bad checksums, unknown formats', async () => {
  const lying = makeTar([{ name: 'disk.vmdk', data: 'abc', headerSize: 10 * 1024 * 1024 * 1024 }]);
  await refused(lying, 'corrupt_archive', /only .* remain/, lying.length);
  await refused(lying, 'corrupt_archive', /truncated/); // total size unknown: found when the data runs out
  const good = makeTar([{ name: 'disk.vmdk', data: Buffer.alloc(5000, 1) }]);
  await refused(good.subarray(0, 2000), 'corrupt_archive', /truncated/);
  await refused(good.subarray(0, 300), 'corrupt_archive', /truncated/);
  await refused([{ name: 'x', data: 'y', badChecksum: true }], 'corrupt_archive', /checksum/);
  const v7 = makeTar([{ name: 'x', data: 'y' }]);
  v7.fill(0, 257, 265);
  fixChecksum(v7, 0);
  await refused(v7, 'unsupported_archive', /v7/);
  await refused([{ name: 'sparse', type: 'S', data: 'x' }], 'unsupported_archive');
  await refused([{ name: 'sparse', data: 'x', pax: { 'GNU.sparse.major': '1' } }], 'unsupported_archive', /sparse/);
  await refused([{ name: 'vol', type: 'V' }], 'unsupported_archive');
});

test('end of archive: missing marker is tolerated, trailing data is counted', async () => {
  const noEnd = makeTar([{ name: 'a', data: 'x' }], { endBlocks: 0 });
  const r1 = new TarReader(chunksOf(noEnd));
  assert.equal((await r1.next())?.name, 'a');
  assert.equal(await r1.next(), null);
  assert.equal(r1.missingEndMarker, true);
  const trailing = makeTar([{ name: 'a', data: 'x' }], { trailing: Buffer.alloc(512, 0x41) });
  const r2 = new TarReader(chunksOf(trailing));
  while (await r2.next());
  assert.equal(r2.trailingBytes, 512);
});

test('refuses archives with too many headers', async () => {
  const many = makeTar(Array.from({ length: 30 }, (_, i) => ({ name: `f${i}`, data: 'x' })));
  const reader = new TarReader(chunksOf(many), { maxHeaders: 20 });
  await assert.rejects(
    (async () => {
      while (await reader.next());
    })(),
    (e: unknown) => e instanceof UnpackRefusedError && e.code === 'unsupported_archive' && /more than 20 members/.test(e.message),
  );
});
