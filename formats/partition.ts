// MBR and GPT partition tables on raw disks. These never make an image a
// different format; they are reported as alsoMatches/details, and malformed
// tables are refused (Glance 2024.2+ treats GPT/MBR checks as strict).
import { crc32, crcWithZeroedField } from './crc.js';
import { bytesToGuid } from './guid.js';
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { bigToNumber, info, MiB, refuse } from './util.js';

const PTE_START = 446;
const GPT_SIGNATURE = 'EFI PART';
const PROTECTIVE = 0xee;
const MAX_ENTRY_ARRAY = 1 * MiB; // default is 128 × 128 = 16 KiB; anything near 1 MiB is hostile
const FIX = 'Repair the partition table (e.g. with `sgdisk --verify`/`fdisk`) or re-create the disk image, and upload it to a new image.';

interface MbrEntry { index: number; status: number; type: number; chsStart: [number, number, number]; lba: number; sectors: number }

function mbrEntries(sector: Buffer): MbrEntry[] {
  const out: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const e = PTE_START + i * 16;
    out.push({
      index: i, status: sector[e]!, type: sector[e + 4]!,
      chsStart: [sector[e + 1]!, sector[e + 2]!, sector[e + 3]!],
      lba: sector.readUInt32LE(e + 8), sectors: sector.readUInt32LE(e + 12),
    });
  }
  return out;
}

/** Filesystem boot sectors (FAT/NTFS/exFAT) also end in 55AA but are not partition tables. */
function isVolumeBootRecord(s: Buffer): boolean {
  const oem = s.toString('latin1', 3, 11);
  if (oem === 'NTFS    ' || oem === 'EXFAT   ') return true;
  const fats = s[0x10]!;
  const media = s[0x15]!;
  const bytesPerSector = s.readUInt16LE(0x0b);
  return (fats === 1 || fats === 2) && (media === 0xf0 || media >= 0xf8) && [512, 1024, 2048, 4096].includes(bytesPerSector);
}

const bad = (kind: 'gpt' | 'mbr', what: string): Finding =>
  refuse(`${kind}_invalid`, `${kind === 'gpt' ? 'GPT' : 'MBR'} partition table is malformed: ${what}. ${FIX}`);

function checkMbr(entries: MbrEntry[], diskSectors: number, findings: Finding[]): void {
  for (const e of entries) {
    if (e.status !== 0x00 && e.status !== 0x80) findings.push(bad('mbr', `entry ${e.index} has boot flag 0x${e.status.toString(16)} (must be 0x00 or 0x80)`));
  }
  const used = entries.filter((e) => e.type !== 0);
  if (used.length === 0) {
    findings.push(bad('mbr', 'no partitions are defined'));
    return;
  }
  for (const e of used) {
    if (e.lba === 0 || e.sectors === 0) findings.push(bad('mbr', `entry ${e.index} starts at sector ${e.lba} with ${e.sectors} sectors`));
    else if (e.lba + e.sectors > diskSectors) {
      findings.push(info('mbr_beyond_disk', `MBR partition ${e.index} extends past the end of the image; the guest may not see all of it.`));
    }
  }
  const sorted = [...used].filter((e) => e.sectors > 0).sort((a, b) => a.lba - b.lba);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (prev.lba + prev.sectors > sorted[i]!.lba) findings.push(bad('mbr', `entries ${prev.index} and ${sorted[i]!.index} overlap`));
  }
}

/** Protective MBR rules: a single 0xEE entry in slot 0 starting at LBA 1. */
function checkProtective(entries: MbrEntry[], findings: Finding[]): void {
  for (const e of entries) {
    if (e.status !== 0x00 && e.status !== 0x80) findings.push(bad('gpt', `protective MBR entry ${e.index} has boot flag 0x${e.status.toString(16)}`));
  }
  const used = entries.filter((e) => e.type !== 0);
  const pe = entries[0]!;
  if (used.length !== 1 || pe.type !== PROTECTIVE) findings.push(bad('gpt', 'the protective MBR defines partitions besides the single 0xEE entry in slot 0'));
  else if (pe.lba !== 1) findings.push(bad('gpt', `the protective MBR entry starts at LBA ${pe.lba} instead of 1`));
  else if (pe.chsStart[0] !== 0 || pe.chsStart[1] !== 2 || pe.chsStart[2] !== 0) findings.push(bad('gpt', 'the protective MBR entry has an invalid starting CHS address'));
}

