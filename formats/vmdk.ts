// VMDK: hosted sparse extents ('KDMV' header + embedded descriptor), stream-optimized
// images, and bare text descriptor files. Only self-contained monolithicSparse and
// streamOptimized images are acceptable; anything that points qemu at other files
// (flat extents, paths, parents) is refused — see CVE-2022-47951.
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { readTable, secondLevelTables } from './tables.js';
import { bigToNumber, corrupt, isPowerOfTwo, MiB, pastEnd, quote, refuse, truncated, within } from './util.js';
import { decodeDescriptor, namesPath, parseDescriptor } from './vmdk-descriptor.js';
import type { VmdkDescriptor } from './vmdk-descriptor.js';

const KDMV = Buffer.from('KDMV', 'latin1');
const COWD = Buffer.from('COWD', 'latin1');
const GD_AT_END = 0xffffffffffffffffn;
const MAX_DESCRIPTOR = 1 * MiB; // qemu's own limit on descriptor size
const TEXT_PROBE = 4096;
export const ALLOWED_CREATE_TYPES = ['monolithicSparse', 'streamOptimized'];

const CONVERT = 'Convert it to a single self-contained file with `qemu-img convert -O vmdk -o subformat=streamOptimized in.vmdk out.vmdk` and upload it to a new image.';

/**
 * Text descriptor heuristics, at least as eager as qemu's probe (first setting line is version=N).
 * The text ends at the first NUL: `qemu-img convert` pads a descriptor file to 512 bytes with
 * NULs, and qemu's probe looks only at the lines at the start, so a padded descriptor is still
 * one (and declared raw it would otherwise pass as a 512-byte disk).
 */
function looksLikeTextDescriptor(head: Buffer): boolean {
  const nul = head.indexOf(0);
  const text = head.subarray(0, nul === -1 ? head.length : nul).toString('latin1');
  if (text.length === 0) return false;
  if (/^\s*#\s*Disk DescriptorFile/i.test(text)) return true;
  if (/^\s*createType\s*=/im.test(text)) return true;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    return /^version\s*=\s*[123]$/.test(line);
  }
  return false;
}

function sizeOf(d: VmdkDescriptor): bigint {
  return d.extents.reduce((sum, e) => sum + e.sectors, 0n) * 512n;
}

/** Checks shared by embedded and standalone descriptors. */
function checkDescriptor(d: VmdkDescriptor, embedded: boolean, capacitySectors: bigint | null, findings: Finding[]): void {
  const keys = Object.keys(d.fields).map((k) => k.toLowerCase());
  if (d.extents.length === 0) {
    findings.push(refuse('vmdk_descriptor_invalid', `VMDK descriptor lists no extents, so the disk has no data. ${CONVERT}`));
  }
  // Extents outside this file: any named path, any non-sparse extent, or a standalone descriptor at all.
  const external = d.extents.filter((e) => !embedded ? e.fileName !== null : namesPath(e) || e.type !== 'SPARSE');
  if (external.length > 0) {
    const e = external[0]!;
    const what = e.fileName !== null ? `names the file ${quote(e.fileName)}` : `is of type ${e.type}`;
    findings.push(refuse('vmdk_external_extent',
      `VMDK descriptor extent on line ${e.line} ${what}; PIR only accepts VMDK images whose data is inside the uploaded file. ${CONVERT}`));
  } else if (embedded && d.extents.length > 1) {
    findings.push(refuse('vmdk_external_extent',
      `VMDK descriptor lists ${d.extents.length} extents, but a single-file VMDK has exactly one; the others would be read from other files. ${CONVERT}`));
  } else if (embedded && capacitySectors === 0n && d.extents.length > 0) {
    // qemu treats a zero-capacity sparse header as a pointer to the descriptor's extents, i.e. other files.
    findings.push(refuse('vmdk_external_extent',
      `VMDK sparse header field 'capacity' is 0, which makes qemu open the descriptor's extents as separate files. ${CONVERT}`));
  }
  if (keys.includes('parentfilenamehint') && !findings.some((f) => f.code === 'vmdk_parent')) {
    findings.push(refuse('vmdk_parent',
      `VMDK descriptor sets 'parentFileNameHint', so the image depends on a parent disk; PIR refuses images that depend on other files. ${CONVERT}`));
  }
  if (d.createType === null) {
    findings.push(refuse('vmdk_descriptor_invalid', `VMDK descriptor has no 'createType' setting. ${CONVERT}`));
  } else if (!ALLOWED_CREATE_TYPES.includes(d.createType)) {
    findings.push(refuse('vmdk_create_type',
      `VMDK descriptor field 'createType' is ${quote(d.createType, 40)}; PIR accepts only ${ALLOWED_CREATE_TYPES.join(' and ')}. ${CONVERT}`));
  }
  if (embedded && capacitySectors !== null && capacitySectors !== 0n && sizeOf(d) !== capacitySectors * 512n) {
    findings.push(corrupt('VMDK',
      `the descriptor's extents total ${sizeOf(d) / 512n} sectors but header field 'capacity' says ${capacitySectors}`));
  }
}

