// QED (QEMU enhanced disk): little-endian header. Backing files are refused,
// and so are feature bits we do not know.
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { readTable, secondLevelTables } from './tables.js';
import { bigToNumber, corrupt, hex, isPowerOfTwo, KiB, MiB, pastEnd, quote, refuse, truncated, within } from './util.js';

const MAGIC = Buffer.from('QED\0', 'latin1');
const HEADER = 64;
const F_BACKING_FILE = 1n;
const KNOWN_FEATURES = 0x7n; // backing file, need check, backing format no-probe
const MAX_NAME = 1023;
const CONVERT = 'Convert it to a self-contained image with `qemu-img convert -O qcow2 in.qed out.qcow2` and upload it to a new image.';

const ZERO_CLUSTER = 1n;

/**
 * The L1 table, the L2 tables it points to and the data clusters of the L2 tables nearest the
 * end of the file must lie wholly inside it (as `qemu-img check` requires of QED).
 */
async function checkTables(ctx: ReadContext, l1Offset: bigint, clusterSize: number, tableSize: number, findings: Finding[], details: Record<string, unknown>): Promise<void> {
  const size = ctx.size;
  const end = size;
  const tableBytes = clusterSize * tableSize;
  const entries = tableBytes / 8;
  const fail = (structure: string, offset: bigint, length: number): void => {
    findings.push(pastEnd('QED', structure, offset, length, size));
  };
  if (!within(l1Offset, tableBytes, end)) return fail('L1 table', l1Offset, tableBytes);
  const l1 = await readTable(ctx, l1Offset, entries, 8);
  const l2s: bigint[] = [];
  for (let i = 0; i < l1.entries; i++) {
    const at = l1.buf.readBigUInt64LE(i * 8);
    if (at === 0n) continue;
    if (!within(at, tableBytes, end)) return fail(`L2 table (L1 entry ${i})`, at, tableBytes);
    l2s.push(at);
  }
  let read = 0;
  for await (const { at, table: l2 } of secondLevelTables(ctx, l2s, entries, 8)) {
    read++;
    for (let i = 0; i < l2.entries; i++) {
      const data = l2.buf.readBigUInt64LE(i * 8);
      if (data === 0n || data === ZERO_CLUSTER) continue;
      if (!within(data, clusterSize, end)) return fail(`data cluster (L2 table at ${at}, entry ${i})`, data, clusterSize);
    }
  }
  details.boundsChecked = { l1Entries: l1.entries, l2Tables: new Set(l2s).size, l2TablesRead: read };
}

async function inspect(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = {};
  const h = await ctx.read(0, HEADER);
  if (h.length < HEADER) {
    findings.push(truncated('QED', 'header', HEADER, h.length));
    return { virtualSize: null, findings, details };
  }
  const clusterSize = h.readUInt32LE(4);
  const tableSize = h.readUInt32LE(8);
  const headerSize = h.readUInt32LE(12);
  const features = h.readBigUInt64LE(16);
  const l1Offset = h.readBigUInt64LE(40);
  const imageSize = h.readBigUInt64LE(48);
  const nameOffset = h.readUInt32LE(56);
  const nameSize = h.readUInt32LE(60);
  Object.assign(details, { clusterSize, tableSize, headerSize, features: hex(features) });
  const virtualSize = bigToNumber(imageSize);

  if (!isPowerOfTwo(clusterSize) || clusterSize < 4 * KiB || clusterSize > 64 * MiB) {
    findings.push(corrupt('QED', `field 'cluster_size' is ${clusterSize} (must be a power of two from 4 KiB to 64 MiB)`));
  } else if (!isPowerOfTwo(tableSize) || tableSize > 16) {
    findings.push(corrupt('QED', `field 'table_size' is ${tableSize} (must be a power of two from 1 to 16)`));
  } else {
    const l2 = BigInt(tableSize * clusterSize / 8);
    if (imageSize % 512n !== 0n || imageSize > BigInt(clusterSize) * l2 * l2) {
      findings.push(corrupt('QED', `field 'image_size' (${imageSize}) is not a multiple of 512 or exceeds what the tables can address`));
    } else {
      await checkTables(ctx, l1Offset, clusterSize, tableSize, findings, details);
    }
  }
  if ((features & ~KNOWN_FEATURES) !== 0n) {
    findings.push(refuse('qed_unknown_features',
      `QED header field 'features' (${hex(features)}) sets bits PIR does not understand. ${CONVERT}`));
  }
  if ((features & F_BACKING_FILE) !== 0n) {
    const name = nameSize > 0 ? (await ctx.read(nameOffset, Math.min(nameSize, MAX_NAME))).toString('utf8') : '';
    details.backingFile = name;
    findings.push(refuse('qed_backing_file',
      `QED image names a backing file${name ? ` (${quote(name)})` : ''}; PIR refuses images that depend on other files. ${CONVERT}`));
  }
  return { virtualSize, findings, details };
}

export const qedInspector: Inspector = {
  format: 'qed',
  async matches(ctx) {
    const h = await ctx.read(0, 4);
    return h.length === 4 && h.equals(MAGIC);
  },
  inspect,
};
