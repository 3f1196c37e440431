/**
 * The stores' MongoDB clients: durable writes (majority, journaled) and every command counted
 * with its latency by store and command (pir_mongo_command_duration_seconds), which needs the
 * driver's command monitoring on: where a small image's database time goes, across the
 * manifest, catalog, webhook and quota stores of a process.
 */
import { MongoClient, type MongoClientOptions } from 'mongodb';
import { mongoCommandDuration } from '../telemetry/metrics.js';
import { trackCommands } from './stuck-commands.js';

export type MongoStoreName = 'manifest' | 'catalog' | 'webhooks' | 'quotas' | 'metadefs';

/**
 * How often each client's monitor checks the server (the driver's default is 10 s). A server the
 * monitor saw fail stays unselectable until its next check succeeds, and a check still under way
 * ignores the driver's requests for an earlier one: after an outage, operations failed for up to
 * one full interval after the server was back (test/e2e/service-outage.test.ts). One `hello`
 * every 2 s per client is nothing beside a small image's ten commands.
 */
const HEARTBEAT_FREQUENCY_MS = 2000;

/**
 * How long a connection attempt, and the monitor's check, may take (the driver's default is 30 s).
 * The driver has no socket timeout, so when the server goes silent (a network that drops packets
 * without a reset) the requests waiting on it are freed only when a check times out: the monitor
 * then closes the connections in use and their operations fail (503). With 30 s a request was held
 * ~36 s; with 10 s, ~17 s. A connection string that sets connectTimeoutMS keeps its own.
 */
const CONNECT_TIMEOUT_MS = 10_000;

export function monitoredClient(url: string, store: MongoStoreName, options: MongoClientOptions = {}): MongoClient {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 5000, heartbeatFrequencyMS: HEARTBEAT_FREQUENCY_MS, ...(/[?&]connecttimeoutms=/i.test(url) ? {} : { connectTimeoutMS: CONNECT_TIMEOUT_MS }), writeConcern: { w: 'majority', journal: true }, ...options, monitorCommands: true });
  const observe = (e: { commandName: string; duration: number }) => mongoCommandDuration.observe({ store, command: e.commandName }, e.duration / 1000);
  client.on('commandSucceeded', observe);
  client.on('commandFailed', observe);
  trackCommands(client); // so that a write stuck in the driver can be given up (infra/mongo/stuck-commands.ts)
  return client;
}
