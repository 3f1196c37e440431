/** The tus wire format's header checks: Upload-Metadata (creation extension). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { UPLOAD_METADATA_MAX_BYTES, parseUploadMetadata } from '../../../ingest/tus/protocol.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const refused = (e: Error & { code?: string }) => e.code === 'tus_metadata_invalid';

describe('tus Upload-Metadata', () => {
  it('keeps well-formed metadata exactly as sent (values may be empty or left out)', () => {
    for (const good of [
      `filename ${b64('disk.raw')}`,
      `filename ${b64('disk.raw')},is_confidential`,
      `filename ${b64('disk.raw')},empty ,type ${b64('raw')}`,
      `a ${b64('x')}, b ${b64('yy')}`, // OWS after a comma, as an HTTP list allows
      `k ${b64('ü€')}`,
      'key-with.punct_~!#$%&\'*+^`| YQ==',
    ]) assert.equal(parseUploadMetadata(good), good, good);
    assert.equal(parseUploadMetadata(undefined), null);
    assert.equal(parseUploadMetadata(''), null, 'an empty header is no metadata');
  });

  it('takes what tus-js-client sends for any keys and values', () => {
    // tus-js-client: `${key} ${Base64.encode(String(value))}` joined with ','.
    const key = fc.stringMatching(/^[\x21-\x2b\x2d-\x7e]{1,20}$/);
    fc.assert(fc.property(fc.uniqueArray(fc.tuple(key, fc.string({ maxLength: 40 })), { selector: ([k]) => k, minLength: 1, maxLength: 8 }), (pairs) => {
      const header = pairs.map(([k, v]) => `${k} ${b64(v)}`).join(',');
      assert.equal(parseUploadMetadata(header), header);
    }));
  });

  it('refuses malformed base64, duplicate or bad keys, empty pairs, repeats of the header and more than 4 KiB with 400 tus_metadata_invalid', () => {
    for (const bad of [
      'filename not-base64!',
      'filename YQ', // unpadded
      'filename YQ=', // wrong padding
      'filename Y===',
      `filename ${b64('a')} ${b64('b')}`, // two values
      'filename  YQ==', // two spaces: the value would start with one
      `a ${b64('1')},a ${b64('2')}`,
      `a ${b64('1')},,b ${b64('2')}`,
      `a ${b64('1')},`,
      ',',
      `k\u00e9y ${b64('x')}`, // not ASCII
      `k\u0001 ${b64('x')}`, // a control character
    ]) assert.throws(() => parseUploadMetadata(bad), refused, JSON.stringify(bad));
    assert.throws(() => parseUploadMetadata([`a ${b64('1')}`, `b ${b64('2')}`]), refused);
    const long = `k ${'A'.repeat(UPLOAD_METADATA_MAX_BYTES)}`;
    assert.throws(() => parseUploadMetadata(long), (e: Error & { code?: string }) => refused(e) && /more than the 4096/.test(e.message));
    const justFits = `k ${'A'.repeat(UPLOAD_METADATA_MAX_BYTES - 2 - ((UPLOAD_METADATA_MAX_BYTES - 2) % 4))}`;
    assert.equal(parseUploadMetadata(justFits), justFits);
  });

  it('names what was wrong', () => {
    assert.throws(() => parseUploadMetadata('a YQ==,a Yg=='), /names the key 'a' twice/);
    assert.throws(() => parseUploadMetadata('name %%%'), /value of 'name' is not base64/);
    assert.throws(() => parseUploadMetadata('a YQ==,,b Yg=='), /empty pair \(pair 2\)/);
  });
});
