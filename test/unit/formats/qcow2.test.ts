import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { judge } from '../../../formats/index.js';
import {
  ensureQemuImg, makeImage, makeTempDir, patchFile, qemuInfo, readRange, removeDir, truncateFile,
} from '../../support/images.js';
import { assertAccepted, assertRefused, codes, detectBuf, detectFile, GiB, POLICY } from './helpers.js';

describe('qcow2', () => {
  let dir = '';
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
  });
  after(() => removeDir(dir));

  /** A fresh copy of a clean v3 image to patch. */
  async function cleanCopy(name: string): Promise<string> {
    const src = await makeImage(dir, 'qcow2', { size: '64M', options: { compat: '1.1' } });
    const dst = join(dir, name);
    await copyFile(src, dst);
    return dst;
  }

  const variants: Array<[string, Record<string, string | number>, string?]> = [
    ['v2 (compat=0.10)', { compat: '0.10' }],
    ['v3 (compat=1.1)', { compat: '1.1' }],
    ['v3 zstd compression', { compat: '1.1', compression_type: 'zstd' }],
    ['v3 extended L2', { compat: '1.1', extended_l2: 'on', cluster_size: 65536 }],
    ['v3 lazy refcounts', { compat: '1.1', lazy_refcounts: 'on' }],
    ['512-byte clusters', { cluster_size: 512 }, '1G'],
    ['2 MiB clusters', { cluster_size: 2 * 1024 * 1024 }],
    ['odd virtual size', {}, '12345678'],
  ];
  for (const [label, options, size] of variants) {
    it(`matches qemu-img info for ${label}`, async () => {
      const p = await makeImage(dir, 'qcow2', { size: size ?? '64M', options });
      const [r, q] = await Promise.all([detectFile(p), qemuInfo(p)]);
      assert.equal(q.format, 'qcow2');
      assert.equal(r.format, 'qcow2');
      assert.equal(r.virtualSize, q['virtual-size']);
      assert.deepEqual(codes(r, 'refuse'), [], JSON.stringify(r.findings));
      assert.equal(r.details.version, options.compat === '0.10' ? 2 : 3);
      const v = assertAccepted(r, 'qcow2');
      assert.equal(v.ok && v.virtualSize, q['virtual-size']);
    });
  }

  it('reports zstd compression and cluster size in details', async () => {
    const p = await makeImage(dir, 'qcow2', { options: { compression_type: 'zstd', cluster_size: 4096 } });
    const r = await detectFile(p);
    assert.equal(r.details.compressionType, 'zstd');
    assert.equal(r.details.clusterSize, 4096);
  });

  it('reads little of an 8 GiB image', async () => {
    const p = await makeImage(dir, 'qcow2', { size: '8G' });
    const r = await detectFile(p);
    assert.equal(r.virtualSize, 8 * GiB);
    assert.ok(r.bytesRead < 4 << 20, `read ${r.bytesRead}`);
  });

  it('refuses a backing file and names it', async () => {
    for (const backingFormat of ['raw', 'qcow2']) {
      const p = await makeImage(dir, 'qcow2', { size: '64M', backing: '/etc/passwd', backingFormat, unsafe: true });
      const q = await qemuInfo(p);
      assert.equal(q['backing-filename'], '/etc/passwd');
      const r = await detectFile(p);
      assert.equal(r.format, 'qcow2');
      assert.equal(r.details.backingFile, '/etc/passwd');
      const v = assertRefused(r, 'qcow2', 'qcow2_backing_file');
      assert.match(!v.ok ? v.message : '', /'\/etc\/passwd'.*qemu-img convert/);
      // Also refused when mis-declared: the safety problem is reported first.
      assertRefused(r, 'raw', 'qcow2_backing_file');
    }
  });

  it('refuses a backing file in a v2 image', async () => {
    const p = await makeImage(dir, 'qcow2', { size: '64M', backing: '/etc/shadow', backingFormat: 'raw', unsafe: true, options: { compat: '0.10' } });
    const r = await detectFile(p);
    assert.equal(r.details.version, 2);
    assertRefused(r, 'qcow2', 'qcow2_backing_file');
  });

  it('refuses an external data file and names it', async () => {
    const data = join(dir, 'data-target.raw');
    const p = await makeImage(dir, 'qcow2', { size: '64M', options: { data_file: data } });
    const r = await detectFile(p);
    assert.equal(r.details.dataFile, data);
    const v = assertRefused(r, 'qcow2', 'qcow2_data_file');
    assert.ok(!v.ok && v.message.includes(data));
  });

  it('refuses the data-file bit even when the name extension is missing', async () => {
    const p = await cleanCopy('bit-only.qcow2');
    const b = await readRange(p, 79, 1);
    await patchFile(p, 79, [b[0]! | 0x04]);
    assertRefused(await detectFile(p), 'qcow2', 'qcow2_data_file');
  });

  it('refuses unknown incompatible feature bits (low and high)', async () => {
    for (const [offset, mask] of [[79, 0x20], [72, 0x80], [76, 0x01]] as const) {
      const p = await cleanCopy(`unknown-${offset}-${mask}.qcow2`);
      const b = await readRange(p, offset, 1);
      await patchFile(p, offset, [b[0]! | mask]);
      const r = await detectFile(p);
      assertRefused(r, 'qcow2', 'qcow2_unknown_features');
    }
  });

  it('refuses the corrupt bit and only notes the dirty bit', async () => {
    const c = await cleanCopy('corrupt.qcow2');
    await patchFile(c, 79, [0x02]);
    assertRefused(await detectFile(c), 'qcow2', 'qcow2_corrupt');
    const d = await cleanCopy('dirty.qcow2');
    await patchFile(d, 79, [0x01]);
    const r = await detectFile(d);
    assert.deepEqual(codes(r), ['qcow2_dirty']);
    assertAccepted(r, 'qcow2');
  });

  it('refuses encrypted images unless the policy allows them', async () => {
    const p = await makeImage(dir, 'qcow2', {
      objects: ['secret,id=sec0,data=pir-test'],
      options: { 'encrypt.format': 'luks', 'encrypt.key-secret': 'sec0', 'encrypt.iter-time': 50 },
    });
    const r = await detectFile(p);
    assert.equal(r.details.encrypted, 'luks');
    assert.equal(r.virtualSize, 64 << 20);
    assertRefused(r, 'qcow2', 'encrypted');
    assertAccepted(r, 'qcow2', { ...POLICY, allowEncrypted: true });
  });

  it('refuses virtual sizes over the policy limit', async () => {
    const p = await makeImage(dir, 'qcow2', { size: '1P' });
    const r = await detectFile(p);
    assert.equal(r.virtualSize, 2 ** 50);
    assertRefused(r, 'qcow2', 'virtual_size_too_large');
    assert.ok(r.bytesRead < 4 << 20);
  });

  it('refuses a size field the L1 table cannot cover (forged huge size)', async () => {
    const p = await cleanCopy('huge.qcow2');
    await patchFile(p, 24, [0x10, 0, 0, 0, 0, 0, 0, 0]); // 2^60 bytes
    const r = await detectFile(p);
    assert.ok((r.virtualSize ?? 0) > 2 ** 59);
    assertRefused(r, 'qcow2', 'corrupt_header');
  });

  it('refuses format mismatches in both directions', async () => {
    const p = await makeImage(dir, 'qcow2');
    assertRefused(await detectFile(p), 'raw', 'format_mismatch');
    assertRefused(await detectFile(p), 'vmdk', 'format_mismatch');
    const raw = await makeImage(dir, 'raw');
    assertRefused(await detectFile(raw), 'qcow2', 'format_mismatch');
  });

  it('refuses truncated headers at every length', async () => {
    const p = await makeImage(dir, 'qcow2', { options: { compat: '1.1' } });
    const head = await readRange(p, 0, 512);
    for (const n of [4, 5, 8, 20, 71, 72, 100, 103]) {
      const r = await detectBuf(head.subarray(0, n));
      assert.equal(r.format, 'qcow2');
      assertRefused(r, 'qcow2', 'corrupt_header');
    }
    const v2 = await makeImage(dir, 'qcow2', { options: { compat: '0.10' } });
    const r = await detectBuf((await readRange(v2, 0, 512)).subarray(0, 71));
    assertRefused(r, 'qcow2', 'corrupt_header');
  });

  it('refuses a file truncated inside the header cluster', async () => {
    const p = await cleanCopy('short.qcow2');
    await truncateFile(p, 300);
    assertRefused(await detectFile(p), 'qcow2', 'corrupt_header');
  });

  it('refuses bad version, cluster_bits, header_length, crypt_method and extension lengths', async () => {
    const p = await makeImage(dir, 'qcow2', { options: { compat: '1.1' } });
    const head = await readRange(p, 0, 65536);
    const mutate = (off: number, bytes: number[]): Buffer => {
      const b = Buffer.from(head);
      Buffer.from(bytes).copy(b, off);
      return b;
    };
    assertRefused(await detectBuf(mutate(4, [0, 0, 0, 1])), 'qcow2', 'qcow2_unsupported_version');
    assertRefused(await detectBuf(mutate(4, [0, 0, 0, 4])), 'qcow2', 'qcow2_unsupported_version');
    assertRefused(await detectBuf(mutate(20, [0, 0, 0, 30])), 'qcow2', 'corrupt_header');
    assertRefused(await detectBuf(mutate(20, [0, 0, 0, 8])), 'qcow2', 'corrupt_header');
    assertRefused(await detectBuf(mutate(100, [0, 0, 0, 50])), 'qcow2', 'corrupt_header');
    assertRefused(await detectBuf(mutate(100, [0, 2, 0, 0])), 'qcow2', 'corrupt_header');
    assertRefused(await detectBuf(mutate(32, [0, 0, 0, 9])), 'qcow2', 'corrupt_header');
    // first extension (at header_length) claims a length running past the first cluster
    const hl = head.readUInt32BE(100);
    assertRefused(await detectBuf(mutate(hl + 4, [0x7f, 0xff, 0xff, 0xff])), 'qcow2', 'corrupt_header');
    // unknown compression type
    const z = mutate(104, [7]);
    z[79] = z[79]! | 0x08;
    assertRefused(await detectBuf(z), 'qcow2', 'qcow2_compression_type');
  });

  it('refuses what qemu refuses to open: a huge snapshot count, a CRYPTO extension without LUKS, broken bitmaps', async () => {
    const p = await cleanCopy('qemu-refuses.qcow2');
    const head = await readFile(p); // the whole (small) image: alone, it is accepted
    assert.deepEqual(codes(await detectBuf(head), 'refuse'), []);
    const hl = head.readUInt32BE(100);
    const snapshots = Buffer.from(head);
    snapshots.writeUInt32BE(0xffffffff, 60);
    assert.match((await detectBuf(snapshots)).findings.map((f) => f.message).join(' '), /nb_snapshots' is 4294967295/);
    assertRefused(await detectBuf(snapshots), 'qcow2', 'corrupt_header');
    /** The clean image with one header extension (type, body) where the end marker was. */
    const withExtension = (type: number, body: Buffer, autoclear = 0n): Buffer => {
      const b = Buffer.from(head);
      b.writeUInt32BE(type, hl);
      b.writeUInt32BE(body.length, hl + 4);
      body.copy(b, hl + 8);
      b.fill(0, hl + 8 + body.length, hl + 8 + Math.ceil(body.length / 8) * 8 + 8); // then the end marker
      b.writeBigUInt64BE(autoclear, 88);
      return b;
    };
    assertRefused(await detectBuf(withExtension(0x0537be77, Buffer.alloc(16))), 'qcow2', 'corrupt_header');
    const bitmaps = (count: number, reserved: number, size: bigint, offset: bigint) => {
      const body = Buffer.alloc(24);
      body.writeUInt32BE(count, 0);
      body.writeUInt32BE(reserved, 4);
      body.writeBigUInt64BE(size, 8);
      body.writeBigUInt64BE(offset, 16);
      return body;
    };
    for (const [label, body] of [
      ['no bitmaps', bitmaps(0, 0, 64n, 65536n)],
      ['reserved set', bitmaps(1, 1, 64n, 65536n)],
      ['directory too large', bitmaps(1, 0, 1n << 40n, 65536n)],
      ['unaligned directory', bitmaps(1, 0, 64n, 65537n)],
      ['directory past the end, autoclear set', bitmaps(1, 0, 64n, 1n << 40n)],
    ] as const) {
      assertRefused(await detectBuf(withExtension(0x23852875, body, 1n)), 'qcow2', label.includes('past') ? 'image_truncated' : 'corrupt_header');
    }
    // Without the autoclear bit qemu ignores the bitmaps: so does PIR.
    const ignored = await detectBuf(withExtension(0x23852875, bitmaps(1, 0, 64n, 1n << 40n)));
    assert.deepEqual(codes(ignored, 'refuse'), []);
  });

  it('refuses what qemu refuses to open: no refcount table, a snapshot table offset off a cluster boundary', async () => {
    const p = await cleanCopy('qemu-refuses-tables.qcow2');
    const head = await readFile(p);
    const noRefcounts = Buffer.from(head);
    noRefcounts.writeUInt32BE(0, 56);
    const r = await detectBuf(noRefcounts);
    assertRefused(r, 'qcow2', 'corrupt_header');
    assert.match(r.findings.map((f) => f.message).join(' '), /refcount_table_clusters' is 0.*upload it to a new image\./);
    // qemu checks the offset's alignment even with no snapshots (qcow2_validate_table).
    for (const nb of [0, 1]) {
      const b = Buffer.from(head);
      b.writeUInt32BE(nb, 60);
      b.writeBigUInt64BE(65536n + 8n, 64);
      const s = await detectBuf(b);
      assertRefused(s, 'qcow2', 'corrupt_header');
      assert.match(s.findings.map((f) => f.message).join(' '), /snapshots_offset' \(65544\) is not cluster aligned/);
    }
    // A real snapshot table is accepted.
    const snap = await cleanCopy('snapshot.qcow2');
    execFileSync('qemu-img', ['snapshot', '-c', 's1', snap]);
    assertAccepted(await detectFile(snap), 'qcow2');
  });

  it('accepts an image with real persistent bitmaps', async () => {
    const p = await cleanCopy('bitmaps.qcow2');
    execFileSync('qemu-img', ['bitmap', '--add', p, 'b0']);
    execFileSync('qemu-img', ['bitmap', '--add', p, 'b1']);
    const r = await detectFile(p);
    assert.equal(r.details.hasBitmaps, true);
    assertAccepted(r, 'qcow2');
  });

  it('judge reports ok format and size for a clean image', async () => {
    const p = await makeImage(dir, 'qcow2', { size: '100M' });
    const v = judge(await detectFile(p), 'qcow2', POLICY);
    assert.deepEqual(v.ok && [v.format, v.virtualSize], ['qcow2', 100 << 20]);
  });
});
