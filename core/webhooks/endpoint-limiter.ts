/**
 * The per-endpoint concurrency limit of webhook deliveries: at most N in flight to one
 * subscription. `tryAcquire` answers at once (null when the endpoint is full: the job is
 * deferred, not an attempt). Embedded mode counts in the process (InProcessEndpointLimiter); in
 * distributed mode the count is shared by every worker process (infra/webhooks/redis-endpoint-limiter.ts).
 */
export interface EndpointLease {
  release(): Promise<void>;
}

export interface EndpointLimiter {
  tryAcquire(endpoint: string, limit: number): Promise<EndpointLease | null>;
  /**
   * One lease (or null) per endpoint, in order, taken in one step: a fan-out's first attempts to
   * many endpoints cost one round trip, not one each.
   */
  tryAcquireMany(endpoints: string[], limit: number): Promise<(EndpointLease | null)[]>;
  close(): Promise<void>;
}

export class InProcessEndpointLimiter implements EndpointLimiter {
  private readonly inFlight = new Map<string, number>();

  async tryAcquire(endpoint: string, limit: number): Promise<EndpointLease | null> {
    const running = this.inFlight.get(endpoint) ?? 0;
    if (running >= limit) return null;
    this.inFlight.set(endpoint, running + 1);
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        const left = (this.inFlight.get(endpoint) ?? 1) - 1;
        if (left <= 0) this.inFlight.delete(endpoint);
        else this.inFlight.set(endpoint, left);
      },
    };
  }

  async tryAcquireMany(endpoints: string[], limit: number): Promise<(EndpointLease | null)[]> {
    const leases: (EndpointLease | null)[] = [];
    for (const endpoint of endpoints) leases.push(await this.tryAcquire(endpoint, limit));
    return leases;
  }

  async close(): Promise<void> {}
}
