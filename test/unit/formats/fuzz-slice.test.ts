import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runFormatFuzz } from '../../fuzz/formats.fuzz.js';

describe('format fuzzing (quick slice)', () => {
  it('survives ~2000 mutated headers of every format', { timeout: 120_000 }, async () => {
    const stats = await runFormatFuzz(2000);
    assert.equal(stats.runs, 2000);
    assert.ok(stats.maxBytesRead <= 4 << 20);
    // The mutations should still exercise most inspectors, not collapse everything to raw.
    assert.ok(Object.keys(stats.formats).length >= 8, JSON.stringify(stats.formats));
  });
});
