/** PIR_STORES / PIR_DEFAULT_STORE parsing (infra/store-config.ts) through loadConfig, and the store registry's answers. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../../infra/config.js';
import { StoreRegistry } from '../../../core/store-registry.js';
import { PirError } from '../../../core/errors.js';
import { FsBlobStore } from '../../../infra/storage/fs-blob-store.js';

const S3 = { PIR_S3_ENDPOINT: 'http://127.0.0.1:9436', PIR_S3_BUCKET: 'pir', PIR_S3_ACCESS_KEY_ID: 'k', PIR_S3_SECRET_ACCESS_KEY: 's', PIR_S3_PREFIX: 'run1/' };

describe('PIR_STORES', () => {
  it('unset: one store, local, as before multi-store', () => {
    assert.deepEqual(loadConfig({}).stores, { stores: null, defaultStore: 'local' });
    assert.deepEqual(loadConfig({ PIR_DEFAULT_STORE: 'local' }).stores.defaultStore, 'local');
    assert.throws(() => loadConfig({ PIR_DEFAULT_STORE: 'fast' }), ConfigError);
  });

  it('parses fs and s3 stores; the first is the default unless PIR_DEFAULT_STORE names another', () => {
    const config = loadConfig({ ...S3, PIR_STORES: 'fast=fs:/var/lib/pir/fast, cheap=s3 ,archive=s3:cold/archive/' });
    assert.deepEqual(config.stores.stores, [
      { id: 'fast', kind: 'fs', dir: '/var/lib/pir/fast' },
      { id: 'cheap', kind: 's3', prefix: 'run1/cheap/' },
      { id: 'archive', kind: 's3', prefix: 'cold/archive/' },
    ]);
    assert.equal(config.stores.defaultStore, 'fast');
    assert.equal(loadConfig({ ...S3, PIR_STORES: 'fast=fs:/a,cheap=s3', PIR_DEFAULT_STORE: 'cheap' }).stores.defaultStore, 'cheap');
  });

  it('refuses what it cannot honour, naming the variable', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{ PIR_STORES: 'fast=fs:relative/dir' }, /PIR_STORES: .*absolute/],
      [{ PIR_STORES: 'cheap=s3' }, /PIR_STORES: .*PIR_S3_ENDPOINT/],
      [{ PIR_STORES: 'x=ceph' }, /unknown kind/],
      [{ PIR_STORES: 'Fast=fs:/a' }, /PIR_STORES/],
      [{ PIR_STORES: 'os_glance_staging_store=fs:/a' }, /not os_glance_/],
      [{ PIR_STORES: '=fs:/a' }, /PIR_STORES/],
      [{ PIR_STORES: 'a=fs:/a,a=fs:/b' }, /twice/],
      [{ PIR_STORES: 'a=fs:/data,b=fs:/data/b' }, /overlap/],
      [{ ...S3, PIR_STORES: 'a=s3:x/,b=s3:x/y/' }, /overlap/],
      [{ ...S3, PIR_STORES: 'a=s3:../' }, /prefix/],
      [{ PIR_STORES: 'a=fs:/a', PIR_DEFAULT_STORE: 'b' }, /PIR_DEFAULT_STORE: .*not one of/],
      [{ PIR_STORES: ' , ' }, /lists no store/],
    ];
    for (const [env, message] of bad) assert.throws(() => loadConfig(env), (e: Error) => e instanceof ConfigError && message.test(e.message), JSON.stringify(env));
  });
});

describe('StoreRegistry', () => {
  const fs = (dir: string) => new FsBlobStore(dir);
  const registry = new StoreRegistry([
    { id: 'fast', description: 'f', blobs: fs('/tmp/a'), properties: {} },
    { id: 's3', description: 's', blobs: fs('/tmp/b'), properties: {} },
  ], 's3', true);

  it('answers by id; an unknown id is 404 in a path and 400 in a request', () => {
    assert.equal(registry.defaultId, 's3');
    assert.deepEqual(registry.ids, ['fast', 's3']);
    assert.deepEqual(registry.requireKnown(['fast', 'fast', 's3']), ['fast', 's3']);
    assert.throws(() => registry.get('nope'), (e: PirError) => e.code === 'store_not_found' && e.kind === 'not_found');
    assert.throws(() => registry.requireKnown(['fast', 'nope']), (e: PirError) => e.code === 'unknown_store' && e.kind === 'bad_request');
    assert.throws(() => new StoreRegistry([], 'x', true), /not configured/);
  });

  it('single: the one store, local, not multi', () => {
    const one = StoreRegistry.single(fs('/tmp/c'));
    assert.deepEqual([one.ids, one.defaultId, one.multi], [['local'], 'local', false]);
  });
});
