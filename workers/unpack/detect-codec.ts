/**
 * Magic-byte sniffing for the unpack stage. Only the first 512 bytes matter (`SNIFF_BYTES`).
 *
 * - gzip:  1f 8b
 * - xz:    fd 37 7a 58 5a 00
 * - zstd:  28 b5 2f fd, or a skippable frame (5X 2a 4d 18, X = 0..f) such as pzstd writes first,
 *          when the frame after it (if it starts within the sniffed bytes) is zstd or skippable
 * - bzip2: 'BZh' followed by the block-size digit '1'..'9'
 * - zip:   'PK\x03\x04' (a local file header) or 'PK\x05\x06' (the end record of an empty zip)
 * - tar:   'ustar' at offset 257 (POSIX "ustar\0" + "00", or GNU "ustar  \0")
 * - anything else: 'none' (a disk image, or something the later inspect stage will judge)
 */
import { open } from 'node:fs/promises';

export type SniffedCodec = 'none' | 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'zip' | 'tar';
/** Single-stream codecs: decompress() decodes these front to back. */
export type StreamCodec = 'gzip' | 'xz' | 'zstd' | 'bzip2';
/** Everything unpack undoes as one layer; a zip is read through its central directory (zip.ts). */
export type CompressionCodec = StreamCodec | 'zip';

/** How many leading bytes `detectCodec` needs to see (a full tar header). */
export const SNIFF_BYTES = 512;

const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const USTAR = [0x75, 0x73, 0x74, 0x61, 0x72]; // "ustar"
const ZIP_LOCAL = [0x50, 0x4b, 0x03, 0x04];
const ZIP_EMPTY = [0x50, 0x4b, 0x05, 0x06];

/**
 * A zstd stream may open with skippable frames (magic 0x184D2A50..0x184D2A5F little-endian, then a
 * u32 LE length): pzstd writes one before every frame. Walk those visible in `head`; the stream is
 * zstd when they lead to a zstd frame, or run past what was sniffed.
 */
function zstdAfterSkippable(head: Uint8Array): boolean {
  let at = 0;
  for (let frames = 0; frames < 64; frames++) {
    if (startsWith(head, ZSTD_MAGIC, at)) return frames > 0;
    if (!isSkippable(head, at)) return false;
    if (head.length < at + 8) return false;
    const length = (head[at + 4]! | (head[at + 5]! << 8) | (head[at + 6]! << 16) | (head[at + 7]! << 24)) >>> 0;
    at += 8 + length;
    if (at >= head.length) return true;
  }
  return false;
}

function isSkippable(head: Uint8Array, at: number): boolean {
  return head.length >= at + 4 && (head[at]! & 0xf0) === 0x50 && head[at + 1] === 0x2a && head[at + 2] === 0x4d && head[at + 3] === 0x18;
}

function startsWith(head: Uint8Array, magic: readonly number[], offset = 0): boolean {
  if (head.length < offset + magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (head[offset + i] !== magic[i]) return false;
  return true;
}

/** True when the 512-byte block at the start of `head` carries a ustar/GNU tar magic. */
export function looksLikeTar(head: Uint8Array): boolean {
  if (!startsWith(head, USTAR, 257)) return false;
  const a = head[262];
  const b = head[263];
  const c = head[264];
  // POSIX: "ustar\0" "00"; GNU: "ustar " " \0"
  return (a === 0 && b === 0x30 && c === 0x30) || (a === 0x20 && b === 0x20 && c === 0);
}

export function detectCodec(head: Uint8Array): SniffedCodec {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (startsWith(head, XZ_MAGIC)) return 'xz';
  if (startsWith(head, ZSTD_MAGIC) || zstdAfterSkippable(head)) return 'zstd';
  if (head.length >= 4 && head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68 && head[3]! >= 0x31 && head[3]! <= 0x39) {
    return 'bzip2';
  }
  if (startsWith(head, ZIP_LOCAL) || startsWith(head, ZIP_EMPTY)) return 'zip';
  if (looksLikeTar(head)) return 'tar';
  return 'none';
}

export function isCompression(codec: SniffedCodec): codec is CompressionCodec {
  return codec === 'gzip' || codec === 'xz' || codec === 'zstd' || codec === 'bzip2' || codec === 'zip';
}

/** Read up to `SNIFF_BYTES` from the start of a file. */
export async function readHead(path: string, bytes = SNIFF_BYTES): Promise<Uint8Array> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    let filled = 0;
    while (filled < bytes) {
      const { bytesRead } = await handle.read(buffer, filled, bytes - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

export async function detectFileCodec(path: string): Promise<SniffedCodec> {
  return detectCodec(await readHead(path));
}
