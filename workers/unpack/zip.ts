/**
 * A zip holding exactly one file (the disk image), as Glance's image_decompression plugin accepts
 * for container_format=compressed.
 *
 * Read through the central directory (the file is on disk, so random access is cheap) and then
 * checked against the local header, as `unzip` would; anything a strict reader cannot vouch for
 * is refused rather than guessed: more or fewer than one member, a directory, encryption (classic
 * or strong, AES method 99), a method other than stored/deflate, multi-volume archives, data
 * before the member or between it and the central directory (a second, hidden local entry or a
 * prepended file), and a central directory that does not end at the end record. Zip64 sizes and
 * offsets are supported (a disk over 4 GiB needs them; the zip64 end records are read whenever
 * their locator sits before the end record, as Info-ZIP writes them to a pipe even when unneeded); the member's size and CRC-32 are verified
 * after decoding. The member's bytes are then streamed through raw inflate with the same limits
 * as every other codec (decompress.ts), so a zip bomb is stopped like a gzip one.
 *
 * Written here rather than with a zip library: the ones on npm (yauzl, unzipper) either do not
 * verify CRC-32 / local-vs-central agreement or buffer and guess on malformed input, and the
 * single-member subset needed is ~150 lines over node:zlib.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import zlib from 'node:zlib';
import { CountingSource, inflateRaw, type DecompressOptions, limitOutput } from './decompress.js';
import { sanitizeForMessage, UnpackRefusedError } from './errors.js';

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const DESCRIPTOR_SIG = 0x08074b50;
const EOCD_MIN = 22;
const MAX_COMMENT = 0xffff;
const CENTRAL_MIN = 46;
const LOCAL_MIN = 30;

const FLAG_ENCRYPTED = 0x0001;
const FLAG_DESCRIPTOR = 0x0008;
const FLAG_STRONG_ENCRYPTION = 0x0040;
const FLAG_MASKED_HEADERS = 0x2000;
const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;
const METHOD_AES = 99;

const REPACK = 'Re-create it with `zip disk.zip disk.img` (one file, no password), or compress the disk with gzip, and upload it again.';

export interface ZipMember {
  name: string;
  method: typeof METHOD_STORED | typeof METHOD_DEFLATE;
  /** File offset of the member's (compressed) bytes. */
  dataOffset: number;
  compressedSize: number;
  size: number;
  crc32: number;
}

function corrupt(detail: string): UnpackRefusedError {
  return new UnpackRefusedError('corrupt_archive',
    `The zip archive of the upload is corrupt or truncated (${detail}). Check that the upload completed and that \`unzip -t\` accepts the file, then upload it again.`);
}

function unsupported(detail: string): UnpackRefusedError {
  return new UnpackRefusedError('unsupported_archive', `The zip archive of the upload ${detail}; PIR accepts a zip holding exactly one unencrypted file (stored or deflated). ${REPACK}`);
}

