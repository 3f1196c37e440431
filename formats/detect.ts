import type { Inspector, ProbeResult } from './inspector.js';
import { inspectRaw } from './raw.js';
import { ReadBudgetExceeded, ReadContext, ReaderIOError, type BlockCache } from './read-context.js';
import { INSPECTORS } from './registry.js';
import type { DetectedFormat, Finding, FormatReport, RandomAccessReader } from './types.js';
import { KiB, refuse } from './util.js';

/** Nearly every signature lives in the first 64 KiB (ISO's at 32 KiB), so fetch it in one call. */
const HEAD = 64 * KiB;

const PARTITION_TABLES: ReadonlySet<DetectedFormat> = new Set(['gpt', 'mbr']);

interface Match {
  format: DetectedFormat;
  result: ProbeResult;
}

/**
 * Formats whose payload starts at byte 0 as a plain disk, so a partition table there is
 * expected: raw, (hybrid) ISO, and fixed VHD. A dynamic VHD keeps a footer copy at 0, so
 * an MBR there would be a second format hiding in the first.
 */
function mayContainPartitions(m: Match): boolean {
  return m.format === 'raw' || m.format === 'iso' || (m.format === 'vhd' && m.result.details.footerCopyAtStart === false);
}

/** Our own limits and bugs become refusals; only the caller's reader failures propagate. */
function failure(err: unknown, insp: Inspector): Finding {
  if (err instanceof ReaderIOError) throw err.original;
  if (err instanceof ReadBudgetExceeded) {
    return refuse('inspection_limit',
      `${insp.format} inspection needed to read more header data than PIR allows (${err.message}); the image is probably malformed. Re-export it and upload it to a new image.`);
  }
  const why = err instanceof Error ? err.message : String(err);
  return refuse('corrupt_header',
    `${insp.format} image header could not be parsed (${why}). Check that the upload was complete, or re-export the image, and upload it to a new image.`);
}

/** The inspector's signature check; a check that fails is a match, which its failure then refuses. */
async function signatureOf(ctx: ReadContext, insp: Inspector): Promise<Match | 'matched' | null> {
  try {
    return (await insp.matches(ctx)) ? 'matched' : null;
  } catch (err) {
    return { format: insp.format, result: { virtualSize: null, findings: [failure(err, insp)], details: {} } };
  }
}

async function inspectMatched(ctx: ReadContext, insp: Inspector): Promise<Match> {
  try {
    const result = await insp.inspect(ctx);
    return { format: result.format ?? insp.format, result };
  } catch (err) {
    return { format: insp.format, result: { virtualSize: null, findings: [failure(err, insp)], details: {} } };
  }
}

/**
 * A fixed VHD is known only by a footer in the file's last sector. When that sector lies in a
 * data cluster of the qcow2 around it, the footer is the guest's own data (a fixed VHD converted
 * to qcow2 as raw, without `-f vpc`, keeps its footer as the disk's last sector): qemu reads
 * the file as qcow2 only, and so does Glance. A dynamic VHD (a footer copy at byte 0) still conflicts.
 */
function footerInGuestData(primary: Match, other: Match): boolean {
  return primary.format === 'qcow2' && primary.result.details.lastSectorIsGuestData === true
    && other.format === 'vhd' && other.result.details.footerCopyAtStart === false;
}

/**
 * A hybrid ISO whose partition table lists a partition after the ISO volume (xorriso's
 * -append_partition, as current Debian and Ubuntu installers carry their EFI partition) is a
 * disk: qemu presents the whole file, and so does its virtual size (qemu-img info's). Otherwise
 * the ISO's own volume size stands, as Glance has it.
 */
function hybridIsoSize(volumeSize: number | null, partitions: Match[], fileSize: number): number | null {
  if (volumeSize === null) return null;
  const ends = partitions.map((m) => m.result.details.partitionsEnd).filter((end): end is number => typeof end === 'number');
  return ends.some((end) => end > volumeSize) ? Math.max(volumeSize, fileSize) : volumeSize;
}

/**
 * Detect and inspect an image, reading only the headers each format needs.
 * Never throws for malformed content (problems become findings); only errors
 * thrown by the reader itself propagate.
 */
export async function detectFormat(reader: RandomAccessReader, blocks?: BlockCache): Promise<FormatReport> {
  const ctx = new ReadContext(reader, undefined, blocks);
  try {
    await ctx.read(0, HEAD);
  } catch (err) {
    if (err instanceof ReaderIOError) throw err.original;
    throw err;
  }

  // Every signature is checked before any format is inspected: an inspection that reads up to
  // the budget must not leave another format's signature unread (and counted as a match).
  const signatures: (Match | 'matched' | null)[] = [];
  for (const insp of INSPECTORS) signatures.push(await signatureOf(ctx, insp));
  const matches: Match[] = [];
  for (const [i, insp] of INSPECTORS.entries()) {
    const signature = signatures[i];
    if (signature === 'matched') matches.push(await inspectMatched(ctx, insp));
    else if (signature) matches.push(signature);
  }

  const containers = matches.filter((m) => !PARTITION_TABLES.has(m.format));
  const partitions = matches.filter((m) => PARTITION_TABLES.has(m.format));
  const primary: Match = containers[0] ?? { format: 'raw', result: await inspectRaw(ctx) };
  const virtualSize = primary.format === 'iso' ? hybridIsoSize(primary.result.virtualSize, partitions, ctx.size) : primary.result.virtualSize;
  const others = matches.filter((m) => m !== primary);

  const findings: Finding[] = [...primary.result.findings];
  const details: Record<string, unknown> = { ...primary.result.details };

  for (const m of partitions) {
    details[m.format] = m.result.details;
    if (mayContainPartitions(primary) && primary.format !== 'raw') {
      // A hybrid ISO or fixed VHD carries the disk's own partition table; its quirks are not the container's problem.
      findings.push(...m.result.findings.map((f) => ({ ...f, severity: 'info' as const })));
    } else {
      findings.push(...m.result.findings);
    }
  }
  for (const m of containers.slice(1)) {
    details[m.format] = m.result.details;
    // What a guest's own bytes look like, read as a VHD footer, is no problem of the image's.
    findings.push(...(footerInGuestData(primary, m) ? m.result.findings.map((f) => ({ ...f, severity: 'info' as const })) : m.result.findings));
  }

  // Several signatures at once can hide one format inside another: only partition tables inside
  // raw/ISO/VHD payloads are legitimate overlaps, and a fixed VHD's footer that is a qcow2's guest data.
  const conflicting = others.filter((m) => !(PARTITION_TABLES.has(m.format) && mayContainPartitions(primary)) && !footerInGuestData(primary, m));
  if (conflicting.length > 0) {
    const names = [primary.format, ...conflicting.map((m) => m.format)].join(', ');
    findings.unshift(refuse('multiple_formats',
      `The image matches several disk formats at once (${names}), which can be used to hide one format inside another. Convert it to a single format with \`qemu-img convert\` and upload it to a new image.`));
  }

  return {
    format: primary.format,
    virtualSize,
    findings,
    details,
    fileSize: ctx.size,
    bytesRead: ctx.bytesRead,
    alsoMatches: others.map((m) => m.format),
  };
}
