/**
 * Runs every `*.bench.ts` in this directory (`*.bench.js` once compiled), one after another,
 * and prints each one's table. A benchmark is a module whose default export is a `Bench`
 * (see report.ts): add a file, nothing to register.
 *
 *   npm run bench                                    # compiled: node dist/bench/run.js
 *   node --import tsx bench/run.ts [name…] [--dir=PATH]
 *
 * `name…` runs only the files whose name contains one of them; `--dir` is the scratch
 * directory on the data disk (default ./data/bench, removed afterwards when it was created here).
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { printTable, verdict, type Bench } from './report.js';

const here = fileURLToPath(import.meta.url);
const suffix = '.bench' + extname(here);

function parseArgs(argv: string[]): { filters: string[]; dir: string } {
  let dir = resolve('data', 'bench');
  const filters: string[] = [];
  for (const a of argv) {
    if (a.startsWith('--dir=')) dir = resolve(a.slice('--dir='.length));
    else filters.push(a);
  }
  return { filters, dir };
}

async function main(): Promise<number> {
  const { filters, dir } = parseArgs(process.argv.slice(2));
  const files = readdirSync(dirname(here))
    .filter((f) => f.endsWith(suffix))
    .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
    .sort();
  if (files.length === 0) {
    process.stderr.write(`no *${suffix} benchmarks${filters.length ? ` matching ${filters.join(', ')}` : ''}\n`);
    return 2;
  }
  const created = !existsSync(dir);
  mkdirSync(dir, { recursive: true });
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  process.stdout.write(
    `PIR benchmarks — ${new Date().toISOString()}, node ${process.version}, ${cpus().length} × ${cpu}, ` +
      `${(totalmem() / 2 ** 30).toFixed(0)} GiB, scratch ${dir}\n\n`,
  );

  let misses = 0;
  const failed: string[] = [];
  try {
    for (const file of files) {
      // One benchmark failing does not hide the others' figures.
      try {
        const mod = (await import(pathToFileURL(join(dirname(here), file)).href)) as { default?: Bench };
        const bench = mod.default;
        if (!bench || typeof bench.run !== 'function') throw new Error(`${file}: default export is not a Bench`);
        const t0 = performance.now();
        const figures = await bench.run({ dir, log: (m) => process.stderr.write(`[${bench.name}] ${m}\n`) });
        printTable(`${bench.name} (${file}, ${((performance.now() - t0) / 1000).toFixed(0)} s)`, figures);
        misses += figures.filter((f) => verdict(f) === 'MISS').length;
      } catch (err) {
        failed.push(file);
        process.stdout.write(`== ${file}: FAILED\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n\n`);
      }
    }
  } finally {
    if (created) rmSync(dir, { recursive: true, force: true });
  }
  const summary = [
    failed.length ? `${failed.length} benchmark(s) failed: ${failed.join(', ')}` : '',
    misses ? `${misses} figure(s) missed their target` : '',
  ].filter(Boolean);
  process.stdout.write((summary.length ? summary.join('; ') : 'all targets met') + '\n');
  return failed.length || misses ? 1 : 0;
}

process.exitCode = await main();
