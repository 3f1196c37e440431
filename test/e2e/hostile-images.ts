/**
 * Fixtures for the formats-pipeline e2e suite: an image of every format PIR knows, generated at
 * test time with qemu-img (hand-built where qemu-img cannot make one: ISO, GPT, MBR), and hostile
 * images built from them. Each fixture carries the verdict the whole pipeline must reach:
 * active (with the digests of the bytes to store and qemu-img info's virtual size) or killed
 * (stage, error code, and what the message must name).
 *
 * Reuses the unit tests' builders: qemu-img wrappers (test/support/images.ts), ISO/GPT/MBR
 * crafting and differencing VHD/VHDX edits (test/unit/formats/craft.ts), tar/OVF/OVA writers and
 * CLI compression (test/unit/unpack/helpers.ts).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { convertImage, makeImage, makeLuksImage, qemuInfo } from '../support/images.js';
import { differencingVhd, differencingVhdx, editVhdFooters, gptDisk, isoImage, mbrSector, patched } from '../unit/formats/craft.js';
import { compressCli, makeOva, makeOvf, makeTar, makeZip, mostlyEmptyDisk, type TarMember } from '../unit/unpack/helpers.js';

const KiB = 1024;
export const MiB = 2 ** 20;
export const TiB = 2 ** 40;

/** Limits the suite's `pir serve` runs with; the hostile fixtures are sized against them. */
export const LIMITS = {
  maxVirtualSize: TiB,
  maxUnpackedSize: 128 * MiB,
  maxExpansionRatio: 100,
  /** PIR_UNPACK_RATIO_FLOOR: below PIR_MAX_UNPACKED_SIZE, so bombs meet the ratio before the size limit. */
  unpackRatioFloor: 64 * MiB,
} as const;

export interface ActiveExpectation {
  status: 'active';
  /** The bytes the store must hold (the file itself, or the unpacked disk). */
  size: number;
  md5: string;
  sha512: string;
  /** The virtual size PIR must report: qemu-img info's, unless `qemu.note` says why not. */
  virtualSize: number;
  /**
   * qemu-img's name for the format (`-f`), what `qemu-img info` probed the file as and what it
   * should probe it as, and the virtual size `qemu-img info -f <format>` reports.
   */
  qemu: { format: string; probed: string; probedAs: string; virtualSize: number; note?: string };
  /** sha512 of the uploaded artifact, when it differs from the stored disk (compressed, OVA). */
  uploadedSha512?: string;
  /** Properties the image must carry once active (e.g. from an OVF). */
  properties?: Record<string, string>;
}

export interface KilledExpectation {
  status: 'killed';
  stage: 'unpack' | 'inspect';
  code: string;
  /** What the message (API error and pir_failure) must name. */
  message: RegExp;
  /** The upload must be answered (refused) within this many seconds. */
  withinSeconds?: number;
}

export interface Fixture {
  label: string;
  path: string;
  disk_format: string;
  container_format: string;
  expect: ActiveExpectation | KilledExpectation;
}

async function digests(path: string): Promise<{ size: number; md5: string; sha512: string }> {
  const data = await readFile(path);
  return { size: data.length, md5: createHash('md5').update(data).digest('hex'), sha512: createHash('sha512').update(data).digest('hex') };
}

/** A 16 MiB sparse raw disk with random data in a few places, the source every image is converted from. */
async function makeSourceDisk(path: string): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(16 * MiB);
    for (const at of [0, 1, 5, 11, 15]) await handle.write(randomBytes(64 * 1024), 0, 64 * 1024, at * MiB + 4096);
  } finally {
    await handle.close();
  }
}

async function active(label: string, path: string, disk_format: string, qemuFormat: string, opts: { probedAs?: string; note?: string } = {}): Promise<Fixture> {
  const { note, probedAs = qemuFormat } = opts;
  const [d, info, probed] = await Promise.all([digests(path), qemuInfo(path, qemuFormat), qemuInfo(path)]);
  const qemu = { format: qemuFormat, probed: probed.format, probedAs, virtualSize: info['virtual-size'], ...(note ? { note } : {}) };
  // Where qemu-img differs (see note), PIR reports what Glance's own inspector does: the file size.
  const virtualSize = note ? d.size : info['virtual-size'];
  return { label, path, disk_format, container_format: 'bare', expect: { status: 'active', ...d, virtualSize, qemu } };
}

