/**
 * What a disk image says about itself, read from its headers into `pir_detected_*` properties:
 * the partition table (MBR or GPT) of raw and qcow2 images, each partition's filesystem and
 * label, a filesystem written on the whole disk, and an ISO 9660 volume id. Reads are bounded
 * (their own READ budget, at most MAX_PARTITIONS partitions, fixed offsets) and nothing thrown
 * by a malformed table escapes: the result is informational, never trusted for security.
 */
import { ReadContext, type BlockCache } from '../read-context.js';
import type { RandomAccessReader } from '../types.js';
import { probeIso, probeVolume, VOLUME_HEAD } from './filesystems.js';
import { qcow2View, rawView, type GuestView } from './guest-view.js';

/** Bytes one metadata read may pull from the image (the inspector's own budget is separate). */
export const EMBEDDED_READ_BUDGET = 1024 * 1024;
/** Partitions described at most (the rest are counted). */
export const MAX_PARTITIONS = 8;
const SECTOR = 512;
const MAX_GPT_ENTRIES = 128;
const PREFIX = 'pir_detected_';

interface Partition {
  index: number;
  /** In bytes, on the guest disk. */
  start: number;
  size: number;
  type: string;
  name?: string;
}

/** Properties for an image of `format` (the inspector's verdict); {} when nothing can be read. */
export async function readEmbeddedMetadata(reader: RandomAccessReader, format: string, budget = EMBEDDED_READ_BUDGET, blocks?: BlockCache): Promise<Record<string, string>> {
  const ctx = new ReadContext(reader, budget, blocks);
  const out: Record<string, string> = {};
  try {
    const view = format === 'qcow2' ? await qcow2View(ctx) : ['raw', 'gpt', 'mbr', 'iso'].includes(format) ? rawView(ctx) : null;
    if (view) await describe(view, out);
  } catch {
    // Budget exhausted or a reader error: keep what was found so far.
  }
  return out;
}

async function describe(view: GuestView, out: Record<string, string>): Promise<void> {
  const iso = probeIso(await view.read(16 * 2048, 2048));
  if (iso) {
    out[`${PREFIX}fs`] = iso.fs;
    if (iso.label) out[`${PREFIX}iso_volume_id`] = iso.label;
    if (iso.systemId) out[`${PREFIX}iso_system_id`] = iso.systemId;
  }
  const sector0 = await view.read(0, SECTOR);
  const table = await partitions(view, sector0);
  if (table) {
    out[`${PREFIX}partition_table`] = table.kind;
    out[`${PREFIX}partition_count`] = String(table.parts.length);
    for (const part of table.parts.slice(0, MAX_PARTITIONS)) {
      const key = `${PREFIX}partition_${part.index}_`;
      out[`${key}type`] = part.type;
      out[`${key}size`] = String(part.size);
      if (part.name) out[`${key}name`] = part.name;
      const facts = part.start + VOLUME_HEAD <= view.size ? probeVolume(await view.read(part.start, VOLUME_HEAD)) : null;
      if (facts) {
        out[`${key}fs`] = facts.fs;
        if (facts.label) out[`${key}label`] = facts.label;
      }
    }
    return;
  }
  if (iso) return;
  // No partition table: a filesystem may be written on the whole disk.
  const facts = probeVolume(await view.read(0, VOLUME_HEAD));
  if (facts) {
    out[`${PREFIX}fs`] = facts.fs;
    if (facts.label) out[`${PREFIX}fs_label`] = facts.label;
  }
}

async function partitions(view: GuestView, s: Buffer): Promise<{ kind: 'mbr' | 'gpt'; parts: Partition[] } | null> {
  if (s.length < SECTOR || s[510] !== 0x55 || s[511] !== 0xaa) return null;
  // A filesystem boot sector also ends in 55AA: it is no partition table.
  if (probeVolume(s) && !hasMbrEntries(s)) return null;
  const entries = [0, 1, 2, 3].map((i) => {
    const e = 446 + i * 16;
    return { index: i + 1, status: s[e]!, type: s[e + 4]!, lba: s.readUInt32LE(e + 8), sectors: s.readUInt32LE(e + 12) };
  });
  if (entries.some((e) => e.status !== 0 && e.status !== 0x80)) return null;
  const used = entries.filter((e) => e.type !== 0 && e.sectors > 0);
  if (used.length === 0) return null;
  if (used.length === 1 && used[0]!.type === 0xee) {
    const gpt = await gptPartitions(view);
    return gpt ? { kind: 'gpt', parts: gpt } : null;
  }
  return { kind: 'mbr', parts: used.map((e) => ({ index: e.index, start: e.lba * SECTOR, size: e.sectors * SECTOR, type: `0x${e.type.toString(16).padStart(2, '0')}` })) };
}

function hasMbrEntries(s: Buffer): boolean {
  for (let i = 0; i < 4; i++) {
    const e = 446 + i * 16;
    if (s[e + 4] !== 0 && s.readUInt32LE(e + 12) > 0 && (s[e] === 0 || s[e] === 0x80)) return true;
  }
  return false;
}

async function gptPartitions(view: GuestView): Promise<Partition[] | null> {
  const h = await view.read(SECTOR, SECTOR);
  if (h.length < 92 || h.toString('latin1', 0, 8) !== 'EFI PART') return null;
  const entriesLba = h.readBigUInt64LE(72);
  const count = Math.min(h.readUInt32LE(80), MAX_GPT_ENTRIES);
  const entrySize = h.readUInt32LE(84);
  if (entrySize < 128 || entrySize > 1024 || entrySize % 8 !== 0 || entriesLba < 2n || entriesLba > 1n << 32n) return null;
  const array = await view.read(Number(entriesLba) * SECTOR, count * entrySize);
  const parts: Partition[] = [];
  for (let i = 0; i < count && (i + 1) * entrySize <= array.length; i++) {
    const e = array.subarray(i * entrySize, (i + 1) * entrySize);
    if (e.subarray(0, 16).every((b) => b === 0)) continue;
    const first = e.readBigUInt64LE(32);
    const last = e.readBigUInt64LE(40);
    if (last < first || last > BigInt(Number.MAX_SAFE_INTEGER) / 512n) continue;
    const name = utf16(e.subarray(56, 128));
    parts.push({ index: i + 1, start: Number(first) * SECTOR, size: Number(last - first + 1n) * SECTOR, type: guid(e.subarray(0, 16)), ...(name ? { name } : {}) });
  }
  return parts;
}

/** A GPT name: UTF-16LE up to the first NUL, printable characters only. */
function utf16(b: Buffer): string {
  let end = 0;
  while (end + 1 < b.length && (b[end] !== 0 || b[end + 1] !== 0)) end += 2;
  return b.subarray(0, end).toString('utf16le').replace(/[\p{C}]/gu, '').trim().slice(0, 36);
}

/** A GPT type GUID, mixed-endian as GPT stores it. */
function guid(b: Buffer): string {
  const hex = (from: number, to: number, reverse: boolean) => {
    const part = Buffer.from(b.subarray(from, to));
    return (reverse ? part.reverse() : part).toString('hex');
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`;
}

