import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLegacyContentRange, parseRange, requestedRange } from '../../../api/byte-range.js';
import { parseContentMd5 } from '../../../ingest/digest-fields.js';

describe('Range parsing', () => {
  it('reads the three single-range forms', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=50-500', 100), { start: 50, end: 99 });
  });
  it('takes the unit in any case and blanks around = and - (RFC 9110 §14.1, as webob)', () => {
    for (const form of ['BYTES=0-5', 'Bytes=0-5', 'bytes= 0-5', 'bytes =0-5', 'bytes = 0 - 5', 'bytes=\t0-5']) assert.deepEqual(parseRange(form, 100), { start: 0, end: 5 }, form);
    assert.deepEqual(parseRange('BYTES= -10', 100), { start: 90, end: 99 });
  });
  it('refuses what cannot be satisfied or parsed', () => {
    for (const bad of ['bytes=100-', 'bytes=9-1', 'bytes=-', 'items=0-1', 'bytes=0-1,5-6', 'bytes=a-b', 'bytes=0 5', 'by tes=0-5', 'bytes 0-5']) assert.equal(parseRange(bad, 100), null, bad);
    assert.equal(parseRange('bytes=0-0', 0), null);
  });
  it("reads Glance's legacy request Content-Range (bytes a-b/n or a-b/*) within the image", () => {
    assert.deepEqual(parseLegacyContentRange('bytes 0-9/100', 100), { start: 0, end: 9 });
    assert.deepEqual(parseLegacyContentRange('bytes 90-99/*', 100), { start: 90, end: 99 });
    for (const bad of ['bytes 0-100/*', 'bytes 9-1/100', 'bytes 0-9/5', 'bytes */100', 'bytes=0-9', 'bytes 0-9', 'bytes -1-9/100']) assert.equal(parseLegacyContentRange(bad, 100), null, bad);
  });
  it('decides what a download serves: Range first, several ranges refused with 400 (as Glance), a bad one 416', () => {
    assert.deepEqual(requestedRange({}, 100), { kind: 'whole' });
    assert.deepEqual(requestedRange({ range: 'bytes=0-9', 'content-range': 'bytes 50-59/100' }, 100), { kind: 'range', range: { start: 0, end: 9 } });
    assert.deepEqual(requestedRange({ 'content-range': 'bytes 50-59/100' }, 100), { kind: 'range', range: { start: 50, end: 59 } });
    assert.equal((requestedRange({ range: 'bytes=0-1,5-6' }, 100) as { status: number }).status, 400);
    assert.equal((requestedRange({ range: 'BYTES= 0-1, 5-6' }, 100) as { status: number }).status, 400);
    assert.equal((requestedRange({ range: 'bytes=100-' }, 100) as { status: number }).status, 416);
    assert.equal((requestedRange({ 'content-range': 'bytes */100' }, 100) as { status: number }).status, 416);
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
