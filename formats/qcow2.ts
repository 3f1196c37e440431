// qcow2 (QEMU copy-on-write v2/v3), big-endian header at offset 0.
// We only trust images that are self-contained: no backing file, no external
// data file, and no incompatible feature we do not understand.
import type { Inspector, ProbeResult } from './inspector.js';
import { checkQcow2Tables } from './qcow2-tables.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { alignUp, bigToNumber, convertAdvice, corrupt, hex, info, pastEnd, quote, refuse, truncated } from './util.js';

const MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb"
const FLATTEN = 'Flatten it into a self-contained image with `qemu-img convert -O qcow2 in.qcow2 out.qcow2` and upload it to a new image.';

// Incompatible feature bits (header offset 72).
const INCOMPAT_DIRTY = 0n;
const INCOMPAT_CORRUPT = 1n;
const INCOMPAT_DATA_FILE = 2n;
const INCOMPAT_COMPRESSION = 3n;
const INCOMPAT_EXTL2 = 4n;
const KNOWN_INCOMPAT_MASK = (1n << 5n) - 1n;

// Header extension types.
const EXT_END = 0x00000000;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_FEATURE_NAMES = 0x6803f857;
const EXT_BITMAPS = 0x23852875;
const EXT_CRYPTO = 0x0537be77;
const EXT_DATA_FILE = 0x44415441;

const MAX_NAME = 1023; // spec limit for backing file names; also caps what we read
const MAX_EXTENSIONS = 1024; // far more than any real image; stops pathological loops
const MAX_L1_BYTES = 32 * 1024 * 1024; // QEMU refuses larger L1 tables
const MAX_SNAPSHOTS = 65536; // QEMU's QCOW_MAX_SNAPSHOTS
const MAX_BITMAPS = 65535; // QEMU's QCOW2_MAX_BITMAPS
const MAX_BITMAP_DIRECTORY = 1024 * MAX_BITMAPS; // QEMU's QCOW2_MAX_BITMAP_DIRECTORY_SIZE
const AUTOCLEAR_BITMAPS = 0n;

/**
 * The bitmaps extension as qemu checks it when it opens the image (qcow2_read_extensions): an
 * image it would refuse to open is refused here too, not stored as `active` and unbootable.
 */
function checkBitmaps(body: Buffer, autoclear: bigint, clusterSize: number, fileSize: number, findings: Finding[]): void {
  const problem = (what: string) => findings.push(corrupt('qcow2', `bitmaps header extension: ${what}`));
  if (body.length !== 24) return void problem(`it is ${body.length} bytes long (must be 24)`);
  const count = body.readUInt32BE(0);
  const directorySize = body.readBigUInt64BE(8);
  const directoryOffset = body.readBigUInt64BE(16);
  if (body.readUInt32BE(4) !== 0) return void problem('its reserved field is not zero');
  if (count === 0 || count > MAX_BITMAPS) return void problem(`it lists ${count} bitmaps (must be 1 to ${MAX_BITMAPS})`);
  if (directorySize > BigInt(MAX_BITMAP_DIRECTORY)) return void problem(`its directory size ${directorySize} exceeds qemu's ${MAX_BITMAP_DIRECTORY}`);
  if (directoryOffset % BigInt(clusterSize) !== 0n) return void problem(`its directory offset ${directoryOffset} is not cluster aligned`);
  // Without the autoclear bit qemu ignores the bitmaps; with it, it reads the directory.
  if (bit(autoclear, AUTOCLEAR_BITMAPS) && directoryOffset + directorySize > BigInt(fileSize)) {
    findings.push(pastEnd('qcow2', 'bitmap directory', directoryOffset, Number(directorySize), fileSize));
  }
}

const bit = (v: bigint, n: bigint): boolean => ((v >> n) & 1n) === 1n;

interface Extensions {
  backingFormat?: string;
  dataFile?: string;
  hasCryptoHeader: boolean;
  hasBitmaps: boolean;
  /** The bitmaps extension's body (nb_bitmaps, reserved, directory size, directory offset). */
  bitmaps?: Buffer;
  featureNames: Map<string, string>; // "type:bit" -> name
  unknown: number[];
}

