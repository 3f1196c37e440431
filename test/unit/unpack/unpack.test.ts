import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { unpack, UnpackRefusedError, type UnpackLimits, type UnpackResult } from '../../../workers/unpack/unpack.js';
import { compressCli, digests, makeOva, makeOvf, makeTar, sampleDisk, tempDir, type TarMember } from './helpers.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const limits: UnpackLimits = { maxOutputBytes: 4 * GiB, maxRatio: 200 };

function decoderChildren(): string[] {
  try {
    return execFileSync('ps', ['--ppid', String(process.pid), '-o', 'comm='], { encoding: 'utf8' })
      .split('\n')
      .map((s) => s.trim())
      .filter((s) => ['xz', 'zstd', 'bzip2'].includes(s));
  } catch {
    return [];
  }
}

function setup(t: { after: (fn: () => void) => void }) {
  const dir = tempDir(t);
  let n = 0;
  return {
    dir,
    input(data: Uint8Array): string {
      const p = join(dir, `input-${n++}`);
      writeFileSync(p, data);
      return p;
    },
    out: () => join(dir, `out-${n++}`),
  };
}

async function refusedUnpack(input: string, output: string, containerFormat: string | null, code: string, pattern?: RegExp, lim: UnpackLimits = limits): Promise<UnpackRefusedError> {
  try {
    await unpack(input, output, { containerFormat, limits: lim });
  } catch (error) {
    assert.ok(error instanceof UnpackRefusedError, `expected UnpackRefusedError, got ${String((error as Error)?.stack ?? error)}`);
    assert.equal(error.code, code, error.message);
    assert.equal(error.retryable, false);
    if (pattern) assert.match(error.message, pattern);
    assert.equal(existsSync(output), false, 'the partial output must be removed');
    assert.deepEqual(decoderChildren(), []);
    return error;
  }
  assert.fail(`expected refusal ${code}`);
}

function assertOutput(result: Awaited<ReturnType<typeof unpack>>, expected: Uint8Array): void {
  assert.ok(result.output, 'expected an output file');
  assert.deepEqual({ size: result.output.size, md5: result.output.md5, sha512: result.output.sha512 }, digests(expected));
  assert.ok(readFileSync(result.output.path).equals(expected));
}

for (const codec of ['gzip', 'xz', 'zstd', 'bzip2'] as const) {
  test(`unpack ${codec}: decompresses whatever container_format says, with digests of the output`, async (t) => {
    const s = setup(t);
    const disk = sampleDisk(5 * MiB + 17);
    const input = s.input(compressCli(codec, disk));
    for (const containerFormat of ['bare', null, 'ovf']) {
      const result = await unpack(input, s.out(), { containerFormat, limits });
      assert.equal(result.codec, codec);
      assert.equal(result.container, 'bare');
      assert.deepEqual(result.properties, {});
      assertOutput(result, disk);
    }
  });
}

test('bare uncompressed input passes through with zero copies', async (t) => {
  const s = setup(t);
  const out = s.out();
  const input = s.input(Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(1000)]));
  const result = await unpack(input, out, { containerFormat: 'bare', limits });
  assert.deepEqual(result, { codec: 'none', container: 'bare', output: null, properties: {}, findings: [] });
  assert.equal(existsSync(out), false);
  // a tar with container_format bare (or docker) is not extracted either
  const tar = await unpack(s.input(makeTar([{ name: 'a', data: 'b' }])), out, { containerFormat: 'docker', limits });
  assert.equal(tar.output, null);
  // ovf that is not a tar: stored as is, with a note
  const ovf = await unpack(input, out, { containerFormat: 'ovf', limits });
  assert.equal(ovf.output, null);
  assert.equal(ovf.container, 'bare');
  assert.equal(ovf.findings[0]?.code, 'ovf_not_a_package');
});

test('container_format ova on something that is not a tar is refused', async (t) => {
  const s = setup(t);
  await refusedUnpack(s.input(sampleDisk(10_000)), s.out(), 'ova', 'not_an_ova', /not a tar archive/);
  await refusedUnpack(s.input(compressCli('xz', sampleDisk(10_000))), s.out(), 'ova', 'not_an_ova', /xz-decompressed/);
  await refusedUnpack(s.input(compressCli('gzip', compressCli('gzip', Buffer.from('x')))), s.out(), 'OVA', 'not_an_ova', /only once/);
});

