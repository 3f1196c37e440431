// VirtualBox VDI: 512-byte little-endian header with a pre-header text line and
// signature 0xbeda107f at 0x40. Only standalone dynamic/fixed v1.1 images are usable.
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { readTable } from './tables.js';
import { bigToNumber, corrupt, MiB, pastEnd, refuse, truncated, within } from './util.js';

const SIGNATURE = 0xbeda107f;
const HEADER = 0x1c8; // end of the v1.1 header fields we read
const TYPES: Record<number, string> = { 1: 'dynamic', 2: 'fixed', 3: 'undo', 4: 'differencing' };
const CONVERT = 'Convert it to a standalone disk with `qemu-img convert -O vdi in.vdi out.vdi` (or VBoxManage clonemedium) and upload it to a new image.';

const BLOCK_FREE = 0xffffffff;
const BLOCK_ZERO = 0xfffffffe;

/** The block map, and every block it lists, must lie inside the file (blocks are written whole). */
async function checkBlockMap(ctx: ReadContext, offsetBmap: number, offsetData: number, blocks: number, blockSize: number, findings: Finding[], details: Record<string, unknown>): Promise<void> {
  const size = ctx.size;
  if (!within(offsetBmap, blocks * 4, size)) {
    findings.push(pastEnd('VDI', 'block map', offsetBmap, blocks * 4, size));
    return;
  }
  const map = await readTable(ctx, offsetBmap, blocks, 4);
  for (let i = 0; i < map.entries; i++) {
    const index = map.buf.readUInt32LE(i * 4);
    if (index === BLOCK_FREE || index === BLOCK_ZERO) continue;
    const at = offsetData + index * blockSize;
    if (!within(at, blockSize, size)) {
      findings.push(pastEnd('VDI', `block ${i} (stored as block ${index})`, at, blockSize, size));
      return;
    }
  }
  details.boundsChecked = { mapEntries: map.entries, mapComplete: map.complete };
}

async function inspect(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = {};
  const h = await ctx.read(0, HEADER);
  if (h.length < HEADER) {
    findings.push(truncated('VDI', 'header', HEADER, h.length));
    return { virtualSize: null, findings, details };
  }
  const version = h.readUInt32LE(0x44);
  const imageType = h.readUInt32LE(0x4c);
  const offsetBmap = h.readUInt32LE(0x154);
  const offsetData = h.readUInt32LE(0x158);
  const sectorSize = h.readUInt32LE(0x168);
  // qemu's vdi_open rounds an odd disk size ('VBoxManage convertfromraw' writes them) up to a sector.
  const diskSize = (h.readBigUInt64LE(0x170) + 511n) / 512n * 512n;
  const blockSize = h.readUInt32LE(0x178);
  const blocks = h.readUInt32LE(0x180);
  const linkUuid = h.subarray(0x1a8, 0x1b8);
  const parentUuid = h.subarray(0x1b8, 0x1c8);
  Object.assign(details, {
    version: `${version >>> 16}.${version & 0xffff}`, imageType: TYPES[imageType] ?? imageType,
    blockSize, blocksInImage: blocks, sectorSize,
  });
  const virtualSize = bigToNumber(diskSize);

  if (version >>> 16 !== 1) {
    findings.push(refuse('vdi_unsupported_version', `VDI header field 'version' is ${details.version}; PIR accepts version 1.x only. ${CONVERT}`));
    return { virtualSize, findings, details };
  }
  // qemu's vdi_open refuses a non-NULL link UUID and a non-NULL parent UUID alike.
  const zero = Buffer.alloc(16);
  if (imageType === 4 || !linkUuid.equals(zero) || !parentUuid.equals(zero)) {
    const field = imageType === 4 ? "'image type'" : !linkUuid.equals(zero) ? "'link UUID'" : "'parent UUID'";
    findings.push(refuse('vdi_differencing',
      `VDI image is a differencing disk (header field ${field} refers to a parent); PIR refuses images that depend on other files. ${CONVERT}`));
  } else if (imageType !== 1 && imageType !== 2) {
    findings.push(refuse('vdi_unsupported_type', `VDI header field 'image type' is ${TYPES[imageType] ?? imageType}; PIR accepts dynamic and fixed VDI images only. ${CONVERT}`));
  }
  if (sectorSize !== 512) findings.push(corrupt('VDI', `field 'sector size' is ${sectorSize} (must be 512)`));
  if (blockSize !== MiB) findings.push(corrupt('VDI', `field 'block size' is ${blockSize} (must be 1 MiB)`));
  else if (BigInt(blocks) * BigInt(blockSize) < diskSize) {
    findings.push(corrupt('VDI', `field 'blocks in image' (${blocks}) cannot cover field 'disk size' (${diskSize})`));
  }
  if (offsetBmap % 512 !== 0 || offsetData % 512 !== 0) {
    findings.push(corrupt('VDI', `fields 'offset blocks'/'offset data' (${offsetBmap}/${offsetData}) are not sector aligned`));
  }
  if (!findings.some((f) => f.code === 'corrupt_header')) await checkBlockMap(ctx, offsetBmap, offsetData, blocks, blockSize, findings, details);
  return { virtualSize, findings, details };
}

export const vdiInspector: Inspector = {
  format: 'vdi',
  async matches(ctx) {
    const h = await ctx.read(0x40, 4);
    return h.length === 4 && h.readUInt32LE(0) === SIGNATURE;
  },
  inspect,
};
