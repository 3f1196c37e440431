/** The pure rules of registered locations: URLs, validation_data, keys, who may add and who sees. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_LOCATION_SETTINGS, enforceAddLocation, enforceListLocations, externalKey, isExternalKey, locationFields,
  parseExternalKey, parseLocation, parseLocationMetadata, parseValidationData, type LocationSettings,
} from '../../../core/external-location.js';
import { PirError } from '../../../core/errors.js';
import type { Caller } from '../../../core/caller.js';
import type { ImageDoc } from '../../../schemas/image.js';

const settings: LocationSettings = { ...DEFAULT_LOCATION_SETTINGS, s3Buckets: ['golden'], ownBucket: 'pir', showDirectUrl: true, showLocations: true };
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof PirError, String(error));
    return error.code;
  }
  return null;
};
const caller = (project_id: string, ...roles: string[]): Caller => ({ project_id, user_id: 'u', roles });

describe('registered locations: rules', () => {
  it('parses s3:// in allowed buckets and http(s); refuses everything else without echoing the URL', () => {
    assert.deepEqual(parseLocation('s3://golden/debian/12.qcow2', settings), { kind: 's3', bucket: 'golden', key: 'debian/12.qcow2' });
    assert.deepEqual(parseLocation('https://mirror.example.org/a.qcow2?sig=1', settings), { kind: 'http', url: 'https://mirror.example.org/a.qcow2?sig=1' });
    for (const url of ['s3://pir/images/x', 's3://other/x', 's3://golden/', 's3://golden/a//b', 's3://golden/../x', 's3://golden/a/./b', 's3://Golden/x',
      'file:///etc/passwd', 'swift://x/y', 'ftp://h/x', '', 42, null, `https://h/${'a'.repeat(5000)}`, 's3://golden/a\u0000b']) {
      assert.equal(code(() => parseLocation(url, settings)), 'location_refused', JSON.stringify(url));
    }
    // PIR's own bucket, even if an operator listed it: other images' bytes.
    assert.equal(code(() => parseLocation('s3://pir/x', { ...settings, s3Buckets: ['pir'] })), 'location_refused');
    try {
      parseLocation('s3://secret-bucket-name/secret/key', settings);
    } catch (error) {
      assert.ok(!(error as Error).message.includes('secret/key'));
    }
  });

  it('takes validation_data as Glance (md5 checksum, sha512 pair) and refuses other shapes', () => {
    const md5 = 'a'.repeat(32);
    const sha = 'b'.repeat(128);
    assert.deepEqual(parseValidationData(undefined), {});
    assert.deepEqual(parseValidationData({ checksum: md5, os_hash_algo: 'sha512', os_hash_value: sha }), { checksum: md5, os_hash_algo: 'sha512', os_hash_value: sha });
    for (const bad of [[], 'x', { checksum: 'A'.repeat(32) }, { checksum: md5.slice(1) }, { os_hash_algo: 'sha512' }, { os_hash_value: sha },
      { os_hash_algo: 'sha256', os_hash_value: 'c'.repeat(64) }, { os_hash_algo: 'sha512', os_hash_value: 'z'.repeat(128) }, { other: 1 }]) {
      assert.equal(code(() => parseValidationData(bad)), 'location_invalid', JSON.stringify(bad));
    }
    assert.deepEqual(parseLocationMetadata({ a: { b: 1 } }), { a: { b: 1 } });
    assert.equal(code(() => parseLocationMetadata([1])), 'location_invalid');
    assert.equal(code(() => parseLocationMetadata({ big: 'x'.repeat(20_000) })), 'location_invalid');
  });

  it('names a location by a key carrying its URL and fingerprint', () => {
    const ref = { url: 'https://h/a?x=1', fingerprint: { size: 1234, etag: '"e"', last_modified: null } };
    const key = externalKey(ref);
    assert.ok(isExternalKey(key));
    assert.ok(!isExternalKey('images/abc'));
    assert.match(key, /^external\/[A-Za-z0-9_-]+$/);
    assert.deepEqual(parseExternalKey(key), ref);
    assert.throws(() => parseExternalKey('images/x'));
  });

  it('who may add: s3 takes admin or service; http the owner\'s member too; GET locations service or admin', () => {
    const doc = { owner: 'a' };
    assert.equal(code(() => enforceAddLocation(caller('a', 'member'), doc, 'http')), null);
    assert.equal(code(() => enforceAddLocation(caller('a', 'member'), doc, 's3')), 'policy_denied');
    assert.equal(code(() => enforceAddLocation(caller('a', 'reader'), doc, 'http')), 'policy_denied');
    assert.equal(code(() => enforceAddLocation(caller('b', 'member'), doc, 'http')), 'policy_denied');
    assert.equal(code(() => enforceAddLocation(caller('a', 'member', 'service'), doc, 's3')), null);
    assert.equal(code(() => enforceAddLocation(caller('x', 'admin'), doc, 's3')), null);
    assert.equal(code(() => enforceListLocations(caller('a', 'member'))), 'policy_denied');
    assert.equal(code(() => enforceListLocations(caller('a', 'Service'))), null);
    assert.equal(code(() => enforceListLocations(caller('z', 'admin'))), null);
  });

  it('who sees: only with the operator\'s options on, only the owner project and admins', () => {
    const doc = {
      id: 'i', owner: 'a', status: 'active',
      location: { url: 'https://h/x', metadata: { k: 'v' }, validation_data: {}, fingerprint: null, added_at: '', added_by: { project_id: 'a', user_id: 'u' } },
    } as unknown as ImageDoc;
    assert.deepEqual(locationFields(caller('a', 'reader'), doc, settings), { locations: [{ url: 'https://h/x', metadata: { k: 'v' } }], direct_url: 'https://h/x' });
    assert.deepEqual(locationFields(caller('z', 'admin'), doc, settings).direct_url, 'https://h/x');
    assert.deepEqual(locationFields(caller('b', 'member'), doc, settings), {});
    assert.deepEqual(locationFields(caller('a', 'member'), doc, DEFAULT_LOCATION_SETTINGS), {});
    assert.deepEqual(locationFields(caller('a', 'member'), doc, { ...settings, showDirectUrl: false }), { locations: [{ url: 'https://h/x', metadata: { k: 'v' } }] });
    // An image without a location: an empty list, never PIR's own keys.
    assert.deepEqual(locationFields(caller('a', 'member'), { ...doc, location: null, blob_key: 'staging/i.1.upload' } as ImageDoc, settings), { locations: [] });
    // No owner: nobody but admins.
    assert.deepEqual(locationFields(caller('a', 'member'), { ...doc, owner: null } as ImageDoc, settings), {});
  });
});
