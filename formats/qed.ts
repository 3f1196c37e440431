// QED (QEMU enhanced disk): little-endian header. Backing files are refused,
// and so are feature bits we do not know.
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { bigToNumber, corrupt, hex, isPowerOfTwo, KiB, MiB, quote, refuse, truncated } from './util.js';

const MAGIC = Buffer.from('QED\0', 'latin1');
const HEADER = 64;
const F_BACKING_FILE = 1n;
const KNOWN_FEATURES = 0x7n; // backing file, need check, backing format no-probe
const MAX_NAME = 1023;
const CONVERT = 'Convert it to a self-contained image with `qemu-img convert -O qcow2 in.qed out.qcow2` and upload again.';

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
