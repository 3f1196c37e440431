/**
 * The one place that reads the environment. Every PIR_* variable is parsed and validated here
 * at start-up; a bad value stops the process with a message naming the variable.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { DeactivatePolicy } from '../core/policy.js';
import { parseQuotaConfig, type QuotaConfig } from '../core/quota.js';
import { parseSecretKey } from '../core/webhooks/secret-box.js';
import { parseAllowList } from './egress/address-policy.js';
import { DEFAULT_EGRESS, type EgressSettings } from './egress/egress-client.js';
import { DEFAULT_GLANCE_DOWNLOAD_PROPERTIES } from '../ingest/glance-download.js';
import { DEFAULT_LOCATION_SETTINGS, type LocationSettings } from '../core/external-location.js';
import type { KeystoneSettings } from './identity/keystone.js';
import { SINGLE_STORE_ID, StoreConfigError, parseStores, type StoresConfig } from './store-config.js';

export interface StageConcurrency { unpack: number; inspect: number; checksum: number; promote: number }

export interface PirConfig {
  host: string;
  port: number;
  /** PIR_METRICS_PORT: /metrics without a token on a port of its own; null = off. */
  metricsPort: number | null;
  /** PIR_TRACE_UI_URL: the trace UI (Jaeger) the ops page links images' traces to; null = no links. */
  traceUiUrl: string | null;
  dataDir: string;
  /** The object store for image bytes (PIR_S3_*); null: the filesystem under dataDir. */
  s3: S3Config | null;
  /** PIR_STORES / PIR_DEFAULT_STORE (infra/store-config.ts): Glance's multi-store. */
  stores: StoresConfig;
  /** Null: generate one at start and keep it in <dataDir>/admin-token. At least 32 characters. */
  adminToken: string | null;
  /**
   * The base URL clients reach PIR at (Glance's public_endpoint), for the links /versions answers;
   * null: http://<the address PIR listens on>.
   */
  publicUrl: string | null;
  /** Identity: Keystone when PIR_KEYSTONE_URL is set, else the tokens file (and the admin token). */
  tokensFile: string | null;
  keystone: KeystoneSettings | null;
  maxImageSize: number;
  maxVirtualSize: number;
  allowEncryptedImages: boolean;
  /** Unpack limits: the largest unpacked output and the largest output/input ratio. */
  maxUnpackedSize: number;
  maxExpansionRatio: number;
  /** Unpacked output below which the expansion ratio is not enforced (mostly-empty disks). */
  unpackRatioFloor: number;
  kafkaBrokers: string[] | null;
  kafkaTopic: string;
  redisUrl: string | null;
  /** Prefix of PIR's Redis keys, so several PIRs (or test runs) can share one Redis. */
  redisPrefix: string;
  mongodbUrl: string | null;
  concurrency: StageConcurrency;
  stageAttempts: number;
  stageBackoffMs: number;
  /** A run with no stage progress for this long is stuck: it is resumed, then killed. */
  stageDeadlineSeconds: number;
  /** Images whose staged bytes are at most this size run all their stages in one job (0: never). */
  fusedStagesMaxSize: number;
  /** An upload whose receiving process stopped heartbeating for this long is abandoned. */
  uploadStallSeconds: number;
  /** Distributed start-up: how long to wait for the MongoDB-wire server and Kafka to answer (0: fail at once). */
  startupWaitSeconds: number;
  /** After SIGTERM/SIGINT, exit (status 1) if stopping has not finished within this (a request stuck on a silent service must not keep the process alive). */
  shutdownTimeoutSeconds: number;
  /** How often the store janitor runs (orphaned bytes, unrecorded copies, abandoned multipart uploads). */
  storeSweepSeconds: number;
  /** An object store's multipart upload older than this that no live image owns is aborted by the janitor. */
  multipartAbortAfterSeconds: number;
  /** An upload whose body brings no byte for this long is aborted (the client went silent). */
  uploadIdleSeconds: number;
  /** How long PUT …/file waits after its last byte for the image to settle; then it answers 202. */
  uploadSettleWaitSeconds: number;
  /** A resumable (tus) upload not finished this long after its creation is abandoned. */
  tusExpirySeconds: number;
  /** Metadata revisions kept per image (PIR_REVISIONS_KEEP); older ones are pruned. */
  revisionsKeep: number;
  /** Open GET /v2/events streams per user and project, per API process (PIR_EVENT_STREAMS_PER_USER). */
  eventStreamsPerUser: number;
  /** Who may deactivate and reactivate images (PIR_DEACTIVATE_POLICY): core/policy.ts. */
  deactivatePolicy: DeactivatePolicy;
  logLevel: string;
  /** Test-only fault hooks, e.g. "exit-after-manifest-write:image.import.started". */
  testFaults: string[];
  /** Outgoing requests to user-given URLs (web-download): allow-list, ports, timeouts. */
  egress: EgressSettings;
  /** Quotas per project (PIR_QUOTAS or PIR_QUOTAS_FILE); null = off. */
  quotas: QuotaConfig | null;
  webhooks: WebhookSettings;
  /** Registering bytes that already exist (README "Registering existing bytes"). */
  locations: LocationSettings;
  /** PIR_GLANCE_DOWNLOAD_PROPERTIES: prefixes of the properties a glance-download copies (Glance's glance_download_properties). */
  glanceDownloadProperties: string[];
}

