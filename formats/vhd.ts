// VHD (Virtual PC / "vpc"): a 512-byte big-endian footer at the end of the file;
// dynamic and differencing disks also keep a copy at offset 0 and a 'cxsparse'
// dynamic header. Differencing disks depend on a parent file and are refused.
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { readTable } from './tables.js';
import { alignUp, bigToNumber, corrupt, info, isPowerOfTwo, pastEnd, quote, refuse, truncated, within } from './util.js';

const COOKIE = Buffer.from('conectix', 'latin1');
const SPARSE_COOKIE = Buffer.from('cxsparse', 'latin1');
const FOOTER = 512;
const DYN_HEADER = 1024;
const TYPE_NAMES: Record<number, string> = { 2: 'fixed', 3: 'dynamic', 4: 'differencing' };
// Creators whose images qemu sizes by 'current size' (Hyper-V, qemu's own `qem2`, Disk2vhd,
// XenConverter, XenServer); every other creator's (Virtual PC, older qemu, unknown ones) by the
// CHS geometry, unless that geometry is the largest there is (qemu's vpc_open).
const CURRENT_SIZE_CREATORS = new Set(['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0']);
const MAX_CHS = { c: 65535, h: 16, s: 255 };
const CONVERT = 'Convert it to a standalone disk with `qemu-img convert -O vpc in.vhd out.vhd` and upload it to a new image.';

function checksum(footer: Buffer): number {
  let sum = 0;
  for (let i = 0; i < FOOTER; i++) if (i < 64 || i > 67) sum += footer[i]!;
  return ~sum >>> 0;
}

async function footerAt(ctx: ReadContext, offset: number): Promise<Buffer | null> {
  if (offset < 0) return null;
  const b = await ctx.read(offset, FOOTER);
  return b.length >= 8 && b.subarray(0, 8).equals(COOKIE) ? b : null;
}

/**
 * The block allocation table, and every block it lists (its sector bitmap and data), must lie
 * inside the file: a dynamic disk grows a whole block at a time.
 */
async function checkBlockTable(ctx: ReadContext, tableOffset: bigint, entries: number, blockSize: number, findings: Finding[], details: Record<string, unknown>): Promise<void> {
  const size = ctx.size;
  if (!within(tableOffset, entries * 4, size)) {
    findings.push(pastEnd('VHD', 'block allocation table', tableOffset, entries * 4, size));
    return;
  }
  const blockBytes = alignUp(blockSize / 512 / 8, 512) + blockSize;
  const bat = await readTable(ctx, tableOffset, entries, 4);
  for (let i = 0; i < bat.entries; i++) {
    const sector = bat.buf.readUInt32BE(i * 4);
    if (sector === 0xffffffff) continue;
    if (!within(sector * 512, blockBytes, size)) {
      findings.push(pastEnd('VHD', `block ${i} (bitmap and data)`, sector * 512, blockBytes, size));
      return;
    }
  }
  details.boundsChecked = { batEntries: bat.entries, batComplete: bat.complete };
}

/** Checks the dynamic header of dynamic/differencing disks; returns parent info if any. */
async function dynamicHeader(ctx: ReadContext, dataOffset: bigint, currentSize: bigint, findings: Finding[], details: Record<string, unknown>): Promise<void> {
  const h = await ctx.read(dataOffset, DYN_HEADER);
  if (h.length < DYN_HEADER || !h.subarray(0, 8).equals(SPARSE_COOKIE)) {
    findings.push(h.length === 0
      ? corrupt('VHD', `footer field 'data offset' (${dataOffset}) points outside the file`)
      : corrupt('VHD', `no valid 'cxsparse' dynamic disk header at offset ${dataOffset}`));
    return;
  }
  const tableOffset = h.readBigUInt64BE(16);
  const maxEntries = h.readUInt32BE(28);
  const blockSize = h.readUInt32BE(32);
  details.blockSize = blockSize;
  details.maxTableEntries = maxEntries;
  if (blockSize < 512 || !isPowerOfTwo(blockSize)) {
    findings.push(corrupt('VHD', `dynamic header field 'block size' is ${blockSize} (must be a power of two of at least 512)`));
  } else if (BigInt(maxEntries) * BigInt(blockSize) < currentSize) {
    findings.push(corrupt('VHD', `dynamic header field 'max table entries' (${maxEntries}) cannot cover the disk size ${currentSize}`));
  } else {
    await checkBlockTable(ctx, tableOffset, maxEntries, blockSize, findings, details);
  }
  // UTF-16BE; copy before swapping because read buffers are shared with the cache.
  const parentName = Buffer.from(h.subarray(64, 576)).swap16().toString('utf16le');
  const nul = parentName.indexOf('\u0000');
  const name = nul === -1 ? parentName : parentName.slice(0, nul);
  let locators = 0;
  for (let i = 0; i < 8; i++) if (h.readUInt32BE(576 + i * 24) !== 0) locators++;
  if (name) details.parentName = name;
  details.parentLocators = locators;
  if (name || locators > 0) {
    findings.push(refuse('vhd_differencing',
      `VHD dynamic header names a parent disk${name ? ` (${quote(name)})` : ''} in its parent locator fields; PIR refuses images that depend on other files. ${CONVERT}`));
  }
}

