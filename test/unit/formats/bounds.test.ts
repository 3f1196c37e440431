/**
 * Truncated images (issue 6, point 1): every table a header points to, and the data blocks
 * reachable from them, must lie inside the file. Images are made by qemu-img from a disk with
 * data spread over it, then cut; qcow2 cuts are checked against `qemu-img check`.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { READ_BUDGET } from '../../../formats/index.js';
import { convertImage, ensureQemuImg, makeTempDir, removeDir } from '../../support/images.js';
import { assertAccepted, assertRefused, detectBuf } from './helpers.js';

const MiB = 1024 * 1024;

describe('images cut short are refused as image_truncated', () => {
  let dir = '';
  let source = '';
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir('pir-bounds-');
    source = join(dir, 'source.raw');
    const h = await open(source, 'w');
    try {
      await h.truncate(64 * MiB);
      // data near the start, the middle and the end, so every part of the image holds some
      for (const at of [0, 9, 21, 40, 63]) await h.write(Buffer.alloc(256 * 1024, at + 1), 0, 256 * 1024, at * MiB);
    } finally {
      await h.close();
    }
  });
  after(() => removeDir(dir));

  // [label, qemu format, options, declared disk_format]
  const formats: Array<[string, string, Record<string, string>, string]> = [
    ['qcow2', 'qcow2', {}, 'qcow2'],
    ['qcow2 v2, 512-byte clusters', 'qcow2', { compat: '0.10', cluster_size: '512' }, 'qcow2'],
    ['qcow2 compressed', 'qcow2', {}, 'qcow2'],
    ['qed', 'qed', {}, 'qed'],
    ['vmdk monolithicSparse', 'vmdk', {}, 'vmdk'],
    ['vmdk streamOptimized', 'vmdk', { subformat: 'streamOptimized' }, 'vmdk'],
    ['vhd dynamic', 'vpc', {}, 'vhd'],
    ['vhdx dynamic', 'vhdx', {}, 'vhdx'],
    ['vhdx fixed', 'vhdx', { subformat: 'fixed' }, 'vhdx'],
    ['vdi dynamic', 'vdi', {}, 'vdi'],
    ['vdi static', 'vdi', { static: 'on' }, 'vdi'],
    ['ploop', 'parallels', {}, 'ploop'],
  ];

  for (const [label, fmt, options, declared] of formats) {
    it(`${label}: whole → accepted; cut at 1/4, 1/2, 3/4 and one cluster short → refused`, async () => {
      const path = join(dir, `${label.replace(/\W+/g, '-')}.img`);
      // (compressed clusters need only start in the file, which is stricter than qemu-img check:
      // it lets a cluster start inside the partial cluster past the end)
      if (label === 'qcow2 compressed') execFileSync('qemu-img', ['convert', '-c', '-O', 'qcow2', source, path]);
      else await convertImage(source, path, fmt, options);
      const whole = await readFile(path);
      const r = await detectBuf(whole);
      // qed has no Glance disk_format of its own; judge it as qed by hand
      if (declared !== 'qed') assertAccepted(r, declared);
      else assert.deepEqual(r.findings.filter((f) => f.severity === 'refuse'), []);
      assert.ok(r.bytesRead <= READ_BUDGET, `read ${r.bytesRead}`);

      // Cut inside the written data: qemu's streamOptimized output ends in zero padding that no
      // table points to, and losing it loses nothing.
      let dataEnd = whole.length;
      while (dataEnd > 0 && whole[dataEnd - 1] === 0) dataEnd--;
      const cuts = [0.25, 0.5, 0.75].map((f) => Math.floor(dataEnd * f));
      // One cluster short: qemu-img check accepts a partly written last qcow2 cluster, and so do we.
      if (!label.startsWith('qcow2') && !label.includes('stream')) cuts.push(whole.length - 64 * 1024);
      for (const cut of cuts) {
        const part = whole.subarray(0, cut);
        const report = await detectBuf(part);
        const v = assertRefused(report, declared === 'qed' ? null : declared, 'image_truncated');
        assert.match(v.ok ? '' : v.message, /truncated: the .* lies past the end of the file/);
        assert.ok(report.bytesRead <= READ_BUDGET);
        if (fmt === 'qcow2' && label !== 'qcow2 compressed') {
          // qemu-img check agrees (exit 2: corruptions found)
          const p = join(dir, `cut-${cut}.qcow2`);
          await writeFile(p, part);
          assert.equal(spawnSync('qemu-img', ['check', p]).status, 2, `qemu-img check of ${label} cut at ${cut}`);
        }
      }
    });
  }

  it('qcow2 with the L1 or refcount table pointed past the end (header edits)', async () => {
    const path = join(dir, 'edit.qcow2');
    await convertImage(source, path, 'qcow2');
    const img = await readFile(path);
    const far = BigInt(img.length + 64 * 1024 * 10) & ~0xffffn;
    const l1 = Buffer.from(img);
    l1.writeBigUInt64BE(far, 40);
    assertRefused(await detectBuf(l1), 'qcow2', 'image_truncated');
    const rc = Buffer.from(img);
    rc.writeBigUInt64BE(far, 48);
    assertRefused(await detectBuf(rc), 'qcow2', 'image_truncated');
    const rcBig = Buffer.from(img);
    rcBig.writeUInt32BE(100_000, 56); // refcount_table_clusters: 6 GiB of table
    assertRefused(await detectBuf(rcBig), 'qcow2', 'image_truncated');
  });

  it('a hostile L1 table of 4 Mi entries stays within the read budget', async () => {
    // 32 MiB L1 (the most qemu allows), claimed but not present
    const path = join(dir, 'l1.qcow2');
    await convertImage(source, path, 'qcow2', { cluster_size: '512' });
    const img = Buffer.from(await readFile(path));
    img.writeUInt32BE(4 * 1024 * 1024, 36);
    const r = await detectBuf(Buffer.concat([img, Buffer.alloc(32 * MiB)]));
    assert.ok(r.bytesRead <= READ_BUDGET, `read ${r.bytesRead}`);
  });
});

describe('valid images with many small second-level tables', () => {
  let dir = '';
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir('pir-tables-');
  });
  after(() => removeDir(dir));

  /** A sparse raw disk of `size` bytes with 512 non-zero bytes every `step`. */
  async function scattered(name: string, size: number, step: number): Promise<string> {
    const path = join(dir, name);
    const h = await open(path, 'w');
    try {
      await h.truncate(size);
      for (let at = 0; at < size; at += step) await h.write(Buffer.alloc(512, (at / step) % 251 + 1), 0, 512, at);
    } finally {
      await h.close();
    }
    return path;
  }

  // Tables read one to a 4 KiB block cost a block each: counted by their own size (512 bytes, 2
  // KiB), their reads ran the detection out of READ_BUDGET, and the next inspector's signature
  // check then failed and counted as a second format ("qcow2, vhd").
  const cases: Array<[string, string, Record<string, string>, string, number, number]> = [
    ['qcow2, 512-byte clusters, 2,048 L2 tables', 'qcow2', { cluster_size: '512' }, 'qcow2', 64 * MiB, 32 * 1024],
    ['qcow2, 1 KiB clusters, 1,024 L2 tables', 'qcow2', { cluster_size: '1024' }, 'qcow2', 128 * MiB, 128 * 1024],
    ['vmdk streamOptimized, 640 grain tables among the grains', 'vmdk', { subformat: 'streamOptimized' }, 'vmdk', 20 * 1024 * MiB, 32 * MiB],
  ];
  for (const [label, fmt, options, declared, size, step] of cases) {
    it(`${label}: accepted as ${declared}, within the read budget`, async () => {
      const path = join(dir, `${label.replace(/\W+/g, '-')}.img`);
      await convertImage(await scattered(`${fmt}-${size}.raw`, size, step), path, fmt, options);
      assert.equal(spawnSync('qemu-img', ['check', path]).status, 0, 'qemu-img check: no errors');
      const r = await detectBuf(await readFile(path));
      const v = assertAccepted(r, declared);
      assert.equal(v.ok && v.virtualSize, size);
      assert.deepEqual(r.alsoMatches, []);
      assert.ok(r.bytesRead <= READ_BUDGET, `read ${r.bytesRead}`);
    });
  }
});