export interface WebhookSettings {
  /** PIR_WEBHOOK_SECRET_KEY (32 bytes); null: generated into <dataDir>/webhook-secret-key. */
  secretKey: Buffer | null;
  /** Delay before each retry (ms); attempts = length + 1. */
  retrySchedule: number[];
  /** Deliveries failed for good in a row (no success between) after which the endpoint is disabled. */
  disableAfterFailures: number;
  connectTimeoutMs: number;
  /** The whole attempt: connect, send, answer, response body. */
  timeoutMs: number;
  /** Deliveries in flight to one endpoint from one worker process. */
  perEndpointConcurrency: number;
  /** Delivery jobs in flight per worker process. */
  concurrency: number;
  /** After a rotation, the old secret keeps signing this long. */
  rotationGraceSeconds: number;
  /** Pings of one webhook a minute, per API process. */
  pingsPerMinute: number;
  /** Ended (not pending) deliveries created longer ago than this are deleted. */
  deliveryRetentionMs: number;
}

export type DistributedUrls = { kafkaBrokers: string[]; redisUrl: string; mongodbUrl: string };

export class ConfigError extends Error {
  constructor(variable: string, problem: string) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30, t: 2 ** 40, tib: 2 ** 40 };

/** Parses "1099511627776", "512MiB", "1 TiB", "4g" into bytes. */
export function parseSize(variable: string, text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = match ? SIZE_UNITS[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) throw new ConfigError(variable, `"${text}" is not a size (examples: 1073741824, 512MiB, 1TiB)`);
  return Math.floor(Number(match[1]) * unit);
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(name, `"${raw}" must be a whole number from ${min} to ${max}`);
  }
  return value;
}

function size(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  return raw === undefined || raw === '' ? fallback : parseSize(name, raw);
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `"${env[name]}" must be true or false`);
}

function name(env: Env, variable: string, fallback: string): string {
  const raw = env[variable];
  if (raw === undefined || raw === '') return fallback;
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(raw)) throw new ConfigError(variable, `"${raw}" may hold only letters, digits, '.', '_' and '-'`);
  return raw;
}

function optionalUrl(env: Env, name: string, protocols: string[]): string | null {
  const raw = env[name];
  if (raw === undefined || raw === '') return null;
  let url: URL;
  try { url = new URL(raw); } catch { throw new ConfigError(name, `"${raw}" is not a URL`); }
  if (!protocols.includes(url.protocol)) throw new ConfigError(name, `"${raw}" must start with ${protocols.join(' or ')}//`);
  return raw;
}

/** PIR_KAFKA_BROKERS alone (the cache role reads events without PIR's other stores). */
export function brokers(env: Env): string[] | null {
  const raw = env.PIR_KAFKA_BROKERS;
  if (raw === undefined || raw === '') return null;
  const list = raw.split(',').map((b) => b.trim()).filter(Boolean);
  for (const broker of list) {
    if (!/^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/.test(broker)) throw new ConfigError('PIR_KAFKA_BROKERS', `"${broker}" is not host:port`);
  }
  return list;
}

/** Shorter tokens can be guessed or brute-forced; the generated one has 32 characters (24 random bytes). */
export const MIN_ADMIN_TOKEN_LENGTH = 32;

