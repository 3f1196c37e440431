/**
 * Finds commands the MongoDB driver will never settle, so that whoever waits on them can give up.
 *
 * Why: in the driver (7.9.0, and 7.9.1 unchanged) a command larger than the socket's write buffer
 * waits for the socket's 'drain' before it reads its reply. When the connection is closed meanwhile
 * without a socket error (a pool cleared with its in-use connections interrupted, as when the
 * server's monitor loses it), nothing rejects that wait: the operation never settles and keeps its
 * connection checked out. Seen here: after an 8 s FerretDB outage under load, a group commit of
 * journal inserts (infra/mongo/group-writer.ts) never returned, and every later manifest write of
 * the process queued behind it for good.
 * patches/mongodb+7.9.0.patch now ends such a wait in the driver itself when the socket closes;
 * this stays as a second line, for a driver version the patch does not cover.
 *
 * A stuck command is one still in flight (command monitoring, which monitoredClient turns on) on a
 * connection the driver holds checked out but has closed. The pool's connections are read through
 * the driver's internals, defensively: if they change shape, nothing is found, as before.
 */
import type { CommandFailedEvent, CommandStartedEvent, CommandSucceededEvent, MongoClient } from 'mongodb';

export interface InFlightCommand {
  /** The driver's request id: increasing, so it also tells which commands started after a point. */
  requestId: number;
  connectionId: number | string;
  database: string;
  /** The collection the command names (insert, update, delete, find…), when it names one. */
  collection: string | null;
  command: string;
}

const inFlight = new WeakMap<MongoClient, Map<number, InFlightCommand>>();
const latest = new WeakMap<MongoClient, number>();

/** Follows the client's commands (its monitorCommands option must be on). */
export function trackCommands(client: MongoClient): void {
  const commands = new Map<number, InFlightCommand>();
  inFlight.set(client, commands);
  client.on('commandStarted', (e: CommandStartedEvent) => {
    const named = (e.command as Record<string, unknown>)[e.commandName];
    latest.set(client, e.requestId);
    commands.set(e.requestId, { requestId: e.requestId, connectionId: e.connectionId ?? -1, database: e.databaseName, collection: typeof named === 'string' ? named : null, command: e.commandName });
  });
  const done = (e: CommandSucceededEvent | CommandFailedEvent) => { commands.delete(e.requestId); };
  client.on('commandSucceeded', done);
  client.on('commandFailed', done);
}

interface PoolInternals { checkedOut?: Iterable<{ id?: unknown; closed?: unknown }> }
interface ClientInternals { topology?: { s?: { servers?: Map<string, { pool?: PoolInternals }> } } }

/** The newest request id sent so far (0 before any): commands started later have higher ones. */
export function lastRequestId(client: MongoClient): number {
  return latest.get(client) ?? 0;
}

/** Stops following a stuck command whose waiter gave up on it (its connection stays checked out). */
export function forgetCommand(client: MongoClient, requestId: number): void {
  inFlight.get(client)?.delete(requestId);
}

/** Commands in flight on connections the driver has closed: they will never settle. */
export function stuckCommands(client: MongoClient): InFlightCommand[] {
  const commands = inFlight.get(client);
  if (!commands || commands.size === 0) return [];
  const closed = new Set<unknown>();
  try {
    for (const server of (client as unknown as ClientInternals).topology?.s?.servers?.values() ?? []) {
      for (const connection of server.pool?.checkedOut ?? []) if (connection.closed === true) closed.add(connection.id);
    }
  } catch {
    return [];
  }
  if (closed.size === 0) return [];
  return [...commands.values()].filter((c) => closed.has(c.connectionId));
}
