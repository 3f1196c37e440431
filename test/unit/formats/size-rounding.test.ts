// A size field that is not a whole number of 512-byte sectors: the virtual size is the one qemu
// uses (qcow2 and VHDX round down, VDI rounds up), checked against `qemu-img info`.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ensureQemuImg, makeImage, makeTempDir, patchFile, qemuInfo, removeDir } from '../../support/images.js';
import { readFile } from 'node:fs/promises';
import { findVhdxItem, VHDX_VIRTUAL_DISK_SIZE } from './craft.js';
import { assertAccepted, detectFile } from './helpers.js';

const MiB = 1024 * 1024;

describe('virtual size off a sector boundary', () => {
  let dir = '';
  before(async () => {
    ensureQemuImg();
    dir = await makeTempDir();
  });
  after(() => removeDir(dir));

  const le64 = (v: bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); return b; };
  const be64 = (v: bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64BE(v); return b; };

  const cases: Array<[string, string, (p: string) => Promise<void>, number]> = [
    ['qcow2 rounds down', 'qcow2', (p) => patchFile(p, 24, be64(16n * 1048576n + 1n)), 16 * MiB],
    ['vdi rounds up', 'vdi', (p) => patchFile(p, 0x170, le64(16n * 1048576n - 100n)), 16 * MiB],
    ['vhdx rounds down', 'vhdx', async (p) => {
      const at = findVhdxItem(await readFile(p), VHDX_VIRTUAL_DISK_SIZE).data;
      await patchFile(p, at, le64(16n * 1048576n - 100n));
    }, 16 * MiB - 512],
  ];
  for (const [label, format, patch, expected] of cases) {
    it(`${label}, as qemu-img info`, async () => {
      const p = await makeImage(dir, format, { size: '16M' });
      await patch(p);
      const [r, q] = await Promise.all([detectFile(p), qemuInfo(p, format)]);
      assert.equal(q['virtual-size'], expected);
      assert.equal(r.virtualSize, expected);
      const v = assertAccepted(r, format);
      assert.equal(v.ok && v.virtualSize, expected);
    });
  }
});