async function readAt(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await fh.read(buf, filled, length - filled, offset + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buf.subarray(0, filled);
}

/** u64 → number; offsets past 2^53 cannot be in a file we hold. */
function u64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

interface Directory { entries: number; cdOffset: number; cdSize: number; cdEnd: number }

/** The end record (exactly at the end of the file, after its comment) and its zip64 extension. */
async function directory(fh: FileHandle, fileSize: number): Promise<Directory> {
  const tailLen = Math.min(fileSize, EOCD_MIN + MAX_COMMENT);
  const tail = await readAt(fh, fileSize - tailLen, tailLen);
  let at = -1;
  for (let i = tail.length - EOCD_MIN; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG && i + EOCD_MIN + tail.readUInt16LE(i + 20) === tail.length) {
      at = i;
      break;
    }
  }
  if (at < 0) throw corrupt('no end-of-central-directory record at the end of the file');
  const eocdPos = fileSize - tailLen + at;
  const e = tail.subarray(at, at + EOCD_MIN);
  const disk = e.readUInt16LE(4);
  const cdDisk = e.readUInt16LE(6);
  let entriesHere = e.readUInt16LE(8);
  let entries = e.readUInt16LE(10);
  let cdSize = e.readUInt32LE(12);
  let cdOffset = e.readUInt32LE(16);
  let cdEnd = eocdPos;
  const saturated = entries === 0xffff || entriesHere === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff;
  // Info-ZIP writing to a pipe (`zip - -`) adds the zip64 records even when nothing is saturated:
  // a locator right before the end record is read whenever it is there.
  const loc = eocdPos >= 20 ? await readAt(fh, eocdPos - 20, 20) : Buffer.alloc(0);
  const hasLocator = loc.length === 20 && loc.readUInt32LE(0) === ZIP64_LOCATOR_SIG;
  if (saturated || hasLocator) {
    if (!hasLocator) throw corrupt('the zip64 end-of-central-directory locator is missing');
    if (loc.readUInt32LE(4) !== 0 || loc.readUInt32LE(16) !== 1) throw unsupported('spans several volumes (multi-disk zip)');
    const recPos = u64(loc, 8);
    const rec = await readAt(fh, recPos, 56);
    if (rec.length < 56 || rec.readUInt32LE(0) !== ZIP64_EOCD_SIG) throw corrupt('the zip64 end-of-central-directory record is missing');
    // The record (with its extensible data) must end where the locator starts: nothing hides between.
    if (recPos + 12 + u64(rec, 4) !== eocdPos - 20) throw corrupt('the zip64 end-of-central-directory record does not end at its locator');
    if (rec.readUInt32LE(16) !== 0 || rec.readUInt32LE(20) !== 0) throw unsupported('spans several volumes (multi-disk zip)');
    // A 32-bit field that is not saturated must say what the zip64 record says: readers that
    // ignore the zip64 records would otherwise see another archive.
    const agree = (v32: number, max: number, v64: number): boolean => v32 === max || v32 === v64;
    if (!agree(entriesHere, 0xffff, u64(rec, 24)) || !agree(entries, 0xffff, u64(rec, 32))
      || !agree(cdSize, 0xffffffff, u64(rec, 40)) || !agree(cdOffset, 0xffffffff, u64(rec, 48))) {
      throw corrupt('the end record and the zip64 end record disagree');
    }
    if (!saturated && (disk !== 0 || cdDisk !== 0)) throw unsupported('spans several volumes (multi-disk zip)');
    entriesHere = u64(rec, 24);
    entries = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
    cdEnd = recPos;
  } else if (disk !== 0 || cdDisk !== 0) {
    throw unsupported('spans several volumes (multi-disk zip)');
  }
  if (entries !== entriesHere) throw unsupported('spans several volumes (multi-disk zip)');
  if (entries === 0) throw unsupported('is empty (it holds no file)');
  if (entries !== 1) throw unsupported(`holds ${entries} files`);
  if (cdOffset + cdSize !== cdEnd) throw corrupt('the central directory does not end where the end record starts');
  return { entries, cdOffset, cdSize, cdEnd };
}

/** Zip64 extended information (extra field 0x0001): the 64-bit values of the fields saturated at 0xffffffff. */
function zip64Extra(extra: Buffer, want: { size: boolean; compressed: boolean; offset: boolean }): { size?: number; compressed?: number; offset?: number } {
  for (let p = 0; p + 4 <= extra.length;) {
    const id = extra.readUInt16LE(p);
    const len = extra.readUInt16LE(p + 2);
    if (p + 4 + len > extra.length) throw corrupt('an extra field runs past its header');
    if (id === 0x0001) {
      const out: { size?: number; compressed?: number; offset?: number } = {};
      let q = p + 4;
      const take = (): number => {
        if (q + 8 > p + 4 + len) throw corrupt('the zip64 extra field is too short');
        const v = u64(extra, q);
        q += 8;
        return v;
      };
      if (want.size) out.size = take();
      if (want.compressed) out.compressed = take();
      if (want.offset) out.offset = take();
      return out;
    }
    p += 4 + len;
  }
  if (want.size || want.compressed || want.offset) throw corrupt('a size is marked as zip64 but there is no zip64 extra field');
  return {};
}