function adminToken(env: Env): string | null {
  const raw = env.PIR_ADMIN_TOKEN;
  if (raw === undefined || raw === '') return null;
  if (raw.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new ConfigError('PIR_ADMIN_TOKEN', `must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters (it has ${raw.length}); use e.g. \`openssl rand -base64 32\`, or leave it unset to have one generated`);
  }
  if (!/^[\x21-\x7e]+$/.test(raw)) throw new ConfigError('PIR_ADMIN_TOKEN', 'may hold only printable ASCII characters without spaces (it is sent as an HTTP header)');
  return raw;
}

/** PIR_PUBLIC_URL, without a trailing slash. */
function publicUrl(env: Env): string | null {
  const raw = env.PIR_PUBLIC_URL;
  if (raw === undefined || raw === '') return null;
  let url: URL;
  try { url = new URL(raw); } catch { throw new ConfigError('PIR_PUBLIC_URL', `"${raw}" is not a URL`); }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('PIR_PUBLIC_URL', `"${raw}" must start with http:// or https://`);
  if (url.search || url.hash || url.username || url.password) throw new ConfigError('PIR_PUBLIC_URL', `"${raw}" must be a plain base URL (no query, fragment or credentials)`);
  return url.href.replace(/\/+$/, '');
}

function required(env: Env, name: string, why: string): string {
  const raw = env[name];
  if (raw === undefined || raw === '') throw new ConfigError(name, `must be set ${why}`);
  return raw;
}

/** Keystone's identity v3 URL from PIR_KEYSTONE_URL, given with or without the /v3. */
function keystone(env: Env): KeystoneSettings | null {
  const raw = optionalUrl(env, 'PIR_KEYSTONE_URL', ['http:', 'https:']);
  if (raw === null) return null;
  const trimmed = raw.replace(/\/+$/, '');
  const why = 'when PIR_KEYSTONE_URL is (PIR logs in to Keystone as this service user to validate tokens)';
  return {
    url: /\/v3$/.test(trimmed) ? trimmed : `${trimmed}/v3`,
    username: required(env, 'PIR_KEYSTONE_USERNAME', why),
    password: required(env, 'PIR_KEYSTONE_PASSWORD', why),
    projectName: env.PIR_KEYSTONE_PROJECT || 'service',
    userDomainName: env.PIR_KEYSTONE_USER_DOMAIN_NAME || 'Default',
    projectDomainName: env.PIR_KEYSTONE_PROJECT_DOMAIN_NAME || 'Default',
    cacheSize: int(env, 'PIR_KEYSTONE_CACHE_SIZE', 10_000, 1, 10_000_000),
    cacheSeconds: int(env, 'PIR_KEYSTONE_CACHE_SECONDS', 300, 1, 86400),
    negativeCacheSeconds: int(env, 'PIR_KEYSTONE_NEGATIVE_CACHE_SECONDS', 10, 0, 3600),
    timeoutSeconds: int(env, 'PIR_KEYSTONE_TIMEOUT_SECONDS', 10, 1, 300),
  };
}

export interface S3Config {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  forcePathStyle: boolean;
  /** Key prefix inside the bucket ('' or ending in '/'). */
  prefix: string;
  /** Multipart part size (S3 allows 10,000 parts: the part size caps one image at 10,000 × it). */
  partSize: number;
  /** Parts sent at once per upload (memory: one more part than this, per upload). */
  queueSize: number;
  /** Sign each body's sha256; absent: only over plain HTTP to another host. */
  signPayload?: boolean;
  /** HTTP client of GetObject (S3Settings.readClient). */
  readClient: 'undici' | 'node';
  /** PIR_S3_TIMEOUT_SECONDS in ms: longest silence of the server within a request (S3Settings.timeoutMs). */
  timeoutMs: number;
}

