/** The cache role's Prometheus metrics, on a registry of its own (the cache runs none of PIR's other parts). */
import client from 'prom-client';

export const cacheRegistry = new client.Registry();
client.collectDefaultMetrics({ register: cacheRegistry, prefix: 'pir_cache_process_' });

const counter = (name: string, help: string, labelNames: string[] = []) => new client.Counter({ name, help, labelNames, registers: [cacheRegistry] });

export const cacheMetrics = {
  hits: counter('pir_cache_hits_total', 'Downloads answered from a verified cache entry'),
  misses: counter('pir_cache_misses_total', 'Downloads that needed the upstream (a new fill, a running fill joined, or a pass-through)', ['kind']),
  bytesFromCache: counter('pir_cache_bytes_served_from_cache_total', 'Image bytes sent to clients from verified cache entries'),
  bytesFromFill: counter('pir_cache_bytes_served_from_fill_total', 'Image bytes sent to clients from a fill in progress (one upstream read shared)'),
  bytesUpstream: counter('pir_cache_bytes_from_upstream_total', 'Image bytes the cache read from the upstream to fill entries'),
  bytesPassedThrough: counter('pir_cache_bytes_passed_through_total', 'Image bytes streamed from the upstream without caching (too large, no room)'),
  evictions: counter('pir_cache_evictions_total', 'Entries removed, by reason (lru, deleted, deactivated, replaced, corrupt, admin)', ['reason']),
  corrupt: counter('pir_cache_corrupt_total', 'Entries whose file no longer matched its verified hash'),
  events: counter('pir_cache_events_total', 'Image events received from the upstream, by type', ['type']),
  size: new client.Gauge({ name: 'pir_cache_size_bytes', help: 'Bytes held or reserved by cache entries and fills', registers: [cacheRegistry], collect() { this.set(gaugeSource().size); } }),
  entries: new client.Gauge({ name: 'pir_cache_entries', help: 'Verified cache entries', registers: [cacheRegistry], collect() { this.set(gaugeSource().entries); } }),
  maxSize: new client.Gauge({ name: 'pir_cache_max_size_bytes', help: 'PIR_CACHE_MAX_SIZE', registers: [cacheRegistry], collect() { this.set(gaugeSource().maxSize); } }),
};

let gaugeSource: () => { size: number; entries: number; maxSize: number } = () => ({ size: 0, entries: 0, maxSize: 0 });

/** Where the size gauges read from at each scrape (the running store). */
export function setGaugeSource(source: typeof gaugeSource): void {
  gaugeSource = source;
}
