/**
 * How soon an ioredis client tries again after losing Redis: doubling from 50 ms to at most 1 s
 * apart (ioredis's default goes up to 5 s), plus up to 200 ms of jitter so that a process's
 * connections do not all knock at once. After an outage, PIR is back on Redis within ~1.2 s of
 * Redis being back; with the default, uploads waited 4.3–4.5 s more after an 8 s cut
 * (test/e2e/service-outage.test.ts). A connect a second per connection while Redis is down costs
 * nothing.
 */
export function redisRetryDelay(times: number): number {
  return Math.min(50 * 2 ** (times - 1), 1000) + Math.floor(Math.random() * 200);
}