async function readExtensions(ctx: ReadContext, start: number, end: number, findings: Finding[]): Promise<Extensions | null> {
  const ext: Extensions = { hasCryptoHeader: false, hasBitmaps: false, featureNames: new Map(), unknown: [] };
  let off = start;
  for (let i = 0; off + 8 <= end; i++) {
    if (i >= MAX_EXTENSIONS) {
      findings.push(corrupt('qcow2', `more than ${MAX_EXTENSIONS} header extensions`));
      return null;
    }
    const h = await ctx.read(off, 8);
    if (h.length < 8) {
      findings.push(truncated('qcow2', `header extension at offset ${off}`, 8, h.length));
      return null;
    }
    const type = h.readUInt32BE(0);
    const len = h.readUInt32BE(4);
    if (type === EXT_END) return ext;
    if (len > end - off - 8) {
      findings.push(corrupt('qcow2', `header extension ${hex(type)} at offset ${off} claims ${len} bytes, past the end of the first cluster`));
      return null;
    }
    const body = await ctx.read(off + 8, Math.min(len, 64 * 1024));
    if (body.length < Math.min(len, 64 * 1024)) {
      findings.push(truncated('qcow2', `header extension ${hex(type)}`, len, body.length));
      return null;
    }
    switch (type) {
      case EXT_BACKING_FORMAT:
        ext.backingFormat = body.subarray(0, MAX_NAME).toString('utf8');
        break;
      case EXT_DATA_FILE:
        ext.dataFile = body.subarray(0, MAX_NAME).toString('utf8');
        break;
      case EXT_CRYPTO:
        ext.hasCryptoHeader = true;
        break;
      case EXT_BITMAPS:
        ext.hasBitmaps = true;
        ext.bitmaps = body;
        break;
      case EXT_FEATURE_NAMES:
        // 48-byte entries: type, bit number, 46-byte name. Used only to name unknown bits in messages.
        for (let p = 0; p + 48 <= body.length; p += 48) {
          const name = body.subarray(p + 2, p + 48);
          const nul = name.indexOf(0);
          ext.featureNames.set(`${body[p]}:${body[p + 1]}`, name.subarray(0, nul === -1 ? 46 : nul).toString('latin1'));
        }
        break;
      default:
        ext.unknown.push(type); // unknown extensions are safe to ignore per spec
    }
    off += 8 + alignUp(len, 8);
  }
  return ext;
}

