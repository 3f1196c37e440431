import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { guidToBytes } from '../../../formats/guid.js';
import { ensureQemuImg, makeImage, makeTempDir, qemuInfo, removeDir } from '../../support/images.js';
import { addVhdxItem, findVhdxItem, fixVhdxCrc, setVhdxHasParent, VHDX_FILE_PARAMS, VHDX_PARENT_LOCATOR, VHDX_VIRTUAL_DISK_SIZE, vhdxParentLocator } from './craft.js';
import { assertAccepted, assertRefused, codes, detectBuf, detectFile } from './helpers.js';

const KiB = 1024;

describe('vhdx', () => {
  let dir = '';
  let base: Buffer;
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
    base = await readFile(await makeImage(dir, 'vhdx', { size: '64M' }));
  });
  after(() => removeDir(dir));

  const variants: Array<[string, Record<string, string | number>, string]> = [
    ['default', {}, '64M'],
    ['1 MiB blocks, 1 MiB log', { log_size: '1M', block_size: '1M' }, '100M'],
    ['fixed', { subformat: 'fixed' }, '16M'],
    ['odd size', {}, '12345678'],
  ];
  for (const [label, options, size] of variants) {
    it(`matches qemu-img info for ${label}`, async () => {
      const p = await makeImage(dir, 'vhdx', { size, options });
      const [r, q] = await Promise.all([detectFile(p), qemuInfo(p)]);
      assert.equal(q.format, 'vhdx');
      assert.equal(r.format, 'vhdx');
      assert.equal(r.virtualSize, q['virtual-size']);
      assert.deepEqual(codes(r, 'refuse'), []);
      assertAccepted(r, 'vhdx');
      assertRefused(r, 'vhd', 'format_mismatch');
    });
  }

  it('reads little of an 8 GiB image', async () => {
    const r = await detectFile(await makeImage(dir, 'vhdx', { size: '8G' }));
    assert.equal(r.virtualSize, 8 * 1024 ** 3);
    assert.ok(r.bytesRead < 4 << 20, `read ${r.bytesRead}`);
  });

  it('refuses a parent locator and names the parent', async () => {
    const img = Buffer.from(base);
    addVhdxItem(img, VHDX_PARENT_LOCATOR, vhdxParentLocator('C:\\VMs\\base.vhdx'), 0x6);
    const r = await detectBuf(img);
    assert.equal(r.details.parent, 'C:\\VMs\\base.vhdx');
    const v = assertRefused(r, 'vhdx', 'vhdx_parent');
    assert.ok(!v.ok && v.message.includes('base.vhdx'));
  });

  it('refuses the HasParent file parameter on its own', async () => {
    const img = Buffer.from(base);
    setVhdxHasParent(img);
    assertRefused(await detectBuf(img), 'vhdx', 'vhdx_parent');
  });

  it('refuses unknown required metadata but ignores unknown optional metadata', async () => {
    const req = Buffer.from(base);
    addVhdxItem(req, guidToBytes('11111111-2222-3333-4444-555555555555'), Buffer.alloc(8), 0x4);
    assertRefused(await detectBuf(req), 'vhdx', 'vhdx_unknown_required');
    const opt = Buffer.from(base);
    addVhdxItem(opt, guidToBytes('11111111-2222-3333-4444-555555555555'), Buffer.alloc(8), 0x0);
    assertAccepted(await detectBuf(opt), 'vhdx');
  });

  it('falls back to the backup region table, and refuses when both are bad', async () => {
    const one = Buffer.from(base);
    one[192 * KiB + 20] ^= 0xff;
    assertAccepted(await detectBuf(one), 'vhdx');
    const both = Buffer.from(one);
    both[256 * KiB + 20] ^= 0xff;
    assertRefused(await detectBuf(both), 'vhdx', 'corrupt_header');
  });

  it('refuses bad headers, pending logs, missing size items and truncation', async () => {
    const noHeaders = Buffer.from(base);
    noHeaders.write('xxxx', 64 * KiB, 'latin1');
    noHeaders.write('xxxx', 128 * KiB, 'latin1');
    assertRefused(await detectBuf(noHeaders), 'vhdx', 'corrupt_header');

    const log = Buffer.from(base);
    for (const h of [64 * KiB, 128 * KiB]) {
      log.fill(0x5a, h + 48, h + 64);
      fixVhdxCrc(log, h, 4 * KiB);
    }
    assertRefused(await detectBuf(log), 'vhdx', 'vhdx_log_replay');

    const noSize = Buffer.from(base);
    const { entry } = findVhdxItem(noSize, VHDX_VIRTUAL_DISK_SIZE);
    noSize.fill(0x77, entry, entry + 16);
    noSize.writeUInt32LE(0, entry + 24); // not required, just absent as far as we know
    assertRefused(await detectBuf(noSize), 'vhdx', 'corrupt_header');

    const outside = Buffer.from(base);
    outside.writeUInt32LE(0xfffff000, findVhdxItem(outside, VHDX_VIRTUAL_DISK_SIZE).entry + 16);
    assertRefused(await detectBuf(outside), 'vhdx', 'corrupt_header');

    for (const n of [8, 1000, 100 * KiB, 200 * KiB]) {
      const r = await detectBuf(base.subarray(0, n));
      assert.equal(r.format, 'vhdx');
      assertRefused(r, 'vhdx', 'corrupt_header');
    }
    // Cut after the region table: the metadata region it names is past the end.
    assertRefused(await detectBuf(base.subarray(0, 300 * KiB)), 'vhdx', 'image_truncated');
  });

  it('refuses what qemu refuses to open: logical sectors other than 512, a block size off 1 MiB..256 MiB or not a power of two', async () => {
    const LOGICAL_SECTOR_SIZE = guidToBytes('8141BF1D-A96F-4709-BA47-F233A8FAAB5F');
    const withSector = (n: number): Buffer => {
      const img = Buffer.from(base);
      img.writeUInt32LE(n, findVhdxItem(img, LOGICAL_SECTOR_SIZE).data);
      return img;
    };
    const kn = assertRefused(await detectBuf(withSector(4096)), 'vhdx', 'vhdx_unsupported_sector_size');
    assert.match(!kn.ok ? kn.message : '', /512-byte logical sectors only.*upload it to a new image\./);
    assertRefused(await detectBuf(withSector(1024)), 'vhdx', 'corrupt_header');
    for (const bs of [3 * 1024 * KiB, 512 * KiB, 512 * 1024 * KiB]) {
      const img = Buffer.from(base);
      img.writeUInt32LE(bs, findVhdxItem(img, VHDX_FILE_PARAMS).data);
      const r = await detectBuf(img);
      assertRefused(r, 'vhdx', 'corrupt_header');
      assert.match(r.findings.map((f) => f.message).join(' '), new RegExp(`'BlockSize' is ${bs} `));
    }
  });

  it('refuses a huge virtual disk size', async () => {
    const img = Buffer.from(base);
    img.writeBigUInt64LE(1n << 50n, findVhdxItem(img, VHDX_VIRTUAL_DISK_SIZE).data);
    const r = await detectBuf(img);
    assert.equal(r.virtualSize, 2 ** 50);
    assertRefused(r, 'vhdx', 'virtual_size_too_large');
  });
});
