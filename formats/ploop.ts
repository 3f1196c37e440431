// Parallels / Virtuozzo ploop image (qemu "parallels"): little-endian 64-byte header.
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { readTable } from './tables.js';
import { corrupt, info, pastEnd, refuse, truncated, within } from './util.js';

const MAGIC_OLD = 'WithoutFreeSpace';
const MAGIC_EXT = 'WithouFreSpacExt';
const HEADER = 64;
const IN_USE = 0x746f6e59; // "Ynot": image was not closed cleanly

/**
 * The BAT (right after the header) and every cluster it lists must lie inside the file. Entries
 * count clusters in the extended format and sectors in the legacy one (qemu's off_multiplier).
 */
async function checkBat(ctx: ReadContext, ext: boolean, tracks: number, batEntries: number, findings: Finding[], details: Record<string, unknown>): Promise<void> {
  const size = ctx.size;
  const cluster = tracks * 512;
  if (!within(HEADER, batEntries * 4, size)) {
    findings.push(pastEnd('ploop', 'block allocation table', HEADER, batEntries * 4, size));
    return;
  }
  const bat = await readTable(ctx, HEADER, batEntries, 4);
  const unit = ext ? cluster : 512;
  for (let i = 0; i < bat.entries; i++) {
    const entry = bat.buf.readUInt32LE(i * 4);
    if (entry === 0) continue;
    if (!within(entry * unit, cluster, size)) {
      findings.push(pastEnd('ploop', `cluster ${i} (BAT entry)`, entry * unit, cluster, size));
      return;
    }
  }
  details.boundsChecked = { batEntries: bat.entries, batComplete: bat.complete };
}

async function inspect(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = {};
  const h = await ctx.read(0, HEADER);
  if (h.length < HEADER) {
    findings.push(truncated('ploop', 'header', HEADER, h.length));
    return { virtualSize: null, findings, details };
  }
  const ext = h.toString('latin1', 0, 16) === MAGIC_EXT;
  const version = h.readUInt32LE(16);
  const tracks = h.readUInt32LE(28); // cluster size in sectors
  const batEntries = h.readUInt32LE(32);
  // The old magic only defines the low 32 bits of the sector count.
  const sectors = ext ? h.readBigUInt64LE(36) : BigInt(h.readUInt32LE(36));
  const inUse = h.readUInt32LE(44);
  const dataOff = h.readUInt32LE(48);
  Object.assign(details, { variant: ext ? 'ext' : 'legacy', version, clusterSectors: tracks, batEntries, dataOffsetSectors: dataOff });
  const virtualSize = Number(sectors * 512n);

  if (version !== 2) {
    findings.push(refuse('ploop_unsupported_version', `ploop header field 'version' is ${version}; PIR accepts version 2 only. Re-create it with \`qemu-img convert -O parallels\` and upload it to a new image.`));
  }
  if (tracks === 0 || tracks > 0x7fffffff / 513) findings.push(corrupt('ploop', `field 'tracks' (cluster size) is ${tracks}`));
  else if (BigInt(batEntries) * BigInt(tracks) < sectors) {
    findings.push(corrupt('ploop', `field 'bat_entries' (${batEntries}) cannot cover ${sectors} sectors`));
  }
  if (batEntries > 0x7fffffff / 4) findings.push(corrupt('ploop', `field 'bat_entries' (${batEntries}) is too large`));
  if (!findings.some((f) => f.code === 'corrupt_header')) await checkBat(ctx, ext, tracks, batEntries, findings, details);
  if (inUse === IN_USE) findings.push(info('ploop_in_use', "ploop header field 'inuse' is set: the image was not closed cleanly."));
  return { virtualSize, findings, details };
}

export const ploopInspector: Inspector = {
  format: 'ploop',
  async matches(ctx) {
    const m = (await ctx.read(0, 16)).toString('latin1');
    return m === MAGIC_OLD || m === MAGIC_EXT;
  },
  inspect,
};
