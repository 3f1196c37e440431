import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gptDisk, isoImage, mbrSector } from './craft.js';
import { assertAccepted, assertRefused, codes, detectBuf } from './helpers.js';

describe('iso 9660', () => {
  it('computes volume space size × logical block size', async () => {
    const r = await detectBuf(isoImage({ blocks: 100 }));
    assert.equal(r.format, 'iso');
    assert.equal(r.virtualSize, 100 * 2048);
    assertAccepted(r, 'iso');
    assertRefused(r, 'qcow2', 'format_mismatch');
  });

  it('accepts an ISO declared raw or ami (qemu reads an ISO as a plain disk), sized as the file, as Glance does', async () => {
    // 100 blocks of volume in a file padded to 240 KiB: the raw disk is the whole file.
    const iso = Buffer.concat([isoImage({ blocks: 100 }), Buffer.alloc(40 * 1024)]);
    const r = await detectBuf(iso);
    assert.equal(r.format, 'iso');
    for (const declared of ['raw', 'ami']) {
      const v = assertAccepted(r, declared);
      assert.deepEqual(v.ok && { format: v.format, virtualSize: v.virtualSize }, { format: 'iso', virtualSize: iso.length }, declared);
    }
    const asIso = assertAccepted(r, 'iso');
    assert.equal(asIso.ok && asIso.virtualSize, 100 * 2048, 'declared iso: the volume size');
    // Still a raw disk: a torn last sector is noted as for any raw declaration (and taken, as Glance does).
    const torn = assertAccepted(await detectBuf(iso.subarray(0, iso.length - 100)), 'raw');
    assert.ok(torn.ok && torn.findings.some((f) => f.code === 'raw_partial_sector' && f.severity === 'info'));
  });

  it("sizes a hybrid ISO with a partition appended after its volume as the whole file, as qemu presents it (xorriso's -append_partition)", async () => {
    // As xorriso lays it out: partition 1 (0x83) the ISO from sector 0, partition 2 (0xef, EFI)
    // right after the volume, then padding.
    const volume = isoImage({ blocks: 100 });
    const efiSectors = 2048;
    const iso = Buffer.concat([volume, Buffer.alloc(efiSectors * 512, 0x5a), Buffer.alloc(300 * 1024)]);
    mbrSector([{ type: 0x83, lba: 0, sectors: volume.length / 512 }, { type: 0xef, lba: volume.length / 512, sectors: efiSectors }], iso.subarray(0, 512));
    const r = await detectBuf(iso);
    assert.equal(r.format, 'iso');
    assert.deepEqual(r.alsoMatches, ['mbr']);
    const v = assertAccepted(r, 'iso');
    assert.equal(v.ok && v.virtualSize, iso.length);
    // Partitions inside the volume leave it at the volume size, padding or not.
    const inside = Buffer.concat([isoImage({ blocks: 100 }), Buffer.alloc(300 * 1024)]);
    mbrSector([{ type: 0x83, lba: 0, sectors: 400 }], inside.subarray(0, 512));
    const w = assertAccepted(await detectBuf(inside), 'iso');
    assert.equal(w.ok && w.virtualSize, 100 * 2048);
  });

  it('finds the PVD after a boot record', async () => {
    const r = await detectBuf(isoImage({ blocks: 50, bootRecordFirst: true }));
    assert.equal(r.virtualSize, 50 * 2048);
    assertAccepted(r, 'iso');
  });

  it('accepts hybrid ISOs that also carry an MBR or GPT (even a quirky one)', async () => {
    const iso = isoImage({ blocks: 2048 });
    mbrSector([{ status: 0x80, type: 0x17, lba: 0, sectors: 2048 * 4 }], iso.subarray(0, 512));
    const r = await detectBuf(iso);
    assert.equal(r.format, 'iso');
    assert.deepEqual(r.alsoMatches, ['mbr']);
    assert.ok(codes(r, 'info').includes('mbr_invalid'));
    assertAccepted(r, 'iso');

    const gpt = gptDisk({ size: 4 << 20 });
    isoImage({ blocks: 2048 }).subarray(32 * 1024, 40 * 1024).copy(gpt, 32 * 1024);
    const g = await detectBuf(gpt);
    assert.equal(g.format, 'iso');
    assert.deepEqual(g.alsoMatches, ['gpt']);
    assertAccepted(g, 'iso');
  });

  it('refuses inconsistent or impossible PVD fields and truncation', async () => {
    assertRefused(await detectBuf(isoImage({ blocks: 64, beBlocks: 65 })), 'iso', 'corrupt_header');
    assertRefused(await detectBuf(isoImage({ blocks: 64, blockSize: 300 })), 'iso', 'corrupt_header');
    const cut = isoImage({ blocks: 64 }).subarray(0, 32 * 1024 + 100);
    assertRefused(await detectBuf(cut), 'iso', 'corrupt_header');
    const noPvd = isoImage({ blocks: 64 });
    noPvd[32 * 1024] = 2; // only a supplementary descriptor
    noPvd[34 * 1024] = 2;
    assertRefused(await detectBuf(noPvd), 'iso', 'corrupt_header');
  });

  it('treats a UDF-only volume as an ISO the size of the file', async () => {
    const b = Buffer.alloc(256 * 1024);
    b.write('\u0000BEA01\u0001', 32 * 1024, 'latin1');
    b.write('\u0000NSR02\u0001', 34 * 1024, 'latin1');
    b.write('\u0000TEA01\u0001', 36 * 1024, 'latin1');
    const r = await detectBuf(b);
    assert.equal(r.format, 'iso');
    assert.equal(r.virtualSize, b.length);
  });

  it('sizes a volume that claims more than the file as the file (what qemu attaches), and says so', async () => {
    const image = isoImage({ blocks: 0xffffffff });
    const r = await detectBuf(image);
    assert.equal(r.virtualSize, image.length, 'not 8 TiB');
    assert.ok(codes(r).includes('iso_truncated'));
    assertAccepted(r, 'iso');
    const fits = await detectBuf(isoImage({ blocks: 64 }));
    assert.equal(fits.virtualSize, 64 * 2048);
    assertRefused(fits, 'iso', 'virtual_size_too_large', { maxVirtualSize: 64 * 1024, allowEncrypted: false });
  });
});

