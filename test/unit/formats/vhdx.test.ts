import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { crc32c } from '../../../formats/crc.js';
import { guidToBytes } from '../../../formats/guid.js';
import { ensureQemuImg, makeImage, makeTempDir, qemuInfo, removeDir } from '../../support/images.js';
import { assertAccepted, assertRefused, codes, detectBuf, detectFile } from './helpers.js';

const KiB = 1024;
const PARENT_LOCATOR = guidToBytes('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C');
const FILE_PARAMS = guidToBytes('CAA16737-FA36-4D43-B3B6-33F0AA44E76B');
const VDS = guidToBytes('2FA54224-CD1B-4876-B211-5DBED83BF4B8');

/** Locate the metadata region through the primary region table. */
function metadataOffset(img: Buffer): number {
  const n = img.readUInt32LE(192 * KiB + 8);
  for (let i = 0; i < n; i++) {
    const e = 192 * KiB + 16 + i * 32;
    if (img.subarray(e, e + 16).equals(guidToBytes('8B7CA206-4790-4B9A-B8FE-575F050F886E'))) return Number(img.readBigUInt64LE(e + 16));
  }
  throw new Error('no metadata region');
}

function findItem(img: Buffer, id: Buffer): { entry: number; data: number } {
  const m = metadataOffset(img);
  const n = img.readUInt16LE(m + 10);
  for (let i = 0; i < n; i++) {
    const e = m + 32 + i * 32;
    if (img.subarray(e, e + 16).equals(id)) return { entry: e, data: m + img.readUInt32LE(e + 16) };
  }
  throw new Error('no item');
}

/** Append a metadata table entry and its data (placed at +512 KiB in the metadata region). */
function addItem(img: Buffer, id: Buffer, data: Buffer, flags: number): void {
  const m = metadataOffset(img);
  const n = img.readUInt16LE(m + 10);
  const e = m + 32 + n * 32;
  id.copy(img, e);
  img.writeUInt32LE(512 * KiB, e + 16);
  img.writeUInt32LE(data.length, e + 20);
  img.writeUInt32LE(flags, e + 24);
  img.writeUInt16LE(n + 1, m + 10);
  data.copy(img, m + 512 * KiB);
}

function parentLocator(path: string): Buffer {
  const kv: Array<[string, string]> = [['parent_linkage', '{00000000-0000-0000-0000-000000000001}'], ['absolute_win32_path', path]];
  const head = 20 + kv.length * 12;
  const chunks: Buffer[] = [];
  const entries = Buffer.alloc(head);
  guidToBytes('B04AEFB7-D19E-4A81-B789-25B8E9445913').copy(entries, 0);
  entries.writeUInt16LE(kv.length, 18);
  let off = head;
  kv.forEach(([k, v], i) => {
    const kb = Buffer.from(k, 'utf16le');
    const vb = Buffer.from(v, 'utf16le');
    entries.writeUInt32LE(off, 20 + i * 12);
    entries.writeUInt32LE(off + kb.length, 20 + i * 12 + 4);
    entries.writeUInt16LE(kb.length, 20 + i * 12 + 8);
    entries.writeUInt16LE(vb.length, 20 + i * 12 + 10);
    chunks.push(kb, vb);
    off += kb.length + vb.length;
  });
  return Buffer.concat([entries, ...chunks]);
}

function fixCrc(img: Buffer, at: number, len: number): void {
  img.writeUInt32LE(0, at + 4);
  img.writeUInt32LE(crc32c(img.subarray(at, at + len)), at + 4);
}

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
    addItem(img, PARENT_LOCATOR, parentLocator('C:\\VMs\\base.vhdx'), 0x6);
    const r = await detectBuf(img);
    assert.equal(r.details.parent, 'C:\\VMs\\base.vhdx');
    const v = assertRefused(r, 'vhdx', 'vhdx_parent');
    assert.ok(!v.ok && v.message.includes('base.vhdx'));
  });

  it('refuses the HasParent file parameter on its own', async () => {
    const img = Buffer.from(base);
    const { data } = findItem(img, FILE_PARAMS);
    img.writeUInt32LE(img.readUInt32LE(data + 4) | 2, data + 4);
    assertRefused(await detectBuf(img), 'vhdx', 'vhdx_parent');
  });

  it('refuses unknown required metadata but ignores unknown optional metadata', async () => {
    const req = Buffer.from(base);
    addItem(req, guidToBytes('11111111-2222-3333-4444-555555555555'), Buffer.alloc(8), 0x4);
    assertRefused(await detectBuf(req), 'vhdx', 'vhdx_unknown_required');
    const opt = Buffer.from(base);
    addItem(opt, guidToBytes('11111111-2222-3333-4444-555555555555'), Buffer.alloc(8), 0x0);
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
      fixCrc(log, h, 4 * KiB);
    }
    assertRefused(await detectBuf(log), 'vhdx', 'vhdx_log_replay');

    const noSize = Buffer.from(base);
    const { entry } = findItem(noSize, VDS);
    noSize.fill(0x77, entry, entry + 16);
    noSize.writeUInt32LE(0, entry + 24); // not required, just absent as far as we know
    assertRefused(await detectBuf(noSize), 'vhdx', 'corrupt_header');

    const outside = Buffer.from(base);
    outside.writeUInt32LE(0xfffff000, findItem(outside, VDS).entry + 16);
    assertRefused(await detectBuf(outside), 'vhdx', 'corrupt_header');

    for (const n of [8, 1000, 100 * KiB, 200 * KiB, 300 * KiB]) {
      const r = await detectBuf(base.subarray(0, n));
      assert.equal(r.format, 'vhdx');
      assertRefused(r, 'vhdx', 'corrupt_header');
    }
  });

  it('refuses a huge virtual disk size', async () => {
    const img = Buffer.from(base);
    img.writeBigUInt64LE(1n << 50n, findItem(img, VDS).data);
    const r = await detectBuf(img);
    assert.equal(r.virtualSize, 2 ** 50);
    assertRefused(r, 'vhdx', 'virtual_size_too_large');
  });
});
