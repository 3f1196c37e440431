/**
 * Every command a MongoDB-wire store sends, counted with its latency by store and command
 * (pir_mongo_command_duration_seconds): where a small image's database time goes, across the
 * manifest, catalog, webhook and quota stores of a process. The client must be created with
 * `monitorCommands: true`.
 */
import type { MongoClient } from 'mongodb';
import { mongoCommandDuration } from '../telemetry/metrics.js';

export type MongoStoreName = 'manifest' | 'catalog' | 'webhooks' | 'quotas';

export function observeCommands(client: MongoClient, store: MongoStoreName): void {
  const observe = (e: { commandName: string; duration: number }) => mongoCommandDuration.observe({ store, command: e.commandName }, e.duration / 1000);
  client.on('commandSucceeded', observe);
  client.on('commandFailed', observe);
}