function killed(label: string, path: string, disk_format: string, stage: KilledExpectation['stage'], code: string, message: RegExp, container_format = 'bare'): Fixture {
  return { label, path, disk_format, container_format, expect: { status: 'killed', stage, code, message } };
}

/**
 * An ISO 9660 image with a UDF bridge, as Debian's genisoimage writes it (os-test-images'
 * standard-udf): a real mastering tool's output beside the hand-built ISO.
 */
async function genisoimage(dir: string, name: string): Promise<string> {
  const content = join(dir, `${name}.txt`);
  await writeFile(content, 'a file on a disc\n');
  const path = join(dir, name);
  await promisify(execFile)('genisoimage', ['-quiet', '-udf', '-V', 'PIR_TEST', '-o', path, content]);
  return path;
}

/**
 * A monolithicSparse VMDK whose grain directory is found through a footer (os-test-images'
 * vmdk-sparse-with-footer, after VMware's own tools): the header's gdOffset says "at the end"
 * (GD_AT_END), and the file ends with a footer marker, the footer (the header again, with the
 * real gdOffset) and an end-of-stream marker.
 */
function withVmdkFooter(sparse: Buffer): Buffer {
  const header = Buffer.from(sparse.subarray(0, 512));
  const tail = Buffer.alloc(3 * 512);
  tail.writeUInt32LE(3, 12); // marker type 3: a footer follows
  header.copy(tail, 512);
  const out = Buffer.concat([sparse, tail]);
  out.writeBigUInt64LE(0xffffffffffffffffn, 56); // the header's gdOffset: GD_AT_END
  return out;
}

/** Every format PIR accepts, generated with qemu-img from one source disk (ISO/GPT/MBR hand-built). */
export async function buildGoodFixtures(dir: string): Promise<{ fixtures: Fixture[]; streamVmdk: string; qcow2: string }> {
  const source = join(dir, 'source.raw');
  await makeSourceDisk(source);
  const conv = (name: string, format: string, options: Record<string, string> = {}) => convertImage(source, join(dir, name), format, options);
  const [qcow2, qcow2v2, qcow2zstd, vmdkSparse, streamVmdk, vhdDyn, vhdFixed, vhdxDyn, vhdxFixed, vdiDyn, vdiStatic, ploop] = await Promise.all([
    conv('good-v3.qcow2', 'qcow2', { compat: '1.1' }),
    conv('good-v2.qcow2', 'qcow2', { compat: '0.10' }),
    conv('good-zstd.qcow2', 'qcow2', { compression_type: 'zstd' }),
    conv('good-sparse.vmdk', 'vmdk'),
    conv('good-stream.vmdk', 'vmdk', { subformat: 'streamOptimized' }),
    conv('good-dynamic.vhd', 'vpc'),
    conv('good-fixed.vhd', 'vpc', { subformat: 'fixed' }),
    conv('good-dynamic.vhdx', 'vhdx'),
    conv('good-fixed.vhdx', 'vhdx', { subformat: 'fixed' }),
    conv('good-dynamic.vdi', 'vdi'),
    conv('good-static.vdi', 'vdi', { static: 'on' }),
    conv('good.ploop', 'parallels'),
  ]);
  const iso = join(dir, 'good.iso');
  await writeFile(iso, isoImage({ blocks: 256 }));
  const gpt = join(dir, 'good-gpt.raw');
  await writeFile(gpt, gptDisk({ size: 4 * MiB }));
  const mbr = join(dir, 'good-mbr.raw');
  const mbrDisk = Buffer.alloc(4 * MiB);
  mbrSector([{ status: 0x80, type: 0x83, lba: 2048, sectors: 4 * 2048 }], mbrDisk.subarray(0, 512));
  await writeFile(mbr, mbrDisk);
  const udfIso = await genisoimage(dir, 'genisoimage-udf.iso');
  const footerVmdk = join(dir, 'sparse-with-footer.vmdk');
  await writeFile(footerVmdk, withVmdkFooter(await readFile(await makeImage(dir, 'vmdk', { name: 'sparse-for-footer.vmdk', size: '16M' }))));
  // An empty raw disk is a disk, as in Glance (what the glance and openstack CLIs upload from an empty, non-terminal stdin).
  const empty = join(dir, 'empty.raw');
  await writeFile(empty, Buffer.alloc(0));
  // Not whole 512-byte sectors: stored as uploaded, as Glance does, with an info finding (formats/judge.ts).
  const partial = join(dir, '1000-bytes.raw');
  await writeFile(partial, Buffer.alloc(1000, 0x51));

  const fixtures = await Promise.all([
    active('raw (sparse, 16 MiB)', source, 'raw', 'raw'),
    active('qcow2 v3', qcow2, 'qcow2', 'qcow2'),
    active('qcow2 v2 (compat=0.10)', qcow2v2, 'qcow2', 'qcow2'),
    active('qcow2 zstd compression_type', qcow2zstd, 'qcow2', 'qcow2'),
    active('vmdk monolithicSparse', vmdkSparse, 'vmdk', 'vmdk'),
    active('vmdk streamOptimized', streamVmdk, 'vmdk', 'vmdk'),
    active('vhd dynamic', vhdDyn, 'vhd', 'vpc'),
    // qemu probes only offset 0, where a fixed VHD has no footer (formats/README.md).
    active('vhd fixed', vhdFixed, 'vhd', 'vpc', { probedAs: 'raw' }),
    active('vhdx dynamic', vhdxDyn, 'vhdx', 'vhdx'),
    active('vhdx fixed', vhdxFixed, 'vhdx', 'vhdx'),
    active('vdi dynamic', vdiDyn, 'vdi', 'vdi'),
    active('vdi static', vdiStatic, 'vdi', 'vdi'),
    active('ploop (parallels)', ploop, 'ploop', 'parallels'),
    active('iso 9660 (hand-built)', iso, 'iso', 'raw'),
    active('iso 9660 with a UDF bridge (genisoimage)', udfIso, 'iso', 'raw'),
    active('vmdk monolithicSparse with a footer (grain directory at the end)', footerVmdk, 'vmdk', 'vmdk'),
    // qemu reads an ISO as a plain disk, so declared raw it is one (as in Glance), sized as the file.
    active('iso 9660 declared raw', iso, 'raw', 'raw'),
    active('raw with GPT (hand-built)', gpt, 'raw', 'raw'),
    active('raw with MBR (hand-built)', mbr, 'raw', 'raw'),
    active('empty raw disk (0 bytes)', empty, 'raw', 'raw'),
    active('raw of 1000 bytes (not whole sectors)', partial, 'raw', 'raw', { note: "Glance's inspector reports a raw file's own size; qemu-img rounds it up to whole sectors" }),
    active('empty raw disk (0 bytes), container compressed', empty, 'raw', 'raw').then((f) => ({ ...f, container_format: 'compressed' })),
  ]);
  return { fixtures, streamVmdk, qcow2 };
}

