// Table-driven CRCs: CRC-32 (IEEE, used by GPT) and CRC-32C (Castagnoli, used by VHDX).
function table(poly: number): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

const IEEE = table(0xedb88320);
const CASTAGNOLI = table(0x82f63b78);

function run(t: Uint32Array, buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = t[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function crc32(buf: Uint8Array): number {
  return run(IEEE, buf);
}

export function crc32c(buf: Uint8Array): number {
  return run(CASTAGNOLI, buf);
}

/** CRC of `buf` with the 4-byte checksum field at `at` treated as zero (how GPT and VHDX define it). */
export function crcWithZeroedField(fn: (b: Uint8Array) => number, buf: Buffer, at: number): number {
  const copy = Buffer.from(buf);
  copy.fill(0, at, at + 4);
  return fn(copy);
}
