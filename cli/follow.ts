/**
 * Following an image through the pipeline: `unpack ✓ 12 ms · inspect ✓ 3 ms · …` on stderr,
 * rewritten in place on a terminal, one line per finished stage otherwise.
 */
import type { Image, PirClient } from '../client/index.js';
import { STAGES } from '../schemas/image.js';
import { isTerminal } from './progress.js';

export function stageLine(image: Image, withRunning: boolean): string {
  const stages = image.pir_pipeline?.stages ?? {};
  const parts: string[] = [];
  for (const name of STAGES) {
    const s = stages[name];
    if (!s) continue;
    if (s.status === 'done') parts.push(`${name} \u2713 ${s.duration_ms ?? '?'} ms`);
    else if (s.status === 'failed') parts.push(`${name} \u2717`);
    else if (s.status === 'running' && withRunning) parts.push(`${name} \u2026`);
  }
  let line = parts.join(' \u00b7 ');
  if (image.status === 'active' || image.status === 'killed') line += `${line ? ' ' : ''}\u2192 ${image.status}`;
  return line;
}

export interface FollowOptions {
  timeoutMs?: number;
  stream?: NodeJS.WriteStream;
  /** Print the stage lines (default true). */
  show?: boolean;
}

/** Waits for active (resolves) or killed (throws ImageRefusedError), showing the stages. */
export async function followImage(client: PirClient, id: string, opts: FollowOptions = {}): Promise<Image> {
  const stream = opts.stream ?? process.stderr;
  const tty = isTerminal(stream);
  const show = opts.show ?? true;
  let printed = '';
  const print = (image: Image) => {
    if (!show) return;
    const line = stageLine(image, tty);
    if (!line || line === printed) return;
    printed = line;
    stream.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
  };
  try {
    return await client.waitForImage(id, { timeoutMs: opts.timeoutMs, onUpdate: print });
  } finally {
    if (tty && show && printed) stream.write('\n');
  }
}