function describe(d: VmdkDescriptor): Record<string, unknown> {
  return {
    createType: d.createType,
    cid: d.fields.CID,
    parentCID: d.fields.parentCID,
    extents: d.extents.map((e) => ({ access: e.access, sectors: bigToNumber(e.sectors), type: e.type, fileName: e.fileName })),
  };
}

const FLAG_REDUNDANT_GD = 0x2;
const FLAG_COMPRESSED = 0x10000;

/**
 * The grain directories (primary, and redundant when flagged), the grain tables they point to,
 * and the grains of the grain tables nearest the end of the file must lie wholly inside the file.
 * Compressed grains (stream-optimized) must start in it, and the last one's marker says how long
 * it is, so that one must end in it too.
 */
async function checkGrainTables(ctx: ReadContext, hdr: Buffer, capacity: bigint, grain: bigint, gtes: number, findings: Finding[], details: Record<string, unknown>): Promise<void> {
  const size = ctx.size;
  const flags = hdr.readUInt32LE(8);
  const rgdOffset = hdr.readBigUInt64LE(48) * 512n;
  const gdOffset = hdr.readBigUInt64LE(56) * 512n;
  const grainBytes = Number(grain) * 512;
  const gdEntries = Number((capacity + grain * BigInt(gtes) - 1n) / (grain * BigInt(gtes)));
  const gtBytes = gtes * 4;
  const compressed = (flags & FLAG_COMPRESSED) !== 0;
  const fail = (structure: string, offset: bigint, length: number): void => {
    findings.push(pastEnd('VMDK', structure, offset, length, size));
  };
  if (!within(gdOffset, gdEntries * 4, size)) return fail('grain directory', gdOffset, gdEntries * 4);
  if ((flags & FLAG_REDUNDANT_GD) !== 0 && !within(rgdOffset, gdEntries * 4, size)) return fail('redundant grain directory', rgdOffset, gdEntries * 4);
  const gd = await readTable(ctx, gdOffset, gdEntries, 4);
  const tables: bigint[] = [];
  for (let i = 0; i < gd.entries; i++) {
    const at = BigInt(gd.buf.readUInt32LE(i * 4)) * 512n;
    if (at === 0n) continue;
    if (!within(at, gtBytes, size)) return fail(`grain table (grain directory entry ${i})`, at, gtBytes);
    tables.push(at);
  }
  let read = 0;
  let lastCompressed = -1n;
  for await (const { at, table: gt } of secondLevelTables(ctx, tables, gtes, 4)) {
    read++;
    for (let i = 0; i < gt.entries; i++) {
      const sector = gt.buf.readUInt32LE(i * 4);
      if (sector <= 1) continue; // 0 unallocated, 1 zeroed grain
      const off = BigInt(sector) * 512n;
      if (compressed ? off >= BigInt(size) : !within(off, grainBytes, size)) {
        return fail(`${compressed ? 'compressed ' : ''}grain (grain table at ${at}, entry ${i})`, off, compressed ? 1 : grainBytes);
      }
      if (compressed && off > lastCompressed) lastCompressed = off;
    }
  }
  if (lastCompressed >= 0n) {
    // Grain marker: u64 LBA, u32 compressed size, then the data.
    const marker = await ctx.read(lastCompressed, 12);
    const length = marker.length === 12 ? 12 + marker.readUInt32LE(8) : 12;
    if (!within(lastCompressed, length, size)) return fail('last compressed grain', lastCompressed, length);
  }
  details.boundsChecked = { gdEntries: gd.entries, gdComplete: gd.complete, grainTables: new Set(tables).size, grainTablesRead: read };
}