/** PIR_S3_*: with PIR_S3_ENDPOINT set, images live in that bucket (both modes). */
function s3(env: Env): S3Config | null {
  const endpoint = optionalUrl(env, 'PIR_S3_ENDPOINT', ['http:', 'https:']);
  if (endpoint === null) {
    const stray = ['PIR_S3_BUCKET', 'PIR_S3_ACCESS_KEY_ID', 'PIR_S3_SECRET_ACCESS_KEY', 'PIR_S3_PREFIX'].filter((v) => env[v]);
    if (stray.length) throw new ConfigError(stray.join(', '), 'set PIR_S3_ENDPOINT too (or unset these): without it images are stored on the filesystem');
    return null;
  }
  const why = 'when PIR_S3_ENDPOINT is';
  const bucket = required(env, 'PIR_S3_BUCKET', why);
  // S3's bucket naming rules (3-63 lowercase letters, digits, dots, hyphens).
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ConfigError('PIR_S3_BUCKET', `"${bucket}" is not a valid bucket name (3-63 lowercase letters, digits, '.', '-')`);
  const prefix = env.PIR_S3_PREFIX ?? '';
  if (prefix !== '' && (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/$/.test(prefix) || prefix.split('/').some((part) => /^\.+$/.test(part)))) {
    throw new ConfigError('PIR_S3_PREFIX', `"${prefix}" must be path segments of letters, digits, '.', '_', '-' ending in '/' (e.g. pir/)`);
  }
  const region = env.PIR_S3_REGION || 'us-east-1';
  if (!/^[a-z0-9-]{1,40}$/.test(region)) throw new ConfigError('PIR_S3_REGION', `"${region}" is not a region name (e.g. us-east-1)`);
  return {
    endpoint: endpoint.replace(/\/+$/, ''),
    bucket,
    accessKeyId: required(env, 'PIR_S3_ACCESS_KEY_ID', why),
    secretAccessKey: required(env, 'PIR_S3_SECRET_ACCESS_KEY', why),
    region,
    forcePathStyle: bool(env, 'PIR_S3_FORCE_PATH_STYLE', true),
    prefix,
    partSize: s3PartSize(env),
    queueSize: int(env, 'PIR_S3_QUEUE_SIZE', 2, 1, 64),
    // Unset: signed only over plain HTTP to another host (S3Settings.signPayload).
    ...(env.PIR_S3_SIGN_PAYLOAD ? { signPayload: bool(env, 'PIR_S3_SIGN_PAYLOAD', false) } : {}),
    readClient: s3ReadClient(env),
    timeoutMs: int(env, 'PIR_S3_TIMEOUT_SECONDS', 30, 1, 3600) * 1000,
  };
}

function s3ReadClient(env: Env): 'undici' | 'node' {
  const value = env.PIR_S3_READ_CLIENT || 'undici';
  if (value !== 'undici' && value !== 'node') throw new ConfigError('PIR_S3_READ_CLIENT', `"${value}" is not undici or node`);
  return value;
}

function deactivatePolicy(env: Env): DeactivatePolicy {
  const value = env.PIR_DEACTIVATE_POLICY || 'admin';
  if (value !== 'admin' && value !== 'owner') throw new ConfigError('PIR_DEACTIVATE_POLICY', `"${value}" is not admin or owner`);
  return value;
}

function s3PartSize(env: Env): number {
  const partSize = size(env, 'PIR_S3_PART_SIZE', 8 * 2 ** 20);
  if (partSize < 5 * 2 ** 20 || partSize > 5 * 2 ** 30) throw new ConfigError('PIR_S3_PART_SIZE', 'must be from 5MiB to 5GiB (S3\'s part size limits)');
  return partSize;
}