async function inspectGpt(ctx: ReadContext, entries: MbrEntry[]): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = { partitionTable: 'gpt' };
  const done = (): ProbeResult => ({ format: 'gpt', virtualSize: ctx.size, findings, details });
  checkProtective(entries, findings);

  // The header sits in LBA 1: 512 bytes in on 512-byte-sector disks, 4096 on 4Kn disks.
  let ss = 0;
  let hdr: Buffer = Buffer.alloc(0);
  for (const size of [512, 4096]) {
    const h = await ctx.read(size, 512);
    if (h.length >= 92 && h.toString('latin1', 0, 8) === GPT_SIGNATURE) {
      ss = size;
      hdr = h;
      break;
    }
  }
  if (!ss) {
    findings.push(bad('gpt', "the protective MBR has no 'EFI PART' header at LBA 1"));
    return done();
  }
  details.sectorSize = ss;
  const headerSize = hdr.readUInt32LE(12);
  if (headerSize < 92 || headerSize > Math.min(ss, hdr.length)) {
    findings.push(bad('gpt', `header field 'HeaderSize' is ${headerSize}`));
    return done();
  }
  if (crcWithZeroedField(crc32, hdr.subarray(0, headerSize), 16) !== hdr.readUInt32LE(16)) {
    findings.push(bad('gpt', "header field 'HeaderCRC32' does not match the header"));
    return done();
  }
  const myLba = hdr.readBigUInt64LE(24);
  const altLba = hdr.readBigUInt64LE(32);
  const firstUsable = hdr.readBigUInt64LE(40);
  const lastUsable = hdr.readBigUInt64LE(48);
  const entriesLba = hdr.readBigUInt64LE(72);
  const count = hdr.readUInt32LE(80);
  const entrySize = hdr.readUInt32LE(84);
  const arrayCrc = hdr.readUInt32LE(88);
  details.diskGuid = bytesToGuid(hdr.subarray(56, 72));
  if (hdr.readUInt32LE(20) !== 0) findings.push(bad('gpt', "header field 'Reserved' is not zero"));
  if (myLba !== 1n) findings.push(bad('gpt', `header field 'MyLBA' is ${myLba} instead of 1`));
  if (firstUsable > lastUsable + 1n) findings.push(bad('gpt', `'FirstUsableLBA' (${firstUsable}) is after 'LastUsableLBA' (${lastUsable})`));
  if (entrySize < 128 || entrySize % 8 !== 0) findings.push(bad('gpt', `'SizeOfPartitionEntry' is ${entrySize}`));
  if (count * entrySize > MAX_ENTRY_ARRAY) findings.push(bad('gpt', `the partition entry array (${count} × ${entrySize} bytes) is unreasonably large`));
  if (entriesLba < 2n || (entriesLba > 0n && (entriesLba * BigInt(ss) + BigInt(count * entrySize) > firstUsable * BigInt(ss)))) {
    findings.push(bad('gpt', `the partition entry array at LBA ${entriesLba} overlaps the header or the usable area`));
  }
  if (findings.some((f) => f.severity === 'refuse')) return done();

  const array = await ctx.read(entriesLba * BigInt(ss), count * entrySize);
  if (array.length < count * entrySize) {
    findings.push(bad('gpt', 'the partition entry array is cut off by the end of the file'));
    return done();
  }
  if (crc32(array) !== arrayCrc) {
    findings.push(bad('gpt', "header field 'PartitionEntryArrayCRC32' does not match the entries"));
    return done();
  }
  const parts: Array<{ first: bigint; last: bigint; index: number }> = [];
  const zero = Buffer.alloc(16);
  for (let i = 0; i < count; i++) {
    const e = array.subarray(i * entrySize, (i + 1) * entrySize);
    if (e.subarray(0, 16).equals(zero)) continue;
    const first = e.readBigUInt64LE(32);
    const last = e.readBigUInt64LE(40);
    if (first > last) findings.push(bad('gpt', `partition ${i + 1} ends (LBA ${last}) before it starts (LBA ${first})`));
    else if (first < firstUsable || last > lastUsable) findings.push(bad('gpt', `partition ${i + 1} (LBA ${first}-${last}) lies outside the usable area`));
    parts.push({ first, last, index: i + 1 });
  }
  parts.sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
  for (let i = 1; i < parts.length; i++) {
    if (parts[i - 1]!.last >= parts[i]!.first) findings.push(bad('gpt', `partitions ${parts[i - 1]!.index} and ${parts[i]!.index} overlap`));
  }
  details.partitions = parts.length;
  details.lastUsableLba = bigToNumber(lastUsable);
  details.partitionsEnd = parts.reduce((end, p) => Math.max(end, bigToNumber((p.last + 1n) * BigInt(ss))), 0);

  // The backup header normally sits in the last sector; its absence is only a warning.
  const alt = await ctx.read(altLba * BigInt(ss), 8);
  if (alt.toString('latin1') !== GPT_SIGNATURE) {
    findings.push(info('gpt_backup_missing', 'GPT backup header is missing from the last sector; partitioning tools may complain.'));
  }
  return done();
}

async function inspect(ctx: ReadContext): Promise<ProbeResult> {
  const sector = await ctx.read(0, 512);
  const entries = mbrEntries(sector);
  if (entries.some((e) => e.type === PROTECTIVE)) return inspectGpt(ctx, entries);
  const findings: Finding[] = [];
  checkMbr(entries, Math.floor(ctx.size / 512), findings);
  const parts = entries.filter((e) => e.type !== 0).map((e) => ({ index: e.index, type: e.type, lba: e.lba, sectors: e.sectors, bootable: e.status === 0x80 }));
  const partitionsEnd = parts.reduce((end, p) => Math.max(end, (p.lba + p.sectors) * 512), 0);
  return { format: 'mbr', virtualSize: ctx.size, findings, details: { partitionTable: 'mbr', partitions: parts, partitionsEnd } };
}

export const partitionInspector: Inspector = {
  format: 'mbr',
  async matches(ctx) {
    const s = await ctx.read(0, 512);
    return s.length === 512 && s[510] === 0x55 && s[511] === 0xaa && !isVolumeBootRecord(s);
  },
  inspect,
};
