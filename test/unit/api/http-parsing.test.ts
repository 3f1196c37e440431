import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRange } from '../../../api/routes/image-data.js';
import { parseContentMd5 } from '../../../ingest/digest-fields.js';

describe('Range parsing', () => {
  it('reads the three single-range forms', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=50-500', 100), { start: 50, end: 99 });
  });
  it('refuses what cannot be satisfied or parsed', () => {
    for (const bad of ['bytes=100-', 'bytes=9-1', 'bytes=-', 'items=0-1', 'bytes=0-1,5-6', 'bytes=a-b']) assert.equal(parseRange(bad, 100), null, bad);
    assert.equal(parseRange('bytes=0-0', 0), null);
  });
});

describe('Content-MD5 parsing', () => {
  const hex = '9e107d9d372bb6826bd81d3542a419d6';
  it('accepts base64 (RFC 1864) and hex', () => {
    assert.equal(parseContentMd5(Buffer.from(hex, 'hex').toString('base64')), hex);
    assert.equal(parseContentMd5(hex.toUpperCase()), hex);
    assert.equal(parseContentMd5(undefined), null);
  });
  it('refuses anything else with a 400', () => {
    assert.throws(() => parseContentMd5('not-a-digest'), /Content-MD5 must be/);
    assert.throws(() => parseContentMd5(Buffer.from('short').toString('base64')), /Content-MD5 must be/);
  });
});
