import type { ProbeResult } from './inspector.js';
import type { ReadContext } from './read-context.js';

/**
 * Raw is the fallback when no signature matches: the image is its own disk, so
 * the virtual size is simply the file size. Nothing is read.
 */
export function inspectRaw(ctx: ReadContext): ProbeResult {
  return { virtualSize: ctx.size, findings: [], details: { fileSize: ctx.size } };
}
