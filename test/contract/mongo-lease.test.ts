/**
 * Leases on the MongoDB-wire server (infra/mongo/mongo-lease.ts), as separate processes hold them
 * (one MongoLeases each): never two holders at once, a dead holder's lease taken once it ran out,
 * a held one waited for and then refused with change_contention.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { MongoLeases } from '../../infra/mongo/mongo-lease.js';
import { PirError } from '../../core/errors.js';
import { dropMongoDatabase, requireServices, services, uniqueName } from '../support/services.js';
import { sleep } from './helpers.js';

test('Mongo leases', { timeout: 120_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const dbName = uniqueName('pir_contract_lease').replace(/-/g, '_');
  const clients = [0, 1, 2].map(() => new MongoClient(services.mongodbUrl));
  t.after(async () => {
    for (const c of clients) await c.close();
    await dropMongoDatabase(dbName);
  });
  const leasesOf = (c: MongoClient, settings = {}) => new MongoLeases(c.db(dbName).collection('leases'), c.db(dbName).collection('lease_heads'), settings);
  const processes = clients.map((c) => leasesOf(c));

  await t.test('three processes, 60 holders of one name: one at a time, every one runs', async () => {
    let inside = 0;
    let most = 0;
    let ran = 0;
    await Promise.all(Array.from({ length: 60 }, (_, i) => processes[i % 3]!.run('tree:A', 'the tree', async () => {
      inside++;
      most = Math.max(most, inside);
      await sleep(Math.random() * 4);
      inside--;
      ran++;
    })));
    assert.equal(ran, 60);
    assert.equal(most, 1);
  });

  await t.test('other names do not wait; a result and an error come back to the holder', async () => {
    let slowDone = false;
    const slow = processes[0]!.run('tree:B', 'the tree', () => sleep(3000).then(() => { slowDone = true; return 'slow'; }));
    assert.equal(await processes[1]!.run('tree:C', 'the tree', async () => (slowDone ? 'waited for tree:B' : 'other')), 'other');
    await assert.rejects(processes[1]!.run('tree:C', 'the tree', async () => { throw new Error('boom'); }), /boom/);
    assert.equal(await processes[2]!.run('tree:C', 'the tree', async () => 'after the error'), 'after the error', 'a failed holder released');
    assert.equal(await slow, 'slow');
  });

  await t.test("a holder that died frees the name when its lease runs out; a live one is waited for, then refused", async () => {
    const short = leasesOf(clients[0]!, { leaseMs: 600, waitMs: 300 });
    const patient = leasesOf(clients[1]!, { leaseMs: 600, waitMs: 3000 });
    // Died: took the lease and never released it (its process is gone; nothing runs `release`).
    let release!: () => void;
    const heldFrom = Date.now(); // the lease runs until at least heldFrom + 600 ms
    const held = short.run('tree:D', 'the tree', () => new Promise<void>((resolve) => { release = resolve; }));
    await sleep(100);
    const impatient = leasesOf(clients[2]!, { waitMs: 200 });
    await assert.rejects(impatient.run('tree:D', 'project D\'s galleries', async () => 'no'), (error: unknown) =>
      error instanceof PirError && error.code === 'change_contention' && /project D's galleries/.test(error.message));
    let takenAt = 0;
    assert.equal(await patient.run('tree:D', 'the tree', async () => { takenAt = Date.now(); return 'taken'; }), 'taken');
    assert.ok(takenAt >= heldFrom + 600, `taken ${takenAt - heldFrom} ms after it was held, before the lease ran out`);
    release();
    await held;
  });
});
