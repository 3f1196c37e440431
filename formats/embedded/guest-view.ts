/**
 * The guest's view of a disk image's first bytes, for reading what the guest's own metadata
 * says (partition tables, filesystem labels). Raw images are their own view; a qcow2 image is
 * read through its L1/L2 mapping. Every read goes through the caller's bounded ReadContext, so
 * a hostile table costs at most the budget: unallocated, zero and compressed clusters read as
 * zeros (compressed data is not worth inflating for a label), and absurd offsets read as empty.
 */
import type { ReadContext } from '../read-context.js';

export interface GuestView {
  readonly size: number;
  /** Up to `length` guest bytes at `offset`; shorter past the guest's end. */
  read(offset: number, length: number): Promise<Buffer>;
}

/** Longest read a metadata probe makes (a GPT entry array: 128 × 128 bytes, with room). */
export const MAX_GUEST_READ = 64 * 1024;

export function rawView(ctx: ReadContext): GuestView {
  return { size: ctx.size, read: (offset, length) => ctx.read(offset, Math.min(length, MAX_GUEST_READ)) };
}

const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
const COMPRESSED = 1n << 62n;
const ZERO_FLAG = 1n;
const INCOMPAT_EXTL2 = 1 << 4;

/** A qcow2 image's guest view, or null when its header does not allow one (encrypted, odd sizes). */
export async function qcow2View(ctx: ReadContext): Promise<GuestView | null> {
  const h = await ctx.read(0, 112);
  if (h.length < 72 || h.readUInt32BE(0) !== 0x514649fb) return null;
  const version = h.readUInt32BE(4);
  const clusterBits = h.readUInt32BE(20);
  const size = h.readBigUInt64BE(24);
  const cryptMethod = h.readUInt32BE(32);
  const l1Size = h.readUInt32BE(36);
  const l1Offset = h.readBigUInt64BE(40);
  const incompat = version >= 3 && h.length >= 80 ? Number(h.readBigUInt64BE(72) & 0xffff_ffffn) : 0;
  if (clusterBits < 9 || clusterBits > 21 || cryptMethod !== 0 || size > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  const clusterSize = 2 ** clusterBits;
  const entryBytes = incompat & INCOMPAT_EXTL2 ? 16 : 8;
  const l2Entries = clusterSize / entryBytes;
  const guestSize = Number(size);

  /** Host offset of the guest cluster holding `guest`, or null for zeros. */
  const map = async (guest: number): Promise<number | null> => {
    const cluster = Math.floor(guest / clusterSize);
    const l1Index = Math.floor(cluster / l2Entries);
    if (l1Index >= l1Size) return null;
    const l1 = await ctx.read(l1Offset + BigInt(l1Index * 8), 8);
    if (l1.length < 8) return null;
    const l2Offset = l1.readBigUInt64BE(0) & OFFSET_MASK;
    if (l2Offset === 0n) return null;
    const l2 = await ctx.read(l2Offset + BigInt((cluster % l2Entries) * entryBytes), 8);
    if (l2.length < 8) return null;
    const entry = l2.readBigUInt64BE(0);
    if (entry & COMPRESSED || (version >= 3 && entry & ZERO_FLAG)) return null;
    const host = entry & OFFSET_MASK;
    return host === 0n || host > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(host);
  };

  return {
    size: guestSize,
    async read(offset, length) {
      const end = Math.min(guestSize, offset + Math.min(length, MAX_GUEST_READ));
      const parts: Buffer[] = [];
      for (let at = offset; at < end;) {
        const within = at % clusterSize;
        const take = Math.min(end - at, clusterSize - within);
        const host = await map(at);
        const piece = host === null ? Buffer.alloc(take) : await ctx.read(host + within, take);
        parts.push(piece.length === take ? piece : Buffer.concat([piece, Buffer.alloc(take - piece.length)]));
        at += take;
      }
      return Buffer.concat(parts);
    },
  };
}
