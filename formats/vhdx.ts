// VHDX: little-endian, GUID-addressed structures. We follow file identifier →
// headers (64/128 KiB) → region table (192 KiB, backup 256 KiB) → metadata
// region → Virtual Disk Size / File Parameters / Parent Locator items.
import { crc32c, crcWithZeroedField } from './crc.js';
import { bytesToGuid, guidToBytes } from './guid.js';
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { readTable } from './tables.js';
import { bigToNumber, corrupt, isPowerOfTwo, KiB, MiB, pastEnd, quote, refuse, within } from './util.js';

const SIGNATURE = Buffer.from('vhdxfile', 'latin1');
const HEADER_OFFSETS = [64 * KiB, 128 * KiB];
const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB];
const REGION_TABLE_SIZE = 64 * KiB;
const METADATA_TABLE_SIZE = 64 * KiB;
const MAX_ENTRIES = 2047;
const MAX_ITEM_READ = 64 * KiB;

const BAT_REGION = guidToBytes('2DC27766-F623-4200-9D64-115E9BFD4A08');
const METADATA_REGION = guidToBytes('8B7CA206-4790-4B9A-B8FE-575F050F886E');

const ITEM = {
  fileParameters: guidToBytes('CAA16737-FA36-4D43-B3B6-33F0AA44E76B'),
  virtualDiskSize: guidToBytes('2FA54224-CD1B-4876-B211-5DBED83BF4B8'),
  page83: guidToBytes('BECA12AB-B2E6-4523-93EF-C309E000C746'),
  logicalSectorSize: guidToBytes('8141BF1D-A96F-4709-BA47-F233A8FAAB5F'),
  physicalSectorSize: guidToBytes('CDA348C7-445D-4471-9CC9-E9885251C556'),
  parentLocator: guidToBytes('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C'),
};
const KNOWN_ITEMS = Object.values(ITEM);
const CONVERT = 'Convert it to a standalone disk with `qemu-img convert -O vhdx in.vhdx out.vhdx` and upload it to a new image.';

const PAYLOAD_FULLY_PRESENT = 6;
const PAYLOAD_PARTIALLY_PRESENT = 7;
const SB_BLOCK_PRESENT = 6;
const SECTOR_BITMAP_BLOCK = 1 * MiB;

/**
 * Every block the BAT lists as present (payload blocks and sector bitmap blocks) must lie inside
 * the file: VHDX grows a whole block at a time. The BAT interleaves one sector bitmap entry after
 * every `chunkRatio` payload entries.
 */
async function checkBat(ctx: ReadContext, bat: { offset: bigint; length: number }, virtualSize: bigint, blockSize: number, logicalSectorSize: number, findings: Finding[], details: Record<string, unknown>): Promise<void> {
  const size = ctx.size;
  const chunkRatio = (2 ** 23 * logicalSectorSize) / blockSize;
  // Only the entries the disk uses: its payload blocks and their sector bitmap entries.
  const dataBlocks = Number((virtualSize + BigInt(blockSize) - 1n) / BigInt(blockSize));
  const used = Math.min(Math.floor(bat.length / 8), dataBlocks + Math.ceil(dataBlocks / chunkRatio));
  const table = await readTable(ctx, bat.offset, used, 8);
  for (let i = 0; i < table.entries; i++) {
    const entry = table.buf.readBigUInt64LE(i * 8);
    const state = Number(entry & 7n);
    const at = (entry >> 20n) * BigInt(MiB);
    const bitmap = (i + 1) % (chunkRatio + 1) === 0;
    const present = bitmap ? state === SB_BLOCK_PRESENT : state === PAYLOAD_FULLY_PRESENT || state === PAYLOAD_PARTIALLY_PRESENT;
    if (!present) continue;
    const length = bitmap ? SECTOR_BITMAP_BLOCK : blockSize;
    if (!within(at, length, size)) {
      findings.push(pastEnd('VHDX', `${bitmap ? 'sector bitmap block' : 'payload block'} (BAT entry ${i})`, at, length, size));
      return;
    }
  }
  details.boundsChecked = { batEntries: table.entries, batComplete: table.complete };
}

interface MetaEntry { id: Buffer; offset: number; length: number; required: boolean }

/** Pick the valid header with the highest sequence number, as the spec requires. */
async function currentHeader(ctx: ReadContext): Promise<Buffer | null> {
  let best: Buffer | null = null;
  let bestSeq = -1n;
  for (const off of HEADER_OFFSETS) {
    const h = await ctx.read(off, 4 * KiB);
    if (h.length < 4 * KiB || h.toString('latin1', 0, 4) !== 'head') continue;
    if (crcWithZeroedField(crc32c, h, 4) !== h.readUInt32LE(4)) continue;
    const seq = h.readBigUInt64LE(8);
    if (seq > bestSeq) {
      best = h;
      bestSeq = seq;
    }
  }
  return best;
}

