import type { Finding } from './types.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

export function refuse(code: string, message: string): Finding {
  return { code, severity: 'refuse', message };
}

export function info(code: string, message: string): Finding {
  return { code, severity: 'info', message };
}

/** Standard advice: re-create the image in a self-contained form. */
export function convertAdvice(fmt: string): string {
  return `Re-create or convert it with \`qemu-img convert -O ${fmt} in.img out.img\` and upload it to a new image.`;
}

/** A refusal for a header that is cut short or internally inconsistent. */
export function corrupt(formatLabel: string, what: string, advice?: string): Finding {
  return refuse(
    'corrupt_header',
    `${formatLabel} image header is damaged: ${what}. ${advice ?? 'Check that the upload was complete, or re-export the image, and upload it to a new image.'}`,
  );
}

/** A refusal for a header that the file is too short to contain. */
export function truncated(formatLabel: string, structure: string, need: number, have: number): Finding {
  return corrupt(formatLabel, `the ${structure} needs ${need} bytes but only ${have} are present (the file looks truncated)`);
}

/**
 * A refusal for a structure that a header points to and that lies (partly) past the end of the
 * file: the upload was cut short, or the header lies about where its data is.
 */
export function pastEnd(formatLabel: string, structure: string, offset: number | bigint, length: number | bigint, fileSize: number): Finding {
  return refuse('image_truncated',
    `${formatLabel} image is truncated: the ${structure} at offset ${offset} (${length} bytes) lies past the end of the file (${fileSize} bytes). ` +
    'Check that the upload was complete (compare its size and checksum with the original) and upload it to a new image.');
}

/** True when [offset, offset + length) lies inside a file of `fileSize` bytes. */
export function within(offset: number | bigint, length: number | bigint, fileSize: number): boolean {
  return BigInt(offset) >= 0n && BigInt(offset) + BigInt(length) <= BigInt(fileSize);
}

/**
 * How much of one pointer table (L1, BAT, grain directory, block map) an inspector reads to check
 * where its entries point, and how much of the second-level tables (L2, grain tables) it reads
 * to check data clusters. Both stay well inside READ_BUDGET; what is beyond them is not checked.
 */
export const TABLE_READ_LIMIT = 1 * MiB;
export const SECOND_LEVEL_READ_LIMIT = 1 * MiB;

/**
 * u64 → number for sizes. Values past 2^53 lose precision but stay huge, which is
 * all the size policy needs to refuse them.
 */
export function bigToNumber(v: bigint): number {
  return Number(v);
}

/** Make untrusted header text safe and short enough to quote in a message. */
export function quote(text: string, max = 200): string {
  // eslint-disable-next-line no-control-regex
  let s = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  if (s.length > max) s = `${s.slice(0, max)}…`;
  return `'${s}'`;
}

/** Decode a fixed-size, NUL-padded ASCII/UTF-8 field. */
export function cString(buf: Buffer): string {
  const nul = buf.indexOf(0);
  return buf.subarray(0, nul === -1 ? buf.length : nul).toString('utf8');
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

export function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}