describe('sizes that cannot be a disk', () => {
  it('a zero-byte image is an empty raw disk (as Glance has it), and refused as any other format', async () => {
    const r = await detectBuf(Buffer.alloc(0));
    for (const declared of ['raw', 'ami', 'aki', 'ari']) {
      const v = assertAccepted(r, declared);
      assert.equal(v.ok && v.virtualSize, 0);
    }
    for (const declared of ['qcow2', 'iso', 'vmdk', null]) {
      const v = assertRefused(r, declared, 'empty_image');
      assert.match(v.ok ? '' : v.message, /0 bytes/);
    }
  });

  it('takes a raw disk that is not whole 512-byte sectors as Glance does, at its own size, with a note; kernels and ramdisks without one', async () => {
    const partial = (v: ReturnType<typeof assertAccepted>) => (v.ok ? v.findings : []).filter((f) => f.code === 'raw_partial_sector');
    for (const n of [1, 511, 1000, 4096 + 3]) {
      const r = await detectBuf(Buffer.alloc(n, 0x11));
      for (const declared of ['raw', 'ami']) {
        const v = assertAccepted(r, declared);
        assert.equal(v.ok && v.virtualSize, n, declared);
        const [note] = partial(v);
        assert.equal(note?.severity, 'info', declared);
        assert.match(note?.message ?? '', new RegExp(`${n} bytes long, not a whole number of 512-byte sectors`));
      }
      assert.deepEqual(partial(assertAccepted(r, 'aki')), []);
      assert.deepEqual(partial(assertAccepted(r, 'ari')), []);
    }
    assert.deepEqual(partial(assertAccepted(await detectBuf(Buffer.alloc(1024, 0x11)), 'raw')), []);
  });
});