export function loadConfig(env: Env = process.env): PirConfig {
  const host = env.PIR_HOST || '127.0.0.1';
  const config: PirConfig = {
    host,
    port: int(env, 'PIR_PORT', 9292, 0, 65535),
    metricsPort: env.PIR_METRICS_PORT ? int(env, 'PIR_METRICS_PORT', 0, 0, 65535) : null,
    traceUiUrl: optionalUrl(env, 'PIR_TRACE_UI_URL', ['http:', 'https:'])?.replace(/\/+$/, '') ?? null,
    dataDir: resolve(env.PIR_DATA_DIR || './data'),
    s3: s3(env),
    stores: { stores: null, defaultStore: SINGLE_STORE_ID },
    adminToken: adminToken(env),
    publicUrl: publicUrl(env),
    tokensFile: env.PIR_TOKENS_FILE ? resolve(env.PIR_TOKENS_FILE) : null,
    keystone: keystone(env),
    glanceDownloadProperties: glanceDownloadProperties(env),
    maxImageSize: size(env, 'PIR_MAX_IMAGE_SIZE', 2 ** 40),
    maxVirtualSize: size(env, 'PIR_MAX_VIRTUAL_SIZE', 64 * 2 ** 40),
    allowEncryptedImages: bool(env, 'PIR_ALLOW_ENCRYPTED_IMAGES', false),
    maxUnpackedSize: size(env, 'PIR_MAX_UNPACKED_SIZE', 2 ** 40),
    maxExpansionRatio: int(env, 'PIR_MAX_EXPANSION_RATIO', 200, 1, 1_000_000),
    unpackRatioFloor: size(env, 'PIR_UNPACK_RATIO_FLOOR', 2 ** 30),
    kafkaBrokers: brokers(env),
    kafkaTopic: name(env, 'PIR_KAFKA_TOPIC', 'pir.image-events'),
    redisUrl: optionalUrl(env, 'PIR_REDIS_URL', ['redis:', 'rediss:']),
    redisPrefix: name(env, 'PIR_REDIS_PREFIX', 'pir'),
    mongodbUrl: optionalUrl(env, 'PIR_MONGODB_URL', ['mongodb:', 'mongodb+srv:']),
    concurrency: {
      unpack: int(env, 'PIR_UNPACK_CONCURRENCY', 8, 1, 256),
      inspect: int(env, 'PIR_INSPECT_CONCURRENCY', 8, 1, 256),
      checksum: int(env, 'PIR_CHECKSUM_CONCURRENCY', 8, 1, 256),
      promote: int(env, 'PIR_PROMOTE_CONCURRENCY', 8, 1, 256),
    },
    stageAttempts: int(env, 'PIR_STAGE_ATTEMPTS', 5, 1, 100),
    stageBackoffMs: int(env, 'PIR_STAGE_BACKOFF_MS', 500, 1, 3_600_000),
    stageDeadlineSeconds: int(env, 'PIR_STAGE_DEADLINE_SECONDS', 900, 1, 7 * 86400),
    fusedStagesMaxSize: size(env, 'PIR_FUSED_STAGES_MAX_SIZE', 64 * 2 ** 20),
    uploadStallSeconds: int(env, 'PIR_UPLOAD_STALL_SECONDS', 120, 1, 86400),
    startupWaitSeconds: int(env, 'PIR_STARTUP_WAIT_SECONDS', 60, 0, 3600),
    shutdownTimeoutSeconds: int(env, 'PIR_SHUTDOWN_TIMEOUT_SECONDS', 60, 1, 3600),
    storeSweepSeconds: int(env, 'PIR_STORE_SWEEP_SECONDS', 300, 1, 86400),
    multipartAbortAfterSeconds: int(env, 'PIR_MULTIPART_ABORT_AFTER_SECONDS', 3600, 1, 30 * 86400),
    uploadIdleSeconds: int(env, 'PIR_UPLOAD_IDLE_SECONDS', 60, 1, 86400),
    uploadSettleWaitSeconds: int(env, 'PIR_UPLOAD_SETTLE_WAIT_SECONDS', 300, 1, 86400),
    tusExpirySeconds: int(env, 'PIR_TUS_EXPIRY_SECONDS', 86400, 60, 30 * 86400),
    revisionsKeep: int(env, 'PIR_REVISIONS_KEEP', 100, 1, 1_000_000),
    eventStreamsPerUser: int(env, 'PIR_EVENT_STREAMS_PER_USER', 16, 1, 10_000),
    deactivatePolicy: deactivatePolicy(env),
    logLevel: logLevel(env),
    testFaults: (env.PIR_TEST_FAULTS || '').split(',').map((f) => f.trim()).filter(Boolean),
    egress: egress(env),
    quotas: quotas(env),
    webhooks: webhooks(env),
    locations: DEFAULT_LOCATION_SETTINGS,
  };
  config.locations = locations(env, config.s3);
  if (config.keystone && config.tokensFile) {
    throw new ConfigError('PIR_TOKENS_FILE, PIR_KEYSTONE_URL', 'choose one identity source: a tokens file or Keystone, not both');
  }
  const set = [config.kafkaBrokers, config.redisUrl, config.mongodbUrl].filter((v) => v !== null).length;
  if (set !== 0 && set !== 3) {
    throw new ConfigError('PIR_KAFKA_BROKERS, PIR_REDIS_URL, PIR_MONGODB_URL', 'distributed mode needs all three set (or none, for embedded mode)');
  }
  try {
    config.stores = parseStores(env, config.s3 ? config.s3.prefix : null);
  } catch (error) {
    if (error instanceof StoreConfigError) throw new ConfigError(error.variable, error.message);
    throw error;
  }
  return config;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function logLevel(env: Env): string {
  const raw = env.PIR_LOG_LEVEL;
  if (raw === undefined || raw === '') return 'info';
  if (!LOG_LEVELS.includes(raw)) throw new ConfigError('PIR_LOG_LEVEL', `"${raw}" must be one of ${LOG_LEVELS.join(', ')}`);
  return raw;
}

/**
 * Glance's [glance_download_properties] extra_properties: comma-separated prefixes (unset: Glance's
 * default; empty: none copied). os_glance is Glance's own namespace, which no prefix may take.
 */
function glanceDownloadProperties(env: Env): string[] {
  const raw = env.PIR_GLANCE_DOWNLOAD_PROPERTIES;
  if (raw === undefined) return [...DEFAULT_GLANCE_DOWNLOAD_PROPERTIES];
  const prefixes = raw.split(',').map((p) => p.trim()).filter((p) => p.length > 0);
  const bad = prefixes.find((p) => p.length > 255 || 'os_glance'.startsWith(p) || p.startsWith('os_glance'));
  if (bad !== undefined) throw new ConfigError('PIR_GLANCE_DOWNLOAD_PROPERTIES', `"${bad.slice(0, 64)}" would copy Glance's reserved os_glance properties (or is over 255 characters); list narrower prefixes such as hw_,os_distro`);
  return prefixes;
}

/**
 * The egress settings of web-download: a server that goes silent is given up after
 * PIR_UPLOAD_IDLE_SECONDS, as a client that stops sending an upload is (the other egress users,
 * registered locations, keep the fixed idle timeout).
 */
export function webDownloadEgress(config: Pick<PirConfig, 'egress' | 'uploadIdleSeconds'>): EgressSettings {
  return { ...config.egress, idleTimeoutMs: Math.min(config.uploadIdleSeconds * 1000, config.egress.totalTimeoutMs) };
}

function egress(env: Env): EgressSettings {
  let allowList;
  try {
    allowList = parseAllowList(env.PIR_EGRESS_ALLOWLIST ?? '');
  } catch (error) {
    throw new ConfigError('PIR_EGRESS_ALLOWLIST', (error as Error).message);
  }
  const totalSeconds = int(env, 'PIR_EGRESS_TIMEOUT_SECONDS', DEFAULT_EGRESS.totalTimeoutMs / 1000, 1, 7 * 86400);
  return {
    ...DEFAULT_EGRESS,
    allowList,
    connectTimeoutMs: int(env, 'PIR_EGRESS_CONNECT_TIMEOUT_SECONDS', DEFAULT_EGRESS.connectTimeoutMs / 1000, 1, 3600) * 1000,
    idleTimeoutMs: Math.min(DEFAULT_EGRESS.idleTimeoutMs, totalSeconds * 1000),
    totalTimeoutMs: totalSeconds * 1000,
  };
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "5s,5m,30m,2h" → [5000, 300000, …]; a bare number is seconds. */
export function parseSchedule(variable: string, text: string): number[] {
  const delays = text.split(',').map((part) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(part);
    if (!m) throw new ConfigError(variable, `'${part.trim()}' is not a duration (e.g. 500ms, 5s, 5m, 2h, 1d)`);
    return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!);
  });
  if (delays.length > 50) throw new ConfigError(variable, 'at most 50 retries');
  if (delays.some((d) => d > 7 * 86_400_000)) throw new ConfigError(variable, 'a retry delay is at most 7 days');
  return delays;
}

