import assert from 'node:assert/strict';
import { test } from 'node:test';
import { benchUnpack } from '../../../workers/unpack/bench-unpack.js';

test('benchUnpack runs end to end on a small sample and returns figures', async () => {
  const result = await benchUnpack({ sizeBytes: 4 * 1024 * 1024 });
  assert.equal(result.sizeBytes, 4 * 1024 * 1024);
  assert.deepEqual(
    result.figures.map((f) => f.codec),
    ['gzip', 'xz', 'zstd'],
  );
  for (const f of result.figures) {
    assert.ok(f.compressedBytes > 0 && f.compressedBytes < f.inputBytes);
    for (const r of [f.cli, f.decompress, f.unpack]) assert.ok(r.seconds > 0 && r.mibPerSecond > 0);
  }
});
