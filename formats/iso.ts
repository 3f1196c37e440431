// ISO 9660 / UDF: the volume descriptor set starts at sector 16 (32 KiB) in
// 2 KiB descriptors. The Primary Volume Descriptor gives volume space size ×
// logical block size; both-endian fields let us cross-check them.
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { corrupt, info, KiB } from './util.js';

const SECTOR = 2 * KiB;
const FIRST = 16 * SECTOR;
const MAX_DESCRIPTORS = 32; // real images have a handful; bounds the scan
const ISO_ID = 'CD001';
const UDF_IDS = new Set(['BEA01', 'NSR02', 'NSR03', 'TEA01', 'BOOT2', 'CDW02']);

async function identifier(ctx: ReadContext, index: number): Promise<{ type: number; id: string; buf: Buffer } | null> {
  const b = await ctx.read(FIRST + index * SECTOR, SECTOR);
  if (b.length < 7) return null;
  return { type: b[0]!, id: b.toString('latin1', 1, 6), buf: b };
}

async function inspect(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = {};
  let udf = false;
  for (let i = 0; i < MAX_DESCRIPTORS; i++) {
    const d = await identifier(ctx, i);
    if (!d) break;
    if (UDF_IDS.has(d.id)) {
      udf = true;
      continue;
    }
    if (d.id !== ISO_ID) break;
    if (d.type === 255) break; // set terminator
    if (d.type !== 1) continue; // boot record, supplementary (Joliet), partition descriptors
    if (d.buf.length < 136) {
      findings.push(corrupt('ISO', 'the Primary Volume Descriptor is cut off by the end of the file'));
      return { virtualSize: null, findings, details };
    }
    const blocks = d.buf.readUInt32LE(80);
    const blockSize = d.buf.readUInt16LE(128);
    Object.assign(details, { volumeSpaceSize: blocks, logicalBlockSize: blockSize, udf, volumeId: d.buf.toString('latin1', 40, 72).trim() });
    if (blocks !== d.buf.readUInt32BE(84) || blockSize !== d.buf.readUInt16BE(130)) {
      findings.push(corrupt('ISO', "the little- and big-endian copies of 'volume space size' or 'logical block size' disagree"));
    }
    if (blockSize !== 512 && blockSize !== 1024 && blockSize !== 2048) {
      findings.push(corrupt('ISO', `field 'logical block size' is ${blockSize} (expected 512, 1024 or 2048)`));
      return { virtualSize: null, findings, details };
    }
    const declared = blocks * blockSize;
    if (declared > ctx.size) {
      // The disk a hypervisor attaches is the file (qemu opens an ISO as raw): a volume that
      // claims more (4 TiB in a 350 KiB file) would only inflate virtual_size.
      findings.push(info('iso_truncated', `ISO volume claims ${declared} bytes but the file has ${ctx.size}; virtual_size is the file's size. The upload may be incomplete.`));
      return { virtualSize: ctx.size, findings, details };
    }
    return { virtualSize: declared, findings, details };
  }
  if (udf) {
    // Pure UDF has no ISO 9660 size fields; like qemu, treat the file as the disk.
    return { virtualSize: ctx.size, findings, details: { udf: true } };
  }
  findings.push(corrupt('ISO', 'no Primary Volume Descriptor was found in the volume descriptor set'));
  return { virtualSize: null, findings, details };
}

export const isoInspector: Inspector = {
  format: 'iso',
  async matches(ctx) {
    const d = await identifier(ctx, 0);
    return d !== null && (d.id === ISO_ID || UDF_IDS.has(d.id));
  },
  inspect,
};
