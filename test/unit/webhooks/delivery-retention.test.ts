import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { deleteOldDeliveries } from '../../../infra/webhooks.js';
import type { WebhookStore } from '../../../core/webhooks/model.js';

test('a retention pass deletes in batches until one finds fewer, before the instant retention ago, and stops after 50 batches', async () => {
  const calls: { before: string; limit: number }[] = [];
  let left = 2500;
  const store = {
    async deleteEndedDeliveries(before: string, limit: number) {
      calls.push({ before, limit });
      const n = Math.min(limit, left);
      left -= n;
      return n;
    },
  } as Pick<WebhookStore, 'deleteEndedDeliveries'> as WebhookStore;
  const now = Date.parse('2026-12-03T00:00:00.000Z');
  const log = pino({ level: 'silent' });
  assert.equal(await deleteOldDeliveries(store, 30 * 86_400_000, log, now), 2500);
  assert.deepEqual(calls.map((c) => c.limit), [1000, 1000, 1000]);
  assert.ok(calls.every((c) => c.before === '2026-11-03T00:00:00.000Z'));

  left = 1_000_000; // more than a pass takes: the next pass goes on
  calls.length = 0;
  assert.equal(await deleteOldDeliveries(store, 86_400_000, log, now), 50_000);
  assert.equal(calls.length, 50);
});
