/**
 * SqliteSearchIndex.tierSql: the ways (one weight per term) a relevance score is reached, found
 * as a brute force finds them, and found without trying every dead end: 24 terms of three weights
 * each are 3^25 paths, which an exhaustive walk would not finish.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { SqliteSearchIndex } from '../../../infra/embedded/sqlite-search-index.js';

/** Every way to reach `score`, by brute force. */
function ways(perTerm: number[][], score: number): number[][] {
  let partial: number[][] = [[]];
  for (const weights of perTerm) partial = partial.flatMap((p) => weights.map((w) => [...p, w]));
  return partial.filter((p) => p.reduce((a, b) => a + b, 0) === score);
}

it('finds the ways a tier is reached as a brute force does, and none when there are too many', () => {
  const perTerm = [[4, 2, 1], [4, 1], [2, 1], [4, 2, 1]]; // three words, then the prefix's weights
  const search = { words: ['debian', 'noble', 'arm'], prefix: 'cl' };
  for (let score = 1; score <= 14; score++) {
    const expected = ways(perTerm, score);
    const tier = SqliteSearchIndex.tierSql(search, { perTerm, completions: ['cloud'] }, score);
    if (expected.length === 0 || expected.length > 16) {
      assert.equal(tier, null, `score ${score}: ${expected.length} ways`);
      continue;
    }
    assert.ok(tier, `score ${score}`);
    assert.equal(tier.sql.split(' UNION ALL ').length, expected.length, `score ${score}`);
    // Each way binds the words' weights in order, then the prefix's: the same ways, in some order.
    const bound = tier.params.filter((p) => typeof p === 'number') as number[];
    const found = Array.from({ length: bound.length / 4 }, (_, k) => bound.slice(4 * k, 4 * k + 4).join());
    assert.deepEqual(found.sort(), expected.map((way) => way.join()).sort(), `score ${score}`);
  }
});

it('does not walk every dead end: 24 common words of three weights each, in a thread given 10 s', async () => {
  // In a worker thread: an exhaustive walk (hours) holds its thread, which terminate() still ends.
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads');
    import(${JSON.stringify(new URL('../../../infra/embedded/sqlite-search-index.js', import.meta.url).href)}).then(({ SqliteSearchIndex }) => {
      const words = Array.from({ length: 24 }, (_, i) => 'word' + i);
      const perTerm = [...words.map(() => [4, 2, 1]), [4, 2, 1]];
      const ways = (score) => SqliteSearchIndex.tierSql({ words, prefix: 'x' }, { perTerm, completions: ['xy'] }, score)?.sql.split(' UNION ALL ').length ?? null;
      parentPort.postMessage([ways(100), ways(98), ways(99), ways(60)]);
    });
  `, { eval: true });
  const timer = setTimeout(() => void worker.terminate(), 10_000);
  try {
    const [answer] = await Promise.race([once(worker, 'message'), once(worker, 'exit').then(() => [null])]);
    assert.ok(answer, 'the ways were found within 10 s');
    // Every term at 4: one way; one at 2: 25 ways, too many to list (the tier is walked); 99: none; 60: very many.
    assert.deepEqual(answer, [1, null, null, null]);
  } finally {
    clearTimeout(timer);
    await worker.terminate();
  }
});