describe('gpt', () => {
  it('reports a valid GPT disk as raw with gpt in alsoMatches', async () => {
    const r = await detectBuf(gptDisk());
    assert.equal(r.format, 'raw');
    assert.deepEqual(r.alsoMatches, ['gpt']);
    assert.equal((r.details.gpt as Record<string, unknown>).partitions, 1);
    assert.deepEqual(codes(r), []);
    assertAccepted(r, 'raw');
    assertRefused(r, 'qcow2', 'format_mismatch');
  });

  it('refuses malformed GPTs', async () => {
    const cases: Array<[string, Buffer]> = [
      ['bad header crc', (() => { const d = gptDisk(); d[512 + 60] ^= 1; return d; })()],
      ['bad entries crc', (() => { const d = gptDisk(); d[1024 + 40] ^= 1; return d; })()],
      ['missing header', (() => { const d = gptDisk(); d.fill(0, 512, 1024); return d; })()],
      ['my_lba wrong', gptDisk({ tweakHeader: (h) => h.writeBigUInt64LE(5n, 24) })],
      ['reserved nonzero', gptDisk({ tweakHeader: (h) => h.writeUInt32LE(1, 20) })],
      ['entry size too small', gptDisk({ tweakHeader: (h) => h.writeUInt32LE(64, 84) })],
      ['huge entry array', gptDisk({ tweakHeader: (h) => h.writeUInt32LE(1 << 20, 80) })],
      ['header size', gptDisk({ tweakHeader: (h) => h.writeUInt32LE(1000, 12) })],
      ['entries overlap usable area', gptDisk({ tweakHeader: (h) => h.writeBigUInt64LE(40n, 72) })],
      ['partition outside usable area', gptDisk({ parts: [{ first: 1n, last: 100n }] })],
      ['partition reversed', gptDisk({ parts: [{ first: 3000n, last: 2048n }] })],
      ['overlapping partitions', gptDisk({ parts: [{ first: 2048n, last: 4000n }, { first: 3000n, last: 5000n }] })],
      ['extra MBR partition', (() => { const d = gptDisk(); mbrSector([{ type: 0xee, lba: 1, sectors: 100 }, { type: 0x83, lba: 200, sectors: 10 }], d.subarray(0, 512)); return d; })()],
      ['protective entry not at LBA 1', (() => { const d = gptDisk(); d.writeUInt32LE(2, 446 + 8); return d; })()],
      ['protective bad boot flag', (() => { const d = gptDisk(); d[446] = 0x12; return d; })()],
      ['truncated array', gptDisk().subarray(0, 1500)],
    ];
    for (const [label, disk] of cases) {
      const r = await detectBuf(disk);
      assert.equal(r.format, 'raw', label);
      assert.deepEqual(r.alsoMatches, ['gpt'], label);
      assertRefused(r, 'raw', 'gpt_invalid');
    }
  });

  it('only notes a missing backup header', async () => {
    const d = gptDisk();
    d.fill(0, d.length - 512);
    const r = await detectBuf(d);
    assert.deepEqual(codes(r), ['gpt_backup_missing']);
    assertAccepted(r, 'raw');
  });

  it('finds the header of a 4Kn disk at 4096', async () => {
    const d = gptDisk();
    const moved = Buffer.alloc(d.length);
    d.copy(moved, 0, 0, 512);
    d.copy(moved, 4096, 512, 1024);
    const r = await detectBuf(moved);
    assert.deepEqual(r.alsoMatches, ['gpt']);
    assert.equal((r.details.gpt as Record<string, unknown>).sectorSize, 4096);
  });
});

