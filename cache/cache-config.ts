/** The cache role's settings: PIR_HOST/PIR_PORT/PIR_DATA_DIR as every role, plus PIR_CACHE_*. */
import { ConfigError, parseSize } from '../infra/config.js';

export type EventSource = 'kafka' | 'webhook' | 'off';

export interface CacheConfig {
  upstream: string;
  maxSize: number;
  decisionTtlMs: number;
  maxDecisions: number;
  /** How the cache learns of deleted/deactivated/replaced images. */
  events: EventSource;
  /** The URL the upstream reaches this cache at (webhook deliveries). */
  publicUrl: string | null;
  /** An upstream admin token: registers the webhook. */
  upstreamToken: string | null;
}

type Env = Record<string, string | undefined>;

function baseUrl(variable: string, raw: string): string {
  let url: URL;
  try { url = new URL(raw); } catch { throw new ConfigError(variable, `"${raw}" is not a URL`); }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(variable, `"${raw}" must start with http:// or https://`);
  if (url.search || url.hash || url.username || url.password) throw new ConfigError(variable, `"${raw}" must be a plain base URL`);
  return url.href.replace(/\/+$/, '');
}

function seconds(env: Env, name: string, fallback: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || value > max) throw new ConfigError(name, `"${raw}" must be a number of seconds from 0 to ${max}`);
  return value;
}

export function loadCacheConfig(env: Env, upstreamOption: string | undefined): CacheConfig {
  const rawUpstream = upstreamOption ?? env.PIR_CACHE_UPSTREAM;
  if (!rawUpstream) throw new ConfigError('--upstream', 'the cache needs the upstream PIR\'s URL (--upstream URL or PIR_CACHE_UPSTREAM)');
  const publicUrl = env.PIR_CACHE_PUBLIC_URL ? baseUrl('PIR_CACHE_PUBLIC_URL', env.PIR_CACHE_PUBLIC_URL) : null;
  const requested = (env.PIR_CACHE_EVENTS ?? 'auto').toLowerCase();
  if (!['auto', 'kafka', 'webhook', 'off'].includes(requested)) throw new ConfigError('PIR_CACHE_EVENTS', `"${env.PIR_CACHE_EVENTS}" is one of auto, kafka, webhook, off`);
  const kafka = Boolean(env.PIR_KAFKA_BROKERS);
  const events: EventSource = requested === 'auto' ? (kafka ? 'kafka' : publicUrl ? 'webhook' : 'off') : requested as EventSource;
  if (events === 'kafka' && !kafka) throw new ConfigError('PIR_CACHE_EVENTS', 'kafka needs PIR_KAFKA_BROKERS');
  if (events === 'webhook' && !publicUrl) throw new ConfigError('PIR_CACHE_PUBLIC_URL', 'must be set for webhook events (the URL the upstream delivers to)');
  const ttl = seconds(env, 'PIR_CACHE_AUTH_TTL_SECONDS', 5, 60);
  const maxDecisions = Number(env.PIR_CACHE_AUTH_ENTRIES ?? 10_000);
  if (!Number.isInteger(maxDecisions) || maxDecisions < 1 || maxDecisions > 10_000_000) throw new ConfigError('PIR_CACHE_AUTH_ENTRIES', 'must be a whole number from 1 to 10000000');
  return {
    upstream: baseUrl(upstreamOption ? '--upstream' : 'PIR_CACHE_UPSTREAM', rawUpstream),
    maxSize: env.PIR_CACHE_MAX_SIZE ? parseSize('PIR_CACHE_MAX_SIZE', env.PIR_CACHE_MAX_SIZE) : 10 * 2 ** 30,
    // lru-cache needs a ttl of at least 1 ms; 0 seconds means "ask every time".
    decisionTtlMs: Math.max(1, Math.round(ttl * 1000)),
    maxDecisions: ttl === 0 ? 1 : maxDecisions,
    events,
    publicUrl,
    upstreamToken: env.PIR_CACHE_UPSTREAM_TOKEN || env.PIR_ADMIN_TOKEN || null,
  };
}