/** First region table with a valid signature and CRC-32C (primary, then backup). */
async function regionTable(ctx: ReadContext): Promise<Buffer | null> {
  for (const off of REGION_TABLE_OFFSETS) {
    const t = await ctx.read(off, REGION_TABLE_SIZE);
    if (t.length < REGION_TABLE_SIZE || t.toString('latin1', 0, 4) !== 'regi') continue;
    if (crcWithZeroedField(crc32c, t, 4) !== t.readUInt32LE(4)) continue;
    return t;
  }
  return null;
}

/** Read the key/value pairs of a parent locator item, to name the parent in messages. */
function parentPath(item: Buffer): string | null {
  if (item.length < 20) return null;
  const count = item.readUInt16LE(18);
  let fallback: string | null = null;
  for (let i = 0; i < count && 20 + (i + 1) * 12 <= item.length; i++) {
    const e = 20 + i * 12;
    const ko = item.readUInt32LE(e);
    const vo = item.readUInt32LE(e + 4);
    const kl = item.readUInt16LE(e + 8);
    const vl = item.readUInt16LE(e + 10);
    if (ko + kl > item.length || vo + vl > item.length) continue;
    const key = item.toString('utf16le', ko, ko + kl);
    const value = item.toString('utf16le', vo, vo + vl);
    if (key === 'absolute_win32_path' || key === 'relative_path') return value;
    if (key !== 'parent_linkage' && key !== 'parent_linkage2') fallback = value;
  }
  return fallback;
}

