import type { ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { cString, refuse } from './util.js';

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
    // NUL-terminated fields, compared as qemu's strcmp does.
    matches: (h) => h.length >= 512 && cString(h.subarray(0, 32)) === 'Bochs Virtual HD Image' && cString(h.subarray(32, 48)) === 'Redolog'
      && cString(h.subarray(48, 64)) === 'Growing' && [0x00010000, 0x00020000].includes(h.readUInt32LE(64)),
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
  // A tar (an OVA uploaded as bare) is no disk anyone meant: said so when a refusal names the content.
  const tar = head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar';
  return { virtualSize: ctx.size, findings, details: { fileSize: ctx.size, ...(tar ? { archive: 'tar' } : {}) } };
}
