/**
 * `pir doctor`: checks the configuration and every dependency with fresh connections, and says
 * in plain words what is wrong and how to fix it. Each finding is ok, a warning, or a problem.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { MongoClient } from 'mongodb';
import { ConfigError, distributedUrls, loadConfig, type PirConfig } from '../config.js';
import { TokensFileAuthenticator } from '../identity/tokens-file.js';
import { SecretBox, parseSecretKey } from '../../core/webhooks/secret-box.js';
import { pino } from 'pino';
import { redact, writableDirCheck } from './health.js';

export interface Finding {
  what: string;
  level: 'ok' | 'warn' | 'problem';
  /** What was found, in plain words. */
  detail: string;
  /** How to fix it (problems and warnings). */
  fix?: string;
  ms?: number;
}

const TIMEOUT_MS = 3000;
/** An S3 error that says the server is down or cannot store, not that PIR's settings are wrong. */
const S3_UNREACHABLE = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|no answer within|timed out|TimeoutError|ServiceUnavailable|SlowDown|InternalError|internal error|\b50[0-4]\b/i;

/** A URL fit to print: no user or password. */
function shown(url: string): string {
  return redact(url);
}

export async function runDoctor(env: Record<string, string | undefined> = process.env): Promise<Finding[]> {
  let config: PirConfig;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return [{ what: 'configuration', level: 'problem', detail: error.message, fix: 'Correct that environment variable (README.md, "Modes and configuration", lists every PIR_* variable and its format), then run pir doctor again.' }];
  }
  const urls = distributedUrls(config);
  const findings: Finding[] = [{
    what: 'configuration',
    level: 'ok',
    detail: `${urls ? 'valid; distributed mode (MongoDB, Kafka, Redis)' : 'valid; embedded mode (SQLite and in-process queues under the data directory)'}; images stored ${config.stores.stores ? `in stores ${config.stores.stores.map((st) => `${st.id} (${st.kind})`).join(', ')}, default ${config.stores.defaultStore}` : config.s3 ? 'in S3' : 'on the filesystem'}`,
  }];
  findings.push(await timed('data directory', async () => {
    await mkdir(join(config.dataDir, 'staging'), { recursive: true });
    await mkdir(join(config.dataDir, 'images'), { recursive: true });
    await writableDirCheck('data', join(config.dataDir, 'staging')).check();
    return `${config.dataDir} is writable`;
  }, (e) => `PIR cannot write to ${config.dataDir} (${e}). Create it and let the user running PIR write to it, or point PIR_DATA_DIR somewhere writable.`));
  if (config.s3) {
    const s3 = config.s3;
    findings.push(await timed('S3 bucket', async () => {
      const { S3BlobStore } = await import('../storage/s3-blob-store.js');
      const store = new S3BlobStore(s3);
      try {
        await store.ping();
        await store.list('staging/');
      } finally {
        store.close();
      }
      return `bucket ${s3.bucket} at ${shown(s3.endpoint)} takes a small object and gives it back, and can be listed${s3.prefix ? ` (prefix ${s3.prefix})` : ''}`;
    }, (e) => S3_UNREACHABLE.test(e)
      ? `No S3 server answers at ${shown(s3.endpoint)}, or it cannot store data now (${e}). Start it (SeaweedFS: its master, volume and filer servers too), or correct PIR_S3_ENDPOINT.`
      : `The S3 bucket ${s3.bucket} at ${shown(s3.endpoint)} cannot be used (${e}). Create the bucket, or correct PIR_S3_ENDPOINT, PIR_S3_BUCKET, PIR_S3_ACCESS_KEY_ID/PIR_S3_SECRET_ACCESS_KEY, PIR_S3_REGION, and PIR_S3_FORCE_PATH_STYLE (true for most self-hosted servers).`));
  }
  if (config.tokensFile) {
    findings.push(await timed('tokens file', async () => {
      const auth = await TokensFileAuthenticator.open({ path: config.tokensFile, adminToken: 'doctor-placeholder-admin-token', log: pino({ level: 'silent' }) });
      const n = auth.size;
      await auth.close();
      return `${config.tokensFile}: ${n} token(s)`;
    }, (e) => `The tokens file PIR_TOKENS_FILE=${config.tokensFile} cannot be used: ${e}. Fix the file (README.md, "Identity") or unset PIR_TOKENS_FILE.`));
  }
  if (urls) {
    findings.push(await timed('MongoDB', async () => {
      const client = new MongoClient(urls.mongodbUrl, { serverSelectionTimeoutMS: TIMEOUT_MS, connectTimeoutMS: TIMEOUT_MS });
      try {
        await client.connect();
        await client.db('admin').command({ ping: 1 });
      } finally {
        await client.close().catch(() => undefined);
      }
      return `answers at ${shown(urls.mongodbUrl)}`;
    }, (e) => `No MongoDB answers at ${shown(urls.mongodbUrl)} (${e}). Start MongoDB (or FerretDB), or correct PIR_MONGODB_URL (host, port, user and password).`));
    if (findings.at(-1)!.level === 'ok') findings.push(await timed('webhook secret key', () => webhookKeyAgreement(config, urls.mongodbUrl), (e) => `PIR could not compare this process's webhook secret key with the other processes' (${e}).`));
    findings.push(await timed('Kafka', async () => {
      const kafka = new Kafka({ clientId: 'pir-doctor', brokers: urls.kafkaBrokers, connectionTimeout: TIMEOUT_MS, requestTimeout: TIMEOUT_MS, retry: { retries: 0 }, logLevel: logLevel.NOTHING });
      const admin = kafka.admin();
      try {
        await admin.connect();
        const cluster = await admin.describeCluster();
        const topics = await admin.listTopics();
        const topic = topics.includes(config.kafkaTopic) ? `topic ${config.kafkaTopic} exists` : `topic ${config.kafkaTopic} does not exist yet (PIR creates it at start)`;
        return `${cluster.brokers.length} broker(s) at ${urls.kafkaBrokers.join(', ')}; ${topic}`;
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    }, (e) => `No Kafka broker answers at ${urls.kafkaBrokers.join(', ')} (${e}). Start Kafka, or correct PIR_KAFKA_BROKERS (host:port of the brokers' client listener, comma-separated).`));
    findings.push(await timed('Redis', async () => {
      const redis = new Redis(urls.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: TIMEOUT_MS, enableOfflineQueue: false });
      let socketError: Error | null = null;
      redis.on('error', (err: Error) => { socketError ??= err; }); // more telling than connect()'s "Connection is closed"
      try {
        await redis.connect().catch((err: unknown) => { throw socketError ?? err; });
        const policy = await redis.config('GET', 'maxmemory-policy').catch(() => null) as string[] | null;
        if (policy && policy[1] && policy[1] !== 'noeviction') {
          return { warn: `answers at ${shown(urls.redisUrl)}, but maxmemory-policy is ${policy[1]}`, fix: 'BullMQ needs maxmemory-policy noeviction, or Redis may drop queued jobs: set it in redis.conf.' };
        }
        await redis.ping();
        return `answers at ${shown(urls.redisUrl)}`;
      } finally {
        redis.disconnect();
      }
    }, (e) => `No Redis answers at ${shown(urls.redisUrl)} (${e}). Start Redis, or correct PIR_REDIS_URL (redis://[user:password@]host:port).`));
  }
  if (config.keystone) {
    const ks = config.keystone;
    findings.push(await timed('Keystone', async () => {
      const body = { auth: { identity: { methods: ['password'], password: { user: { name: ks.username, password: ks.password, domain: { name: ks.userDomainName } } } }, scope: { project: { name: ks.projectName, domain: { name: ks.projectDomainName } } } } };
      const response = await fetch(`${ks.url}/auth/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(TIMEOUT_MS) });
      await response.body?.cancel();
      if (response.status === 401) throw new Error(`Keystone refused PIR's service user ${ks.username} (401)`);
      if (response.status !== 201) throw new Error(`Keystone answered ${response.status} to the service login`);
      return `${shown(ks.url)} accepts PIR's service user ${ks.username}`;
    }, (e) => (e.includes('refused PIR')
      ? 'Correct PIR_KEYSTONE_USERNAME and PIR_KEYSTONE_PASSWORD (PIR\'s service user), and PIR_KEYSTONE_PROJECT and the domain variables if the user is not in project "service" of domain "Default".'
      : `Start Keystone, or correct PIR_KEYSTONE_URL (its identity endpoint, e.g. http://keystone:5000/v3; now ${shown(ks.url)}).`)));
  }
  if (!config.keystone && !config.adminToken) {
    findings.push({ what: 'admin token', level: 'ok', detail: `PIR_ADMIN_TOKEN is not set: PIR generates one at first start and keeps it in ${join(config.dataDir, 'admin-token')}` });
  }
  return findings;
}