test('a compressed tar with container_format bare is decompressed but not extracted', async (t) => {
  const s = setup(t);
  const tar = makeTar([{ name: 'a', data: 'b' }]);
  const result = await unpack(s.input(zlib.gzipSync(tar)), s.out(), { containerFormat: 'bare', limits });
  assertOutput(result, tar);
  assert.ok(result.findings.some((f) => f.code === 'decompressed_tar'));
});

test('gzip bomb through unpack: 10 GiB of zeros in 10 MiB is refused once past the ratio floor, within seconds', async (t) => {
  const s = setup(t);
  const member = zlib.gzipSync(Buffer.alloc(64 * MiB), { level: 9 });
  const input = s.input(Buffer.concat(Array.from({ length: 160 }, () => member)));
  let started = Date.now();
  // The default floor (1 GiB): decoded up to the floor (as holes, no disk), then refused.
  let error = await refusedUnpack(input, s.out(), 'bare', 'expansion_ratio', /200:1 ratio beyond the first 1 GiB/, { maxOutputBytes: 64 * GiB, maxRatio: 200 });
  assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
  assert.match(error.message, /qemu-img convert/);
  assert.match(error.message, /expanded to 1 GiB \(\d+ bytes\) from only 1(\.\d)? MiB/);
  started = Date.now();
  error = await refusedUnpack(input, s.out(), 'bare', 'expansion_ratio', /200:1 ratio beyond the first 1 MiB/, { maxOutputBytes: 64 * GiB, maxRatio: 200, ratioFloorBytes: MiB });
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  // with a lax ratio, the output limit stops it
  await refusedUnpack(input, s.out(), 'bare', 'decompressed_too_large', /256 MiB/, { maxOutputBytes: 256 * MiB, maxRatio: 1e6 });
});

test('corrupt and truncated compressed uploads are refused and leave no output', async (t) => {
  const s = setup(t);
  for (const codec of ['gzip', 'xz', 'zstd', 'bzip2'] as const) {
    const packed = compressCli(codec, sampleDisk(3 * MiB));
    await refusedUnpack(s.input(packed.subarray(0, packed.length - 100)), s.out(), 'bare', 'corrupt_archive');
    const flipped = Buffer.from(packed);
    for (let i = 2000; i < 2100; i++) flipped[i] = flipped[i]! ^ 0xff;
    await refusedUnpack(s.input(flipped), s.out(), null, 'corrupt_archive');
  }
});

// ------------------------------------------------------------------ OVA

const realisticOvf = (disk: { href: string; compression?: string; size?: number }) =>
  makeOvf({
    disks: [disk],
    osId: 101,
    vmwOsType: 'debian11_64Guest',
    osDescription: 'Debian GNU/Linux 11 (64-bit)',
    cpus: 2,
    memory: { quantity: 2048 },
    pasd: { InstructionSetExtensionName: 'DMTF:x86:VT-d' },
  });

test('OVA: extracts the referenced disk, verifies the manifest, maps properties', async (t) => {
  const s = setup(t);
  const disk = sampleDisk(3 * MiB + 5);
  const ova = makeOva({ ovf: realisticOvf({ href: 'appliance-disk1.vmdk', size: disk.length }), manifest: 'auto', files: { 'appliance-disk1.vmdk': disk, 'nvram.bin': Buffer.alloc(8192, 1) } });
  const result = await unpack(s.input(ova), s.out(), { containerFormat: 'ova', limits });
  assert.equal(result.codec, 'none');
  assert.equal(result.container, 'ova');
  assertOutput(result, disk);
  assert.deepEqual(result.properties, {
    cim_pasd_InstructionSetExtensionName: 'DMTF:x86:VT-d',
    os_type: 'linux',
    os_distro: 'debian',
    ovf_os_id: '101',
    ovf_os_vmw_type: 'debian11_64Guest',
    ovf_os_description: 'Debian GNU/Linux 11 (64-bit)',
    ovf_vcpus: '2',
    ovf_memory_mb: '2048',
  });
  assert.deepEqual(result.findings, []);
});