/** A qcow2 compressed with each codec (container_format compressed): stored as the qcow2 itself. */
export async function buildCompressedFixtures(dir: string, qcow2: string): Promise<Fixture[]> {
  const data = await readFile(qcow2);
  const base = await active('qcow2', qcow2, 'qcow2', 'qcow2');
  const out: Fixture[] = [];
  for (const codec of ['gzip', 'xz', 'zstd', 'bzip2'] as const) {
    const path = join(dir, `compressed.qcow2.${codec}`);
    const packed = compressCli(codec, data);
    await writeFile(path, packed);
    out.push({
      label: `${codec}-compressed qcow2`,
      path,
      disk_format: 'qcow2',
      container_format: 'compressed',
      expect: { ...(base.expect as ActiveExpectation), uploadedSha512: createHash('sha512').update(packed).digest('hex'), properties: { pir_uploaded_codec: codec } },
    });
  }
  return out;
}

/**
 * A 16 MiB raw disk holding an MBR and little else (a fresh cloud image), compressed to ~16 KiB
 * with gzip, xz, zstd, as a multi-member gzip and as a single-member zip: far past any ratio
 * limit, but under the ratio floor, so each becomes active as the raw disk.
 */
export async function buildMostlyEmptyFixtures(dir: string): Promise<Fixture[]> {
  const disk = mostlyEmptyDisk(16 * MiB);
  const raw = join(dir, 'mostly-empty.raw');
  await writeFile(raw, disk);
  const base = (await active('raw', raw, 'raw', 'raw')).expect as ActiveExpectation;
  const quarter = disk.length / 4;
  const packs: Array<[string, string, Buffer]> = [
    ['gzip', 'gzip', compressCli('gzip', disk)],
    ['xz', 'xz', compressCli('xz', disk)],
    ['zstd', 'zstd', compressCli('zstd', disk)],
    ['multi-member gzip', 'gzip', Buffer.concat([0, 1, 2, 3].map((i) => zlib.gzipSync(disk.subarray(i * quarter, (i + 1) * quarter))))],
    ['single-member zip', 'zip', makeZip([{ name: 'disk.raw', data: disk }])],
  ];
  const out: Fixture[] = [];
  for (const [label, codec, packed] of packs) {
    const path = join(dir, `mostly-empty.raw.${label.replace(/\W+/g, '-')}`);
    await writeFile(path, packed);
    out.push({
      label: `16 MiB mostly-empty raw disk, ${label} (${(packed.length / KiB).toFixed(1)} KiB)`,
      path,
      disk_format: 'raw',
      container_format: 'compressed',
      expect: { ...base, uploadedSha512: createHash('sha512').update(packed).digest('hex'), properties: { pir_uploaded_codec: codec } },
    });
  }
  return out;
}

