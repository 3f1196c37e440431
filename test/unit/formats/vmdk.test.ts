import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  convertImage, ensureQemuImg, makeImage, makeTempDir, patchFile, qemuInfo, readRange, removeDir,
} from '../../support/images.js';
import { assertAccepted, assertRefused, codes, detectBuf, detectFile } from './helpers.js';

describe('vmdk', () => {
  let dir = '';
  let sparse: Buffer; // a clean monolithicSparse image, in memory
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
    sparse = await readFile(await makeImage(dir, 'vmdk', { size: '64M' }));
  });
  after(() => removeDir(dir));

  /** Replace the embedded descriptor text (at sector 1, 20 sectors, NUL padded). */
  function withDescriptor(edit: (text: string) => string, base = sparse): Buffer {
    const img = Buffer.from(base);
    const off = Number(img.readBigUInt64LE(28)) * 512;
    const len = Number(img.readBigUInt64LE(36)) * 512;
    const region = img.subarray(off, off + len);
    const text = region.toString('latin1', 0, region.indexOf(0));
    const next = Buffer.from(edit(text), 'latin1');
    assert.ok(next.length <= len);
    region.fill(0);
    next.copy(region);
    return img;
  }

  for (const subformat of ['monolithicSparse', 'streamOptimized']) {
    it(`matches qemu-img info for ${subformat}`, async () => {
      const p = await makeImage(dir, 'vmdk', { size: '64M', options: { subformat } });
      const [r, q] = await Promise.all([detectFile(p), qemuInfo(p)]);
      assert.equal(q.format, 'vmdk');
      assert.equal(r.format, 'vmdk');
      assert.equal(r.virtualSize, q['virtual-size']);
      assert.equal(r.details.createType, subformat);
      assert.deepEqual(codes(r, 'refuse'), []);
      assertAccepted(r, 'vmdk');
      assertRefused(r, 'raw', 'format_mismatch');
    });
  }

  it('accepts a streamOptimized image converted from data, and an 8 GiB sparse one cheaply', async () => {
    const src = await makeImage(dir, 'raw', { size: '16M' });
    await patchFile(src, 1 << 20, Buffer.alloc(4096, 0xab));
    const p = await convertImage(src, join(dir, 'conv.vmdk'), 'vmdk', { subformat: 'streamOptimized' });
    const r = await detectFile(p);
    assert.equal(r.virtualSize, (await qemuInfo(p))['virtual-size']);
    assertAccepted(r, 'vmdk');
    const big = await makeImage(dir, 'vmdk', { size: '8G' });
    const rb = await detectFile(big);
    assert.equal(rb.virtualSize, 8 * 1024 ** 3);
    assert.ok(rb.bytesRead < 4 << 20);
  });

  it('refuses a bare monolithicFlat descriptor and other multi-file layouts', async () => {
    for (const subformat of ['monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat']) {
      const p = await makeImage(dir, 'vmdk', { size: '64M', options: { subformat }, name: `${subformat}.vmdk` });
      const r = await detectFile(p);
      assert.equal(r.format, 'vmdk');
      assert.equal(r.details.variant, 'descriptor');
      assert.equal(r.virtualSize, 64 << 20);
      assertRefused(r, 'vmdk', 'vmdk_external_extent');
      assertRefused(r, 'raw', 'vmdk_external_extent');
      assert.ok(codes(r).includes('vmdk_create_type'));
    }
  });

  it('refuses a standalone descriptor whose extent names /etc/passwd', async () => {
    const desc = '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicSparse"\n\nRW 8 FLAT "/etc/passwd" 0\n';
    const r = await detectBuf(Buffer.from(desc));
    const v = assertRefused(r, 'vmdk', 'vmdk_external_extent');
    assert.ok(!v.ok && v.message.includes('/etc/passwd'));
  });

  it('detects a descriptor padded with NULs, as `qemu-img convert` writes one, declared vmdk or raw', async () => {
    const flat = join(dir, 'data.raw');
    await writeFile(flat, randomBytes(1 << 20)); // from a disk with data, convert pads the descriptor
    const padded = await convertImage(flat, join(dir, 'converted-flat.vmdk'), 'vmdk', { subformat: 'monolithicFlat' });
    const written = await readFile(padded);
    assert.ok(written.includes(0), 'qemu-img convert pads the descriptor with NULs');
    const r = await detectFile(padded);
    assert.equal(r.details.variant, 'descriptor');
    assertRefused(r, 'vmdk', 'vmdk_external_extent');
    assertRefused(r, 'raw', 'vmdk_external_extent');
    const desc = Buffer.from('# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 8 FLAT "/etc/passwd" 0\n');
    const evil = await detectBuf(Buffer.concat([desc, Buffer.alloc(512 - desc.length)]));
    const v = assertRefused(evil, 'raw', 'vmdk_external_extent');
    assert.ok(!v.ok && v.message.includes('/etc/passwd'));
  });

  it('detects text that qemu would probe as a vmdk descriptor (first line version=1)', async () => {
    const r = await detectBuf(Buffer.from('version=1\nRW 100 FLAT "disk.img" 0\n'));
    assert.equal(r.format, 'vmdk');
    assertRefused(r, 'raw', 'vmdk_external_extent');
  });

  it('refuses embedded descriptors with external or extra extents', async () => {
    const cases: Array<[string, (t: string) => string]> = [
      ['absolute path', (t) => t.replace(/"[^"]*\.vmdk"/, '"/etc/passwd"')],
      ['relative path with slash', (t) => t.replace(/"[^"]*\.vmdk"/, '"../../etc/shadow"')],
      ['windows path', (t) => t.replace(/"[^"]*\.vmdk"/, '"C:\\\\secrets.bin"')],
      ['flat extent', (t) => t.replace(/RW (\d+) SPARSE "([^"]*)"/, 'RW $1 FLAT "$2" 0')],
      ['second extent', (t) => t.replace(/(RW \d+ SPARSE "[^"]*")/, '$1\nRW 2048 SPARSE "other.vmdk"')],
    ];
    for (const [label, edit] of cases) {
      const r = await detectBuf(withDescriptor(edit));
      assert.equal(r.format, 'vmdk', label);
      assertRefused(r, 'vmdk', r.findings[0]?.code === 'corrupt_header' ? 'corrupt_header' : 'vmdk_external_extent');
      assert.ok(codes(r).includes('vmdk_external_extent'), `${label}: ${codes(r)}`);
    }
  });

  it('refuses disallowed createType, parents, unknown lines and non-text descriptors', async () => {
    assertRefused(await detectBuf(withDescriptor((t) => t.replace('monolithicSparse', 'vmfsSparse'))), 'vmdk', 'vmdk_create_type');
    assertRefused(await detectBuf(withDescriptor((t) => t.replace(/createType="[^"]*"\n/, ''))), 'vmdk', 'vmdk_descriptor_invalid');
    assertRefused(await detectBuf(withDescriptor((t) => `${t}parentFileNameHint="/var/lib/base.vmdk"\n`)), 'vmdk', 'vmdk_parent');
    assertRefused(await detectBuf(withDescriptor((t) => `${t}this is not a descriptor line\n`)), 'vmdk', 'vmdk_descriptor_invalid');
    assertRefused(await detectBuf(withDescriptor((t) => t.replace(/RW \d+ SPARSE "[^"]*"\n/, ''))), 'vmdk', 'vmdk_descriptor_invalid');
    assertRefused(await detectBuf(withDescriptor((t) => t.replace(/RW (\d+) SPARSE/, 'RW $1 BOGUS'))), 'vmdk', 'vmdk_descriptor_invalid');
    assertRefused(await detectBuf(withDescriptor((t) => `${t}\u0007bell\n`)), 'vmdk', 'vmdk_descriptor_invalid');
  });

  it('refuses header/descriptor size disagreements and zero capacity', async () => {
    assertRefused(await detectBuf(withDescriptor((t) => t.replace(/RW \d+ SPARSE/, 'RW 999999999 SPARSE'))), 'vmdk', 'corrupt_header');
    const zero = Buffer.from(sparse);
    zero.writeBigUInt64LE(0n, 12);
    assertRefused(await detectBuf(zero), 'vmdk', 'vmdk_external_extent');
  });

  it('refuses damaged sparse headers', async () => {
    const mutate = (off: number, write: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(sparse);
      write(b.subarray(off));
      return b;
    };
    for (const n of [4, 50, 79]) assertRefused(await detectBuf(sparse.subarray(0, n)), 'vmdk', 'corrupt_header');
    assertRefused(await detectBuf(mutate(4, (b) => b.writeUInt32LE(9))), 'vmdk', 'corrupt_header');
    assertRefused(await detectBuf(mutate(20, (b) => b.writeBigUInt64LE(3n))), 'vmdk', 'corrupt_header');
    assertRefused(await detectBuf(mutate(28, (b) => b.writeBigUInt64LE(1n << 40n))), 'vmdk', 'corrupt_header');
    assertRefused(await detectBuf(mutate(28, (b) => b.writeBigUInt64LE(0n))), 'vmdk', 'vmdk_descriptor_invalid');
    assertRefused(await detectBuf(mutate(44, (b) => b.writeUInt32LE(100000))), 'vmdk', 'corrupt_header');
    // descriptor truncated away entirely
    assertRefused(await detectBuf(sparse.subarray(0, 512)), 'vmdk', 'corrupt_header');
  });

  it('follows a stream-optimized footer when the grain directory is at the end', async () => {
    const p = await makeImage(dir, 'vmdk', { size: '64M', options: { subformat: 'streamOptimized' } });
    const img = await readFile(p);
    const header = Buffer.from(img.subarray(0, 512));
    const withGdAtEnd = Buffer.from(img);
    withGdAtEnd.writeBigUInt64LE(0xffffffffffffffffn, 56);
    const marker = Buffer.alloc(512);
    marker.writeUInt32LE(3, 12); // footer marker type
    const eos = Buffer.alloc(512);
    const good = Buffer.concat([withGdAtEnd, marker, header, eos]);
    const r = await detectBuf(good);
    assert.equal(r.details.gdAtEnd, true);
    assert.equal(r.virtualSize, 64 << 20);
    assertAccepted(r, 'vmdk');
    const noFooter = Buffer.concat([withGdAtEnd, marker, Buffer.alloc(512), eos]);
    assertRefused(await detectBuf(noFooter), 'vmdk', 'corrupt_header');
    // Capacity 0 in the header at offset 0: qemu opens that header's descriptor as a descriptor
    // file (its extents: other files) before it looks at any footer, so the footer cannot vouch.
    const zeroFirst = Buffer.from(withGdAtEnd);
    zeroFirst.writeBigUInt64LE(0n, 12);
    assertRefused(await detectBuf(Buffer.concat([zeroFirst, marker, header, eos])), 'vmdk', 'vmdk_external_extent');
  });

  it('refuses parentFileNameHint wherever qemu finds it in the 20 sectors at 0x200', async () => {
    const hinted = (text: string, at = 0x200): Buffer => {
      const img = Buffer.from(sparse);
      Buffer.from(text, 'latin1').copy(img, at);
      return img;
    };
    const descriptor = withDescriptor((t) => t);
    const declared = Number(descriptor.readBigUInt64LE(36)) * 512;
    const text = descriptor.toString('latin1', 0x200, descriptor.indexOf(0, 0x200));
    // In a comment, which the descriptor parser skips.
    assertRefused(await detectBuf(withDescriptor((t) => `${t}# parentFileNameHint="/etc/passwd"\n`)), 'vmdk', 'vmdk_parent');
    // Past the descriptor the header declares (qemu reads 20 sectors up to the first NUL).
    const shrunk = hinted(`${text}${' '.repeat(600)}\nparentFileNameHint="/etc/passwd"\n`);
    shrunk.writeBigUInt64LE(1n, 36);
    assertRefused(await detectBuf(shrunk), 'vmdk', 'vmdk_parent');
    // The header points at a clean copy elsewhere; qemu still searches 0x200.
    const moved = Buffer.from(descriptor);
    const clean = Buffer.from(descriptor.subarray(0x200, 0x200 + declared));
    const end = moved.length;
    const twoCopies = Buffer.concat([moved, clean]);
    twoCopies.writeBigUInt64LE(BigInt(end / 512), 28);
    Buffer.from(`${text}parentFileNameHint="/etc/passwd"\n`, 'latin1').copy(twoCopies, 0x200);
    assertRefused(await detectBuf(twoCopies), 'vmdk', 'vmdk_parent');
    // After a NUL, qemu's search stops: not a parent.
    const afterNul = Buffer.from(descriptor);
    Buffer.from('parentFileNameHint="/etc/passwd"', 'latin1').copy(afterNul, 0x200 + text.length + 64);
    assert.ok(!codes(await detectBuf(afterNul)).includes('vmdk_parent'));
  });

  it('refuses legacy COWD images', async () => {
    const b = Buffer.alloc(2048);
    b.write('COWD', 0, 'latin1');
    b.writeUInt32LE(1, 4);
    b.writeUInt32LE(2048, 12);
    const r = await detectBuf(b);
    assert.equal(r.format, 'vmdk');
    assertRefused(r, 'vmdk', 'vmdk_create_type');
  });

  it('refuses a text descriptor too large to be one', async () => {
    const big = Buffer.alloc(2 << 20, 0x20);
    Buffer.from('# Disk DescriptorFile\nversion=1\n').copy(big);
    const r = await detectBuf(big);
    assertRefused(r, 'vmdk', 'vmdk_descriptor_invalid');
  });

  it('reads the descriptor of a real file through the file reader', async () => {
    const p = join(dir, 'hostile.vmdk');
    await writeFile(p, withDescriptor((t) => t.replace(/"[^"]*\.vmdk"/, '"/etc/passwd"')));
    assert.deepEqual((await readRange(p, 0, 4)).toString(), 'KDMV');
    assertRefused(await detectFile(p), 'vmdk', 'vmdk_external_extent');
  });
});
