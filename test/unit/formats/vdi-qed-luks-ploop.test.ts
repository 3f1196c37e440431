import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { ensureQemuImg, makeImage, makeLuksImage, makeTempDir, qemuInfo, removeDir } from '../../support/images.js';
import { patched } from './craft.js';
import { assertAccepted, assertRefused, codes, detectBuf, detectFile, POLICY } from './helpers.js';

describe('vdi', () => {
  let dir = '';
  let img: Buffer;
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
    img = await readFile(await makeImage(dir, 'vdi', { size: '64M' }));
  });
  after(() => removeDir(dir));

  for (const [label, options] of [['dynamic', {}], ['static', { static: 'on' }]] as Array<[string, Record<string, string>]>) {
    it(`matches qemu-img info for ${label}`, async () => {
      const p = await makeImage(dir, 'vdi', { size: '64M', options });
      const [r, q] = await Promise.all([detectFile(p), qemuInfo(p)]);
      assert.equal(r.format, 'vdi');
      assert.equal(r.virtualSize, q['virtual-size']);
      assertAccepted(r, 'vdi');
      assertRefused(r, 'raw', 'format_mismatch');
    });
  }

  it('refuses differencing, unsupported types and damaged headers', async () => {
    const edit = (off: number, f: (b: Buffer) => void): Buffer => patched(img, off, f);
    assertRefused(await detectBuf(edit(0x4c, (b) => b.writeUInt32LE(4))), 'vdi', 'vdi_differencing');
    assertRefused(await detectBuf(edit(0x1a8, (b) => b.fill(0x11, 0, 16))), 'vdi', 'vdi_differencing');
    const parent = assertRefused(await detectBuf(edit(0x1b8, (b) => b.fill(0x22, 0, 16))), 'vdi', 'vdi_differencing');
    assert.match(!parent.ok ? parent.message : '', /'parent UUID'.*upload it to a new image\./);
    assertRefused(await detectBuf(edit(0x4c, (b) => b.writeUInt32LE(3))), 'vdi', 'vdi_unsupported_type');
    assertRefused(await detectBuf(edit(0x44, (b) => b.writeUInt32LE(0x00020000))), 'vdi', 'vdi_unsupported_version');
    assertRefused(await detectBuf(edit(0x168, (b) => b.writeUInt32LE(4096))), 'vdi', 'corrupt_header');
    assertRefused(await detectBuf(edit(0x178, (b) => b.writeUInt32LE(4096))), 'vdi', 'corrupt_header');
    assertRefused(await detectBuf(edit(0x170, (b) => b.writeBigUInt64LE(1n << 40n))), 'vdi', 'corrupt_header');
    assertRefused(await detectBuf(edit(0x158, (b) => b.writeUInt32LE(1001))), 'vdi', 'corrupt_header');
    for (const n of [0x44, 0x100, 0x1c7]) assertRefused(await detectBuf(img.subarray(0, n)), 'vdi', 'corrupt_header');
  });

  it('refuses a huge (but consistent) disk size by policy', async () => {
    // The block map (4 Mi entries) must be in the file, all free.
    const map = Buffer.alloc(4 * (1 << 22), 0xff);
    const b = Buffer.concat([img.subarray(0, 0x200), map]);
    b.writeUInt32LE(0x200, 0x154);
    b.writeUInt32LE(0x200 + map.length, 0x158);
    b.writeBigUInt64LE(1n << 42n, 0x170);
    b.writeUInt32LE(1 << 22, 0x180);
    b.writeUInt32LE(0, 0x184);
    const r = await detectBuf(b);
    assert.deepEqual(codes(r, 'refuse'), []);
    assertRefused(r, 'vdi', 'virtual_size_too_large');
  });
});

