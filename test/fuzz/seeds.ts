// Seed images for format fuzzing: real qemu-img output plus hand-built ISO/GPT/MBR,
// held sparsely (only non-zero 4 KiB blocks) so mutating them stays cheap.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RandomAccessReader } from '../../formats/index.js';
import { gptDisk, isoImage, mbrSector } from '../unit/formats/craft.js';
import { ensureQemuImg, makeImage, makeLuksImage, makeTempDir, removeDir } from '../support/images.js';

export interface Segment { offset: number; data: Buffer }

export interface Seed {
  name: string;
  size: number;
  segments: Segment[];
  /** Absolute offsets of header fields worth hammering with interesting integers. */
  fields: number[];
}

const BLOCK = 4096;
const MAX_SEED_BYTES = 512 * 1024;

/** Keep only non-zero blocks (capped) so seeds are small however large the image. */
export function sparsify(name: string, img: Buffer, fields: number[], size = img.length): Seed {
  const segments: Segment[] = [];
  let kept = 0;
  for (let off = 0; off < img.length && kept < MAX_SEED_BYTES; off += BLOCK) {
    const blk = img.subarray(off, Math.min(img.length, off + BLOCK));
    if (!blk.some((b) => b !== 0)) continue;
    const last = segments[segments.length - 1];
    if (last && last.offset + last.data.length === off) last.data = Buffer.concat([last.data, blk]);
    else segments.push({ offset: off, data: Buffer.from(blk) });
    kept += blk.length;
  }
  return { name, size, segments, fields };
}

/** A reader over a seed plus byte patches (applied in order), truncated/extended to `size`. */
export class SparseReader implements RandomAccessReader {
  constructor(readonly size: number, private readonly segments: Segment[], private readonly patches: Segment[] = []) {}

  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(this.size, offset + length);
    if (!(end > offset) || offset < 0) return Buffer.alloc(0);
    const out = Buffer.alloc(end - offset);
    for (const s of [...this.segments, ...this.patches]) {
      const from = Math.max(offset, s.offset);
      const to = Math.min(end, s.offset + s.data.length);
      if (to > from) s.data.copy(out, from - offset, from - s.offset, to - s.offset);
    }
    return out;
  }
}

const range = (base: number, offs: number[]): number[] => offs.map((o) => base + o);

const QCOW2_FIELDS = [4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 56, 60, 64, 72, 76, 79, 96, 100, 104, 108, 112, 116];
const VMDK_FIELDS = [4, 8, 12, 20, 28, 36, 44, 48, 56, 64, 77, 512, 600];
const VHD_FOOTER = [12, 16, 28, 40, 48, 56, 58, 59, 60, 64];
const VHD_DYN = [8, 16, 24, 28, 32, 36, 64, 576, 580, 584, 592];
const VDI_FIELDS = [0x40, 0x44, 0x48, 0x4c, 0x154, 0x158, 0x168, 0x170, 0x178, 0x180, 0x1a8];
const QED_FIELDS = [4, 8, 12, 16, 24, 40, 48, 56, 60];
const LUKS_FIELDS = [6, 104, 108];
const PLOOP_FIELDS = [16, 20, 24, 28, 32, 36, 40, 44, 48];

function vhdxFields(img: Buffer): number[] {
  const f = [...range(64 * 1024, [0, 4, 8, 48, 64, 66]), ...range(128 * 1024, [0, 4, 8]), ...range(192 * 1024, [0, 4, 8, 16, 32, 40, 44, 48, 64, 72, 76])];
  const n = img.readUInt32LE(192 * 1024 + 8);
  for (let i = 0; i < Math.min(n, 4); i++) {
    const meta = Number(img.readBigUInt64LE(192 * 1024 + 16 + i * 32 + 16));
    if (meta + 64 < img.length && img.toString('latin1', meta, meta + 8) === 'metadata') {
      f.push(...range(meta, [10]));
      for (let e = 0; e < 6; e++) f.push(...range(meta + 32 + e * 32, [0, 16, 20, 24]));
    }
  }
  return f;
}

