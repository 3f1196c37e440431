// LUKS: an encrypted container. We identify it and its payload offset (v1) so
// the virtual size is right, but it is refused as encrypted unless policy allows.
import type { Inspector, ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';
import type { Finding } from './types.js';
import { cString, corrupt, refuse, truncated } from './util.js';

const MAGIC = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]); // "LUKS\xba\xbe"
const V1_HEADER = 592;

async function inspect(ctx: ReadContext): Promise<ProbeResult> {
  const findings: Finding[] = [];
  const details: Record<string, unknown> = {};
  const h = await ctx.read(0, V1_HEADER);
  if (h.length < 8) {
    findings.push(truncated('LUKS', 'header', V1_HEADER, h.length));
    return { virtualSize: null, findings, details };
  }
  const version = h.readUInt16BE(6);
  details.version = version;
  findings.push(refuse('encrypted',
    'The image is a LUKS encrypted volume; PIR cannot inspect or boot encrypted images unless encrypted uploads are enabled. Decrypt it (e.g. `qemu-img convert --object secret,... -O raw`) and upload it to a new image.'));
  if (version !== 1) {
    findings.push(refuse('luks_unsupported_version',
      `LUKS header field 'version' is ${version}; PIR (like qemu) handles LUKS version 1 only. Re-create the volume as LUKS1 or decrypt it, and upload it to a new image.`));
    return { virtualSize: null, findings, details };
  }
  if (h.length < V1_HEADER) {
    findings.unshift(truncated('LUKS', 'version 1 header', V1_HEADER, h.length));
    return { virtualSize: null, findings, details };
  }
  details.cipher = `${cString(h.subarray(8, 40))}-${cString(h.subarray(40, 72))}`;
  details.hash = cString(h.subarray(72, 104));
  const payload = h.readUInt32BE(104) * 512;
  details.payloadOffset = payload;
  if (payload < V1_HEADER || payload > ctx.size) {
    findings.unshift(corrupt('LUKS', `field 'payload offset' (${payload} bytes) lies outside the file`));
    return { virtualSize: null, findings, details };
  }
  return { virtualSize: ctx.size - payload, findings, details };
}

export const luksInspector: Inspector = {
  format: 'luks',
  async matches(ctx) {
    const h = await ctx.read(0, 6);
    return h.length === 6 && h.equals(MAGIC);
  },
  inspect,
};
