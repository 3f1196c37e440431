import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExpiringLru } from '../../../infra/identity/expiring-lru.js';

describe('ExpiringLru', () => {
  it('never holds more than its bound, evicting the least recently used first', () => {
    const cache = new ExpiringLru<number>(3, () => 0);
    for (const k of ['a', 'b', 'c']) cache.set(k, k.charCodeAt(0), 1000);
    assert.equal(cache.get('a'), 97); // a is now the most recently used
    cache.set('d', 100, 1000);
    assert.equal(cache.size, 3);
    assert.equal(cache.get('b'), undefined, 'b was the least recently used');
    assert.deepEqual(['a', 'c', 'd'].map((k) => cache.get(k)), [97, 99, 100]);
    for (let i = 0; i < 1000; i++) cache.set(`k${i}`, i, 1000);
    assert.equal(cache.size, 3);
    assert.deepEqual(['k997', 'k998', 'k999'].map((k) => cache.get(k)), [997, 998, 999]);
  });

  it('never returns an entry at or after its own expiry', () => {
    let now = 1000;
    const cache = new ExpiringLru<string>(10, () => now);
    cache.set('short', 'x', 1500);
    cache.set('long', 'y', 5000);
    now = 1499;
    assert.equal(cache.get('short'), 'x');
    now = 1500;
    assert.equal(cache.get('short'), undefined);
    assert.equal(cache.size, 1, 'the expired entry is dropped when found');
    assert.equal(cache.get('long'), 'y');
    assert.equal(cache.expiresAt('long'), 5000);
    cache.set('stale', 'z', 1500); // already expired: not stored
    assert.equal(cache.get('stale'), undefined);
    assert.equal(cache.expiresAt('stale'), undefined);
  });

  it('refuses a bound that is not a positive integer', () => {
    assert.throws(() => new ExpiringLru(0), RangeError);
    assert.throws(() => new ExpiringLru(1.5), RangeError);
  });
});