/** Build every seed. Needs qemu-img (installed on demand). */
export async function buildSeeds(): Promise<Seed[]> {
  ensureQemuImg();
  const dir = await makeTempDir('pir-fuzz-');
  try {
    const seeds: Seed[] = [];
    const add = async (name: string, path: string, fields: (img: Buffer) => number[]): Promise<void> => {
      const img = await readFile(path);
      seeds.push(sparsify(name, img, fields(img)));
    };
    const q = (opts: Parameters<typeof makeImage>[2]) => makeImage(dir, 'qcow2', { size: '64M', ...opts });
    await add('qcow2-v2', await q({ options: { compat: '0.10' } }), () => QCOW2_FIELDS);
    await add('qcow2-v3', await q({ options: { compat: '1.1' } }), () => QCOW2_FIELDS);
    await add('qcow2-backing', await q({ backing: '/etc/passwd', backingFormat: 'raw', unsafe: true }), () => QCOW2_FIELDS);
    await add('qcow2-datafile', await q({ options: { data_file: join(dir, 'data.raw') } }), () => QCOW2_FIELDS);
    await add('qcow2-zstd', await q({ options: { compression_type: 'zstd', cluster_size: 4096 } }), () => QCOW2_FIELDS);
    await add('vmdk-sparse', await makeImage(dir, 'vmdk', { size: '64M' }), () => VMDK_FIELDS);
    await add('vmdk-stream', await makeImage(dir, 'vmdk', { size: '64M', options: { subformat: 'streamOptimized' } }), () => VMDK_FIELDS);
    await add('vmdk-flat-descriptor', await makeImage(dir, 'vmdk', { size: '64M', options: { subformat: 'monolithicFlat' } }), () => [0, 10, 40, 80]);
    await add('vhd-dynamic', await makeImage(dir, 'vpc', { size: '64M' }), (img) => [
      ...VHD_FOOTER, ...range(img.length - 512, VHD_FOOTER), ...range(Number(img.readBigUInt64BE(16)), VHD_DYN)]);
    await add('vhd-fixed', await makeImage(dir, 'vpc', { size: '1M', options: { subformat: 'fixed' } }), (img) => range(img.length - 512, VHD_FOOTER));
    await add('vhdx', await makeImage(dir, 'vhdx', { size: '64M' }), vhdxFields);
    await add('vdi', await makeImage(dir, 'vdi', { size: '64M' }), () => VDI_FIELDS);
    await add('qed', await makeImage(dir, 'qed', { size: '64M' }), () => QED_FIELDS);
    await add('qed-backing', await makeImage(dir, 'qed', { size: '64M', backing: '/etc/passwd', backingFormat: 'raw', unsafe: true }), () => QED_FIELDS);
    await add('ploop', await makeImage(dir, 'parallels', { size: '64M' }), () => PLOOP_FIELDS);
    // LUKS key material is random and large; the header sector is what matters.
    const luks = await readFile(await makeLuksImage(dir, '16M'));
    seeds.push({ ...sparsify('luks', luks.subarray(0, BLOCK), LUKS_FIELDS), size: luks.length });

    seeds.push(sparsify('iso', isoImage({ blocks: 64, bootRecordFirst: true }), range(32 * 1024, [0, 1, 2048, 2048 + 80, 2048 + 84, 2048 + 128, 2048 + 130, 4096])));
    const gpt = gptDisk({ size: 2 << 20, parts: [{ first: 34n, last: 1000n }, { first: 2048n, last: 3000n }] });
    seeds.push(sparsify('gpt', gpt, [446, 446 + 4, 446 + 8, 446 + 16 + 4, ...range(512, [8, 12, 16, 20, 24, 32, 40, 48, 72, 80, 84, 88]), 1024 + 32, 1024 + 40, 1024 + 128 + 32]));
    const mbr = Buffer.alloc(1 << 20);
    mbrSector([{ status: 0x80, type: 0x83, lba: 2048, sectors: 100 }, { type: 0x05, lba: 4096, sectors: 100 }], mbr.subarray(0, 512));
    seeds.push(sparsify('mbr', mbr, [0x0b, 0x10, 0x15, 446, 450, 454, 458, 462, 466, 470, 474, 510]));
    seeds.push({ name: 'raw-text', size: 64, segments: [{ offset: 0, data: Buffer.from('version=1\nRW 100 SPARSE "x.vmdk"\ncreateType="monolithicSparse"\n') }], fields: [0, 8, 10] });
    return seeds;
  } finally {
    await removeDir(dir);
  }
}
