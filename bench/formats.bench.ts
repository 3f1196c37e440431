/**
 * Format inspection: time and bytes read by detectFormat for each format, on a 16 MiB and an
 * 8 GiB (sparse) image made with qemu-img (ISO hand-built). Inspection must read only the
 * headers a format needs, so bytes read should not grow with the image, and never exceed the
 * read budget (formats/README.md: READ_BUDGET, 4 MiB).
 *
 * Beside each time, its limit: the same reads (same offsets and lengths, recorded during the
 * inspection) replayed on the same file without parsing — what the I/O alone costs. Times are
 * medians over warm runs (page cache hot), each with a fresh file handle, as the inspect stage does.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CountingReader, detectFormat, READ_BUDGET, type RandomAccessReader } from '../formats/index.js';
import { FileReader } from '../infra/storage/file-reader.js';
import { ensureQemuImg, makeImage, makeLuksImage } from '../test/support/images.js';
import { isoImage } from '../test/unit/formats/craft.js';
import { GiB, MiB } from './limits.js';
import { median, spread, type Bench, type Figure } from './report.js';

const RUNS = 21;
const SIZES: Array<[string, number]> = [['16 MiB', 16 * MiB], ['8 GiB', 8 * GiB]];

interface Case {
  label: string;
  /** The format detectFormat must report (the bench fails loudly if it does not). */
  expect: string;
  make(dir: string, name: string, size: number): Promise<string>;
}

const qemu = (format: string, options: Record<string, string> = {}) => (dir: string, name: string, size: number) => makeImage(dir, format, { name, size, options });

const CASES: Case[] = [
  { label: 'raw', expect: 'raw', make: qemu('raw') },
  { label: 'qcow2', expect: 'qcow2', make: qemu('qcow2') },
  { label: 'qed', expect: 'qed', make: qemu('qed') },
  { label: 'vmdk monolithicSparse', expect: 'vmdk', make: qemu('vmdk') },
  { label: 'vmdk streamOptimized', expect: 'vmdk', make: qemu('vmdk', { subformat: 'streamOptimized' }) },
  { label: 'vhd dynamic', expect: 'vhd', make: qemu('vpc') },
  { label: 'vhd fixed', expect: 'vhd', make: qemu('vpc', { subformat: 'fixed' }) },
  { label: 'vhdx', expect: 'vhdx', make: qemu('vhdx') },
  { label: 'vdi', expect: 'vdi', make: qemu('vdi') },
  { label: 'ploop', expect: 'ploop', make: qemu('parallels') },
  { label: 'luks', expect: 'luks', make: (dir, name, size) => makeLuksImage(dir, size, name) },
  {
    label: 'iso',
    expect: 'iso',
    async make(dir, name, size) {
      const path = join(dir, name);
      await writeFile(path, isoImage({ blocks: size / 2048 })); // volume descriptors; the rest is a hole
      await truncate(path, size);
      return path;
    },
  },
];

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Records every read (offset, length) that goes through it. */
class RecordingReader implements RandomAccessReader {
  readonly reads: Array<[number, number]> = [];
  constructor(private readonly inner: RandomAccessReader) {}
  get size(): number {
    return this.inner.size;
  }
  read(offset: number, length: number): Promise<Buffer> {
    this.reads.push([offset, length]);
    return this.inner.read(offset, length);
  }
}

/** One inspection as the inspect stage does it: open, detect through a counting reader, close. */
async function inspectOnce(path: string): Promise<{ ms: number; bytesRead: number; reads: Array<[number, number]>; format: string }> {
  const t0 = performance.now();
  const file = await FileReader.open(path);
  try {
    const recording = new RecordingReader(file);
    const counting = new CountingReader(recording);
    const report = await detectFormat(counting);
    const ms = performance.now() - t0;
    return { ms, bytesRead: counting.bytesRead, reads: recording.reads, format: report.format };
  } finally {
    await file.close();
  }
}

/** The same reads without parsing: open, pread each range, close. */
async function replayOnce(path: string, reads: Array<[number, number]>): Promise<number> {
  const t0 = performance.now();
  const file = await FileReader.open(path);
  try {
    for (const [offset, length] of reads) await file.read(offset, length);
    return performance.now() - t0;
  } finally {
    await file.close();
  }
}

const bench: Bench = {
  name: 'formats: detectFormat time and bytes read',
  async run(ctx) {
    ensureQemuImg();
    const dir = join(ctx.dir, 'formats');
    mkdirSync(dir, { recursive: true });
    const figures: Figure[] = [];
    try {
      for (const c of CASES) {
        for (const [sizeLabel, size] of SIZES) {
          const name = `${c.label.replace(/\W+/g, '-')}-${sizeLabel.replace(' ', '')}.img`;
          const path = await c.make(dir, name, size);
          const fileSize = (await stat(path)).size;
          ctx.log(`${c.label} ${sizeLabel}: ${RUNS} inspections`);
          await inspectOnce(path); // warm the page cache and the code paths
          const times: number[] = [];
          const replays: number[] = [];
          let last = await inspectOnce(path);
          for (let r = 0; r < RUNS; r++) {
            last = await inspectOnce(path);
            times.push(last.ms);
            replays.push(await replayOnce(path, last.reads));
          }
          if (last.format !== c.expect) throw new Error(`${c.label} ${sizeLabel}: detected as ${last.format}, expected ${c.expect}`);
          figures.push(
            {
              name: `${c.label}, ${sizeLabel}: inspection time`,
              value: median(times),
              unit: 'ms',
              limit: median(replays),
              note: `median of ${RUNS}, ${spread(times)} ms; limit = the same ${plural(last.reads.length, 'read')} without parsing`,
            },
            {
              name: `${c.label}, ${sizeLabel}: bytes read`,
              value: last.bytesRead / 1024,
              unit: 'KiB',
              atMost: READ_BUDGET / 1024,
              note: `${plural(last.reads.length, 'read')}; file ${fileSize >= MiB ? `${(fileSize / MiB).toFixed(0)} MiB` : `${(fileSize / 1024).toFixed(1)} KiB`}, virtual ${sizeLabel}`,
            },
          );
          rmSync(path, { force: true });
        }
      }
      return figures;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
export default bench;
