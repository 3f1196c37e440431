// qcow2 bounds checks: every table the header points to, and the clusters reachable from the L1
// table, must lie inside the file. Like `qemu-img check`, the file is taken to end at the next
// cluster boundary (a last cluster may be partly written); compressed clusters need only start in
// the file. Reads are bounded (see formats/README.md for what is and is not checked).
import { Qcow2MetadataMap } from './qcow2-overlaps.js';
import type { ReadContext } from './read-context.js';
import { readTable, secondLevelTables } from './tables.js';
import type { Finding } from './types.js';
import { alignUp, corrupt, pastEnd, within } from './util.js';

const L1_OFFSET_MASK = 0x00fffffffffffe00n;
const L2_OFFSET_MASK = 0x00fffffffffffe00n;
const REFCOUNT_OFFSET_MASK = 0xfffffffffffffe00n;
const COMPRESSED = 1n << 62n;
/** Refcount block pointers are only checked for position; the table is usually one cluster. */
const REFCOUNT_TABLE_READ_LIMIT = 256 * 1024;

export interface Qcow2Layout {
  clusterBits: number;
  extendedL2: boolean;
  l1Size: number;
  l1Offset: bigint;
  refcountOffset: bigint;
  refcountClusters: number;
  nbSnapshots: number;
  snapshotsOffset: bigint;
}

export async function checkQcow2Tables(ctx: ReadContext, h: Qcow2Layout, findings: Finding[], details: Record<string, unknown>): Promise<void> {
  const size = ctx.size;
  const cs = 2 ** h.clusterBits;
  const end = alignUp(size, cs);
  const csBig = BigInt(cs);
  const fail = (structure: string, offset: bigint, length: number | bigint): void => {
    findings.push(pastEnd('qcow2', structure, offset, length, size));
  };
  const metadata = new Qcow2MetadataMap(csBig);
  /** Records `structure`; false (with a finding) when it shares a cluster with other metadata. */
  const claim = (clash: string | undefined, structure: string, offset: bigint): boolean => {
    if (clash === undefined) return true;
    findings.push(overlap(structure, offset, clash));
    return false;
  };

  if (h.l1Size > 0 && !within(h.l1Offset, h.l1Size * 8, end)) return fail('L1 table', h.l1Offset, h.l1Size * 8);
  const refcountBytes = BigInt(h.refcountClusters) * csBig;
  if (!within(h.refcountOffset, refcountBytes, end)) return fail('refcount table', h.refcountOffset, refcountBytes);
  if (h.nbSnapshots > 0 && !within(h.snapshotsOffset, 1, size)) return fail('snapshot table', h.snapshotsOffset, 1);

  metadata.addTable('header', 0n, csBig);
  if (h.l1Size > 0 && !claim(metadata.addTable('L1 table', h.l1Offset, BigInt(h.l1Size * 8)), 'L1 table', h.l1Offset)) return;
  if (!claim(metadata.addTable('refcount table', h.refcountOffset, refcountBytes), 'refcount table', h.refcountOffset)) return;
  // Its length needs every entry parsed; its first cluster is what a clash would hit.
  if (h.nbSnapshots > 0 && !claim(metadata.addTable('snapshot table', h.snapshotsOffset, 1n), 'snapshot table', h.snapshotsOffset)) return;

  const refcounts = await readTable(ctx, h.refcountOffset, Number(refcountBytes / 8n), 8, REFCOUNT_TABLE_READ_LIMIT);
  for (let i = 0; i < refcounts.entries; i++) {
    const at = refcounts.buf.readBigUInt64BE(i * 8) & REFCOUNT_OFFSET_MASK;
    if (at === 0n) continue;
    const structure = `refcount block (refcount table entry ${i})`;
    if (!within(at, cs, end)) return fail(structure, at, cs);
    if (!claim(metadata.addCluster('refcount block', at), structure, at)) return;
  }

  const l1 = await readTable(ctx, h.l1Offset, h.l1Size, 8);
  const l2Offsets: bigint[] = [];
  for (let i = 0; i < l1.entries; i++) {
    const at = l1.buf.readBigUInt64BE(i * 8) & L1_OFFSET_MASK;
    if (at === 0n) continue;
    const structure = `L2 table (L1 entry ${i})`;
    if (!within(at, cs, end)) return fail(structure, at, cs);
    // The same L2 table under two L1 entries is a refcount question, not an overlap of kinds.
    if (metadata.owner(at) !== 'L2 table' && !claim(metadata.addCluster('L2 table', at), structure, at)) return;
    l2Offsets.push(at);
  }

  // Data clusters: the L2 tables nearest the end of the file first, where a cut shows.
  const entryBytes = h.extendedL2 ? 16 : 8;
  const compressedBits = BigInt(62 - (h.clusterBits - 8));
  const compressedMask = (1n << compressedBits) - 1n;
  // The cluster holding the file's last sector: guest data there may look like a trailer (a
  // fixed VHD's footer, when a fixed VHD was converted as raw), which detect.ts then forgives.
  const lastCluster = (BigInt(Math.max(0, size - 512)) / csBig) * csBig;
  let read = 0;
  for await (const { at, table: l2 } of secondLevelTables(ctx, l2Offsets, cs / entryBytes, entryBytes)) {
    read++;
    for (let i = 0; i < l2.entries; i++) {
      const entry = l2.buf.readBigUInt64BE(i * entryBytes);
      if (entry === 0n) continue;
      if ((entry & COMPRESSED) !== 0n) {
        const host = entry & compressedMask;
        const structure = `compressed cluster (L2 table at ${at}, entry ${i})`;
        if (host >= BigInt(size)) return fail(structure, host, 1);
        if (!claim(metadata.owner(host), structure, host)) return;
      } else {
        const host = entry & L2_OFFSET_MASK;
        if (host === 0n) continue;
        const structure = `data cluster (L2 table at ${at}, entry ${i})`;
        if (!within(host, cs, end)) return fail(structure, host, cs);
        if (!claim(metadata.owner(host), structure, host)) return;
        if (host === lastCluster) details.lastSectorIsGuestData = true;
      }
    }
  }
  details.boundsChecked = { l1Entries: l1.entries, l1Complete: l1.complete, l2Tables: new Set(l2Offsets).size, l2TablesRead: read };
}

function overlap(structure: string, offset: bigint, other: string): ReturnType<typeof corrupt> {
  return corrupt('qcow2', `the ${structure} at offset ${offset} lies in a cluster of the ${other}: metadata overlap, which \`qemu-img check\` reports as corruption and qemu stops at on the first write there`,
    'Repair a copy with `qemu-img check -r all` or re-export the image, and upload it to a new image.');
}