async function inspect(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = {};
  const done = (virtualSize: number | null): ProbeResult => ({ virtualSize, findings, details });

  const hdr = await ctx.read(0, 112);
  if (hdr.length < 8) {
    findings.push(truncated('qcow2', 'header', 72, hdr.length));
    return done(null);
  }
  const version = hdr.readUInt32BE(4);
  details.version = version;
  if (version !== 2 && version !== 3) {
    findings.push(refuse('qcow2_unsupported_version',
      `qcow2 header field 'version' is ${version}; PIR accepts qcow2 versions 2 and 3 only. ${convertAdvice('qcow2')}`));
    return done(null);
  }
  const minLen = version === 2 ? 72 : 104;
  if (hdr.length < minLen) {
    findings.push(truncated('qcow2', `version ${version} header`, minLen, hdr.length));
    return done(null);
  }

  const backingOffset = hdr.readBigUInt64BE(8);
  const backingSize = hdr.readUInt32BE(16);
  const clusterBits = hdr.readUInt32BE(20);
  const size = hdr.readBigUInt64BE(24);
  const cryptMethod = hdr.readUInt32BE(32);
  const l1Size = hdr.readUInt32BE(36);
  const l1Offset = hdr.readBigUInt64BE(40);
  const refcountOffset = hdr.readBigUInt64BE(48);
  const refcountClusters = hdr.readUInt32BE(56);
  const nbSnapshots = hdr.readUInt32BE(60);
  const snapshotsOffset = hdr.readBigUInt64BE(64);
  details.nbSnapshots = nbSnapshots;
  // qemu: total_sectors = size / 512, so a size off a sector boundary is rounded down.
  const virtualSize = bigToNumber(size / 512n * 512n);
  Object.assign(details, { clusterBits, cryptMethod, l1Size });

  let incompat = 0n;
  let autoclear = 0n;
  let headerLength = 72;
  let compressionType = 0;
  if (version === 3) {
    incompat = hdr.readBigUInt64BE(72);
    details.compatibleFeatures = hex(hdr.readBigUInt64BE(80));
    autoclear = hdr.readBigUInt64BE(88);
    details.autoclearFeatures = hex(autoclear);
    const refcountOrder = hdr.readUInt32BE(96);
    headerLength = hdr.readUInt32BE(100);
    details.refcountOrder = refcountOrder;
    if (refcountOrder > 6) findings.push(corrupt('qcow2', `field 'refcount_order' is ${refcountOrder} (maximum 6)`));
    if (headerLength < 104 || headerLength % 8 !== 0) {
      findings.push(corrupt('qcow2', `field 'header_length' is ${headerLength} (must be at least 104 and a multiple of 8)`));
      return done(virtualSize);
    }
    if (headerLength > 104 && hdr.length > 104) compressionType = hdr[104]!;
  }
  details.headerLength = headerLength;
  details.incompatibleFeatures = hex(incompat);

  if (clusterBits < 9 || clusterBits > 21) {
    findings.push(corrupt('qcow2', `field 'cluster_bits' is ${clusterBits} (valid range 9 to 21)`));
    return done(virtualSize);
  }
  const clusterSize = 2 ** clusterBits;
  details.clusterSize = clusterSize;
  if (headerLength > clusterSize) {
    findings.push(corrupt('qcow2', `field 'header_length' (${headerLength}) is larger than one cluster (${clusterSize})`));
    return done(virtualSize);
  }

  // Header extensions sit between the header and the backing file name (or the end of cluster 0).
  const bo = backingOffset > 0n && backingOffset < BigInt(clusterSize) ? Number(backingOffset) : clusterSize;
  const ext = await readExtensions(ctx, headerLength, bo, findings);
  if (ext) {
    if (ext.backingFormat !== undefined) details.backingFormat = ext.backingFormat;
    if (ext.dataFile !== undefined) details.dataFile = ext.dataFile;
    if (ext.unknown.length) details.unknownExtensions = ext.unknown.map(hex);
    details.hasBitmaps = ext.hasBitmaps;
    if (ext.bitmaps) checkBitmaps(ext.bitmaps, autoclear, clusterSize, ctx.size, findings);
    if (ext.hasCryptoHeader && cryptMethod !== 2) {
      findings.push(corrupt('qcow2', `it has a CRYPTO header extension but field 'crypt_method' is ${cryptMethod}, not LUKS (qemu refuses to open it)`));
    }
  }
  if (nbSnapshots > MAX_SNAPSHOTS) findings.push(corrupt('qcow2', `field 'nb_snapshots' is ${nbSnapshots} (qemu opens at most ${MAX_SNAPSHOTS})`));

  // Backing file: the image depends on another file, possibly a host path.
  if (backingOffset !== 0n) {
    const n = Math.min(backingSize, MAX_NAME);
    const name = n > 0 ? (await ctx.read(backingOffset, n)).toString('utf8') : '';
    details.backingFile = name;
    const shown = name ? ` (${quote(name)})` : '';
    findings.push(refuse('qcow2_backing_file',
      `qcow2 image names a backing file${shown} in header field 'backing_file_offset'; PIR refuses images that depend on other files. ${FLATTEN}`));
  }

  // External data file (CVE-2024-32498): guest data would be read from a host path.
  const dataFileBit = bit(incompat, INCOMPAT_DATA_FILE);
  details.externalDataFile = dataFileBit;
  if (dataFileBit || ext?.dataFile !== undefined) {
    const shown = ext?.dataFile ? ` (${quote(ext.dataFile)})` : '';
    findings.push(refuse('qcow2_data_file',
      `qcow2 image uses an external data file${shown} (incompatible_features bit 2 / data-file header extension); PIR refuses images whose data lives in other files. ${FLATTEN}`));
  }

  const unknownBits = incompat & ~KNOWN_INCOMPAT_MASK;
  if (unknownBits !== 0n) {
    const bits: string[] = [];
    for (let b = 0n; b < 64n; b++) {
      if (!bit(unknownBits, b)) continue;
      const name = ext?.featureNames.get(`0:${b}`);
      bits.push(name ? `${b} (${quote(name, 46)})` : `${b}`);
    }
    findings.push(refuse('qcow2_unknown_features',
      `qcow2 header field 'incompatible_features' sets bit(s) ${bits.join(', ')} that PIR does not understand, so the image cannot be read safely. ${convertAdvice('qcow2')}`));
  }
  if (bit(incompat, INCOMPAT_CORRUPT)) {
    details.corrupt = true;
    findings.push(refuse('qcow2_corrupt',
      "qcow2 header has the 'corrupt' flag set (incompatible_features bit 1), so its metadata cannot be trusted. Repair it with `qemu-img check -r all in.qcow2` (or re-create it) and upload it to a new image."));
  }
  if (bit(incompat, INCOMPAT_DIRTY)) {
    details.dirty = true;
    findings.push(info('qcow2_dirty',
      "qcow2 header has the 'dirty' flag set (incompatible_features bit 0): the image was not closed cleanly and its refcounts may need `qemu-img check -r all`."));
  }
  details.extendedL2 = bit(incompat, INCOMPAT_EXTL2);

  // Compression type must agree with its feature bit; unknown algorithms cannot be decoded.
  const compressionBit = bit(incompat, INCOMPAT_COMPRESSION);
  if (compressionBit && compressionType === 0) {
    findings.push(corrupt('qcow2', "incompatible_features bit 3 (compression type) is set but field 'compression_type' is absent or zlib"));
  } else if (!compressionBit && compressionType !== 0) {
    findings.push(corrupt('qcow2', `field 'compression_type' is ${compressionType} but incompatible_features bit 3 is not set`));
  } else if (compressionType > 1) {
    findings.push(refuse('qcow2_compression_type',
      `qcow2 header field 'compression_type' is ${compressionType}, which PIR does not know (only zlib and zstd). ${convertAdvice('qcow2')}`));
  }
  details.compressionType = compressionType === 0 ? 'zlib' : compressionType === 1 ? 'zstd' : compressionType;

  if (cryptMethod === 1 || cryptMethod === 2) {
    details.encrypted = cryptMethod === 1 ? 'aes' : 'luks';
    findings.push(refuse('encrypted',
      `qcow2 image is encrypted (header field 'crypt_method' is ${cryptMethod === 1 ? 'AES' : 'LUKS'}); PIR cannot inspect or boot encrypted images unless encrypted uploads are enabled. Decrypt it with \`qemu-img convert\` and upload it to a new image.`));
  } else if (cryptMethod !== 0) {
    findings.push(corrupt('qcow2', `field 'crypt_method' is ${cryptMethod} (known values are 0, 1 and 2)`));
  }

  // Structural sanity: tables must be cluster aligned and the L1 table must cover the disk.
  const cs = BigInt(clusterSize);
  const before = findings.length;
  if (l1Offset % cs !== 0n) findings.push(corrupt('qcow2', `field 'l1_table_offset' (${l1Offset}) is not cluster aligned`));
  if (refcountOffset % cs !== 0n) findings.push(corrupt('qcow2', `field 'refcount_table_offset' (${refcountOffset}) is not cluster aligned`));
  // qemu (qcow2_do_open) refuses both on open: it has no refcounts to trust, and it checks the
  // snapshot table offset's alignment whatever nb_snapshots says (qcow2_validate_table).
  if (refcountClusters === 0) findings.push(corrupt('qcow2', "field 'refcount_table_clusters' is 0: the image has no reference count table (qemu refuses to open it)"));
  if (snapshotsOffset % cs !== 0n) findings.push(corrupt('qcow2', `field 'snapshots_offset' (${snapshotsOffset}) is not cluster aligned (qemu refuses to open it)`));
  if (l1Size * 8 > MAX_L1_BYTES) {
    findings.push(corrupt('qcow2', `field 'l1_size' (${l1Size}) exceeds the 32 MiB L1 table limit`));
  } else {
    const l2Entries = cs / (details.extendedL2 ? 16n : 8n);
    if (BigInt(l1Size) * l2Entries * cs < size) {
      findings.push(corrupt('qcow2', `field 'l1_size' (${l1Size}) is too small for the virtual size ${size}`));
    }
  }
  // Only a header that holds together is worth following into the file.
  if (findings.length === before) {
    await checkQcow2Tables(ctx, {
      clusterBits, extendedL2: details.extendedL2 === true, l1Size, l1Offset, refcountOffset, refcountClusters, nbSnapshots, snapshotsOffset,
    }, findings, details);
  }

  return done(virtualSize);
}

export const qcow2Inspector: Inspector = {
  format: 'qcow2',
  async matches(ctx) {
    const h = await ctx.read(0, 4);
    return h.length === 4 && h.equals(MAGIC);
  },
  inspect,
};