describe('mbr', () => {
  const disk = (parts: Parameters<typeof mbrSector>[0]): Buffer => {
    const d = Buffer.alloc(1 << 20);
    mbrSector(parts, d.subarray(0, 512));
    return d;
  };

  it('reports a sane MBR disk as raw with mbr in alsoMatches', async () => {
    const r = await detectBuf(disk([{ status: 0x80, type: 0x83, lba: 2048, sectors: 10 }, { type: 0x82, lba: 4096, sectors: 10 }]));
    assert.equal(r.format, 'raw');
    assert.deepEqual(r.alsoMatches, ['mbr']);
    assertAccepted(r, 'raw');
  });

  it('refuses bad boot flags, empty tables, zero-based and overlapping partitions', async () => {
    for (const parts of [
      [{ status: 0x12, type: 0x83, lba: 2048, sectors: 10 }],
      [],
      [{ type: 0x83, lba: 0, sectors: 10 }],
      [{ type: 0x83, lba: 2048, sectors: 0 }],
      [{ type: 0x83, lba: 2048, sectors: 100 }, { type: 0x83, lba: 2100, sectors: 100 }],
    ]) {
      const r = await detectBuf(disk(parts));
      assertRefused(r, 'raw', 'mbr_invalid');
    }
  });

  it('notes partitions past the end of the image', async () => {
    const r = await detectBuf(disk([{ type: 0x83, lba: 2048, sectors: 1 << 30 }]));
    assert.deepEqual(codes(r), ['mbr_beyond_disk']);
    assertAccepted(r, 'raw');
  });

  it('does not mistake FAT/NTFS boot sectors for partition tables', async () => {
    const fat = Buffer.alloc(1 << 20);
    fat.writeUInt16LE(512, 0x0b);
    fat[0x10] = 2;
    fat[0x15] = 0xf8;
    fat[510] = 0x55;
    fat[511] = 0xaa;
    const r = await detectBuf(fat);
    assert.deepEqual(r.alsoMatches, []);
    assertAccepted(r, 'raw');
    const ntfs = Buffer.alloc(1 << 20);
    ntfs.write('NTFS    ', 3, 'latin1');
    ntfs[510] = 0x55;
    ntfs[511] = 0xaa;
    assertAccepted(await detectBuf(ntfs), 'raw');
  });
});
