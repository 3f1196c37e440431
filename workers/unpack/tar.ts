/**
 * A strict streaming tar reader for hostile archives (OVA packages).
 *
 * Accepts: POSIX ustar ("ustar\0" "00") and GNU ("ustar  \0") headers; GNU long names ('L');
 * pax extended headers ('x', for `path` and `size`) and pax global headers ('g', validated and
 * ignored); regular files ('0', '\0', '7'); directories ('5'). Sizes in octal or GNU base-256.
 *
 * Refuses (UnpackRefusedError): symlinks and hard links ('2', '1', 'K'), character/block devices
 * and FIFOs ('3', '4', '6'), GNU sparse/volume/multi-volume/dump-dir and unknown types, v7
 * headers without a ustar magic, bad header checksums, absolute paths, `..` components,
 * backslashes, NUL/control characters or invalid UTF-8 in names, duplicate names, members whose
 * size exceeds the remaining input (when the total is known), and truncated archives.
 *
 * Member names are only ever compared, never used as file-system paths.
 */
import { ByteReader, TruncatedInputError } from './byte-reader.js';
import { formatBytes, sanitizeForMessage, UnpackRefusedError } from './errors.js';

const BLOCK = 512;
const MAX_NAME_BYTES = 4096;
const MAX_PAX_BYTES = 1024 * 1024;
const MAX_LONGNAME_BYTES = 64 * 1024;

export interface TarEntry {
  /** Normalized name: no leading "./", no empty or "." components, no trailing "/". "" for the root directory. */
  name: string;
  type: 'file' | 'directory';
  size: number;
  /** Offset of the entry's first header block in the tar stream. */
  offset: number;
}

export interface TarReaderOptions {
  /** Total byte length of the tar stream, when known (an uncompressed file): enables the early size check. */
  totalSize?: number;
  /** Most headers (members, pax and long-name records) accepted; bounds memory for the duplicate check. Default 10,000. */
  maxHeaders?: number;
}

export const DEFAULT_MAX_TAR_HEADERS = 10_000;

function unsafe(message: string): UnpackRefusedError {
  return new UnpackRefusedError('unsafe_archive', `${message} The archive was refused without extracting anything; rebuild it with plain relative file names and regular files only.`);
}

function corruptTar(message: string): UnpackRefusedError {
  return new UnpackRefusedError('corrupt_archive', `The tar archive is corrupt: ${message}. Rebuild the archive (e.g. \`tar -cf image.ova descriptor.ovf disk.vmdk\`) and upload it again.`);
}