test('OVA: a gzip-compressed disk (ovf:compression) and a compressed OVA are unpacked', async (t) => {
  const s = setup(t);
  const disk = sampleDisk(2 * MiB);
  const gzDisk = zlib.gzipSync(disk);
  const ova = makeOva({ ovf: realisticOvf({ href: 'disk.vmdk', compression: 'gzip', size: gzDisk.length }), manifest: 'auto', files: { 'disk.vmdk': gzDisk } });
  const r1 = await unpack(s.input(ova), s.out(), { containerFormat: 'ova', limits });
  assertOutput(r1, disk);
  assert.ok(r1.findings.some((f) => f.code === 'ovf_disk_gzip'));
  for (const codec of ['xz', 'zstd', 'gzip', 'bzip2'] as const) {
    const r = await unpack(s.input(compressCli(codec, ova)), s.out(), { containerFormat: 'ova', limits });
    assert.equal(r.codec, codec);
    assert.equal(r.container, 'ova');
    assertOutput(r, disk);
  }
  // container_format ovf with a tar package behaves the same
  const r2 = await unpack(s.input(ova), s.out(), { containerFormat: 'ovf', limits });
  assert.equal(r2.container, 'ovf');
  assertOutput(r2, disk);
});

test('OVA built by the tar CLI', async (t) => {
  const s = setup(t);
  const src = join(s.dir, 'pkg');
  mkdirSync(src);
  const disk = sampleDisk(MiB + 3);
  writeFileSync(join(src, 'vm.ovf'), realisticOvf({ href: 'vm-disk1.vmdk' }));
  writeFileSync(join(src, 'vm-disk1.vmdk'), disk);
  const ovaPath = join(s.dir, 'vm.ova');
  execFileSync('tar', ['--format', 'ustar', '-cf', ovaPath, '-C', src, 'vm.ovf', 'vm-disk1.vmdk']);
  assertOutput(await unpack(ovaPath, s.out(), { containerFormat: 'ova', limits }), disk);
  const paxPath = join(s.dir, 'vm-pax.ova');
  execFileSync('tar', ['--format', 'pax', '-cf', paxPath, '-C', src, 'vm.ovf', 'vm-disk1.vmdk']);
  assertOutput(await unpack(paxPath, s.out(), { containerFormat: 'ova', limits }), disk);
});

test('OVA: several disks → the first is imported, the others reported', async (t) => {
  const s = setup(t);
  const boot = sampleDisk(100_000);
  const ova = makeOva({ ovf: makeOvf({ disks: [{ href: 'boot.vmdk' }, { href: 'data.vmdk' }] }), files: { 'boot.vmdk': boot, 'data.vmdk': Buffer.alloc(5000) } });
  const r = await unpack(s.input(ova), s.out(), { containerFormat: 'ova', limits });
  assertOutput(r, boot);
  assert.match(r.findings.find((f) => f.code === 'ovf_additional_disks')?.message ?? '', /data\.vmdk/);
});

const ovfFor = (href = 'disk.vmdk') => makeOvf({ disks: [{ href }] });

async function refusedOva(t: { after: (fn: () => void) => void }, members: TarMember[], code: string, pattern?: RegExp): Promise<void> {
  const s = setup(t);
  const tar = makeTar(members);
  await refusedUnpack(s.input(tar), s.out(), 'ova', code, pattern);
  await refusedUnpack(s.input(compressCli('zstd', tar)), s.out(), 'ova', code, pattern); // same when streamed through a decoder
}

const disk = Buffer.alloc(4096, 0x33);

test('hostile OVA: path traversal, absolute paths', async (t) => {
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor() }, { name: 'disk.vmdk', data: disk }, { name: '../x', data: 'evil' }], 'unsafe_archive', /traversal/);
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor() }, { name: '/etc/cron.d/x', data: 'evil' }, { name: 'disk.vmdk', data: disk }], 'unsafe_archive', /absolute/);
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor('../disk.vmdk') }, { name: 'disk.vmdk', data: disk }], 'unsafe_archive');
});

test('hostile OVA: links, devices, FIFOs', async (t) => {
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor() }, { name: 'disk.vmdk', type: '2', linkname: '/etc/shadow' }], 'unsafe_archive', /symbolic link/);
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor() }, { name: 'disk.vmdk', data: disk }, { name: 'x', type: '1', linkname: 'disk.vmdk' }], 'unsafe_archive', /hard link/);
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor() }, { name: 'disk.vmdk', type: '4' }], 'unsafe_archive', /block device/);
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor() }, { name: 'disk.vmdk', data: disk }, { name: 'p', type: '6' }], 'unsafe_archive', /FIFO/);
});

test('hostile OVA: duplicate names (a second disk.vmdk) are refused even after the disk was written', async (t) => {
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor() }, { name: 'disk.vmdk', data: disk }, { name: 'disk.vmdk', data: 'other' }], 'unsafe_archive', /two members/);
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor() }, { name: 'disk.vmdk', data: disk }, { name: './a.ovf', data: 'x' }], 'unsafe_archive', /two members/);
});