/** Finds and checks the single member of the zip at `path` (`fileSize` bytes). */
export async function readZipMember(path: string, fileSize: number): Promise<ZipMember> {
  const fh = await open(path, 'r');
  try {
    const dir = await directory(fh, fileSize);
    const c = await readAt(fh, dir.cdOffset, dir.cdSize);
    if (c.length < CENTRAL_MIN || c.readUInt32LE(0) !== CENTRAL_SIG) throw corrupt('no central directory entry where the end record points');
    const flags = c.readUInt16LE(8);
    const method = c.readUInt16LE(10);
    const crc32 = c.readUInt32LE(16);
    let compressedSize = c.readUInt32LE(20);
    let size = c.readUInt32LE(24);
    const nameLen = c.readUInt16LE(28);
    const extraLen = c.readUInt16LE(30);
    const commentLen = c.readUInt16LE(32);
    const diskStart = c.readUInt16LE(34);
    let localOffset = c.readUInt32LE(42);
    if (CENTRAL_MIN + nameLen + extraLen + commentLen !== dir.cdSize) throw corrupt('the central directory holds more than its one entry');
    const nameBytes = c.subarray(CENTRAL_MIN, CENTRAL_MIN + nameLen);
    const name = sanitizeForMessage(nameBytes.toString('utf8'), 120);
    const x = zip64Extra(c.subarray(CENTRAL_MIN + nameLen, CENTRAL_MIN + nameLen + extraLen), {
      size: size === 0xffffffff, compressed: compressedSize === 0xffffffff, offset: localOffset === 0xffffffff,
    });
    size = x.size ?? size;
    compressedSize = x.compressed ?? compressedSize;
    localOffset = x.offset ?? localOffset;

    if ((flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_MASKED_HEADERS)) !== 0 || method === METHOD_AES) {
      throw unsupported(`holds "${name}" encrypted (password-protected)`);
    }
    if (method !== METHOD_STORED && method !== METHOD_DEFLATE) throw unsupported(`compresses "${name}" with method ${method}`);
    if (nameBytes.at(-1) === 0x2f) throw unsupported(`holds only the directory "${name}"`);
    if (diskStart !== 0 && diskStart !== 0xffff) throw unsupported('spans several volumes (multi-disk zip)');
    // Data in front of the member is either another format (a polyglot) or a hidden entry.
    if (localOffset !== 0) throw corrupt(`the member starts at offset ${localOffset}, not at the start of the file`);
    if (method === METHOD_STORED && compressedSize !== size) throw corrupt(`stored member "${name}" has different compressed and uncompressed sizes`);

    const l = await readAt(fh, 0, LOCAL_MIN);
    if (l.length < LOCAL_MIN || l.readUInt32LE(0) !== LOCAL_SIG) throw corrupt('no local file header at the start of the file');
    const lNameLen = l.readUInt16LE(26);
    const lExtraLen = l.readUInt16LE(28);
    const lName = await readAt(fh, LOCAL_MIN, lNameLen);
    if (l.readUInt16LE(6) !== flags || l.readUInt16LE(8) !== method || !lName.equals(nameBytes)) {
      throw corrupt('the local file header disagrees with the central directory');
    }
    const dataOffset = LOCAL_MIN + lNameLen + lExtraLen;
    // After the data: nothing, or the data descriptor (optional signature; 32- or 64-bit sizes).
    const gap = dir.cdOffset - (dataOffset + compressedSize);
    const allowed = (flags & FLAG_DESCRIPTOR) !== 0 ? [12, 16, 20, 24] : [0];
    if (!allowed.includes(gap)) {
      throw corrupt(gap < 0 ? `member "${name}" runs past the central directory` : `${gap} unexplained bytes lie between member "${name}" and the central directory`);
    }
    if (gap > 0) {
      const d = await readAt(fh, dataOffset + compressedSize, gap);
      const body = d.readUInt32LE(0) === DESCRIPTOR_SIG ? d.subarray(4) : d;
      const wide = body.length === 20;
      if (body.length !== 12 && !wide) throw corrupt(`the data descriptor of "${name}" is malformed`);
      const dCrc = body.readUInt32LE(0);
      const dComp = wide ? u64(body, 4) : body.readUInt32LE(4);
      const dSize = wide ? u64(body, 12) : body.readUInt32LE(8);
      if (dCrc !== crc32 || dComp !== compressedSize || dSize !== size) throw corrupt(`the data descriptor of "${name}" disagrees with the central directory`);
    }
    return { name, method, dataOffset, compressedSize, size, crc32 };
  } finally {
    await fh.close();
  }
}

/** Checks size and CRC-32 of the decoded member as it passes. */
async function* verified(data: AsyncIterable<Uint8Array>, m: ZipMember): AsyncGenerator<Uint8Array, void, undefined> {
  let crc = 0;
  let size = 0;
  for await (const chunk of data) {
    size += chunk.length;
    if (size > m.size) throw corrupt(`member "${m.name}" decodes to more than its recorded ${m.size} bytes`);
    crc = zlib.crc32(chunk, crc);
    yield chunk;
  }
  if (size !== m.size) throw corrupt(`member "${m.name}" decodes to ${size} bytes, not its recorded ${m.size}`);
  if (crc >>> 0 !== m.crc32) throw corrupt(`member "${m.name}" fails its CRC-32 check`);
}

/**
 * The decoded bytes of `member`, read from `path`. `counted` receives the file stream so the
 * caller can count uploaded bytes; limits as in decompress().
 */
export function unzipMember(path: string, member: ZipMember, opts: DecompressOptions & { signal?: AbortSignal }): { file: CountingSource; stream: AsyncGenerator<Uint8Array, void, undefined> } {
  const range = member.compressedSize === 0
    ? (async function* (): AsyncGenerator<Uint8Array> {})()
    : createReadStream(path, { start: member.dataOffset, end: member.dataOffset + member.compressedSize - 1, highWaterMark: 256 * 1024, ...(opts.signal ? { signal: opts.signal } : {}) });
  if ('on' in range) range.on('error', () => {}); // iteration still sees it; see unpack.ts
  const file = new CountingSource(range);
  const decoded = member.method === METHOD_DEFLATE ? inflateRaw(file, opts) : limitOutput(file, opts, opts.inputBytes ?? (() => file.bytes));
  return { file, stream: verified(decoded, member) };
}
