/**
 * A group commit is given up, not waited on forever, when the MongoDB driver interrupts the
 * connection its large command is still being written to (infra/mongo/stuck-commands.ts). The
 * real driver against FerretDB through a TCP forwarder that stops forwarding: the command stays
 * in the socket's buffer, the driver's monitor times out its heartbeat and interrupts the pool's
 * in-use connections, and the driver itself never settles the write.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { monitoredClient } from '../../infra/mongo/command-metrics.js';
import { GroupWriter } from '../../infra/mongo/group-writer.js';
import { isUnreachable } from '../../infra/unreachable.js';
import { tcpForwarder } from '../support/tcp-forwarder.js';
import { dropMongoDatabase, requireServices, services, uniqueName } from '../support/services.js';
import { within } from '../support/within.js';

test('a group commit whose connection the driver interrupts mid-write fails as unreachable instead of hanging', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const target = new URL(services.mongodbUrl);
  const forwarder = await tcpForwarder({ host: target.hostname, port: Number(target.port || 27017) }, { open: true });
  const dbName = uniqueName('pir_stuck').replace(/-/g, '_');
  // A heartbeat every 0.5 s that times out after 1.5 s: the stall is noticed quickly.
  const client = monitoredClient(`mongodb://127.0.0.1:${forwarder.port}/${dbName}`, 'manifest', { heartbeatFrequencyMS: 500, connectTimeoutMS: 1500, serverSelectionTimeoutMS: 3000 });
  t.after(async () => {
    await client.close(true).catch(() => {});
    await forwarder.close();
    await dropMongoDatabase(dbName).catch(() => {});
  });
  const writer = new GroupWriter(client.db(dbName).collection<{ _id: string; big?: string }>('stuck'), client);
  await writer.write({ insertOne: { document: { _id: 'before' } } });

  forwarder.stall();
  // More than the loopback socket buffers hold: the driver waits for 'drain', which never comes.
  const big = 'x'.repeat(12 * 1024 * 1024);
  const started = Date.now();
  const outcome = await within(writer.write({ insertOne: { document: { _id: 'big', big } } }), 20_000);
  assert.notEqual(outcome, 'still waiting', 'the write was given up');
  const { error } = outcome as { error?: unknown };
  assert.ok(error, 'the write failed');
  assert.ok(isUnreachable(error), `an unreachable-service error (503 in the API), got ${String(error)}`);
  assert.ok(Date.now() - started < 15_000);

  // The group commit is not wedged behind it: the next write gets its own answer.
  const next = await within(writer.write({ insertOne: { document: { _id: 'after' } } }), 20_000);
  assert.notEqual(next, 'still waiting', 'the next write was not queued behind the stuck one');
});