async function inspect(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = {};
  const done = (v: number | null): ProbeResult => ({ virtualSize: v, findings, details });

  const header = await currentHeader(ctx);
  if (!header) {
    findings.push(corrupt('VHDX', 'neither header at 64 KiB nor at 128 KiB has a valid signature and checksum'));
    return done(null);
  }
  details.version = header.readUInt16LE(66);
  if (!header.subarray(48, 64).equals(Buffer.alloc(16))) {
    findings.push(refuse('vhdx_log_replay',
      "VHDX header field 'LogGuid' is set: the image has unfinished log entries that would have to be replayed before it can be read. Open and cleanly close it (e.g. `qemu-img check -r all in.vhdx`) and upload it to a new image."));
  }

  const table = await regionTable(ctx);
  if (!table) {
    findings.push(corrupt('VHDX', 'neither region table (at 192 KiB or 256 KiB) has a valid signature and checksum'));
    return done(null);
  }
  const regionCount = table.readUInt32LE(8);
  if (regionCount > MAX_ENTRIES) {
    findings.push(corrupt('VHDX', `region table field 'entry count' is ${regionCount} (maximum ${MAX_ENTRIES})`));
    return done(null);
  }
  let meta: { offset: bigint; length: number } | null = null;
  let bat: { offset: bigint; length: number } | null = null;
  for (let i = 0; i < regionCount; i++) {
    const e = 16 + i * 32;
    const id = table.subarray(e, e + 16);
    const offset = table.readBigUInt64LE(e + 16);
    const length = table.readUInt32LE(e + 24);
    const required = (table.readUInt32LE(e + 28) & 1) === 1;
    if (id.equals(METADATA_REGION)) meta = { offset, length };
    else if (id.equals(BAT_REGION)) bat = { offset, length };
    else if (!id.equals(BAT_REGION) && required) {
      findings.push(refuse('vhdx_unknown_required',
        `VHDX region table marks an unknown region {${bytesToGuid(id)}} as required, so PIR cannot read the image safely. ${CONVERT}`));
    }
  }
  if (!meta) {
    findings.push(corrupt('VHDX', 'the region table has no metadata region'));
    return done(null);
  }
  for (const [name, region] of [['metadata region', meta], ['BAT region', bat]] as const) {
    if (region && !within(region.offset, region.length, ctx.size)) {
      findings.push(pastEnd('VHDX', name, region.offset, region.length, ctx.size));
      return done(null);
    }
  }

  const mt = await ctx.read(meta.offset, Math.min(METADATA_TABLE_SIZE, meta.length));
  if (mt.length < 32 || mt.toString('latin1', 0, 8) !== 'metadata') {
    findings.push(corrupt('VHDX', `no metadata table signature at offset ${meta.offset}`));
    return done(null);
  }
  const count = mt.readUInt16LE(10);
  if (count > MAX_ENTRIES || 32 + count * 32 > mt.length) {
    findings.push(corrupt('VHDX', `metadata table field 'entry count' (${count}) does not fit in the metadata table`));
    return done(null);
  }
  const entries: MetaEntry[] = [];
  for (let i = 0; i < count; i++) {
    const e = 32 + i * 32;
    entries.push({
      id: mt.subarray(e, e + 16),
      offset: mt.readUInt32LE(e + 16),
      length: mt.readUInt32LE(e + 20),
      required: (mt.readUInt32LE(e + 24) & 4) !== 0,
    });
  }
  const readItem = async (id: Buffer, min: number): Promise<Buffer | null> => {
    const entry = entries.find((x) => x.id.equals(id));
    if (!entry) return null;
    if (entry.length < min || entry.offset + entry.length > meta!.length) {
      findings.push(corrupt('VHDX', `metadata item {${bytesToGuid(id)}} lies outside the metadata region or is too short`));
      return null;
    }
    const b = await ctx.read(meta!.offset + BigInt(entry.offset), Math.min(entry.length, MAX_ITEM_READ));
    if (b.length < min) {
      findings.push(corrupt('VHDX', `metadata item {${bytesToGuid(id)}} is cut off by the end of the file`));
      return null;
    }
    return b;
  };

  for (const e of entries) {
    if (e.required && !KNOWN_ITEMS.some((k) => k.equals(e.id))) {
      findings.push(refuse('vhdx_unknown_required',
        `VHDX metadata marks an unknown item {${bytesToGuid(e.id)}} as required, so PIR cannot read the image safely. ${CONVERT}`));
    }
  }

  const params = await readItem(ITEM.fileParameters, 8);
  const hasParentFlag = params !== null && (params.readUInt32LE(4) & 2) !== 0;
  if (params) details.blockSize = params.readUInt32LE(0);
  const hasLocator = entries.some((e) => e.id.equals(ITEM.parentLocator));
  if (hasParentFlag || hasLocator) {
    const loc = hasLocator ? await readItem(ITEM.parentLocator, 20) : null;
    const parent = loc ? parentPath(loc) : null;
    if (parent !== null) details.parent = parent;
    findings.push(refuse('vhdx_parent',
      `VHDX image is a differencing disk (${hasLocator ? 'it has a parent locator' : "File Parameters 'HasParent' is set"})${parent ? ` pointing at ${quote(parent)}` : ''}; PIR refuses images that depend on other files. ${CONVERT}`));
  }
  const lss = await readItem(ITEM.logicalSectorSize, 4);
  if (lss) details.logicalSectorSize = lss.readUInt32LE(0);

  const vds = await readItem(ITEM.virtualDiskSize, 8);
  if (!vds) {
    if (!findings.some((f) => f.code === 'corrupt_header')) findings.push(corrupt('VHDX', 'the metadata has no Virtual Disk Size item'));
    return done(null);
  }
  const blockSize = params ? params.readUInt32LE(0) : 0;
  const sectorSize = lss ? lss.readUInt32LE(0) : 0;
  // qemu's vhdx_parse_metadata refuses to open these: a block size off the spec's range, and any
  // logical sector size but 512 (4096 is valid VHDX, but qemu does not support it).
  if (params && !(isPowerOfTwo(blockSize) && blockSize >= MiB && blockSize <= 256 * MiB)) {
    findings.push(corrupt('VHDX', `File Parameters field 'BlockSize' is ${blockSize} (must be a power of two from 1 MiB to 256 MiB; qemu refuses to open it)`));
  }
  if (lss && sectorSize === 4096) {
    findings.push(refuse('vhdx_unsupported_sector_size',
      "VHDX metadata item 'Logical Sector Size' is 4096: qemu opens VHDX images with 512-byte logical sectors only, so it could not read this disk. " +
      'Re-create it with 512-byte logical sectors (e.g. Hyper-V `New-VHD -LogicalSectorSizeBytes 512`) or upload the disk in another format, and upload it to a new image.'));
  } else if (lss && sectorSize !== 512) {
    findings.push(corrupt('VHDX', `metadata item 'Logical Sector Size' is ${sectorSize} (must be 512 or 4096, and qemu opens 512 only)`));
  }
  if (!bat) {
    findings.push(corrupt('VHDX', 'the region table has no BAT region'));
  } else if (isPowerOfTwo(blockSize) && blockSize >= MiB && blockSize <= 256 * MiB && (sectorSize === 512 || sectorSize === 4096)) {
    await checkBat(ctx, bat, vds.readBigUInt64LE(0), blockSize, sectorSize, findings, details);
  }
  // qemu: total_sectors = virtual_disk_size >> 9 (512-byte logical sectors), so rounded down.
  return done(bigToNumber(vds.readBigUInt64LE(0) / 512n * 512n));
}

export const vhdxInspector: Inspector = {
  format: 'vhdx',
  async matches(ctx) {
    const h = await ctx.read(0, 8);
    return h.length === 8 && h.equals(SIGNATURE);
  },
  inspect,
};
