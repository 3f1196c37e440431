/**
 * The webhook per-endpoint limit shared by every worker process (distributed mode): a counting
 * semaphore in Redis made of leases. Each endpoint has a sorted set of lease ids scored by their
 * expiry (Redis's clock, so workers' clocks need not agree). Acquiring drops expired leases and
 * adds one if fewer than N remain, in one script; a holder renews its lease while its delivery
 * runs, and removes it when done. A worker that dies holding a lease frees its slot when the
 * lease expires (15 s after its last renewal), so a crash never shrinks the limit for good.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { EndpointLease, EndpointLimiter } from '../../core/webhooks/endpoint-limiter.js';
import { redisRetryDelay } from '../redis-reconnect.js';

/** KEYS[1] the endpoint's set; ARGV: limit, lease id, ttl ms. Returns 1 when the lease was taken. */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1`;

/**
 * KEYS: the endpoints' sets; ARGV: limit, ttl ms, then one lease id per key. Returns one 1/0 per
 * key: ACQUIRE for each in turn, as one atomic step (a fan-out's leases in one round trip).
 */
const ACQUIRE_MANY = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local taken = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= limit then
    taken[i] = 0
  else
    redis.call('ZADD', key, now + ttl, ARGV[i + 2])
    redis.call('PEXPIRE', key, ttl * 2)
    taken[i] = 1
  end
end
return taken`;

/** KEYS[1] the set; ARGV: lease id, ttl ms. Extends a lease that still exists (XX). */
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return n`;

type LeaseRedis = Redis & {
  pirLeaseAcquire(k: string, limit: number, id: string, ttl: number): Promise<number>;
  pirLeaseRenew(k: string, id: string, ttl: number): Promise<number>;
  pirLeaseAcquireMany(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
};

export interface RedisEndpointLimiterOptions {
  redisUrl: string;
  prefix: string;
  /** How long a lease outlives its last renewal (a dead worker's slot comes back after this). */
  leaseMs?: number;
}

export class RedisEndpointLimiter implements EndpointLimiter {
  private readonly redis: Redis;
  private readonly leaseMs: number;
  private readonly renewals = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: RedisEndpointLimiterOptions, private readonly log: Logger) {
    this.leaseMs = opts.leaseMs ?? 15_000;
    this.redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 2, retryStrategy: redisRetryDelay, connectionName: 'pir-webhook-limiter' });
    this.redis.on('error', () => undefined); // ioredis reconnects; failures surface on the calls
    this.redis.defineCommand('pirLeaseAcquire', { numberOfKeys: 1, lua: ACQUIRE });
    this.redis.defineCommand('pirLeaseRenew', { numberOfKeys: 1, lua: RENEW });
    this.redis.defineCommand('pirLeaseAcquireMany', { lua: ACQUIRE_MANY });
  }

  private key(endpoint: string): string {
    return `${this.opts.prefix}:webhook-endpoint-slots:${endpoint}`;
  }

  async tryAcquire(endpoint: string, limit: number): Promise<EndpointLease | null> {
    const key = this.key(endpoint);
    const id = randomUUID();
    if ((await (this.redis as LeaseRedis).pirLeaseAcquire(key, limit, id, this.leaseMs)) !== 1) return null;
    return this.lease(endpoint, key, id);
  }

  async tryAcquireMany(endpoints: string[], limit: number): Promise<(EndpointLease | null)[]> {
    if (endpoints.length === 0) return [];
    const keys = endpoints.map((e) => this.key(e));
    const ids = endpoints.map(() => randomUUID());
    // numberOfKeys is not fixed: ioredis takes it as the first argument.
    const taken = await (this.redis as LeaseRedis).pirLeaseAcquireMany(keys.length, ...keys, limit, this.leaseMs, ...ids);
    return endpoints.map((endpoint, i) => (taken[i] === 1 ? this.lease(endpoint, keys[i]!, ids[i]!) : null));
  }

  /** A taken lease: renewed while held, removed on release. */
  private lease(endpoint: string, key: string, id: string): EndpointLease {
    const r = this.redis as LeaseRedis;
    const renew = setInterval(() => {
      r.pirLeaseRenew(key, id, this.leaseMs).catch((err: Error) => this.log.warn({ err, endpoint }, 'webhook endpoint lease renewal failed'));
    }, Math.max(100, Math.floor(this.leaseMs / 3)));
    renew.unref();
    this.renewals.add(renew);
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(renew);
        this.renewals.delete(renew);
        // A lost release only keeps the slot until the lease expires.
        await this.redis.zrem(key, id).catch((err: Error) => this.log.warn({ err, endpoint }, 'webhook endpoint lease release failed; it expires on its own'));
      },
    };
  }

  async close(): Promise<void> {
    for (const timer of this.renewals) clearInterval(timer);
    this.renewals.clear();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
