/**
 * A command written to a connection whose socket is already gone fails at once instead of waiting
 * forever for a 'drain' that never comes (patches/mongodb+*.patch). Without the patch, the MongoDB
 * driver's monitor could hang this way after a network cut: its heartbeat went out on a connection
 * the peer had just closed, never settled, and the client stayed unusable after the server was
 * back (test/e2e/service-outage.test.ts failed about once in ten runs under load).
 *
 * The real driver against FerretDB: a pooled connection's socket is destroyed without an error (as
 * Node does when the peer ends it) and a command is sent on it in the same tick, before the driver
 * sees the socket's 'close'.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient, MongoNetworkError } from 'mongodb';
import { dropMongoDatabase, requireServices, services, uniqueName } from '../support/services.js';
import { within } from '../support/within.js';

interface DriverConnection { socket: { destroy(): void; destroyed: boolean }; command(ns: unknown, cmd: object, options: object): Promise<unknown> }
interface ClientInternals { topology?: { s?: { servers?: Map<string, { pool?: { connections?: Iterable<DriverConnection> } }> } } }

test('a command sent on a connection whose socket was just destroyed fails instead of waiting forever', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const dbName = uniqueName('pir_closed_socket').replace(/-/g, '_');
  const url = new URL(services.mongodbUrl);
  url.pathname = `/${dbName}`;
  const client = new MongoClient(url.toString(), { serverSelectionTimeoutMS: 5000, maxPoolSize: 1 });
  t.after(async () => {
    await client.close(true).catch(() => {});
    await dropMongoDatabase(dbName).catch(() => {});
  });
  await client.db(dbName).command({ ping: 1 }); // one connection, back in the pool
  const [server] = (client as unknown as ClientInternals).topology?.s?.servers?.values() ?? [];
  const [connection] = server?.pool?.connections ?? [];
  assert.ok(connection, 'a pooled connection (the driver internals this test reads have changed shape)');

  connection.socket.destroy();
  const outcome = await within(connection.command({ db: 'admin', collection: '$cmd', toString: () => 'admin.$cmd' }, { ping: 1 }, {}), 5000);
  assert.notEqual(outcome, 'still waiting', 'the command settled');
  const { error } = outcome as { error?: unknown };
  assert.ok(error instanceof MongoNetworkError, `a network error, got ${String(error)}`);

  // The client goes on with a new connection.
  assert.equal((await client.db(dbName).command({ ping: 1 })).ok, 1);
});