function unsupportedTar(message: string): UnpackRefusedError {
  return new UnpackRefusedError('unsupported_archive', `${message} Rebuild the archive as a plain POSIX (ustar/pax) or GNU tar of regular files and upload it again.`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeName(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw unsafe(`A tar member ${what} is not valid UTF-8.`);
  }
}

/** Bytes of a NUL-terminated fixed-width field. */
function cString(field: Uint8Array): Uint8Array {
  const end = field.indexOf(0);
  return end === -1 ? field : field.subarray(0, end);
}

/** Parse an octal or GNU base-256 numeric field; null when it is malformed. */
export function parseNumeric(field: Uint8Array): number | null {
  if (field.length === 0) return null;
  const first = field[0]!;
  if (first & 0x80) {
    if (first !== 0x80) return null; // 0xff = negative; other high-bit patterns are not base-256 we accept
    let value = 0n;
    for (let i = 1; i < field.length; i++) value = (value << 8n) | BigInt(field[i]!);
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null;
  }
  let i = 0;
  while (i < field.length && field[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < field.length; i++) {
    const c = field[i]!;
    if (c >= 0x30 && c <= 0x37) {
      value = value * 8 + (c - 0x30);
      digits++;
      if (value > Number.MAX_SAFE_INTEGER) return null;
    } else if (c === 0 || c === 0x20) {
      break;
    } else {
      return null;
    }
  }
  for (; i < field.length; i++) if (field[i] !== 0 && field[i] !== 0x20) return null;
  return digits === 0 ? 0 : value;
}

function headerChecksumOk(block: Uint8Array): boolean {
  const stored = parseNumeric(block.subarray(148, 156));
  if (stored === null) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b >= 0x80 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * Validate and normalize a member name. Refuses absolute paths, `..`, backslashes, drive letters,
 * NUL and control characters. Returns "" for the archive root ("." or "./").
 */
export function normalizeMemberName(raw: string): string {
  const shown = JSON.stringify(sanitizeForMessage(raw, 200));
  if (raw.length === 0) throw unsafe('A tar member has an empty name.');
  if (Buffer.byteLength(raw) > MAX_NAME_BYTES) throw unsafe(`A tar member name is longer than ${MAX_NAME_BYTES} bytes.`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(raw)) throw unsafe(`The tar member ${shown} has NUL or control characters in its name.`);
  if (raw.includes('\\')) throw unsafe(`The tar member ${shown} has a backslash in its name.`);
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) throw unsafe(`The tar member ${shown} has an absolute path.`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw unsafe(`The tar member ${shown} has a ".." path component (path traversal).`);
  return parts.join('/');
}

interface PaxRecords {
  path?: string;
  size?: number;
}

function parsePax(data: Uint8Array, global: boolean): PaxRecords {
  const out: PaxRecords = {};
  let pos = 0;
  while (pos < data.length) {
    // Trailing NUL padding after the last record is tolerated.
    if (data[pos] === 0) {
      for (let i = pos; i < data.length; i++) if (data[i] !== 0) throw corruptTar('malformed pax extended header');
      break;
    }
    let sp = pos;
    let len = 0;
    while (sp < data.length && data[sp]! >= 0x30 && data[sp]! <= 0x39 && sp - pos < 8) len = len * 10 + (data[sp++]! - 0x30);
    if (sp === pos || data[sp] !== 0x20 || len <= sp - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw corruptTar('malformed pax extended header record');
    }
    const record = data.subarray(sp + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw corruptTar('malformed pax extended header record');
    const key = decodeName(record.subarray(0, eq), 'pax header key');
    const valueBytes = record.subarray(eq + 1);
    pos += len;
    if (key.startsWith('GNU.sparse.')) throw unsupportedTar('The tar archive contains a GNU sparse file, which is not accepted.');
    if (global) continue;
    if (key === 'path') {
      if (valueBytes.includes(0)) throw unsafe('A tar member has a NUL character in its name.');
      out.path = decodeName(valueBytes, 'name (pax path)');
    } else if (key === 'size') {
      const text = decodeName(valueBytes, 'pax size');
      if (!/^\d{1,16}$/.test(text) || Number(text) > Number.MAX_SAFE_INTEGER) throw corruptTar('invalid pax size record');
      out.size = Number(text);
    }
    // Other keys (mtime, uid, uname, linkpath, SCHILY.*, LIBARCHIVE.*…) do not affect what we read.
  }
  return out;
}

const TYPE_NAMES: Record<string, string> = {
  '1': 'a hard link',
  '2': 'a symbolic link',
  K: 'a (GNU long) link target',
  '3': 'a character device',
  '4': 'a block device',
  '6': 'a FIFO',
};

export class TarReader {
  private readonly reader: ByteReader;
  private readonly totalSize: number | undefined;
  private readonly maxHeaders: number;
  private headers = 0;
  private readonly seen = new Set<string>();
  /** End offset (data + padding) of the current entry's body; where the next header starts. */
  private nextHeaderAt = 0;
  private bodyStart = 0;
  private bodySize = 0;
  private bodyTaken = false;
  private done = false;
  /** Set when the archive ended without the two zero blocks (tolerated, reported as info). */
  missingEndMarker = false;
  /** Non-zero bytes found after the end-of-archive marker. */
  trailingBytes = 0;

  constructor(source: AsyncIterable<Uint8Array>, opts: TarReaderOptions = {}) {
    this.reader = new ByteReader(source);
    this.totalSize = opts.totalSize;
    this.maxHeaders = opts.maxHeaders ?? DEFAULT_MAX_TAR_HEADERS;
  }

  /** Bytes of the tar stream consumed so far. */
  get position(): number {
    return this.reader.position;
  }

  private async block(): Promise<Uint8Array | null> {
    try {
      return await this.reader.readExact(BLOCK);
    } catch (error) {
      if (error instanceof TruncatedInputError) throw corruptTar('it ends in the middle of a header block (truncated upload?)');
      throw error;
    }
  }

  private async skipTo(offset: number): Promise<void> {
    const n = offset - this.reader.position;
    if (n <= 0) return;
    try {
      await this.reader.skip(n);
    } catch (error) {
      if (error instanceof TruncatedInputError) throw corruptTar('it ends in the middle of a member (truncated upload?)');
      throw error;
    }
  }

  private async readData(size: number, max: number, what: string): Promise<Uint8Array> {
    if (size > max) throw unsupportedTar(`The tar archive has a ${what} of ${formatBytes(size)}, more than the ${formatBytes(max)} accepted.`);
    this.checkRemaining(size, what);
    let data: Uint8Array | null;
    try {
      data = await this.reader.readExact(size);
      await this.reader.skip(padding(size));
    } catch (error) {
      if (error instanceof TruncatedInputError) throw corruptTar(`it ends in the middle of a ${what} (truncated upload?)`);
      throw error;
    }
    if (data === null && size > 0) throw corruptTar(`it ends in the middle of a ${what} (truncated upload?)`);
    return data ?? new Uint8Array(0);
  }

  private checkRemaining(size: number, what: string): void {
    if (this.totalSize === undefined) return;
    const remaining = this.totalSize - this.reader.position;
    if (size > remaining) {
      throw corruptTar(`a ${what} declares ${formatBytes(size)} but only ${formatBytes(Math.max(0, remaining))} of the archive remain`);
    }
  }

  /** Advance to the next member (skipping what is left of the current one). Null at the end of the archive. */
  async next(): Promise<TarEntry | null> {
    if (this.done) return null;
    await this.skipTo(this.nextHeaderAt);
    let longName: string | undefined;
    let pax: PaxRecords | undefined;
    let entryOffset = this.reader.position;
    for (;;) {
      const block = await this.block();
      if (block === null) {
        if (longName !== undefined || pax !== undefined) throw corruptTar('it ends right after an extended header');
        this.missingEndMarker = true;
        return this.finish();
      }
      if (isZeroBlock(block)) {
        if (longName !== undefined || pax !== undefined) throw corruptTar('an extended header is followed by the end-of-archive marker');
        await this.drainAfterEnd();
        return this.finish();
      }
      if (!headerChecksumOk(block)) throw corruptTar(`bad header checksum at offset ${this.reader.position - BLOCK}`);
      if (++this.headers > this.maxHeaders) throw unsupportedTar(`The tar archive has more than ${this.maxHeaders} members; an OVA holds a handful.`);
      const magic = block.subarray(257, 265);
      const posix = magic[5] === 0 && magic[6] === 0x30 && magic[7] === 0x30 && isUstar(magic);
      const gnu = magic[5] === 0x20 && magic[6] === 0x20 && magic[7] === 0 && isUstar(magic);
      if (!posix && !gnu) throw unsupportedTar('The tar archive uses a pre-POSIX (v7) or unknown header format.');
      const type = String.fromCharCode(block[156]!);
      const headerSize = parseNumeric(block.subarray(124, 136));
      if (headerSize === null) throw corruptTar(`invalid size field at offset ${this.reader.position - BLOCK}`);

      if (type === 'x' || type === 'g') {
        if (pax !== undefined && type === 'x') throw corruptTar('two pax extended headers for one member');
        const records = parsePax(await this.readData(headerSize, MAX_PAX_BYTES, 'pax extended header'), type === 'g');
        if (type === 'x') pax = records;
        else entryOffset = this.reader.position;
        continue;
      }
      if (type === 'L') {
        if (longName !== undefined) throw corruptTar('two GNU long-name headers for one member');
        const data = await this.readData(headerSize, MAX_LONGNAME_BYTES, 'GNU long name');
        const name = cString(data);
        for (let i = name.length; i < data.length; i++) if (data[i] !== 0) throw unsafe('A tar member has a NUL character in its (GNU long) name.');
        longName = decodeName(name, 'name (GNU long name)');
        continue;
      }
      const linkish = TYPE_NAMES[type];
      const rawName = pax?.path ?? longName ?? headerName(block, posix);
      const shown = JSON.stringify(sanitizeForMessage(rawName, 200));
      if (linkish) throw unsafe(`The tar member ${shown} is ${linkish}; OVA packages may only contain regular files.`);
      let kind: 'file' | 'directory';
      if (type === '0' || type === '\0' || type === '7') kind = 'file';
      else if (type === '5') kind = 'directory';
      else throw unsupportedTar(`The tar member ${shown} has type ${JSON.stringify(type)}, which is not accepted (only regular files and directories are).`);

      const name = normalizeMemberName(rawName);
      if (kind === 'file' && (name === '' || rawName.endsWith('/'))) throw unsafe(`The tar member ${shown} is a file with a directory-like name.`);
      if (name !== '' || kind === 'file') {
        if (this.seen.has(name)) throw unsafe(`The tar archive has two members named ${JSON.stringify(sanitizeForMessage(name, 200))}.`);
        this.seen.add(name);
      }
      const size = pax?.size ?? headerSize;
      if (kind === 'directory' && size !== 0) throw corruptTar(`the directory ${shown} has a non-zero size`);
      this.checkRemaining(size, `member ${shown}`);
      this.bodyStart = this.reader.position;
      this.bodySize = size;
      this.bodyTaken = false;
      this.nextHeaderAt = this.bodyStart + size + padding(size);
      return { name, type: kind, size, offset: entryOffset };
    }
  }

  /** Stream the current member's bytes. Can be called once per member; what is not read is skipped by `next()`. */
  async *body(): AsyncGenerator<Uint8Array, void, undefined> {
    if (this.bodyTaken) throw new Error('tar member body already consumed');
    if (this.reader.position !== this.bodyStart) throw new Error('tar reader is not at the member body');
    this.bodyTaken = true;
    try {
      yield* this.reader.take(this.bodySize);
    } catch (error) {
      if (error instanceof TruncatedInputError) throw corruptTar('it ends in the middle of a member (truncated upload?)');
      throw error;
    }
  }

  /** Read the current member whole (for small members: descriptor, manifest). */
  async readBody(max: number, what: string): Promise<Uint8Array> {
    if (this.bodySize > max) throw new RangeError(`${what} is ${this.bodySize} bytes, more than ${max}`);
    const parts: Uint8Array[] = [];
    for await (const chunk of this.body()) parts.push(chunk);
    return Buffer.concat(parts);
  }

  private async drainAfterEnd(): Promise<void> {
    // After the first zero block: more zero blocks (record padding) are normal; anything else is
    // ignored like GNU tar does, but counted so the caller can report it.
    for (;;) {
      let chunk: Uint8Array | null;
      try {
        chunk = await this.reader.readExact(BLOCK);
      } catch (error) {
        if (error instanceof TruncatedInputError) {
          this.trailingBytes += error.got;
          return;
        }
        throw error;
      }
      if (chunk === null) return;
      if (!isZeroBlock(chunk)) this.trailingBytes += BLOCK;
    }
  }

  private finish(): null {
    this.done = true;
    return null;
  }

  async close(): Promise<void> {
    this.done = true;
    await this.reader.close();
  }
}

function isUstar(magic: Uint8Array): boolean {
  return magic[0] === 0x75 && magic[1] === 0x73 && magic[2] === 0x74 && magic[3] === 0x61 && magic[4] === 0x72;
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function headerName(block: Uint8Array, posix: boolean): string {
  const name = cString(block.subarray(0, 100));
  // In GNU-format headers the prefix area holds other fields (atime, ctime…): only POSIX uses it for names.
  const prefix = posix ? cString(block.subarray(345, 500)) : new Uint8Array(0);
  const full = prefix.length > 0 ? Buffer.concat([prefix, Buffer.from('/'), name]) : name;
  return decodeName(full, 'name');
}