/** PIR_REGISTER_S3_BUCKETS, PIR_SHOW_IMAGE_DIRECT_URL, PIR_SHOW_MULTIPLE_LOCATIONS. */
function locations(env: Env, s3config: S3Config | null): LocationSettings {
  const buckets = (env.PIR_REGISTER_S3_BUCKETS ?? '').split(',').map((b) => b.trim()).filter(Boolean);
  if (buckets.length && !s3config) throw new ConfigError('PIR_REGISTER_S3_BUCKETS', 'needs PIR_S3_ENDPOINT (the buckets are read with the PIR_S3_* credentials)');
  for (const bucket of buckets) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ConfigError('PIR_REGISTER_S3_BUCKETS', `"${bucket}" is not a valid bucket name`);
    if (bucket === s3config?.bucket) throw new ConfigError('PIR_REGISTER_S3_BUCKETS', `"${bucket}" is PIR's own bucket (PIR_S3_BUCKET): its objects are other images' bytes`);
  }
  return {
    ...DEFAULT_LOCATION_SETTINGS,
    s3Buckets: buckets,
    ownBucket: s3config?.bucket ?? null,
    showDirectUrl: bool(env, 'PIR_SHOW_IMAGE_DIRECT_URL', false),
    showLocations: bool(env, 'PIR_SHOW_MULTIPLE_LOCATIONS', false),
  };
}