const OVF_SPEC = { osId: 94, vmwOsType: 'ubuntu64Guest', osDescription: 'Ubuntu Linux (64-bit)', cpus: 2, memory: { quantity: 2048 } };

/** A well-formed OVA: descriptor, SHA256 manifest, streamOptimized VMDK. */
export async function buildGoodOva(dir: string, streamVmdk: string): Promise<Fixture> {
  const disk = await readFile(streamVmdk);
  const ova = makeOva({ ovf: makeOvf({ disks: [{ href: 'disk1.vmdk', size: disk.length }], ...OVF_SPEC }), files: { 'disk1.vmdk': disk }, manifest: 'auto' });
  const path = join(dir, 'good.ova');
  await writeFile(path, ova);
  const base = await active('vmdk', streamVmdk, 'vmdk', 'vmdk');
  return {
    label: 'OVA (ovf + mf + streamOptimized vmdk)',
    path,
    disk_format: 'vmdk',
    container_format: 'ova',
    expect: {
      ...(base.expect as ActiveExpectation),
      uploadedSha512: createHash('sha512').update(ova).digest('hex'),
      properties: { os_type: 'linux', os_distro: 'ubuntu', ovf_os_id: '94', ovf_os_vmw_type: 'ubuntu64Guest', ovf_os_description: 'Ubuntu Linux (64-bit)', ovf_vcpus: '2', ovf_memory_mb: '2048', pir_uploaded_codec: 'none' },
    },
  };
}

// ------------------------------------------------------------------ hostile images

/**
 * Concatenated gzip members, each `member` expanding to `memberBytes`: zeros only (the classic
 * bomb, ~1000:1), or zeros with `noiseBytes` of random data per member to keep the ratio under
 * the limit so that only the output size stops it.
 */
function gzipBomb(members: number, memberBytes: number, noiseBytes = 0): Buffer {
  const plain = Buffer.alloc(memberBytes);
  if (noiseBytes) randomBytes(noiseBytes).copy(plain, 0);
  const member = zlib.gzipSync(plain, { level: 9 });
  return Buffer.concat(Array.from({ length: members }, () => member));
}

