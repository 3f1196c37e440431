/**
 * Throughput of the unpack stage vs the plain command-line decoders, on the same data.
 *
 * For each codec (gzip, xz, zstd) the same ~256 MiB of compressible data is compressed once with
 * the CLI, then decoded three ways, output bytes per second measured on the decompressed size:
 * - `cli`:        `<tool> -dc < file > /dev/null` (the baseline);
 * - `decompress`: our decompress() streaming into a counter (decoder + Node stream overhead);
 * - `unpack`:     the full unpack(): decompress + md5 + sha512 + write + fdatasync of the output.
 *
 * Run directly: `node --import tsx workers/unpack/bench-unpack.ts [MiB]`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { decompress } from './decompress.js';
import { unpack } from './unpack.js';

export type BenchCodec = 'gzip' | 'xz' | 'zstd';

export interface BenchUnpackOptions {
  /** Uncompressed bytes. Default 256 MiB. */
  sizeBytes?: number;
  codecs?: BenchCodec[];
  /** Runs per measurement; the fastest is kept. Default 1. */
  repeats?: number;
  /** Scratch directory (default: a fresh one under the OS temp dir, removed afterwards). */
  workDir?: string;
  /** Compression level per codec. Defaults: gzip 6, xz 3 (with -T0 to build it faster), zstd 3. */
  levels?: Partial<Record<BenchCodec, number>>;
  log?: (line: string) => void;
}

export interface BenchRun {
  seconds: number;
  /** decompressed MiB per second */
  mibPerSecond: number;
}

export interface BenchFigure {
  codec: BenchCodec;
  inputBytes: number;
  compressedBytes: number;
  cli: BenchRun;
  decompress: BenchRun;
  unpack: BenchRun;
  /** decompress / cli and unpack / cli throughput */
  decompressVsCli: number;
  unpackVsCli: number;
}

export interface BenchUnpackResult {
  sizeBytes: number;
  figures: BenchFigure[];
}

const MiB = 1024 * 1024;

/** Disk-image-like compressible data: runs of zeros, low-entropy text, and repeated blocks. */
async function writeSample(path: string, size: number): Promise<void> {
  const out = createWriteStream(path);
  const block = 64 * 1024;
  let previous: Buffer = Buffer.alloc(block);
  for (let written = 0, n = 0; written < size; n++) {
    const len = Math.min(block, size - written);
    let buf: Buffer;
    const kind = n % 8;
    if (kind === 0 || kind === 5) buf = Buffer.alloc(len);
    else if (kind === 3) {
      buf = Buffer.from(previous.subarray(0, len));
      const noise = randomBytes(64);
      for (let i = 0; i < 64; i++) buf[(noise[i]! * 997) % len] = noise[i]!;
    } else {
      buf = randomBytes(len);
      for (let i = 0; i < len; i++) buf[i] = 0x61 + (buf[i]! % 20);
    }
    previous = buf.length === block ? buf : previous;
    if (!out.write(buf)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    written += len;
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function best(repeats: number, fn: () => Promise<void>): Promise<number> {
  let fastest = Infinity;
  for (let i = 0; i < repeats; i++) {
    const start = process.hrtime.bigint();
    await fn();
    fastest = Math.min(fastest, seconds(start));
  }
  return fastest;
}

function run(bytes: number, secs: number): BenchRun {
  return { seconds: Number(secs.toFixed(3)), mibPerSecond: Number((bytes / MiB / secs).toFixed(1)) };
}

function cliDecode(codec: BenchCodec, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `${codec} -dc < "$1" > /dev/null`, 'sh', path], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${codec} -dc exited with ${code}`))));
  });
}

export async function benchUnpack(opts: BenchUnpackOptions = {}): Promise<BenchUnpackResult> {
  const size = opts.sizeBytes ?? 256 * MiB;
  const codecs = opts.codecs ?? ['gzip', 'xz', 'zstd'];
  const repeats = Math.max(1, opts.repeats ?? 1);
  const levels: Record<BenchCodec, number> = { gzip: 6, xz: 3, zstd: 3, ...opts.levels };
  const log = opts.log ?? (() => {});
  const dir = opts.workDir ?? mkdtempSync(join(tmpdir(), 'pir-bench-unpack-'));
  const limits = { maxOutputBytes: size * 2 + MiB, maxRatio: 1e6 };
  const figures: BenchFigure[] = [];
  try {
    const raw = join(dir, 'sample.raw');
    log(`writing ${size / MiB} MiB of sample data`);
    await writeSample(raw, size);
    for (const codec of codecs) {
      const packed = join(dir, `sample.${codec}`);
      log(`compressing with ${codec} -${levels[codec]}`);
      const extra = codec === 'xz' ? ['-T0'] : codec === 'zstd' ? ['-q', '-T0'] : [];
      execFileSync('sh', ['-c', `${codec} -c -${levels[codec]} ${extra.join(' ')} < "$1" > "$2"`, 'sh', raw, packed]);
      const compressedBytes = statSync(packed).size;

      const cliSecs = await best(repeats, () => cliDecode(codec, packed));
      const decSecs = await best(repeats, async () => {
        let n = 0;
        for await (const chunk of decompress(createReadStream(packed, { highWaterMark: 256 * 1024 }), codec, limits)) n += chunk.length;
        if (n !== size) throw new Error(`decompressed ${n} bytes, expected ${size}`);
      });
      const out = join(dir, 'out.raw');
      const unpackSecs = await best(repeats, async () => {
        rmSync(out, { force: true });
        const r = await unpack(packed, out, { containerFormat: 'bare', limits });
        if (r.output?.size !== size) throw new Error('unpack produced the wrong size');
        rmSync(out, { force: true });
      });
      const figure: BenchFigure = {
        codec,
        inputBytes: size,
        compressedBytes,
        cli: run(size, cliSecs),
        decompress: run(size, decSecs),
        unpack: run(size, unpackSecs),
        decompressVsCli: Number((cliSecs / decSecs).toFixed(2)),
        unpackVsCli: Number((cliSecs / unpackSecs).toFixed(2)),
      };
      log(
        `${codec}: ${(compressedBytes / MiB).toFixed(1)} MiB compressed; cli ${figure.cli.mibPerSecond} MiB/s, ` +
          `decompress ${figure.decompress.mibPerSecond} MiB/s (${figure.decompressVsCli}×), unpack ${figure.unpack.mibPerSecond} MiB/s (${figure.unpackVsCli}×)`,
      );
      figures.push(figure);
      rmSync(packed, { force: true });
    }
  } finally {
    if (!opts.workDir) rmSync(dir, { recursive: true, force: true });
  }
  return { sizeBytes: size, figures };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const mib = Number(process.argv[2] ?? 256);
  benchUnpack({ sizeBytes: mib * MiB, log: (l) => console.log(l) }).then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
