import type { ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { refuse } from './util.js';

const CLOOP_MAGIC = Buffer.from('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n', 'latin1');

/**
 * Formats qemu recognises by their content but PIR does not store (read-only in qemu too), with
 * qemu's own probe conditions (block/bochs.c, block/cloop.c). A file that matches one is not a
 * raw disk to anyone who runs qemu-img on it without `-f raw`: the disk it shows is another one.
 */
const QEMU_ONLY: ReadonlyArray<{ name: string; qemuFormat: string; matches: (head: Buffer) => boolean }> = [
  {
    name: 'Bochs growing disk',
    qemuFormat: 'bochs',
    matches: (h) => h.length >= 512 && cField(h, 0, 32) === 'Bochs Virtual HD Image' && cField(h, 32, 16) === 'Redolog'
      && cField(h, 48, 16) === 'Growing' && [0x00010000, 0x00020000].includes(h.readUInt32LE(64)),
  },
  {
    name: 'cloop compressed loop image',
    qemuFormat: 'cloop',
    // qemu compares as many of the magic's bytes as the file has.
    matches: (h) => {
      const n = Math.min(h.length, CLOOP_MAGIC.length);
      return n > 0 && h.subarray(0, n).equals(CLOOP_MAGIC.subarray(0, n));
    },
  },
];

/** A NUL-terminated string field, compared as qemu's strcmp does. */
function cField(buf: Buffer, offset: number, length: number): string {
  const field = buf.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString('latin1');
}

/**
 * Raw is the fallback when no signature of a format PIR stores matches: the image is its own
 * disk, so the virtual size is simply the file size. Only the first sector is looked at (already
 * read by detection), for the formats above.
 */
export async function inspectRaw(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const head = await ctx.read(0, 512);
  const foreign = QEMU_ONLY.find((f) => f.matches(head));
  if (foreign) {
    findings.push(refuse('qemu_only_format',
      `The file is a ${foreign.name} (qemu reads it as format '${foreign.qemuFormat}'), not a raw disk, and PIR does not store ${foreign.qemuFormat} images. Convert it (\`qemu-img convert -f ${foreign.qemuFormat} -O qcow2 in.img out.qcow2\`) and upload the result.`));
  }
  return { virtualSize: ctx.size, findings, details: { fileSize: ctx.size } };
}
