/** The tus upload leases of this deployment: in Redis when API processes share it (distributed), else in memory. */
import { Redis } from 'ioredis';
import { LocalLeases, RedisLeases, type UploadLeases } from '../ingest/tus/upload-leases.js';
import { redisRetryDelay } from './redis-reconnect.js';

/** A holder that stops renewing (a killed API process) blocks its upload's PATCHes for at most this long. */
export const TUS_LEASE_TTL_MS = 15_000;

export function openTusLeases(redisUrl: string | null, prefix: string): { leases: UploadLeases; close(): Promise<void> } {
  if (!redisUrl) return { leases: new LocalLeases(), close: async () => {} };
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2, retryStrategy: redisRetryDelay, connectionName: 'pir-tus-leases' });
  redis.on('error', () => undefined); // ioredis reconnects; failures surface on the calls (a PATCH then fails, 5xx)
  return { leases: new RedisLeases(redis, { prefix, ttlMs: TUS_LEASE_TTL_MS }), close: async () => { redis.disconnect(); } };
}