async function inspectText(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  if (ctx.size > MAX_DESCRIPTOR) {
    findings.push(refuse('vmdk_descriptor_invalid',
      `The file starts like a VMDK text descriptor but is ${ctx.size} bytes long, more than a descriptor can be. ${CONVERT}`));
    return { virtualSize: null, findings, details: { variant: 'descriptor' } };
  }
  const text = decodeDescriptor(await ctx.read(0, ctx.size));
  const parsed = text === null ? null : parseDescriptor(text);
  if (!parsed || !parsed.ok) {
    const why = parsed ? `line ${parsed.line} has ${parsed.reason}` : 'it is not plain text';
    findings.push(refuse('vmdk_descriptor_invalid', `VMDK text descriptor could not be parsed: ${why}. ${CONVERT}`));
    return { virtualSize: null, findings, details: { variant: 'descriptor' } };
  }
  const d = parsed.descriptor;
  checkDescriptor(d, false, null, findings);
  if (!findings.some((f) => f.code === 'vmdk_external_extent')) {
    // Even an extent-less or ZERO-only descriptor is not a disk we can store by itself.
    findings.unshift(refuse('vmdk_external_extent',
      `The upload is a bare VMDK descriptor file; its data would live in other files. ${CONVERT}`));
  }
  return { virtualSize: bigToNumber(sizeOf(d)), findings, details: { variant: 'descriptor', ...describe(d) } };
}

/** What qemu searches for a parent (vmdk_parent_open): the 20 sectors at 0x200, as text up to the first NUL. */
const PARENT_SCAN_OFFSET = 0x200;
const PARENT_SCAN_BYTES = 20 * 512;

/**
 * qemu finds a sparse VMDK's parent by searching the bytes at 0x200 for `parentFileNameHint`
 * anywhere (a comment, beyond the declared descriptor, in a second copy of it), not by parsing
 * the descriptor the header points to; so the same bytes are searched here, whatever the parsed
 * descriptor says.
 */
async function checkParentHint(ctx: ReadContext, findings: Finding[]): Promise<void> {
  const region = await ctx.read(PARENT_SCAN_OFFSET, PARENT_SCAN_BYTES);
  const nul = region.indexOf(0);
  const text = region.subarray(0, nul === -1 ? region.length : nul).toString('latin1');
  if (/parentFileNameHint/i.test(text)) {
    findings.push(refuse('vmdk_parent',
      `VMDK bytes at offset 0x200 mention 'parentFileNameHint', which qemu reads as the name of a parent disk; PIR refuses images that depend on other files. ${CONVERT}`));
  }
}

