/**
 * Embedded metadata (formats/embedded/): partition tables, filesystem labels and ISO volume ids
 * read from headers of raw and qcow2 images (qcow2 through its L1/L2 mapping), bounded, and
 * never thrown off by hostile input.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { BufferReader, detectFormat, type BlockCache } from '../../../formats/index.js';
import { EMBEDDED_READ_BUDGET, readEmbeddedMetadata } from '../../../formats/embedded/index.js';
import { gptDisk, isoImage, mbrSector, patched } from './craft.js';

const MiB = 1024 * 1024;

/** A reader that counts what it was asked for. */
function counted(buf: Buffer) {
  const inner = new BufferReader(buf);
  const reader = { size: buf.length, bytes: 0, async read(offset: number, length: number) { const b = await inner.read(offset, length); reader.bytes += b.length; return b; } };
  return reader;
}
const detect = (buf: Buffer, format: string) => readEmbeddedMetadata(new BufferReader(buf), format);

function fat32BootSector(label: string): Buffer {
  const b = Buffer.alloc(512);
  b.write('mkfs.fat', 3, 'latin1');
  b.writeUInt16LE(512, 0x0b);
  b[0x10] = 2; b[0x15] = 0xf8;
  b[0x42] = 0x29;
  b.write(label.padEnd(11, ' '), 0x47, 'latin1');
  b.write('FAT32   ', 0x52, 'latin1');
  b[510] = 0x55; b[511] = 0xaa;
  return b;
}