describe('qed', () => {
  let dir = '';
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
  });
  after(() => removeDir(dir));

  it('matches qemu-img info and accepts a standalone image', async () => {
    const p = await makeImage(dir, 'qed', { size: '64M' });
    const [r, q] = await Promise.all([detectFile(p), qemuInfo(p)]);
    assert.equal(r.format, 'qed');
    assert.equal(r.virtualSize, q['virtual-size']);
    assertAccepted(r, 'qed');
    assertRefused(r, 'qcow2', 'format_mismatch');
  });

  it('refuses a backing file and names it', async () => {
    const p = await makeImage(dir, 'qed', { size: '64M', backing: '/etc/passwd', backingFormat: 'raw', unsafe: true });
    const r = await detectFile(p);
    assert.equal(r.details.backingFile, '/etc/passwd');
    const v = assertRefused(r, 'qed', 'qed_backing_file');
    assert.ok(!v.ok && v.message.includes('/etc/passwd'));
  });

  it('refuses unknown features and damaged headers', async () => {
    const img = await readFile(await makeImage(dir, 'qed', { size: '64M' }));
    const edit = (off: number, f: (b: Buffer) => void): Buffer => patched(img, off, f);
    assertRefused(await detectBuf(edit(16, (b) => b.writeBigUInt64LE(0x100n))), 'qed', 'qed_unknown_features');
    assertRefused(await detectBuf(edit(4, (b) => b.writeUInt32LE(1000))), 'qed', 'corrupt_header');
    assertRefused(await detectBuf(edit(8, (b) => b.writeUInt32LE(64))), 'qed', 'corrupt_header');
    assertRefused(await detectBuf(edit(48, (b) => b.writeBigUInt64LE(1n << 62n))), 'qed', 'corrupt_header');
    assertRefused(await detectBuf(img.subarray(0, 63)), 'qed', 'corrupt_header');
  });
});

describe('luks', () => {
  let dir = '';
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
  });
  after(() => removeDir(dir));

  it('matches qemu-img info and is refused as encrypted unless allowed', async () => {
    const p = await makeLuksImage(dir, '64M');
    const [r, q] = await Promise.all([detectFile(p), qemuInfo(p)]);
    assert.equal(r.format, 'luks');
    assert.equal(r.virtualSize, q['virtual-size']);
    assertRefused(r, 'luks', 'encrypted');
    assertRefused(r, 'raw', 'encrypted');
    assertAccepted(r, 'luks', { ...POLICY, allowEncrypted: true });
    assertRefused(r, 'raw', 'format_mismatch', { ...POLICY, allowEncrypted: true });
  });

  it('refuses LUKS2 and damaged headers even when encryption is allowed', async () => {
    const img = await readFile(await makeLuksImage(dir, '16M'));
    const allow = { ...POLICY, allowEncrypted: true };
    const v2 = Buffer.from(img);
    v2.writeUInt16BE(2, 6);
    assertRefused(await detectBuf(v2), 'luks', 'luks_unsupported_version', allow);
    const bad = Buffer.from(img);
    bad.writeUInt32BE(0xffffffff, 104);
    assertRefused(await detectBuf(bad), 'luks', 'corrupt_header', allow);
    assertRefused(await detectBuf(img.subarray(0, 300)), 'luks', 'corrupt_header', allow);
    assertRefused(await detectBuf(img.subarray(0, 6)), 'luks', 'corrupt_header', allow);
  });
});

describe('ploop (parallels)', () => {
  let dir = '';
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
  });
  after(() => removeDir(dir));

  it('matches qemu-img info and accepts a standalone image', async () => {
    const p = await makeImage(dir, 'parallels', { size: '64M' });
    const [r, q] = await Promise.all([detectFile(p), qemuInfo(p)]);
    assert.equal(r.format, 'ploop');
    assert.equal(r.virtualSize, q['virtual-size']);
    assertAccepted(r, 'ploop');
    assertAccepted(r, 'parallels');
  });

  it('refuses damaged headers', async () => {
    const img = await readFile(await makeImage(dir, 'parallels', { size: '64M' }));
    const edit = (off: number, f: (b: Buffer) => void): Buffer => patched(img, off, f);
    assertRefused(await detectBuf(edit(16, (b) => b.writeUInt32LE(7))), 'ploop', 'ploop_unsupported_version');
    assertRefused(await detectBuf(edit(28, (b) => b.writeUInt32LE(0))), 'ploop', 'corrupt_header');
    assertRefused(await detectBuf(edit(36, (b) => b.writeBigUInt64LE(1n << 40n))), 'ploop', 'corrupt_header');
    assertRefused(await detectBuf(img.subarray(0, 40)), 'ploop', 'corrupt_header');
  });
});
