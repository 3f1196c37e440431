import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { pacedDelay, repeatPaced } from '../../../infra/pacing.js';
import { refreshMetricSources, registry, setMetricSources } from '../../../infra/telemetry/metrics.js';
import { IMAGE_STATUSES, type ImageStatus } from '../../../schemas/image.js';

test('pacedDelay: the base period for quick passes, a bounded share of the time for slow ones', () => {
  assert.equal(pacedDelay(5000, 10, 0.05), 4990); // an indexed query: every 5 s, start to start
  assert.equal(pacedDelay(5000, 1000, 0.05), 19_000); // a 1 s scan: every 20 s, so 5% of the time
  assert.equal(pacedDelay(2000, 3000, 0.2), 12_000); // 3 s of work at most a fifth of the time
  assert.equal(pacedDelay(5000, -1, 0.05), 5000); // a clock step backwards counts as no time
  assert.equal(pacedDelay(10_000, 3000, 0.02, 30_000), 30_000); // a recovery sweep: back within 30 s, however slow the pass
  assert.equal(pacedDelay(10_000, 10, 0.02, 30_000), 9990); // the cap never shortens the base period
});

test('repeatPaced: passes never overlap, a slow pass spaces the next, stop waits for the pass in flight', async () => {
  const starts: number[] = [];
  let running = 0;
  let overlapped = false;
  const t0 = performance.now();
  const loop = repeatPaced(async () => {
    starts.push(performance.now() - t0);
    if (++running > 1) overlapped = true;
    await sleep(40);
    running--;
  }, 10, 0.25, () => assert.fail('the task does not throw'));
  await sleep(700);
  // A loaded machine may delay the timers past 700 ms before the second pass: wait for it (bounded)
  // rather than fail; at most one pass more can start meanwhile, the spacing is still checked.
  for (const end = performance.now() + 10_000; starts.length < 2 && performance.now() < end;) await sleep(10);
  await loop.stop();
  const count = starts.length;
  assert.equal(overlapped, false);
  // 40 ms passes at most a quarter of the time: 160 ms start to start (unpaced: one every ~50 ms).
  assert.ok(count >= 2 && count <= 5, `passes in 700 ms: ${count} (${starts.map((s) => s.toFixed(0)).join(', ')})`);
  for (let i = 1; i < count; i++) assert.ok(starts[i]! - starts[i - 1]! >= 155, `spacing ${starts[i]! - starts[i - 1]!} ms`);
  assert.equal(running, 0, 'stop() resolved after the pass in flight ended');
  await sleep(250);
  assert.equal(starts.length, count, 'no pass after stop()');
});

test('repeatPaced: a pass that failed slowly (a store that did not answer) is tried again after the base period, not paced', async () => {
  const starts: number[] = [];
  const t0 = performance.now();
  let pass = 0;
  const loop = repeatPaced(async () => {
    starts.push(performance.now() - t0);
    if (++pass === 1) {
      await sleep(100); // waiting on a timeout: paced, the next pass would come 100/0.02 ms later
      throw new Error('server selection timed out');
    }
  }, 20, 0.02, () => {}, 30_000);
  for (const end = performance.now() + 10_000; starts.length < 2 && performance.now() < end;) await sleep(10);
  await loop.stop();
  assert.ok(starts.length >= 2, 'a second pass ran');
  const gap = starts[1]! - starts[0]!;
  assert.ok(gap < 1000, `the second pass started ${gap.toFixed(0)} ms after the first (paced: over 5 s)`);
});

test('repeatPaced: a failing pass is reported and the loop goes on', async () => {
  const errors: unknown[] = [];
  let passes = 0;
  const loop = repeatPaced(async () => { passes++; throw new Error('store down'); }, 5, 0.5, (e) => errors.push(e));
  await sleep(120);
  // Three 5 ms periods fit many times in 120 ms, but not always on a loaded machine: wait (bounded).
  for (const end = performance.now() + 10_000; passes < 3 && performance.now() < end;) await sleep(10);
  await loop.stop();
  assert.ok(passes >= 3, `passes: ${passes}`);
  assert.equal(errors.length, passes);
  assert.match(String(errors[0]), /store down/);
});

test('gauges: a store whose status counts are slow is read less often than every 5 s', { timeout: 20_000 }, async () => {
  let reads = 0;
  const counts = Object.fromEntries(IMAGE_STATUSES.map((s) => [s, 0])) as Record<ImageStatus, number>;
  setMetricSources({
    store: {
      countByStatus: async () => { reads++; await sleep(300); return counts; }, // at most 5% of the time: every 6 s (20 × the read)
      countPendingEvents: async () => 0,
    },
    queue: { stats: async () => [] },
    log: pino({ level: 'silent' }),
  });
  try {
    refreshMetricSources();
    const t0 = performance.now();
    await registry.metrics();
    // The read took at least 300 ms, and at most this (the cache measures from within the scrape).
    const took = performance.now() - t0;
    assert.equal(reads, 1);
    await sleep(5400 - (performance.now() - t0));
    await registry.metrics();
    assert.equal(reads, 1, 'at 5.4 s the 300 ms read is still served from the cache (a quick one would be read again after 5 s)');
    // The cache keeps it 20 × the read's time: 6 s for exactly 300 ms, but a loaded machine makes
    // the 300 ms sleep take longer (from 320 ms on, the entry outlived a fixed 6.4 s check).
    await sleep(Math.max(6400, 20 * took + 400) - (performance.now() - t0));
    await registry.metrics();
    assert.equal(reads, 2, 'after 20 × the read\'s time (6 s) it is read again');
  } finally {
    setMetricSources(null);
  }
});
