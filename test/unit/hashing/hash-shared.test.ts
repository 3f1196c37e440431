import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { HashPool } from '../../../ingest/hashing/index.js';

test('HashSession.hashShared: views of caller-owned shared memory hash in order, with slots, to the digests of the same bytes', async () => {
  const pool = new HashPool({ threads: 2 });
  try {
    const bytes = randomBytes(3 * 1024 * 1024 + 123);
    const shared = Buffer.from(new SharedArrayBuffer(bytes.length));
    bytes.copy(shared);
    const session = pool.open();
    // A slot first, then shared windows of uneven sizes: order must hold across both kinds.
    const slot = await session.acquire();
    slot.view.set(bytes.subarray(0, 1000));
    session.submit(slot, 1000);
    let done = 0;
    for (let at = 1000; at < bytes.length; at += 700_001) {
      session.hashShared(shared.subarray(at, Math.min(bytes.length, at + 700_001)), () => done++);
    }
    const digests = await session.digests();
    assert.equal(done, Math.ceil((bytes.length - 1000) / 700_001), 'every window is acknowledged');
    assert.equal(digests.md5, createHash('md5').update(bytes).digest('hex'));
    assert.equal(digests.sha512, createHash('sha512').update(bytes).digest('hex'));
    await session.idle();
    assert.throws(() => session.hashShared(shared.subarray(0, 10), () => {}), /already ended/);
    assert.throws(() => pool.open().hashShared(Buffer.alloc(10), () => {}), /SharedArrayBuffer/);
  } finally {
    await pool.close();
  }
});