describe('embedded metadata', () => {
  let dir: string;
  let mbrExt4: Buffer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-embedded-'));
    // A 16 MiB disk: MBR, partition 1 (ext4 "rootfs", made by mkfs.ext4) at 1 MiB, partition 2 (FAT32 "EFIBOOT") at 12 MiB.
    const disk = join(dir, 'disk.raw');
    await writeFile(disk, Buffer.alloc(16 * MiB));
    execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'rootfs', '-E', `offset=${MiB}`, disk, '10M'], { stdio: 'ignore' });
    mbrExt4 = await readFile(disk);
    mbrSector([{ status: 0x80, type: 0x83, lba: 2048, sectors: 20480 }, { type: 0x0c, lba: 24576, sectors: 8192 }], mbrExt4.subarray(0, 512));
    fat32BootSector('EFIBOOT').copy(mbrExt4, 12 * MiB);
    await writeFile(disk, mbrExt4);
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('reads an MBR, its partitions, and the ext4 and FAT labels of a raw disk', async () => {
    const props = await detect(mbrExt4, 'raw');
    assert.equal(props.pir_detected_partition_table, 'mbr');
    assert.equal(props.pir_detected_partition_count, '2');
    assert.equal(props.pir_detected_partition_1_type, '0x83');
    assert.equal(props.pir_detected_partition_1_size, String(10 * MiB));
    assert.equal(props.pir_detected_partition_1_fs, 'ext4');
    assert.equal(props.pir_detected_partition_1_label, 'rootfs');
    assert.equal(props.pir_detected_partition_2_fs, 'vfat');
    assert.equal(props.pir_detected_partition_2_label, 'EFIBOOT');
  });

  it('reads the same through a qcow2 L1/L2 mapping (qemu-img convert), and nothing from compressed clusters', async () => {
    const qcow2 = join(dir, 'disk.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'disk.raw'), qcow2]);
    const props = await detect(await readFile(qcow2), 'qcow2');
    assert.equal(props.pir_detected_partition_table, 'mbr');
    assert.equal(props.pir_detected_partition_1_label, 'rootfs');
    assert.equal(props.pir_detected_partition_2_label, 'EFIBOOT');
    // Small clusters: more L2 lookups, same answer.
    const small = join(dir, 'small.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', join(dir, 'disk.raw'), small]);
    assert.equal((await detect(await readFile(small), 'qcow2')).pir_detected_partition_1_label, 'rootfs');
    const compressed = join(dir, 'disk-c.qcow2');
    execFileSync('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', join(dir, 'disk.raw'), compressed]);
    assert.deepEqual(await detect(await readFile(compressed), 'qcow2'), {}, 'compressed clusters are not inflated');
  });

  it('reads a filesystem written on the whole disk', async () => {
    const whole = join(dir, 'whole.raw');
    await writeFile(whole, Buffer.alloc(8 * MiB));
    execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'cloudimg-rootfs', whole], { stdio: 'ignore' });
    const props = await detect(await readFile(whole), 'raw');
    assert.deepEqual(props, { pir_detected_fs: 'ext4', pir_detected_fs_label: 'cloudimg-rootfs' });
  });

  it('reads GPT partitions with their type GUIDs and names, and an XFS label', async () => {
    const disk = gptDisk({
      size: 8 * MiB,
      parts: [{ first: 2048n, last: 4095n }, { first: 4096n, last: 16000n }],
      tweakEntries: (a) => { a.write('EFI System', 56, 'utf16le'); a.write('root\u0007', 128 + 56, 'utf16le'); },
    });
    const xfs = Buffer.alloc(512);
    xfs.write('XFSB', 0, 'latin1');
    xfs.write('data', 108, 'latin1');
    xfs.copy(disk, 4096 * 512);
    const props = await detect(disk, 'gpt');
    assert.equal(props.pir_detected_partition_table, 'gpt');
    assert.equal(props.pir_detected_partition_count, '2');
    assert.equal(props.pir_detected_partition_1_type, '0fc63daf-8483-4772-8e79-3d69d8477de4');
    assert.equal(props.pir_detected_partition_1_name, 'EFI System');
    assert.equal(props.pir_detected_partition_2_name, 'root', 'control characters dropped');
    assert.equal(props.pir_detected_partition_2_fs, 'xfs');
    assert.equal(props.pir_detected_partition_2_label, 'data');
    assert.equal(props.pir_detected_partition_1_size, String(2048 * 512));
  });

  it('reads an ISO 9660 volume id', async () => {
    const iso = isoImage();
    iso.write('LINUX'.padEnd(32, ' '), 16 * 2048 + 8, 'latin1');
    assert.deepEqual(await detect(iso, 'iso'), { pir_detected_fs: 'iso9660', pir_detected_iso_volume_id: 'PIR_TEST', pir_detected_iso_system_id: 'LINUX' });
  });

  it('reports nothing for formats it does not read, and never reads more than its budget', async () => {
    assert.deepEqual(await detect(mbrExt4, 'vmdk'), {});
    const reader = counted(mbrExt4);
    await readEmbeddedMetadata(reader, 'raw');
    assert.ok(reader.bytes <= EMBEDDED_READ_BUDGET, `read ${reader.bytes}`);
    assert.ok(reader.bytes < 128 * 1024, `a label read is small (${reader.bytes} bytes)`);
  });

  it('shares the block cache of detection: the probes re-read none of the headers it read', async () => {
    const alone = counted(mbrExt4);
    const expected = await readEmbeddedMetadata(alone, 'raw');
    const reader = counted(mbrExt4);
    const blocks: BlockCache = new Map();
    await detectFormat(reader, blocks);
    const offsets: number[] = [];
    const afterDetection = { size: reader.size, read: (offset: number, length: number) => { offsets.push(offset); return reader.read(offset, length); } };
    const before = reader.bytes;
    assert.deepEqual(await readEmbeddedMetadata(afterDetection, 'raw', undefined, blocks), expected, 'the same facts');
    // Alone the probes read sector 0, the GPT header and the ISO descriptor, all in the 64 KiB
    // head detection read first, and then each partition's first bytes: only those are left.
    assert.ok(offsets.length > 0 && offsets.every((o) => o >= 64 * 1024), `read again at ${offsets.join(', ')}`);
    assert.ok(reader.bytes - before < alone.bytes, `${reader.bytes - before} bytes read after detection, ${alone.bytes} alone`);
  });

  it('survives hostile tables: huge GPT counts, absurd qcow2 L1/L2 offsets, and random bytes', async () => {
    const hugeGpt = gptDisk({ size: 4 * MiB, tweakHeader: (h) => { h.writeUInt32LE(0xffffffff, 80); h.writeUInt32LE(1024, 84); } });
    const r1 = counted(hugeGpt);
    const p1 = await readEmbeddedMetadata(r1, 'raw');
    assert.ok(r1.bytes <= EMBEDDED_READ_BUDGET);
    assert.equal(p1.pir_detected_partition_table, 'gpt');
    // A qcow2 whose L1 points far past the file and whose L2 entries point anywhere.
    const qcow2 = await readFile(join(dir, 'disk.qcow2').replace('disk.qcow2', 'disk.qcow2'));
    const badL1 = patched(qcow2, 40, (b) => b.writeBigUInt64BE(0x7fff_ffff_ffff_0000n, 0));
    assert.deepEqual(await detect(badL1, 'qcow2'), {});
    const l1Offset = Number(qcow2.readBigUInt64BE(40));
    const l2Offset = Number(qcow2.readBigUInt64BE(l1Offset) & 0x00ff_ffff_ffff_fe00n);
    const badL2 = patched(qcow2, l2Offset, (b) => { for (let i = 0; i < 64; i++) b.writeBigUInt64BE(0x00ff_ffff_ffff_fe00n - BigInt(i * 512), i * 8); });
    await detect(badL2, 'qcow2');
    const bigClusters = patched(qcow2, 20, (b) => b.writeUInt32BE(40, 0));
    assert.deepEqual(await detect(bigClusters, 'qcow2'), {});
    await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 70_000 }), fc.constantFrom('raw', 'qcow2', 'iso', 'gpt'), async (bytes, format) => {
      const buf = Buffer.from(bytes);
      if (buf.length > 512) { buf[510] = 0x55; buf[511] = 0xaa; }
      if (format === 'qcow2' && buf.length > 4) buf.writeUInt32BE(0x514649fb, 0);
      const reader = counted(buf);
      const props = await readEmbeddedMetadata(reader, format);
      assert.ok(reader.bytes <= EMBEDDED_READ_BUDGET);
      for (const [k, v] of Object.entries(props)) {
        assert.match(k, /^pir_detected_[a-z0-9_]+$/);
        assert.ok(v.length <= 255 && !/[\x00-\x1f\x7f]/.test(v), `${k}=${JSON.stringify(v)}`);
      }
    }), { numRuns: 300 });
    // Mutations of a real image, byte by byte around its tables.
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(fc.nat(70_000), fc.nat(255)), { maxLength: 32 }), async (edits) => {
      const buf = Buffer.from(mbrExt4.subarray(0, 2 * MiB));
      for (const [at, value] of edits) buf[at % buf.length] = value;
      await readEmbeddedMetadata(new BufferReader(buf), 'raw');
    }), { numRuns: 200 });
  });
});