type Outcome = string | { warn: string; fix: string } | { problem: string; fix: string };

/**
 * Distributed processes must seal webhook secrets with one key (infra/webhooks.ts,
 * agreeOnSecretKey): whether this process's key is the one recorded in the database, read only,
 * so that a machine added with a different key is told before it refuses to start.
 */
async function webhookKeyAgreement(config: PirConfig, mongodbUrl: string): Promise<Outcome> {
  const { MongoWebhookStore } = await import('../mongo/mongo-webhook-store.js');
  const { opensStoredSecrets } = await import('../webhooks.js');
  const file = join(config.dataDir, 'webhook-secret-key');
  const text = config.webhooks.secretKey ? null : await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => { if (error.code === 'ENOENT') return null; throw error; });
  const key = config.webhooks.secretKey ?? (text === null ? null : parseSecretKey(text));
  const source = config.webhooks.secretKey ? 'PIR_WEBHOOK_SECRET_KEY' : file;
  const share = 'give every process the same key with PIR_WEBHOOK_SECRET_KEY (for instance the contents of the webhook-secret-key file of the data directory of the first process)';
  const store = new MongoWebhookStore({ url: mongodbUrl });
  try {
    const recorded = await store.recordedKeyFingerprint();
    if (key === null) {
      if (recorded === null) return 'no PIR process has recorded one yet; the first to start generates it (with several machines, give them all one PIR_WEBHOOK_SECRET_KEY)';
      return { problem: `other PIR processes on this database seal webhook secrets with a key, and this one has none (${file} does not exist): it would generate its own and refuse to start`, fix: `Before starting it, ${share}.` };
    }
    const box = new SecretBox(key);
    if (recorded === null) return `${source}; no PIR process has recorded a key yet`;
    if (recorded === box.fingerprint()) return `${source} is the key the other PIR processes on this database use`;
    if (await opensStoredSecrets(store, box)) return `${source} opens the stored webhook secrets (the key in use was changed; PIR records it at start)`;
    return { problem: `${source} is not the key the other PIR processes on this database seal webhook secrets with: this process would refuse to start`, fix: `${share[0]!.toUpperCase()}${share.slice(1)}.` };
  } finally {
    await store.close().catch(() => undefined);
  }
}