async function inspectSparse(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = { variant: 'sparse' };
  const done = (v: number | null): ProbeResult => ({ virtualSize: v, findings, details });

  let hdr = await ctx.read(0, 512);
  if (hdr.length < 80) {
    findings.push(truncated('VMDK', 'sparse extent header', 80, hdr.length));
    return done(null);
  }
  const version = hdr.readUInt32LE(4);
  details.version = version;
  if (version < 1 || version > 3) {
    findings.push(corrupt('VMDK', `sparse header field 'version' is ${version} (expected 1 to 3)`));
    return done(null);
  }
  await checkParentHint(ctx, findings);
  // Stream-optimized images may defer the real header to a footer near EOF.
  const gdAtEnd = hdr.readBigUInt64LE(56) === GD_AT_END;
  details.gdAtEnd = gdAtEnd;
  if (gdAtEnd && hdr.readBigUInt64LE(12) === 0n && hdr.readBigUInt64LE(28) !== 0n) {
    // qemu reads the header at offset 0 before any footer: capacity 0 there makes it open the
    // descriptor that header points to as a descriptor file, whose extents are other files,
    // whatever the footer says.
    findings.push(refuse('vmdk_external_extent',
      `VMDK header field 'capacity' at offset 0 is 0 (the footer's header says otherwise), which makes qemu open the descriptor at sector ${hdr.readBigUInt64LE(28)} as a descriptor file and its extents as separate files. ${CONVERT}`));
    return done(null);
  }
  if (gdAtEnd) {
    const footer = ctx.size >= 1536 ? await ctx.read(ctx.size - 1024, 512) : Buffer.alloc(0);
    if (footer.length < 80 || !footer.subarray(0, 4).equals(KDMV)) {
      findings.push(corrupt('VMDK', "header field 'gdOffset' says the grain directory is at the end, but no valid footer was found"));
      return done(null);
    }
    hdr = footer;
  }
  const flags = hdr.readUInt32LE(8);
  const capacity = hdr.readBigUInt64LE(12);
  const grain = hdr.readBigUInt64LE(20);
  const descOffset = hdr.readBigUInt64LE(28);
  const descSize = hdr.readBigUInt64LE(36);
  const gtes = hdr.readUInt32LE(44);
  Object.assign(details, {
    flags, capacitySectors: bigToNumber(capacity), grainSectors: bigToNumber(grain),
    compressed: (flags & 0x10000) !== 0, markers: (flags & 0x20000) !== 0,
  });
  const virtualSize = bigToNumber(capacity * 512n);

  let tables = false; // header fields sound enough to follow into the grain tables
  if (capacity !== 0n) {
    const before = findings.length;
    if (grain === 0n || grain > 0x200000n || !isPowerOfTwo(Number(grain))) {
      findings.push(corrupt('VMDK', `sparse header field 'grainSize' is ${grain} sectors (must be a power of two up to 2097152)`));
    }
    if (gtes === 0 || gtes > 512) {
      findings.push(corrupt('VMDK', `sparse header field 'numGTEsPerGT' is ${gtes} (must be 1 to 512)`));
    }
    if (findings.length === before) tables = true;
  }

  if (descOffset === 0n || descSize === 0n) {
    findings.push(refuse('vmdk_descriptor_invalid',
      `VMDK sparse header has no embedded descriptor (fields 'descriptorOffset'/'descriptorSize' are 0), so its layout cannot be checked. ${CONVERT}`));
    return done(virtualSize);
  }
  const start = descOffset * 512n;
  const want = descSize * 512n > BigInt(MAX_DESCRIPTOR) ? MAX_DESCRIPTOR : Number(descSize * 512n);
  const raw = await ctx.read(start, want);
  if (raw.length === 0) {
    findings.push(corrupt('VMDK', `header field 'descriptorOffset' (${descOffset}) points past the end of the file`));
    return done(virtualSize);
  }
  const text = decodeDescriptor(raw);
  const parsed = text === null ? null : parseDescriptor(text);
  if (!parsed || !parsed.ok) {
    const why = parsed ? `line ${parsed.line} has ${parsed.reason}` : 'it is not plain text';
    findings.push(refuse('vmdk_descriptor_invalid', `VMDK embedded descriptor could not be parsed: ${why}. ${CONVERT}`));
    return done(virtualSize);
  }
  checkDescriptor(parsed.descriptor, true, capacity, findings);
  Object.assign(details, describe(parsed.descriptor));
  if (tables) await checkGrainTables(ctx, hdr, capacity, grain, gtes, findings, details);
  return done(virtualSize === 0 ? bigToNumber(sizeOf(parsed.descriptor)) : virtualSize);
}

async function inspectCowd(ctx: ReadContext): Promise<ProbeResult> {
  const hdr = await ctx.read(0, 16);
  const sectors = hdr.length >= 16 ? hdr.readUInt32LE(12) : null;
  return {
    virtualSize: sectors === null ? null : sectors * 512,
    findings: [refuse('vmdk_create_type',
      `The image is a legacy VMDK3 ('COWD') sparse disk; PIR accepts only monolithicSparse and streamOptimized VMDK. ${CONVERT}`)],
    details: { variant: 'cowd' },
  };
}

export const vmdkInspector: Inspector = {
  format: 'vmdk',
  async matches(ctx) {
    const head = await ctx.read(0, TEXT_PROBE);
    const magic = head.subarray(0, 4);
    return magic.equals(KDMV) || magic.equals(COWD) || looksLikeTextDescriptor(head);
  },
  async inspect(ctx) {
    const magic = await ctx.read(0, 4);
    if (magic.equals(KDMV)) return inspectSparse(ctx);
    if (magic.equals(COWD)) return inspectCowd(ctx);
    return inspectText(ctx);
  },
};
