/**
 * The stores' MongoDB clients: durable writes (majority, journaled) and every command counted
 * with its latency by store and command (pir_mongo_command_duration_seconds), which needs the
 * driver's command monitoring on: where a small image's database time goes, across the
 * manifest, catalog, webhook and quota stores of a process.
 */
import { MongoClient, type MongoClientOptions } from 'mongodb';
import { mongoCommandDuration } from '../telemetry/metrics.js';

export type MongoStoreName = 'manifest' | 'catalog' | 'webhooks' | 'quotas' | 'metadefs';

export function monitoredClient(url: string, store: MongoStoreName, options: MongoClientOptions = {}): MongoClient {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 5000, writeConcern: { w: 'majority', journal: true }, ...options, monitorCommands: true });
  const observe = (e: { commandName: string; duration: number }) => mongoCommandDuration.observe({ store, command: e.commandName }, e.duration / 1000);
  client.on('commandSucceeded', observe);
  client.on('commandFailed', observe);
  return client;
}