async function timed(what: string, probe: () => Promise<Outcome>, fix: (error: string) => string): Promise<Finding> {
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  let timer: NodeJS.Timeout | undefined;
  try {
    const outcome = await Promise.race([
      probe(),
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS + 500); }),
    ]);
    if (typeof outcome === 'string') return { what, level: 'ok', detail: outcome, ms: ms() };
    if ('problem' in outcome) return { what, level: 'problem', detail: outcome.problem, fix: outcome.fix, ms: ms() };
    return { what, level: 'warn', detail: outcome.warn, fix: outcome.fix, ms: ms() };
  } catch (error) {
    const message = redact(errorText(error));
    return { what, level: 'problem', detail: message, fix: fix(message), ms: ms() };
  } finally {
    clearTimeout(timer);
  }
}

/** The most telling message of an error (drivers wrap the socket error). */
function errorText(error: unknown): string {
  const e = error as { message?: string; cause?: { message?: string }; code?: string };
  const text = e?.message || e?.code || String(error);
  return e?.cause?.message && !text.includes(e.cause.message) ? `${text}: ${e.cause.message}` : text;
}

/** Plain text for people: one block per finding. */
export function formatFindings(findings: Finding[]): string {
  const mark = { ok: 'ok     ', warn: 'WARNING', problem: 'PROBLEM' } as const;
  const lines = findings.map((f) => {
    const head = `${mark[f.level]}  ${f.what}: ${f.detail}${f.ms !== undefined ? ` (${f.ms} ms)` : ''}`;
    return f.fix ? `${head}\n         fix: ${f.fix}` : head;
  });
  const problems = findings.filter((f) => f.level === 'problem').length;
  lines.push(problems === 0 ? '\nPIR is ready to start.' : `\n${problems} problem(s): PIR will not work until they are fixed.`);
  return `${lines.join('\n')}\n`;
}