async function inspect(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = {};
  const head = await footerAt(ctx, 0);
  const tail = ctx.size >= FOOTER ? await footerAt(ctx, ctx.size - FOOTER) : null;
  // qemu trusts the copy at offset 0 when present, so do we.
  const footer = head ?? tail;
  if (!footer) {
    findings.push(corrupt('VHD', "no 'conectix' footer at the start or end of the file"));
    return { virtualSize: null, findings, details };
  }
  details.footerCopyAtStart = head !== null;
  details.footerAtEnd = tail !== null;
  if (footer.length < FOOTER) {
    findings.push(truncated('VHD', 'footer', FOOTER, footer.length));
    return { virtualSize: null, findings, details };
  }

  const stored = footer.readUInt32BE(64);
  if (stored !== checksum(footer)) {
    findings.push(info('vhd_checksum', `VHD footer field 'checksum' does not match its contents; the footer may have been edited.`));
  }
  const dataOffset = footer.readBigUInt64BE(16);
  const creator = footer.subarray(28, 32).toString('latin1');
  const originalSize = footer.readBigUInt64BE(40);
  const currentSize = footer.readBigUInt64BE(48);
  const cyl = footer.readUInt16BE(56);
  const heads = footer[58]!;
  const spt = footer[59]!;
  const diskType = footer.readUInt32BE(60);
  const typeName = TYPE_NAMES[diskType];
  Object.assign(details, {
    diskType: typeName ?? diskType, creatorApp: creator, currentSize: bigToNumber(currentSize),
    originalSize: bigToNumber(originalSize), geometry: { cylinders: cyl, heads, sectorsPerTrack: spt },
  });

  // qemu sizes images from some creators by geometry; report whichever size is larger so the
  // size policy cannot be dodged by disagreeing fields.
  const chs = BigInt(cyl) * BigInt(heads) * BigInt(spt) * 512n;
  const maxGeom = cyl === MAX_CHS.c && heads === MAX_CHS.h && spt === MAX_CHS.s;
  const qemuSize = !CURRENT_SIZE_CREATORS.has(creator) && !maxGeom ? chs : currentSize;
  const virtualSize = bigToNumber(qemuSize > currentSize ? qemuSize : currentSize);

  if (typeName === undefined) {
    findings.push(corrupt('VHD', `footer field 'disk type' is ${diskType} (expected 2 fixed, 3 dynamic or 4 differencing)`));
    return { virtualSize, findings, details };
  }
  if (diskType === 4) {
    findings.push(refuse('vhd_differencing',
      `VHD footer field 'disk type' says this is a differencing disk, which depends on a parent VHD; PIR refuses images that depend on other files. ${CONVERT}`));
  }
  if (diskType === 2) {
    if (head !== null && tail === null) findings.push(corrupt('VHD', "a fixed disk must keep its footer at the end of the file, but none is there"));
    // qemu looks for the footer in the last 512 bytes of the file rounded up to whole sectors, so
    // with a partial sector before the footer it finds none ("invalid VPC image").
    else if (head === null && ctx.size % 512 !== 0) {
      findings.push(corrupt('VHD', `the file (${ctx.size} bytes) is not a whole number of 512-byte sectors, so qemu does not find the footer at its end and refuses to open it`,
        'Re-create it from a disk whose size is a multiple of 512 bytes (`qemu-img convert -O vpc -o subformat=fixed in.img out.vhd`) and upload it to a new image.'));
    }
    else if (BigInt(ctx.size) < currentSize + 512n) findings.push(corrupt('VHD', `the file (${ctx.size} bytes) is shorter than footer field 'current size' (${currentSize}) plus the footer`));
  } else {
    await dynamicHeader(ctx, dataOffset, currentSize, findings, details);
    if (tail === null) findings.push(info('vhd_footer_missing', 'VHD dynamic disk has no footer at the end of the file; the upload may be truncated.'));
  }
  return { virtualSize, findings, details };
}

export const vhdInspector: Inspector = {
  format: 'vhd',
  async matches(ctx) {
    if (await footerAt(ctx, 0)) return true;
    return ctx.size >= FOOTER && (await footerAt(ctx, ctx.size - FOOTER)) !== null;
  },
  inspect,
};
