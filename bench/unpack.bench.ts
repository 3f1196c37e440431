/**
 * Unpack throughput for gzip, xz and zstd beside the command-line decoders on the same data
 * (workers/unpack/bench-unpack.ts): `<tool> -dc > /dev/null` is the limit; `decompress` is our
 * streaming decoder alone (gzip in-process via node:zlib, xz/zstd through the CLI as a child
 * process); `unpack` is the whole stage: decompress + md5 + sha512 + write + fdatasync.
 * Beside them, this machine's sha512 and md5 rates on one core and sequential write + fdatasync:
 * the other limits the `unpack` figure is bounded by. Rates are decompressed MiB/s, best of ROUNDS.
 * Compression levels: gzip -6, xz -1, zstd -3 (bench-unpack.ts defaults, except xz).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { benchUnpack } from '../workers/unpack/bench-unpack.js';
import { MiB, md5OneCore, sequentialWriteWithFsync, sha512OneCore, waitForQuiet } from './limits.js';
import type { Bench, Figure } from './report.js';

const SIZE = 128 * MiB;
const ROUNDS = 3;

const bench: Bench = {
  name: 'unpack: gzip, xz, zstd vs the CLI decoders',
  async run(ctx) {
    const dir = join(ctx.dir, 'unpack');
    mkdirSync(dir, { recursive: true });
    try {
      ctx.log('limits: sha512 and md5 on one core, sequential write + fdatasync');
      await waitForQuiet();
      const sha512 = await sha512OneCore();
      const md5 = await md5OneCore();
      const write = await sequentialWriteWithFsync(dir, SIZE);
      await waitForQuiet(10_000);
      // xz -1: building the sample at xz's default levels takes minutes on 2 cores; decoding speed barely depends on the level.
      const result = await benchUnpack({ sizeBytes: SIZE, repeats: ROUNDS, workDir: dir, levels: { xz: 1 }, log: ctx.log });
      const figures: Figure[] = [
        { name: 'limit: sha512, one core', value: sha512, unit: 'MiB/s' },
        { name: 'limit: md5, one core', value: md5, unit: 'MiB/s' },
        { name: `limit: write ${SIZE / MiB} MiB + fdatasync`, value: write, unit: 'MiB/s' },
      ];
      for (const f of result.figures) {
        const packed = `${(f.compressedBytes / MiB).toFixed(1)} MiB compressed`;
        figures.push(
          { name: `${f.codec}: ${f.codec} -dc > /dev/null (CLI)`, value: f.cli.mibPerSecond, unit: 'MiB/s', note: `${SIZE / MiB} MiB from ${packed}; best of ${ROUNDS}` },
          { name: `${f.codec}: decompress()`, value: f.decompress.mibPerSecond, unit: 'MiB/s', limit: f.cli.mibPerSecond, note: `limit = the CLI; best of ${ROUNDS}` },
          {
            name: `${f.codec}: unpack() (+ md5, sha512, write, fdatasync)`,
            value: f.unpack.mibPerSecond,
            unit: 'MiB/s',
            limit: Math.min(f.cli.mibPerSecond, sha512, md5, write),
            note: `limit = min(CLI, sha512, md5, write); best of ${ROUNDS}`,
          },
        );
      }
      return figures;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
export default bench;
