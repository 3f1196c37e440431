import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BufferReader, CountingReader, detectFormat, judge } from '../../../formats/index.js';
import type { RandomAccessReader } from '../../../formats/index.js';
import { ensureQemuImg, makeImage, makeTempDir, qemuInfo, removeDir } from '../../support/images.js';
import { assertAccepted, assertRefused, codes, detectBuf, detectFile, GiB, POLICY } from './helpers.js';

describe('raw detection and core behaviour', () => {
  let dir = '';
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
  });
  after(() => removeDir(dir));

  it('detects a qemu-img raw image as raw with the file size as virtual size', async () => {
    const p = await makeImage(dir, 'raw', { size: '64M' });
    const r = await detectFile(p);
    const q = await qemuInfo(p);
    assert.equal(r.format, 'raw');
    assert.equal(q.format, 'raw');
    assert.equal(r.virtualSize, q['virtual-size']);
    assert.deepEqual(r.alsoMatches, []);
    assert.deepEqual(codes(r, 'refuse'), []);
    assertAccepted(r, 'raw');
  });

  it('handles zero- and one-byte inputs without throwing', async () => {
    for (const buf of [Buffer.alloc(0), Buffer.from([0x51]), Buffer.from([0])]) {
      const r = await detectBuf(buf);
      assert.equal(r.format, 'raw');
      assert.equal(r.virtualSize, buf.length);
      assert.ok(r.bytesRead <= buf.length);
    }
  });

  it('detects a bare qcow2 magic (4 bytes) as a truncated qcow2, not raw', async () => {
    const r = await detectBuf(Buffer.from([0x51, 0x46, 0x49, 0xfb]));
    assert.equal(r.format, 'qcow2');
    assertRefused(r, 'qcow2', 'corrupt_header');
    assertRefused(r, 'raw', 'corrupt_header');
  });

  it('refuses as raw what qemu would probe as bochs or cloop, which PIR does not store', async () => {
    const bochs = Buffer.alloc(1024);
    bochs.write('Bochs Virtual HD Image', 0, 'latin1');
    bochs.write('Redolog', 32, 'latin1');
    bochs.write('Growing', 48, 'latin1');
    bochs.writeUInt32LE(0x00020000, 64); // version
    bochs.writeUInt32LE(512, 68); // header size
    bochs.writeUInt32LE(16, 72); // catalog entries
    bochs.writeUInt32LE(1, 76); // bitmap size
    bochs.writeUInt32LE(4096, 80); // extent size
    bochs.writeBigUInt64LE(16n * 4096n, 88); // disk size
    const cloop = Buffer.alloc(1024);
    cloop.write('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n', 0, 'latin1');
    cloop.writeUInt32BE(65536, 128); // block size
    cloop.writeUInt32BE(1, 132); // blocks
    for (const [format, data] of [['bochs', bochs], ['cloop', cloop]] as const) {
      const path = join(dir, `probe.${format}`);
      await writeFile(path, data);
      assert.equal((await qemuInfo(path)).format, format, `qemu-img probes the sample as ${format}`);
      const r = await detectBuf(data);
      assert.equal(r.format, 'raw');
      const v = assertRefused(r, 'raw', 'qemu_only_format');
      assert.ok(!v.ok && v.message.includes(`'${format}'`), !v.ok ? v.message : '');
    }
    // What the cloop probe looks for, elsewhere in a raw disk, is just data.
    const later = Buffer.alloc(1024);
    cloop.copy(later, 512, 0, 90);
    assertAccepted(await detectBuf(later), 'raw');
  });

  it('accepts unknown content only when declared raw', async () => {
    const r = await detectBuf(Buffer.alloc(1 << 20, 7));
    assertAccepted(r, 'raw');
    assertAccepted(r, 'ami');
    assertRefused(r, 'qcow2', 'format_mismatch');
    assertRefused(r, 'vmdk', 'format_mismatch');
    const vhd = assertRefused(r, 'vhd', 'format_mismatch');
    assert.ok(!vhd.ok && vhd.message.endsWith("If it is a plain disk, declare disk_format 'raw'; otherwise convert it with `qemu-img convert -O vpc in.img out.img`, then upload it to a new image (a refused image takes no more data)."), !vhd.ok ? vhd.message : '');
    // No qemu-img output for an ISO; a tar is an OVA uploaded as bare.
    const iso = assertRefused(r, 'iso', 'format_mismatch');
    assert.ok(!iso.ok && /xorriso or genisoimage/.test(iso.message) && !/-O iso/.test(iso.message), !iso.ok ? iso.message : '');
    const tarball = Buffer.alloc(4096);
    tarball.write('disk.ovf', 0, 'latin1');
    tarball.write('ustar', 257, 'latin1');
    const tar = assertRefused(await detectBuf(tarball), 'qcow2', 'format_mismatch');
    assert.ok(!tar.ok && /a tar archive, not a disk/.test(tar.message) && /container_format 'ova'/.test(tar.message), !tar.ok ? tar.message : '');
    assertRefused(r, null, 'format_unknown');
    assertRefused(r, 'floppy', 'unsupported_disk_format');
  });

  it('refuses raw images over the size policy', async () => {
    const r = await detectBuf(Buffer.alloc(4096));
    assertRefused(r, 'raw', 'virtual_size_too_large', { maxVirtualSize: 1024, allowEncrypted: false });
    assertAccepted(r, 'raw', { maxVirtualSize: 4096, allowEncrypted: false });
  });

  it('propagates reader I/O errors instead of turning them into findings', async () => {
    const failing: RandomAccessReader = { size: 1 << 20, read: async () => { throw new Error('EIO boom'); } };
    await assert.rejects(detectFormat(failing), /EIO boom/);
  });

  it('survives readers that lie about size or return short/odd buffers', async () => {
    const liar: RandomAccessReader = { size: 10 * GiB, read: async () => Buffer.alloc(3) };
    const r = await detectFormat(liar);
    assert.equal(r.format, 'raw');
    const nan: RandomAccessReader = { size: Number.NaN, read: async () => Buffer.alloc(0) };
    assert.equal((await detectFormat(nan)).format, 'raw');
    const long: RandomAccessReader = { size: 100, read: async (_o, l) => Buffer.alloc(l + 1000) };
    assert.equal((await detectFormat(long)).format, 'raw');
  });

  it('reports bytesRead equal to what went through the reader', async () => {
    const counting = new CountingReader(new BufferReader(Buffer.alloc(8 << 20)));
    const r = await detectFormat(counting);
    assert.equal(r.bytesRead, counting.bytesRead);
    assert.ok(r.bytesRead < 1 << 20, `read ${r.bytesRead}`);
  });

  it('reads only a bounded amount from an 8 GiB sparse raw image', async () => {
    const p = await makeImage(dir, 'raw', { size: '8G' });
    const r = await detectFile(p);
    assert.equal(r.format, 'raw');
    assert.equal(r.virtualSize, 8 * GiB);
    assert.ok(r.bytesRead < 4 << 20, `read ${r.bytesRead}`);
  });

  it('judge treats gpt/mbr as raw', () => {
    const base = { virtualSize: 1024, findings: [], details: {}, fileSize: 1024, bytesRead: 0, alsoMatches: [] };
    assert.equal(judge({ ...base, format: 'gpt' }, 'raw', POLICY).ok, true);
    assert.equal(judge({ ...base, format: 'mbr' }, 'raw', POLICY).ok, true);
    assert.equal(judge({ ...base, format: 'gpt' }, 'qcow2', POLICY).ok, false);
  });
});