export async function buildHostileFixtures(dir: string, streamVmdk: string, qcow2: string): Promise<Fixture[]> {
  const file = async (name: string, data: Buffer | string): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, data);
    return path;
  };
  const out: Fixture[] = [];
  const I = 'inspect';
  const U = 'unpack';

  // --- qcow2: backing file, external data file, unknown incompatible feature, huge virtual size
  const backing = await makeImage(dir, 'qcow2', { name: 'backing.qcow2', size: '16M', backing: '/etc/passwd', backingFormat: 'raw', unsafe: true });
  out.push(killed('qcow2 with backing file /etc/passwd', backing, 'qcow2', I, 'qcow2_backing_file', /backing file.*\/etc\/passwd/));
  const dataFile = join(dir, 'external-data.raw');
  const withDataFile = await makeImage(dir, 'qcow2', { name: 'data-file.qcow2', size: '16M', options: { data_file: dataFile } });
  out.push(killed('qcow2 with external data file', withDataFile, 'qcow2', I, 'qcow2_data_file', new RegExp(`data file.*${dataFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`)));
  const clean = await readFile(await makeImage(dir, 'qcow2', { name: 'clean.qcow2', size: '16M', options: { compat: '1.1' } }));
  out.push(killed('qcow2 with unknown incompatible feature bit', await file('unknown-feature.qcow2', patched(clean, 79, (b) => { b[0]! |= 0x20; })), 'qcow2', I, 'qcow2_unknown_features', /incompatible_features.*bit\(s\) 5/));
  const huge = await makeImage(dir, 'qcow2', { name: 'huge.qcow2', size: '2T' });
  out.push(killed('qcow2 with 2 TiB virtual size (limit 1 TiB)', huge, 'qcow2', I, 'virtual_size_too_large', /2199023255552 bytes.*limit of 1099511627776/));

  // --- vmdk: descriptor naming /etc/passwd, monolithicFlat descriptor without its extent
  const passwdDescriptor = '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n# Extent description\nRW 2048 FLAT "/etc/passwd" 0\n\nddb.virtualHWVersion = "4"\n';
  out.push(killed('vmdk descriptor with extent /etc/passwd', await file('passwd.vmdk', passwdDescriptor), 'vmdk', I, 'vmdk_external_extent', /\/etc\/passwd/));
  // As `qemu-img convert` writes a descriptor (NUL padded to 512 bytes), declared raw: qemu still probes it as vmdk.
  const padded = Buffer.concat([Buffer.from(passwdDescriptor), Buffer.alloc(512 - passwdDescriptor.length)]);
  out.push(killed('NUL-padded vmdk descriptor with extent /etc/passwd, declared raw', await file('passwd-padded.vmdk', padded), 'raw', I, 'vmdk_external_extent', /\/etc\/passwd/));
  // A cloop image (qemu probes it by its first bytes) declared raw: another disk to qemu-img than the raw one.
  const cloop = Buffer.alloc(4096);
  cloop.write('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n', 0, 'latin1');
  cloop.writeUInt32BE(65536, 128);
  cloop.writeUInt32BE(1, 132);
  out.push(killed('cloop image declared raw', await file('disk.cloop', cloop), 'raw', I, 'qemu_only_format', /format 'cloop'/));
  // os-test-images' iso-with-qcow2-in-system: qemu-img probes it as qcow2, a disc reader as ISO.
  const isoQcow2 = await readFile(await genisoimage(dir, 'with-qcow2-system-area.iso'));
  clean.copy(isoQcow2, 0, 0, Math.min(clean.length, 32 * 1024));
  out.push(killed('iso 9660 with a qcow2 header in its system area', await file('qcow2-system-area.iso', isoQcow2), 'iso', I, 'multiple_formats', /several/));
  const flat = await makeImage(dir, 'vmdk', { name: 'flat.vmdk', size: '16M', options: { subformat: 'monolithicFlat' } });
  out.push(killed('monolithicFlat vmdk descriptor alone', flat, 'vmdk', I, 'vmdk_external_extent', /flat-flat\.vmdk/));

  // --- differencing VHD and VHDX
  const vhd = await readFile(await makeImage(dir, 'vpc', { name: 'base.vhd', size: '16M' }));
  out.push(killed('differencing vhd', await file('differencing.vhd', differencingVhd(vhd, 'C:\\VMs\\parent.vhd')), 'vhd', I, 'vhd_differencing', /differencing disk.*parent/));
  const vhdx = await readFile(await makeImage(dir, 'vhdx', { name: 'base.vhdx', size: '16M' }));
  out.push(killed('differencing vhdx', await file('differencing.vhdx', differencingVhdx(vhdx, 'C:\\VMs\\parent.vhdx')), 'vhdx', I, 'vhdx_parent', /parent\.vhdx/));

  // --- formats without a Glance disk_format: qed (only declarable as something it is not), luks
  const qed = await readFile(await makeImage(dir, 'qed', { name: 'good.qed', size: '16M' }));
  out.push(killed('qed declared raw', await file('as-raw.qed', qed), 'raw', I, 'format_mismatch', /content is qed/));
  out.push(killed('qed declared qcow2', await file('as-qcow2.qed', qed), 'qcow2', I, 'format_mismatch', /content is qed/));
  const luks = await readFile(await makeLuksImage(dir, '16M', 'good.luks'));
  out.push(killed('luks declared raw', await file('as-raw.luks', luks), 'raw', I, 'encrypted', /encrypted|LUKS/i));

  // --- truncated and corrupted headers of every format
  const vmdk = await readFile(await makeImage(dir, 'vmdk', { name: 'base.vmdk', size: '16M' }));
  const vdi = await readFile(await makeImage(dir, 'vdi', { name: 'base.vdi', size: '16M' }));
  const ploop = await readFile(await makeImage(dir, 'parallels', { name: 'base.ploop', size: '16M' }));
  const iso = isoImage({ blocks: 64 });
  const headers: Array<{ fmt: string; declared: string; data: Buffer; cut: number; corrupt: Buffer; what: string; corruptCode?: string; truncCode?: string; name: RegExp }> = [
    { fmt: 'qcow2', declared: 'qcow2', data: clean, cut: 50, corrupt: patched(clean, 20, (b) => b.writeUInt32BE(40)), what: 'cluster_bits 40', name: /qcow2/ },
    { fmt: 'qed', declared: 'raw', data: qed, cut: 40, corrupt: patched(qed, 4, (b) => b.writeUInt32LE(1000)), what: 'cluster size 1000', name: /QED/ },
    { fmt: 'vmdk', declared: 'vmdk', data: vmdk, cut: 50, corrupt: patched(vmdk, 4, (b) => b.writeUInt32LE(9)), what: 'version 9', name: /VMDK/ },
    { fmt: 'vhd', declared: 'vhd', data: vhd, cut: 600, corrupt: editVhdFooters(vhd, (f) => f.writeUInt32BE(9, 60)), what: 'disk type 9', name: /VHD/ },
    { fmt: 'vhdx', declared: 'vhdx', data: vhdx, cut: 200 * KiB, corrupt: patched(patched(vhdx, 64 * KiB, (b) => b.write('xxxx', 'latin1')), 128 * KiB, (b) => b.write('xxxx', 'latin1')), what: 'both headers', name: /VHDX/ },
    { fmt: 'vdi', declared: 'vdi', data: vdi, cut: 0x100, corrupt: patched(vdi, 0x178, (b) => b.writeUInt32LE(4096)), what: 'block size 4096', name: /VDI/ },
    { fmt: 'ploop', declared: 'ploop', data: ploop, cut: 40, corrupt: patched(ploop, 28, (b) => b.writeUInt32LE(0)), what: 'zero cluster size', name: /ploop/i },
    { fmt: 'luks', declared: 'raw', data: luks, cut: 300, corrupt: patched(luks, 104, (b) => b.writeUInt32BE(0xffffffff)), what: 'payload offset', name: /LUKS/ },
    { fmt: 'iso', declared: 'iso', data: iso, cut: 32 * KiB + 100, corrupt: isoImage({ blocks: 64, beBlocks: 65 }), what: 'volume size LE/BE disagree', name: /ISO/ },
  ];
  for (const h of headers) {
    out.push(killed(`${h.fmt} truncated to ${h.cut} bytes`, await file(`truncated.${h.fmt}`, h.data.subarray(0, h.cut)), h.declared, I, h.truncCode ?? 'corrupt_header', h.name));
    out.push(killed(`${h.fmt} corrupted header (${h.what})`, await file(`corrupted.${h.fmt}`, h.corrupt), h.declared, I, h.corruptCode ?? 'corrupt_header', h.name));
  }
  const gptBad = gptDisk({ size: 4 * MiB });
  gptBad[512 + 60] ^= 1; // inside the primary header: its CRC no longer matches
  out.push(killed('raw with a corrupted GPT header (bad CRC)', await file('corrupted-gpt.raw', gptBad), 'raw', I, 'gpt_invalid', /GPT/));

  // --- zero- and one-byte files declared as something they cannot be (an empty raw disk is a good fixture)
  // A zero-byte upload declared qcow2 is refused by the upload itself (the image stays queued:
  // test/unit/api/image-data.test.ts); a gzip of nothing is not empty, and what it unpacks to is.
  out.push(killed('gzip of 0 bytes as qcow2', await file('zero-bytes.qcow2.gz', zlib.gzipSync(Buffer.alloc(0))), 'qcow2', I, 'empty_image', /0 bytes/, 'compressed'));
  out.push(killed('one-byte file as vmdk', await file('one-byte.vmdk', Buffer.from([0x4b])), 'vmdk', I, 'format_mismatch', /declared as disk_format 'vmdk'/));

  // --- truncated images: tables or data past the end of the file
  const withData = await readFile(qcow2);
  out.push(killed('qcow2 cut in half (data clusters past the end)', await file('half.qcow2', withData.subarray(0, withData.length >> 1)), 'qcow2', I, 'image_truncated', /truncated: the data cluster .* lies past the end of the file/));
  out.push(killed('qcow2 cut after its header (L1 table past the end)', await file('header-only.qcow2', withData.subarray(0, 4096)), 'qcow2', I, 'image_truncated', /L1 table/));

  // --- hostile OVAs
  const disk = await readFile(streamVmdk);
  const ovf = makeOvf({ disks: [{ href: 'disk1.vmdk' }] });
  const ova = async (name: string, members: TarMember[]) => file(name, makeTar(members));
  out.push(killed('OVA with path traversal (../../etc/cron.d/pir)', await ova('traversal.ova', [{ name: 'vm.ovf', data: ovf }, { name: 'disk1.vmdk', data: disk }, { name: '../../etc/cron.d/pir', data: '* * * * * root sh\n' }]), 'vmdk', U, 'unsafe_archive', /traversal/, 'ova'));
  out.push(killed('OVA with an absolute path (/etc/cron.d/pir)', await ova('absolute.ova', [{ name: 'vm.ovf', data: ovf }, { name: '/etc/cron.d/pir', data: 'x' }, { name: 'disk1.vmdk', data: disk }]), 'vmdk', U, 'unsafe_archive', /absolute/, 'ova'));
  out.push(killed('OVA whose disk is a symlink to /etc/shadow', await ova('symlink.ova', [{ name: 'vm.ovf', data: ovf }, { name: 'disk1.vmdk', type: '2', linkname: '/etc/shadow' }]), 'vmdk', U, 'unsafe_archive', /symbolic link/, 'ova'));
  out.push(killed('OVA descriptor referencing ../disk1.vmdk', await ova('href-traversal.ova', [{ name: 'vm.ovf', data: makeOvf({ disks: [{ href: '../disk1.vmdk' }] }) }, { name: 'disk1.vmdk', data: disk }]), 'vmdk', U, 'unsafe_archive', /\.\./, 'ova'));

  // --- decompression bombs
  const bomb = gzipBomb(64, 64 * MiB); // 4 GiB of zeros in ~4 MiB (~1030:1)
  out.push(killed(`gzip bomb (4 GiB of zeros in ${(bomb.length / MiB).toFixed(1)} MiB)`, await file('bomb.qcow2.gz', bomb), 'qcow2', U, 'expansion_ratio', new RegExp(`${LIMITS.maxExpansionRatio}:1`), 'compressed'));
  const bomb12 = gzipBomb(192, 64 * MiB); // 12 GiB of zeros in ~12 MiB
  out.push({ ...killed(`gzip of 12 GiB of zeros (${(bomb12.length / MiB).toFixed(1)} MiB)`, await file('bomb12.raw.gz', bomb12), 'raw', U, 'expansion_ratio', /beyond the first 64 MiB/, 'compressed'), expect: { status: 'killed', stage: U, code: 'expansion_ratio', message: /beyond the first 64 MiB/, withinSeconds: 30 } });
  const zstdFrame = compressCli('zstd', Buffer.alloc(64 * MiB));
  const zstdBomb = Buffer.concat(Array.from({ length: 192 }, () => zstdFrame)); // 12 GiB of zeros in ~400 KiB
  out.push({ ...killed(`zstd of 12 GiB of zeros (${(zstdBomb.length / KiB).toFixed(0)} KiB)`, await file('bomb12.raw.zst', zstdBomb), 'raw', U, 'expansion_ratio', /beyond the first 64 MiB/, 'compressed'), expect: { status: 'killed', stage: U, code: 'expansion_ratio', message: /beyond the first 64 MiB/, withinSeconds: 30 } });
  out.push(killed('gzip inside gzip', await file('nested.raw.gz.gz', zlib.gzipSync(zlib.gzipSync(withData))), 'qcow2', U, 'format_mismatch', /gzip-compressed again/, 'compressed'));
  const wide = gzipBomb(160, MiB, 16 * KiB); // 160 MiB at ~60:1: under the ratio limit, over the size limit
  out.push(killed(`gzip stream over PIR_MAX_UNPACKED_SIZE (160 MiB in ${(wide.length / MiB).toFixed(1)} MiB)`, await file('wide.raw.gz', wide), 'raw', U, 'decompressed_too_large', new RegExp(`${LIMITS.maxUnpackedSize / MiB} MiB`), 'compressed'));

  return out;
}
