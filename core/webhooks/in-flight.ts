/**
 * Small helpers of the delivery path. The counting semaphore is hand-written (a dozen lines, not
 * worth a dependency); the TTL set is lru-cache, already a dependency.
 */
import { LRUCache } from 'lru-cache';

/** At most `limit` tasks at once; the others wait in order. */
export class InFlightGate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // the slot passes straight to the next waiter
      else this.running--;
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
