import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import { convertImage, ensureQemuImg, makeImage, makeTempDir, qemuInfo, removeDir } from '../../support/images.js';
import { differencingVhd, editVhdFooters, gptDisk, vhdFooterChecksum } from './craft.js';
import { assertAccepted, assertRefused, codes, detectBuf, detectFile } from './helpers.js';

describe('vhd (vpc)', () => {
  let dir = '';
  let dynamic: Buffer;
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
    dynamic = await readFile(await makeImage(dir, 'vpc', { size: '64M' }));
  });
  after(() => removeDir(dir));

  const variants: Array<[string, Record<string, string>]> = [
    ['dynamic', {}],
    ['fixed', { subformat: 'fixed' }],
    ['dynamic force_size', { force_size: 'on' }],
    ['fixed force_size', { subformat: 'fixed', force_size: 'on' }],
  ];
  for (const [label, options] of variants) {
    it(`matches qemu-img info -f vpc for ${label}`, async () => {
      const p = await makeImage(dir, 'vpc', { size: '64M', options });
      const [r, q] = await Promise.all([detectFile(p), qemuInfo(p, 'vpc')]);
      assert.equal(r.format, 'vhd');
      assert.equal(r.virtualSize, q['virtual-size']);
      assert.equal(r.details.diskType, options.subformat ?? 'dynamic');
      assert.deepEqual(codes(r, 'refuse'), []);
      assertAccepted(r, 'vhd');
      assertAccepted(r, 'vpc');
      assertRefused(r, 'raw', 'format_mismatch');
    });
  }

  it("sizes by the creator as qemu does: CHS geometry but for win, qem2, d2v, CTXS and tap\\0 (never below qemu's size)", async () => {
    const { writeFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const chs = dynamic.readUInt16BE(56) * dynamic[58]! * dynamic[59]! * 512;
    for (const creator of ['abcd', 'tap ', 'vpc ', 'qemu', 'win ', 'qem2', 'd2v ', 'CTXS', 'tap\0']) {
      // current size below the geometry's: qemu takes one or the other by creator.
      const img = editVhdFooters(dynamic, (f) => { f.write(creator, 28, 'latin1'); f.writeBigUInt64BE(BigInt(chs - 4 * 1024 * 1024), 48); });
      const path = join(dir, `creator-${creator.replace(/\W/g, '_')}.vhd`);
      await writeFile(path, img);
      const [r, q] = await Promise.all([detectFile(path), qemuInfo(path, 'vpc')]);
      assert.equal(r.virtualSize, q['virtual-size'], JSON.stringify(creator));
    }
  });

  it('reads little of an 8 GiB dynamic or fixed image', async () => {
    for (const options of [{}, { subformat: 'fixed' }] as Array<Record<string, string>>) {
      const r = await detectFile(await makeImage(dir, 'vpc', { size: '8G', options }));
      assert.equal(r.format, 'vhd');
      assert.ok((r.virtualSize ?? 0) > 8.5e9);
      assert.ok(r.bytesRead < 4 << 20, `read ${r.bytesRead}`);
    }
  });

  it('refuses a differencing disk and names its parent', async () => {
    const img = differencingVhd(dynamic, 'C:\\base\\parent.vhd');
    const r = await detectBuf(img);
    assert.equal(r.details.diskType, 'differencing');
    const v = assertRefused(r, 'vhd', 'vhd_differencing');
    assert.ok(codes(r).filter((c) => c === 'vhd_differencing').length >= 1);
    assert.ok(r.findings.some((f) => f.message.includes('parent.vhd')), JSON.stringify(r.findings));
    assert.ok(!v.ok);
  });

  it('refuses a "dynamic" disk whose header carries a parent locator', async () => {
    const img = Buffer.from(dynamic);
    img.writeUInt32BE(0x57326b75, Number(img.readBigUInt64BE(16)) + 576);
    assertRefused(await detectBuf(img), 'vhd', 'vhd_differencing');
  });

  it('refuses a differencing footer that exists only at the end of the file', async () => {
    const img = editVhdFooters(dynamic, (f) => f.writeUInt32BE(4, 60));
    img.fill(0, 0, 512);
    assertRefused(await detectBuf(img), 'vhd', 'vhd_differencing');
  });

  it('refuses damaged footers and dynamic headers', async () => {
    assertRefused(await detectBuf(editVhdFooters(dynamic, (f) => f.writeUInt32BE(9, 60))), 'vhd', 'corrupt_header');
    assertRefused(await detectBuf(dynamic.subarray(0, 600)), 'vhd', 'corrupt_header');
    assertRefused(await detectBuf(dynamic.subarray(0, 100)), 'vhd', 'corrupt_header');
    assertRefused(await detectBuf(editVhdFooters(dynamic, (f) => f.writeBigUInt64BE(1n << 50n, 16))), 'vhd', 'corrupt_header');
    const badBlock = Buffer.from(dynamic);
    badBlock.writeUInt32BE(1000, Number(badBlock.readBigUInt64BE(16)) + 32);
    assertRefused(await detectBuf(badBlock), 'vhd', 'corrupt_header');
    const fewEntries = Buffer.from(dynamic);
    fewEntries.writeUInt32BE(1, Number(fewEntries.readBigUInt64BE(16)) + 28);
    assertRefused(await detectBuf(fewEntries), 'vhd', 'corrupt_header');
  });

  it('refuses a fixed disk shorter than its declared size', async () => {
    const footer = Buffer.from(dynamic.subarray(0, 512));
    footer.writeUInt32BE(2, 60);
    footer.writeBigUInt64BE(0xffffffffffffffffn, 16);
    footer.writeBigUInt64BE(1n << 30n, 48);
    vhdFooterChecksum(footer);
    const img = Buffer.concat([Buffer.alloc(4096), footer]);
    assertRefused(await detectBuf(img), 'vhd', 'corrupt_header');
  });

  it('refuses a fixed disk whose data is not whole 512-byte sectors (qemu: invalid VPC image)', async () => {
    const fixed = await readFile(await makeImage(dir, 'vpc', { size: '1M', options: { subformat: 'fixed', force_size: 'on' } }));
    assertAccepted(await detectBuf(fixed), 'vhd');
    const footer = fixed.subarray(fixed.length - 512);
    const data = fixed.subarray(0, fixed.length - 512);
    for (const img of [Buffer.concat([data, Buffer.alloc(100), footer]), Buffer.concat([data.subarray(0, data.length - 1), footer])]) {
      const r = await detectBuf(img);
      assert.equal(r.format, 'vhd');
      const v = assertRefused(r, 'vhd', 'corrupt_header');
      assert.match(!v.ok ? v.message : '', /not a whole number of 512-byte sectors.*upload it to a new image\./);
    }
  });

  it('only notes a bad checksum', async () => {
    const img = Buffer.from(dynamic);
    img[70] = img[70]! ^ 0xff; // unique id byte, covered by the checksum
    const r = await detectBuf(img);
    assert.ok(codes(r, 'info').includes('vhd_checksum'));
    assertAccepted(r, 'vhd');
  });

  it('refuses a virtual size over the policy', async () => {
    const img = editVhdFooters(dynamic, (f) => {
      f.writeBigUInt64BE(1n << 45n, 48);
      f.write('win ', 28, 'latin1');
    });
    const dataOffset = Number(img.readBigUInt64BE(16));
    img.writeUInt32BE(1 << 24, dataOffset + 28); // enough BAT entries to cover it (64 MiB of them, in the file)
    img.writeUInt32BE(1 << 21, dataOffset + 32);
    const bat = Number(img.readBigUInt64BE(dataOffset + 16));
    const big = Buffer.concat([img.subarray(0, bat), Buffer.alloc(4 * (1 << 24), 0xff), img.subarray(img.length - 512)]);
    const r = await detectBuf(big);
    assert.equal(r.virtualSize, 2 ** 45);
    assertRefused(r, 'vhd', 'virtual_size_too_large');
  });

  it('accepts a fixed VHD whose payload is a GPT disk', async () => {
    const disk = gptDisk();
    const footer = Buffer.from(dynamic.subarray(0, 512));
    footer.writeUInt32BE(2, 60);
    footer.writeBigUInt64BE(0xffffffffffffffffn, 16);
    footer.writeBigUInt64BE(BigInt(disk.length), 48);
    footer.write('win ', 28, 'latin1');
    vhdFooterChecksum(footer);
    const r = await detectBuf(Buffer.concat([disk, footer]));
    assert.equal(r.format, 'vhd');
    assert.deepEqual(r.alsoMatches, ['gpt']);
    assert.equal(r.virtualSize, disk.length);
    assertAccepted(r, 'vhd');
  });

  it("accepts a qcow2 whose last sector is the guest's own copy of a fixed VHD footer, and refuses one with a footer after its clusters", async () => {
    // qemu-img convert of a fixed VHD without -f vpc reads it as raw: the footer becomes the
    // disk's last sector, and with 512-byte clusters the qcow2 file's last 512 bytes.
    const fixed = await makeImage(dir, 'vpc', { size: '4M', options: { subformat: 'fixed' }, name: 'fixed-4m.vhd' });
    const qcow2 = await convertImage(fixed, join(dir, 'from-fixed.qcow2'), 'qcow2', { cluster_size: '512' });
    const bytes = await readFile(qcow2);
    assert.equal(bytes.toString('latin1', bytes.length - 512, bytes.length - 504), 'conectix', 'the file ends in the footer');
    const r = await detectBuf(bytes);
    const v = assertAccepted(r, 'qcow2');
    assert.equal(v.ok && v.virtualSize, (await qemuInfo(qcow2))['virtual-size']);
    // The same footer appended after a qcow2's clusters is a second format in the file.
    const plain = await readFile(await convertImage(fixed, join(dir, 'plain.qcow2'), 'qcow2', { cluster_size: '512' }));
    const footer = (await readFile(fixed)).subarray(-512);
    assertRefused(await detectBuf(Buffer.concat([plain.subarray(0, plain.length - 512), Buffer.alloc(512), footer])), 'qcow2', 'multiple_formats');
  });
});
