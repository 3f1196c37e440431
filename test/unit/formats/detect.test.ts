import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { BufferReader, detectFormat } from '../../../formats/index.js';
import type { RandomAccessReader } from '../../../formats/index.js';
import { ReadBudgetExceeded, ReadContext } from '../../../formats/read-context.js';
import { ensureQemuImg, makeImage, makeLuksImage, makeTempDir, qemuInfo, removeDir } from '../../support/images.js';
import { mbrSector } from './craft.js';
import { assertRefused, detectBuf, detectFile } from './helpers.js';

describe('detectFormat across formats', () => {
  let dir = '';
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
  });
  after(() => removeDir(dir));

  const eightGiB: Array<[string, string, Record<string, string>]> = [
    ['raw', 'raw', {}], ['qcow2', 'qcow2', {}], ['vmdk', 'vmdk', {}],
    ['vmdk', 'vmdk', { subformat: 'streamOptimized' }], ['vpc', 'vhd', {}], ['vpc', 'vhd', { subformat: 'fixed' }],
    ['vhdx', 'vhdx', {}], ['vdi', 'vdi', {}], ['qed', 'qed', {}], ['parallels', 'ploop', {}],
  ];
  for (const [qfmt, fmt, options] of eightGiB) {
    it(`reads < 4 MiB of an 8 GiB ${qfmt} ${JSON.stringify(options)} image`, async () => {
      const p = await makeImage(dir, qfmt, { size: '8G', options });
      const r = await detectFile(p);
      assert.equal(r.format, fmt);
      assert.equal(r.virtualSize, (await qemuInfo(p, qfmt))['virtual-size']);
      assert.ok(r.bytesRead < 4 << 20, `read ${r.bytesRead}`);
    });
  }

  it('reads < 4 MiB of an 8 GiB luks image', async () => {
    const r = await detectFile(await makeLuksImage(dir, '8G'));
    assert.equal(r.format, 'luks');
    assert.equal(r.virtualSize, 8 * 1024 ** 3);
    assert.ok(r.bytesRead < 4 << 20);
  });

  it('refuses polyglots: qcow2 with a VHD footer, qcow2 with an MBR', async () => {
    const q = await readFile(await makeImage(dir, 'qcow2', { size: '64M' }));
    const vhdFooter = await readFile(await makeImage(dir, 'vpc', { size: '64M', options: { subformat: 'fixed', force_size: 'on' } }));
    const poly = Buffer.concat([q, vhdFooter.subarray(vhdFooter.length - 512)]);
    const r = await detectBuf(poly);
    assert.equal(r.format, 'qcow2');
    assert.deepEqual(r.alsoMatches, ['vhd']);
    assertRefused(r, 'qcow2', 'multiple_formats');

    const withMbr = Buffer.from(q);
    mbrSector([{ type: 0x83, lba: 2048, sectors: 100 }], withMbr.subarray(0, 512));
    const m = await detectBuf(withMbr);
    assert.equal(m.format, 'qcow2');
    assert.deepEqual(m.alsoMatches, ['mbr']);
    assertRefused(m, 'qcow2', 'multiple_formats');
  });

  it('detects encrypted containers hiding in a raw upload', async () => {
    const luks = await readFile(await makeLuksImage(dir, '8M'));
    assertRefused(await detectBuf(luks), 'raw', 'encrypted');
  });

  it('propagates a reader failure that happens after the first read', async () => {
    const base = new BufferReader(await readFile(await makeImage(dir, 'vhdx', { size: '64M' })));
    let calls = 0;
    const flaky: RandomAccessReader = {
      size: base.size,
      read: async (o, l) => {
        if (++calls > 1) throw new Error('disk went away');
        return base.read(o, l);
      },
    };
    await assert.rejects(detectFormat(flaky), /disk went away/);
  });

  it('enforces the read budget inside ReadContext', async () => {
    const ctx = new ReadContext(new BufferReader(Buffer.alloc(1 << 20)), 64 * 1024);
    await ctx.read(0, 64 * 1024);
    await ctx.read(0, 1000); // cached: free
    assert.equal(ctx.bytesRead, 64 * 1024);
    await assert.rejects(ctx.read(500 * 1024, 10), ReadBudgetExceeded);
    assert.equal((await ctx.read(-5, 10)).length, 0);
    assert.equal((await ctx.read(2 ** 60, 10)).length, 0);
    assert.equal((await ctx.read(2n ** 64n - 1n, 10)).length, 0);
  });
});

describe('worst-case inputs stay fast and bounded', () => {
  const fast = async (buf: Buffer): Promise<void> => {
    const t0 = performance.now();
    const r = await detectBuf(buf);
    const ms = performance.now() - t0;
    assert.ok(ms < 1000, `took ${ms} ms`);
    assert.ok(r.bytesRead <= 4 << 20);
  };

  it('a 1 MiB text descriptor with many lines', async () => {
    await fast(Buffer.from(`# Disk DescriptorFile\n${'ddb.x = "y"\n'.repeat(80_000)}`.slice(0, 1 << 20)));
    await fast(Buffer.from(`version=1\n${'RW 1 ZERO\n'.repeat(9_000)}`));
  });

  it('a sparse VMDK whose descriptor region is 1 MiB of one long line', async () => {
    const b = Buffer.alloc(2 << 20, 0x61);
    b.write('KDMV', 0, 'latin1');
    b.writeUInt32LE(1, 4);
    b.writeBigUInt64LE(128n, 12);
    b.writeBigUInt64LE(128n, 20);
    b.writeBigUInt64LE(1n, 28);
    b.writeBigUInt64LE(1n << 40n, 36);
    b.writeUInt32LE(512, 44);
    await fast(b);
  });

  it('a qcow2 with the maximum number of empty header extensions', async () => {
    const b = Buffer.alloc(2 << 20);
    Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]).copy(b);
    b.writeUInt32BE(21, 20); // 2 MiB clusters: lots of room for extensions
    b.writeUInt32BE(112, 100);
    for (let off = 112; off + 8 <= b.length; off += 8) b.writeUInt32BE(0x12345678, off);
    const r = await detectBuf(b);
    assert.equal(r.format, 'qcow2');
    assert.ok(r.findings.some((f) => f.code === 'corrupt_header'));
    await fast(b);
  });

  it('a GPT with a 1 MiB partition entry array', async () => {
    const { gptDisk } = await import('./craft.js');
    const disk = gptDisk({ size: 8 << 20, entries: 8192, parts: [{ first: 4000n, last: 5000n }], tweakHeader: (h) => h.writeBigUInt64LE(3000n, 40) });
    const r = await detectBuf(disk);
    assert.deepEqual(r.findings.map((f) => f.code), []);
    await fast(disk);
  });
});
