/**
 * Real services for contract and e2e tests: their URLs (from the environment, with the loopback
 * defaults of infra/local/services.sh) and a guard that skips a test visibly when a service is
 * not running, or fails it when CI is set.
 */
import { createHash } from 'node:crypto';
import { MongoClient } from 'mongodb';
import { connect } from 'node:net';
import type { TestContext } from 'node:test';

export type ServiceName = 'redis' | 'kafka' | 'mongodb' | 'keystone' | 's3';

const env = process.env;

export const services = {
  redisUrl: env.PIR_TEST_REDIS_URL || 'redis://127.0.0.1:6379',
  kafkaBrokers: (env.PIR_TEST_KAFKA_BROKERS || '127.0.0.1:9092').split(',').map((s) => s.trim()).filter(Boolean),
  mongodbUrl: env.PIR_TEST_MONGODB_URL || 'mongodb://127.0.0.1:27017',
  /** The local Keystone's identity v3 URL (infra/local/keystone.sh), seeded as its README says. */
  keystoneUrl: (env.PIR_TEST_KEYSTONE_URL || 'http://127.0.0.1:15000/v3').replace(/\/+$/, ''),
  /** The local SeaweedFS S3 gateway (infra/local/seaweedfs.sh) and its bucket and keys. */
  s3: {
    endpoint: (env.PIR_TEST_S3_ENDPOINT || 'http://127.0.0.1:9436').replace(/\/+$/, ''),
    bucket: env.PIR_TEST_S3_BUCKET || 'pir',
    accessKeyId: env.PIR_TEST_S3_ACCESS_KEY_ID || 'pir-local-access',
    secretAccessKey: env.PIR_TEST_S3_SECRET_ACCESS_KEY || 'pir-local-secret-key',
    region: env.PIR_TEST_S3_REGION || 'us-east-1',
    forcePathStyle: true,
  },
} as const;

/** Log level for adapters under test (PIR_TEST_LOG_LEVEL; default silent). */
export const testLogLevel = env.PIR_TEST_LOG_LEVEL || 'silent';

/** True when a missing service must fail the test instead of skipping it. */
export const inCI = Boolean(env.CI);

const START_HINT = 'start it with bash infra/local/services.sh start';

function endpoints(name: ServiceName): { host: string; port: number; label: string }[] {
  switch (name) {
    case 'redis': {
      const u = new URL(services.redisUrl);
      return [{ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379), label: services.redisUrl }];
    }
    case 'mongodb': {
      // mongodb://[user:pass@]host[:port][,host2...]/db — probe the first host.
      const hosts = services.mongodbUrl.replace(/^mongodb(\+srv)?:\/\//, '').replace(/^[^@]*@/, '').split('/')[0]!.split(',');
      return hosts.map((h) => {
        const [host, port] = splitHostPort(h, 27017);
        return { host, port, label: services.mongodbUrl };
      });
    }
    case 'keystone': {
      const u = new URL(services.keystoneUrl);
      return [{ host: u.hostname, port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)), label: services.keystoneUrl }];
    }
    case 's3': {
      const u = new URL(services.s3.endpoint);
      return [{ host: u.hostname, port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)), label: services.s3.endpoint }];
    }
    case 'kafka':
      return services.kafkaBrokers.map((b) => {
        const [host, port] = splitHostPort(b, 9092);
        return { host, port, label: b };
      });
  }
}

function splitHostPort(s: string, defaultPort: number): [string, number] {
  const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(s.trim());
  return [m?.[1] || '127.0.0.1', Number(m?.[2] || defaultPort)];
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Whether any endpoint of the service accepts TCP connections (no caching: services restart). */
export async function serviceUp(name: ServiceName, timeoutMs = 1000): Promise<{ up: boolean; where: string }> {
  const eps = endpoints(name);
  const results = await Promise.all(eps.map((e) => tcpProbe(e.host, e.port, timeoutMs)));
  return { up: results.some(Boolean), where: eps.map((e) => e.label).filter((v, i, a) => a.indexOf(v) === i).join(', ') };
}

/**
 * Probes the services a test needs. All up: returns true. One missing: with CI set, fails the
 * test (throws) naming the service; otherwise marks the test skipped with the reason and
 * returns false, so the caller returns: `if (!(await requireServices(t, ['redis']))) return;`
 */
export async function requireServices(t: TestContext, names: readonly ServiceName[]): Promise<boolean> {
  const missing: string[] = [];
  for (const name of names) {
    const { up, where } = await serviceUp(name);
    if (!up) missing.push(`${name} (${where})`);
  }
  if (missing.length === 0) return true;
  const what = `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not running`;
  if (inCI) throw new Error(`${what}; CI is set, so this test fails instead of skipping: ${START_HINT}`);
  t.skip(`${what}: ${START_HINT}`);
  return false;
}

/** A name unique to this test run, for databases, topics, key prefixes. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** The environment of a distributed PIR on the shared services, isolated by `run` (its database, topic and Redis prefix) and, on S3, by `s3Prefix`. */
export function distributedS3Env(run: string, s3Prefix: string): Record<string, string> {
  const mongo = new URL(services.mongodbUrl);
  mongo.pathname = `/${run}`;
  return {
    PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','),
    PIR_REDIS_URL: services.redisUrl,
    PIR_MONGODB_URL: mongo.toString(),
    PIR_KAFKA_TOPIC: `pir.${run}`,
    PIR_REDIS_PREFIX: run,
    PIR_S3_ENDPOINT: services.s3.endpoint,
    PIR_S3_BUCKET: services.s3.bucket,
    PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
    PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey,
    PIR_S3_REGION: services.s3.region,
    PIR_S3_FORCE_PATH_STYLE: 'true',
    PIR_S3_PREFIX: s3Prefix,
    // Processes with private data directories share no generated key: one is given to all (README).
    PIR_WEBHOOK_SECRET_KEY: createHash('sha256').update(`webhook key of ${run}`).digest('hex'),
  };
}

/** Drops a test's MongoDB database (its teardown), whatever state the test left it in. */
export async function dropMongoDatabase(dbName: string): Promise<void> {
  const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 2000 });
  try {
    await client.connect();
    await client.db(dbName).dropDatabase();
  } finally {
    await client.close();
  }
}
