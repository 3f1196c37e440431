/**
 * Small helpers of the delivery path. The semaphore is hand-written: it shares its slots between
 * keys in turn with a cap per key, which the usual limiters (p-limit, p-queue) do not; the TTL
 * set is lru-cache, already a dependency.
 */
import { LRUCache } from 'lru-cache';

/**
 * At most `limit` tasks at once, shared fairly between keys (projects): no key holds more than
 * three quarters of the slots, so another project's delivery always finds one soon, and a freed
 * slot goes to the next key in turn with a task waiting (each key's tasks start in order). So one
 * project's hundreds of deliveries to slow receivers do not make another's wait behind them all
 * (measured: 66-72 s with one queue in order).
 */
export class InFlightGate {
  private running = 0;
  private readonly runningOf = new Map<string, number>();
  /** Waiting tasks per key; a key is here only while it has some, in the order keys take turns. */
  private readonly waiting = new Map<string, (() => void)[]>();
  private readonly keyLimit: number;

  constructor(private readonly limit: number) {
    this.keyLimit = Math.max(1, Math.floor((limit * 3) / 4));
  }

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    if (this.running < this.limit && (this.runningOf.get(key) ?? 0) < this.keyLimit) this.start(key);
    else {
      await new Promise<void>((resolve) => {
        const queue = this.waiting.get(key);
        if (queue) queue.push(resolve);
        else this.waiting.set(key, [resolve]);
      });
    }
    try {
      return await task();
    } finally {
      this.finish(key);
    }
  }

  private start(key: string): void {
    this.running++;
    this.runningOf.set(key, (this.runningOf.get(key) ?? 0) + 1);
  }

  private finish(key: string): void {
    this.running--;
    const left = this.runningOf.get(key)! - 1;
    if (left === 0) this.runningOf.delete(key);
    else this.runningOf.set(key, left);
    this.startWaiting();
  }

  /** Starts waiters while slots are free: each time the first key in turn below its share, which then goes to the back of the turn. */
  private startWaiting(): void {
    while (this.running < this.limit) {
      let chosen: [string, (() => void)[]] | undefined;
      for (const entry of this.waiting) {
        if ((this.runningOf.get(entry[0]) ?? 0) < this.keyLimit) {
          chosen = entry;
          break;
        }
      }
      if (!chosen) return;
      const [key, queue] = chosen;
      const next = queue.shift()!;
      this.waiting.delete(key);
      if (queue.length > 0) this.waiting.set(key, queue); // re-inserted: last in the turn order
      this.start(key);
      next();
    }
  }
}

/**
 * Endpoints that answered slowly (or not at all) recently. The fan-out sends their first attempt
 * through a delivery job instead of inline, so a slow receiver holds its own jobs, not the
 * fan-out of an event every other subscriber is waiting for.
 */
export class SlowEndpoints {
  private readonly slow: LRUCache<string, true>;

  /**
   * 5 s: an attempt's time includes this process's own event-loop delays, which under load reach
   * a second or more with a hundred attempts in flight; marking endpoints slow on those sent
   * healthy ones through jobs (more work, more delay: a spiral, measured).
   */
  constructor(readonly thresholdMs = 5000, forMs = 60_000) {
    this.slow = new LRUCache({ max: 10_000, ttl: forMs });
  }

  note(endpoint: string, latencyMs: number): void {
    if (latencyMs >= this.thresholdMs) this.slow.set(endpoint, true);
  }

  has(endpoint: string): boolean {
    return this.slow.has(endpoint);
  }
}