test('hostile OVA: DOCTYPE / entities in the descriptor', async (t) => {
  const xxe = makeOvf({ disks: [{ href: 'disk.vmdk' }], prolog: '<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', osId: 1, osDescription: '&xxe;' });
  await refusedOva(t, [{ name: 'a.ovf', data: xxe }, { name: 'disk.vmdk', data: disk }], 'invalid_ovf', /DOCTYPE/);
});

test('OVA: missing disk, descriptor not first, no descriptor, oversized disk, manifest mismatch', async (t) => {
  await refusedOva(t, [{ name: 'a.ovf', data: ovfFor('disk.vmdk') }, { name: 'other.vmdk', data: disk }], 'ovf_disk_missing', /disk\.vmdk/);
  await refusedOva(t, [{ name: 'disk.vmdk', data: disk }, { name: 'a.ovf', data: ovfFor() }], 'invalid_ovf', /must start with/);
  await refusedOva(t, [{ name: 'only-a-dir/' }], 'invalid_ovf', /no files/);
  const s = setup(t);
  await refusedUnpack(
    s.input(makeTar([{ name: 'a.ovf', data: ovfFor() }, { name: 'disk.vmdk', data: Buffer.alloc(2 * MiB) }])),
    s.out(),
    'ova',
    'decompressed_too_large',
    /1 MiB/,
    { maxOutputBytes: MiB, maxRatio: 10 },
  );
  const bad = makeOva({ ovf: ovfFor(), files: { 'disk.vmdk': disk }, manifest: `SHA256(disk.vmdk)= ${'0'.repeat(64)}\n` });
  await refusedUnpack(s.input(bad), s.out(), 'ova', 'manifest_mismatch', /SHA256\(disk\.vmdk\)/);
  const badOvfDigest = makeOva({ ovf: ovfFor(), files: { 'disk.vmdk': disk }, manifest: `SHA1(appliance.ovf)= ${'1'.repeat(40)}\n` });
  await refusedUnpack(s.input(badOvfDigest), s.out(), 'ova', 'manifest_mismatch', /appliance\.ovf/);
});

test('OVA: a gzip bomb as the disk is refused by the upload-relative ratio', async (t) => {
  const s = setup(t);
  const bomb = zlib.gzipSync(Buffer.alloc(256 * MiB), { level: 9 });
  const ova = makeTar([{ name: 'a.ovf', data: makeOvf({ disks: [{ href: 'disk.vmdk', compression: 'gzip' }] }) }, { name: 'disk.vmdk', data: bomb }]);
  await refusedUnpack(s.input(ova), s.out(), 'ova', 'expansion_ratio', /beyond the first 1 MiB/, { ...limits, ratioFloorBytes: MiB });
});

test('environment failures are not refusals; a stale output is replaced; abort cleans up', async (t) => {
  const s = setup(t);
  const packed = compressCli('xz', sampleDisk(2 * MiB));
  const input = s.input(packed);
  await assert.rejects(unpack(input, join(s.dir, 'no-such-dir', 'out'), { containerFormat: 'bare', limits }), (e: unknown) => !(e instanceof UnpackRefusedError));
  assert.deepEqual(decoderChildren(), []);
  await assert.rejects(unpack(join(s.dir, 'missing-input'), s.out(), { containerFormat: 'bare', limits }), (e: unknown) => !(e instanceof UnpackRefusedError));

  const out = s.out();
  writeFileSync(out, 'left over by a crashed attempt');
  assertOutput(await unpack(input, out, { containerFormat: 'bare', limits }), sampleDiskOf(packed));

  const controller = new AbortController();
  const big = s.input(compressCli('zstd', sampleDisk(64 * MiB)));
  const out2 = s.out();
  setTimeout(() => controller.abort(new Error('shutting down')), 20);
  await assert.rejects(unpack(big, out2, { containerFormat: 'bare', limits, signal: controller.signal }), /shutting down/);
  assert.equal(existsSync(out2), false);
  assert.deepEqual(decoderChildren(), []);
  await assert.rejects(unpack(big, out2, { containerFormat: 'bare', limits, signal: AbortSignal.abort() }));
  await assert.rejects(unpack(big, out2, { containerFormat: 'bare', limits: { maxOutputBytes: -1, maxRatio: 1 } }), TypeError);
});

function sampleDiskOf(xz: Buffer): Buffer {
  return execFileSync('xz', ['-dc'], { input: xz, maxBuffer: 1 << 30 });
}
