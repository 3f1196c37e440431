/**
 * One writer per tus upload across API processes. A PATCH takes the upload's lease before it
 * appends and gives it back when done; a PATCH that finds it taken is refused with 423 (tus
 * clients retry after a HEAD). The lease lives where every API process sees it: Redis in
 * distributed mode (SET NX PX, renewed while the PATCH runs, released only by its holder); in
 * the embedded mode's single process, a set in memory.
 *
 * A holder that cannot renew (Redis unreachable, a process paused past the TTL) loses the lease:
 * its `signal` aborts, and the PATCH stops taking bytes and commits what it has before another
 * process could resume from the same offset.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

export interface Lease {
  /** Aborts when the lease was lost before release. */
  readonly signal: AbortSignal;
  release(): Promise<void>;
}

export interface UploadLeases {
  /** The lease on `key`, or null when another holder has it. */
  acquire(key: string): Promise<Lease | null>;
}

export class LocalLeases implements UploadLeases {
  private readonly held = new Set<string>();

  async acquire(key: string): Promise<Lease | null> {
    if (this.held.has(key)) return null;
    this.held.add(key);
    const controller = new AbortController();
    return { signal: controller.signal, release: async () => { this.held.delete(key); } };
  }
}

const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

export interface RedisLeaseSettings {
  /** Key prefix (PIR_REDIS_PREFIX), so several PIRs can share one Redis. */
  prefix: string;
  /** How long a lease outlives a holder that stopped renewing (a killed process). */
  ttlMs: number;
}

export class RedisLeases implements UploadLeases {
  constructor(private readonly redis: Redis, private readonly settings: RedisLeaseSettings) {}

  async acquire(key: string): Promise<Lease | null> {
    const redisKey = `${this.settings.prefix}:tus-lease:${key}`;
    const token = randomBytes(16).toString('hex');
    const taken = await this.redis.set(redisKey, token, 'PX', this.settings.ttlMs, 'NX');
    if (taken !== 'OK') return null;
    const controller = new AbortController();
    const lost = (why: string) => { if (!controller.signal.aborted) controller.abort(new Error(`lost the lease of upload ${key}: ${why}`)); };
    const timer = setInterval(() => {
      this.redis.eval(RENEW, 1, redisKey, token, String(this.settings.ttlMs))
        .then((renewed) => { if (renewed !== 1) lost('another holder has it'); })
        .catch((error: unknown) => lost((error as Error).message));
    }, Math.max(50, Math.floor(this.settings.ttlMs / 3)));
    timer.unref();
    return {
      signal: controller.signal,
      release: async () => {
        clearInterval(timer);
        await this.redis.eval(RELEASE, 1, redisKey, token).catch(() => {});
      },
    };
  }
}
