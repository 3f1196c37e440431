/** PIR_CACHE_* parsing: defaults, the event source chosen, and bad values named. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadCacheConfig } from '../../../cache/cache-config.js';

describe('cache config', () => {
  it('needs an upstream, and takes --upstream over PIR_CACHE_UPSTREAM', () => {
    assert.throws(() => loadCacheConfig({}, undefined), /--upstream: the cache needs the upstream/);
    assert.equal(loadCacheConfig({ PIR_CACHE_UPSTREAM: 'http://a:1/' }, 'https://b.example/').upstream, 'https://b.example');
    assert.equal(loadCacheConfig({ PIR_CACHE_UPSTREAM: 'http://a:1/' }, undefined).upstream, 'http://a:1');
    assert.throws(() => loadCacheConfig({}, 'ftp://x'), /--upstream: "ftp:\/\/x" must start with http/);
    assert.throws(() => loadCacheConfig({}, 'http://u:p@x'), /plain base URL/);
  });

  it('has defaults, and reads sizes and durations', () => {
    const config = loadCacheConfig({}, 'http://up');
    assert.equal(config.maxSize, 10 * 2 ** 30);
    assert.equal(config.decisionTtlMs, 5000);
    assert.equal(config.events, 'off');
    const set = loadCacheConfig({ PIR_CACHE_MAX_SIZE: '200GiB', PIR_CACHE_AUTH_TTL_SECONDS: '2.5', PIR_CACHE_AUTH_ENTRIES: '50' }, 'http://up');
    assert.equal(set.maxSize, 200 * 2 ** 30);
    assert.equal(set.decisionTtlMs, 2500);
    assert.equal(set.maxDecisions, 50);
    assert.throws(() => loadCacheConfig({ PIR_CACHE_MAX_SIZE: 'lots' }, 'http://up'), /PIR_CACHE_MAX_SIZE/);
    assert.throws(() => loadCacheConfig({ PIR_CACHE_AUTH_TTL_SECONDS: '3600' }, 'http://up'), /PIR_CACHE_AUTH_TTL_SECONDS/);
    assert.throws(() => loadCacheConfig({ PIR_CACHE_AUTH_ENTRIES: '0' }, 'http://up'), /PIR_CACHE_AUTH_ENTRIES/);
  });

  it('chooses Kafka, then webhooks, then nothing; and refuses what cannot work', () => {
    assert.equal(loadCacheConfig({ PIR_KAFKA_BROKERS: 'k:9092', PIR_CACHE_PUBLIC_URL: 'http://me' }, 'http://up').events, 'kafka');
    assert.equal(loadCacheConfig({ PIR_CACHE_PUBLIC_URL: 'http://me:9393/' }, 'http://up').events, 'webhook');
    assert.equal(loadCacheConfig({ PIR_CACHE_PUBLIC_URL: 'http://me:9393/', PIR_CACHE_EVENTS: 'off' }, 'http://up').events, 'off');
    assert.throws(() => loadCacheConfig({ PIR_CACHE_EVENTS: 'kafka' }, 'http://up'), /kafka needs PIR_KAFKA_BROKERS/);
    assert.throws(() => loadCacheConfig({ PIR_CACHE_EVENTS: 'webhook' }, 'http://up'), /PIR_CACHE_PUBLIC_URL: must be set/);
    assert.throws(() => loadCacheConfig({ PIR_CACHE_EVENTS: 'poll' }, 'http://up'), /one of auto, kafka, webhook, off/);
    assert.equal(loadCacheConfig({ PIR_ADMIN_TOKEN: 'a'.repeat(32) }, 'http://up').upstreamToken, 'a'.repeat(32));
    assert.equal(loadCacheConfig({ PIR_ADMIN_TOKEN: 'a'.repeat(32), PIR_CACHE_UPSTREAM_TOKEN: 'up-admin' }, 'http://up').upstreamToken, 'up-admin');
  });
});
