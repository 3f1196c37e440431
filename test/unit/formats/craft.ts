// Hand-built images for formats qemu-img cannot create (ISO, MBR, GPT) and for
// hostile variants of the ones it can.
import { crc32 } from '../../../formats/crc.js';

export interface MbrPart { status?: number; type: number; lba: number; sectors: number; chs?: [number, number, number] }

export function mbrSector(parts: MbrPart[], into: Buffer = Buffer.alloc(512)): Buffer {
  parts.forEach((p, i) => {
    const e = 446 + i * 16;
    into[e] = p.status ?? 0;
    const chs = p.chs ?? [0, 2, 0];
    into[e + 1] = chs[0]; into[e + 2] = chs[1]; into[e + 3] = chs[2];
    into[e + 4] = p.type;
    into[e + 5] = 0xff; into[e + 6] = 0xff; into[e + 7] = 0xff;
    into.writeUInt32LE(p.lba, e + 8);
    into.writeUInt32LE(p.sectors, e + 12);
  });
  into[510] = 0x55;
  into[511] = 0xaa;
  return into;
}

const LINUX_FS = Buffer.from('af3dc60f838472478e793d69d8477de4', 'hex');

export interface GptOptions {
  size?: number;
  parts?: Array<{ first: bigint; last: bigint }>;
  entries?: number;
  /** Mutate the primary header before its CRC is computed (e.g. to forge fields). */
  tweakHeader?: (h: Buffer) => void;
  /** Mutate the entry array before its CRC is computed. */
  tweakEntries?: (a: Buffer) => void;
}

/** A raw disk with a valid protective MBR, primary and backup GPT (512-byte sectors). */
export function gptDisk(opts: GptOptions = {}): Buffer {
  const size = opts.size ?? 4 * 1024 * 1024;
  const disk = Buffer.alloc(size);
  const lastLba = BigInt(size / 512 - 1);
  const n = opts.entries ?? 128;
  const parts = opts.parts ?? [{ first: 2048n, last: lastLba - 34n }];
  mbrSector([{ type: 0xee, lba: 1, sectors: Math.min(size / 512 - 1, 0xffffffff) }], disk.subarray(0, 512));

  const array = Buffer.alloc(n * 128);
  parts.forEach((p, i) => {
    LINUX_FS.copy(array, i * 128);
    array.writeUInt32LE(i + 1, i * 128 + 16); // unique GUID (any nonzero)
    array.writeBigUInt64LE(p.first, i * 128 + 32);
    array.writeBigUInt64LE(p.last, i * 128 + 40);
  });
  opts.tweakEntries?.(array);

  const header = (my: bigint, alt: bigint, entriesLba: bigint, tweak?: (h: Buffer) => void): Buffer => {
    const h = Buffer.alloc(512);
    h.write('EFI PART', 0, 'latin1');
    h.writeUInt32LE(0x00010000, 8);
    h.writeUInt32LE(92, 12);
    h.writeBigUInt64LE(my, 24);
    h.writeBigUInt64LE(alt, 32);
    h.writeBigUInt64LE(34n, 40);
    h.writeBigUInt64LE(lastLba - 33n, 48);
    h.fill(0x42, 56, 72);
    h.writeBigUInt64LE(entriesLba, 72);
    h.writeUInt32LE(n, 80);
    h.writeUInt32LE(128, 84);
    h.writeUInt32LE(crc32(array), 88);
    tweak?.(h);
    h.writeUInt32LE(0, 16);
    h.writeUInt32LE(crc32(h.subarray(0, h.readUInt32LE(12) <= 512 ? h.readUInt32LE(12) : 92)), 16);
    return h;
  };
  header(1n, lastLba, 2n, opts.tweakHeader).copy(disk, 512);
  array.copy(disk, 1024);
  array.copy(disk, Number(lastLba - 32n) * 512);
  header(lastLba, 1n, lastLba - 32n).copy(disk, Number(lastLba) * 512);
  return disk;
}

export interface IsoOptions {
  blocks?: number;
  blockSize?: number;
  bootRecordFirst?: boolean;
  /** Override the big-endian copy of the volume space size (to make them disagree). */
  beBlocks?: number;
}

/** A minimal ISO 9660 image: system area, (boot record), PVD, terminator. */
export function isoImage(opts: IsoOptions = {}): Buffer {
  const blockSize = opts.blockSize ?? 2048;
  const blocks = opts.blocks ?? 64;
  // Cap the file: huge claimed volumes are for testing the size policy, not real data.
  const img = Buffer.alloc(Math.max(Math.min(blocks * blockSize, 8 << 20), 40 * 1024));
  let sector = 16;
  const vd = (type: number): Buffer => {
    const d = img.subarray(sector * 2048, (sector + 1) * 2048);
    sector++;
    d[0] = type;
    d.write('CD001', 1, 'latin1');
    d[6] = 1;
    return d;
  };
  if (opts.bootRecordFirst) vd(0).write('EL TORITO SPECIFICATION', 7, 'latin1');
  const pvd = vd(1);
  pvd.write('PIR_TEST'.padEnd(32, ' '), 40, 'latin1');
  pvd.writeUInt32LE(blocks, 80);
  pvd.writeUInt32BE(opts.beBlocks ?? blocks, 84);
  pvd.writeUInt16LE(blockSize, 128);
  pvd.writeUInt16BE(blockSize, 130);
  vd(255);
  return img;
}