function webhooks(env: Env): WebhookSettings {
  let secretKey: Buffer | null = null;
  if (env.PIR_WEBHOOK_SECRET_KEY) {
    try {
      secretKey = parseSecretKey(env.PIR_WEBHOOK_SECRET_KEY);
    } catch (error) {
      throw new ConfigError('PIR_WEBHOOK_SECRET_KEY', (error as Error).message);
    }
  }
  const retrySchedule = parseSchedule('PIR_WEBHOOK_RETRY_SCHEDULE', env.PIR_WEBHOOK_RETRY_SCHEDULE || '5s,5m,30m,2h,5h,10h,10h');
  return {
    secretKey,
    retrySchedule,
    deliveryRetentionMs: deliveryRetention(env, retrySchedule),
    disableAfterFailures: int(env, 'PIR_WEBHOOK_DISABLE_AFTER_FAILURES', 5, 1, 10_000),
    connectTimeoutMs: int(env, 'PIR_WEBHOOK_CONNECT_TIMEOUT_SECONDS', 5, 1, 300) * 1000,
    timeoutMs: int(env, 'PIR_WEBHOOK_TIMEOUT_SECONDS', 15, 1, 300) * 1000,
    perEndpointConcurrency: int(env, 'PIR_WEBHOOK_ENDPOINT_CONCURRENCY', 4, 1, 1000),
    concurrency: int(env, 'PIR_WEBHOOK_CONCURRENCY', 64, 1, 10_000),
    rotationGraceSeconds: int(env, 'PIR_WEBHOOK_ROTATION_GRACE_SECONDS', 86_400, 0, 30 * 86_400),
    pingsPerMinute: int(env, 'PIR_WEBHOOK_PINGS_PER_MINUTE', 5, 1, 10_000),
  };
}

/**
 * PIR_WEBHOOK_DELIVERY_RETENTION_DAYS (default 30): how long a delivery's record is kept. It must
 * outlast a whole run of the retry schedule by a day, so a record is never deleted while its
 * delivery may still be retried; unset, it is lengthened to that for a long schedule.
 */
function deliveryRetention(env: Env, retrySchedule: number[]): number {
  const DAY = 86_400_000;
  const floorMs = retrySchedule.reduce((sum, d) => sum + d, 0) + DAY;
  if (!env.PIR_WEBHOOK_DELIVERY_RETENTION_DAYS) return Math.max(30 * DAY, floorMs);
  const days = int(env, 'PIR_WEBHOOK_DELIVERY_RETENTION_DAYS', 30, 1, 3650);
  if (days * DAY < floorMs) {
    throw new ConfigError('PIR_WEBHOOK_DELIVERY_RETENTION_DAYS', `${days} days is shorter than a run of PIR_WEBHOOK_RETRY_SCHEDULE plus a day (${Math.ceil(floorMs / DAY)} days): a record could go while its delivery is still retried`);
  }
  return days * DAY;
}

function quotas(env: Env): QuotaConfig | null {
  const inline = env.PIR_QUOTAS;
  const file = env.PIR_QUOTAS_FILE;
  if (inline && file) throw new ConfigError('PIR_QUOTAS, PIR_QUOTAS_FILE', 'set one of them, not both');
  const [variable, text] = inline ? ['PIR_QUOTAS', inline] : file ? ['PIR_QUOTAS_FILE', readQuotaFile(file)] : [null, null];
  if (variable === null || text === null) return null;
  try {
    return parseQuotaConfig(text);
  } catch (error) {
    throw new ConfigError(variable, (error as Error).message);
  }
}

function readQuotaFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError('PIR_QUOTAS_FILE', `cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

export function distributedUrls(config: PirConfig): DistributedUrls | null {
  if (!config.kafkaBrokers || !config.redisUrl || !config.mongodbUrl) return null;
  return { kafkaBrokers: config.kafkaBrokers, redisUrl: config.redisUrl, mongodbUrl: config.mongodbUrl };
}
