// Long fuzzing run: `node --import tsx test/fuzz/run.ts [runs] [seed]` (default 300000).
import { runFormatFuzz } from './formats.fuzz.js';

const runs = Number(process.argv[2] ?? 300_000);
const seed = process.argv[3] !== undefined ? Number(process.argv[3]) : undefined;
if (!Number.isSafeInteger(runs) || runs <= 0) {
  console.error('usage: run.ts [runs] [seed]');
  process.exit(2);
}
const started = Date.now();
const batch = 10_000;
let done = 0;
// Batches keep memory flat and show progress; each batch gets its own seed.
while (done < runs) {
  const n = Math.min(batch, runs - done);
  const stats = await runFormatFuzz(n, { seed: seed === undefined ? undefined : seed + done });
  done += n;
  console.log(`${done}/${runs} runs ok (${((Date.now() - started) / 1000).toFixed(1)} s) max bytesRead=${stats.maxBytesRead} max ms=${stats.maxMs.toFixed(1)} formats=${JSON.stringify(stats.formats)}`);
}
console.log('fuzzing finished without failures');
