// Hand-built images for formats qemu-img cannot create (ISO, MBR, GPT) and for
// hostile variants of the ones it can.
import { crc32, crc32c } from '../../../formats/crc.js';
import { guidToBytes } from '../../../formats/guid.js';

const KiB = 1024;

/** A copy of `buf` with `edit` applied to the bytes from `offset` on. */
export function patched(buf: Buffer, offset: number, edit: (b: Buffer) => void): Buffer {
  const out = Buffer.from(buf);
  edit(out.subarray(offset));
  return out;
}

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

// ------------------------------------------------------------------ VHD

/** Recompute a VHD footer's checksum (ones' complement of the byte sum, skipping the field). */
export function vhdFooterChecksum(footer: Buffer): void {
  let sum = 0;
  for (let i = 0; i < 512; i++) if (i < 64 || i > 67) sum += footer[i]!;
  footer.writeUInt32BE(~sum >>> 0, 64);
}

/** A copy of a VHD with `edit` applied to every footer copy (offset 0 and the last 512 bytes), checksums kept valid. */
export function editVhdFooters(img: Buffer, edit: (footer: Buffer) => void): Buffer {
  const out = Buffer.from(img);
  for (const off of [0, out.length - 512]) {
    const f = out.subarray(off, off + 512);
    if (f.toString('latin1', 0, 8) !== 'conectix') continue;
    edit(f);
    vhdFooterChecksum(f);
  }
  return out;
}

/** A dynamic VHD turned into a differencing disk: type 4, a parent name and a W2ku parent locator. */
export function differencingVhd(dynamic: Buffer, parent: string): Buffer {
  const img = editVhdFooters(dynamic, (f) => f.writeUInt32BE(4, 60));
  const dyn = Number(img.readBigUInt64BE(16));
  Buffer.from(parent, 'utf16le').swap16().copy(img, dyn + 64);
  img.writeUInt32BE(0x57326b75, dyn + 576); // 'W2ku'
  return img;
}

// ------------------------------------------------------------------ VHDX

const VHDX_METADATA_REGION = guidToBytes('8B7CA206-4790-4B9A-B8FE-575F050F886E');
const VHDX_LOCATOR_TYPE = guidToBytes('B04AEFB7-D19E-4A81-B789-25B8E9445913');
export const VHDX_FILE_PARAMS = guidToBytes('CAA16737-FA36-4D43-B3B6-33F0AA44E76B');
export const VHDX_PARENT_LOCATOR = guidToBytes('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C');
export const VHDX_VIRTUAL_DISK_SIZE = guidToBytes('2FA54224-CD1B-4876-B211-5DBED83BF4B8');

/** Locate the VHDX metadata region through the primary region table. */
export function vhdxMetadataOffset(img: Buffer): number {
  const n = img.readUInt32LE(192 * KiB + 8);
  for (let i = 0; i < n; i++) {
    const e = 192 * KiB + 16 + i * 32;
    if (img.subarray(e, e + 16).equals(VHDX_METADATA_REGION)) return Number(img.readBigUInt64LE(e + 16));
  }
  throw new Error('vhdx: no metadata region');
}

/** The offsets of a VHDX metadata item's table entry and of its data. */
export function findVhdxItem(img: Buffer, id: Buffer): { entry: number; data: number } {
  const m = vhdxMetadataOffset(img);
  const n = img.readUInt16LE(m + 10);
  for (let i = 0; i < n; i++) {
    const e = m + 32 + i * 32;
    if (img.subarray(e, e + 16).equals(id)) return { entry: e, data: m + img.readUInt32LE(e + 16) };
  }
  throw new Error('vhdx: no metadata item');
}

/** Append a VHDX metadata table entry and its data (placed at +512 KiB in the metadata region). */
export function addVhdxItem(img: Buffer, id: Buffer, data: Buffer, flags: number): void {
  const m = vhdxMetadataOffset(img);
  const n = img.readUInt16LE(m + 10);
  const e = m + 32 + n * 32;
  id.copy(img, e);
  img.writeUInt32LE(512 * KiB, e + 16);
  img.writeUInt32LE(data.length, e + 20);
  img.writeUInt32LE(flags, e + 24);
  img.writeUInt16LE(n + 1, m + 10);
  data.copy(img, m + 512 * KiB);
}

/** Set the HasParent bit of the VHDX file parameters. */
export function setVhdxHasParent(img: Buffer): void {
  const { data } = findVhdxItem(img, VHDX_FILE_PARAMS);
  img.writeUInt32LE(img.readUInt32LE(data + 4) | 2, data + 4);
}

/** The parent locator a differencing VHDX carries (MS-VHDX 2.6.2.6): linkage GUID and a Windows path. */
export function vhdxParentLocator(path: string): Buffer {
  const kv: Array<[string, string]> = [['parent_linkage', '{00000000-0000-0000-0000-000000000001}'], ['absolute_win32_path', path]];
  const head = 20 + kv.length * 12;
  const entries = Buffer.alloc(head);
  VHDX_LOCATOR_TYPE.copy(entries, 0);
  entries.writeUInt16LE(kv.length, 18);
  const chunks: Buffer[] = [];
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

/** A dynamic VHDX turned into a differencing disk: HasParent set and a parent locator item added. */
export function differencingVhdx(base: Buffer, parent: string): Buffer {
  const img = Buffer.from(base);
  setVhdxHasParent(img);
  addVhdxItem(img, VHDX_PARENT_LOCATOR, vhdxParentLocator(parent), 0x6); // IsRequired | IsVirtualDisk
  return img;
}

/** Recompute the CRC-32C (at +4) of the `len`-byte VHDX structure at `at` (a header, region table, log entry). */
export function fixVhdxCrc(img: Buffer, at: number, len: number): void {
  img.writeUInt32LE(0, at + 4);
  img.writeUInt32LE(crc32c(img.subarray(at, at + len)), at + 4);
}
