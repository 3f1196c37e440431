/** The S3 tus staging's bookkeeping: committed part numbers as ranges, and the part size per upload length. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { S3_MIN_PART_BYTES, decodeRanges, encodeRanges, tusPartSize } from '../../../ingest/tus/s3-staging.js';

describe('S3 tus staging: part numbers and sizes', () => {
  it('writes committed part numbers as ranges and reads them back', () => {
    assert.equal(encodeRanges([]), '');
    assert.equal(encodeRanges([1, 2, 3, 5, 7, 8]), '1-3,5,7-8');
    assert.deepEqual(decodeRanges('1-3,5,7-8'), [1, 2, 3, 5, 7, 8]);
    fc.assert(fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 10_000 }), { maxLength: 300 }), (raw) => {
      const numbers = [...raw].sort((a, b) => a - b);
      assert.deepEqual(decodeRanges(encodeRanges(numbers)), numbers);
    }));
  });

  it('refuses ranges that are not ascending part numbers', () => {
    for (const bad of ['0', '3-1', '1,1', '5,2', '1-10001', 'x', '1,,2', '-1']) assert.throws(() => decodeRanges(bad), /tus-parts/, bad);
  });

  it('cuts parts of at least 5 MiB, large enough that an upload fits 9,000 of them', () => {
    assert.equal(tusPartSize(0), 8 * 1024 * 1024);
    assert.equal(tusPartSize(1, 1), S3_MIN_PART_BYTES);
    const huge = 5 * 1024 ** 4; // 5 TiB, S3's largest object
    assert.ok(Math.ceil(huge / tusPartSize(huge)) <= 9_000);
  });
});
