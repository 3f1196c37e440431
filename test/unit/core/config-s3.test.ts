import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../../infra/config.js';

const S3 = { PIR_S3_ENDPOINT: 'http://127.0.0.1:9436/', PIR_S3_BUCKET: 'pir', PIR_S3_ACCESS_KEY_ID: 'k', PIR_S3_SECRET_ACCESS_KEY: 's' };
const refuses = (env: Record<string, string>, variable: string) =>
  assert.throws(() => loadConfig(env), (e: Error) => e instanceof ConfigError && e.message.includes(variable), variable);

describe('config: the S3 store (PIR_S3_*)', () => {
  it('stores on the filesystem without PIR_S3_ENDPOINT, in S3 with it (defaults: us-east-1, path-style, 8 MiB parts, 2 in flight, reads on undici, 30 s of silence)', () => {
    assert.equal(loadConfig({}).s3, null);
    assert.deepEqual(loadConfig(S3).s3, {
      endpoint: 'http://127.0.0.1:9436', bucket: 'pir', accessKeyId: 'k', secretAccessKey: 's',
      region: 'us-east-1', forcePathStyle: true, prefix: '', partSize: 8 * 2 ** 20, queueSize: 2, readClient: 'undici', timeoutMs: 30_000,
    });
    assert.equal(loadConfig({ ...S3, PIR_S3_TIMEOUT_SECONDS: '5' }).s3!.timeoutMs, 5000);
    const virtualHost = loadConfig({ ...S3, PIR_S3_FORCE_PATH_STYLE: 'false', PIR_S3_REGION: 'eu-west-3', PIR_S3_PREFIX: 'a/b/', PIR_S3_PART_SIZE: '64MiB', PIR_S3_QUEUE_SIZE: '6', PIR_S3_SIGN_PAYLOAD: 'true' }).s3!;
    assert.equal(virtualHost.forcePathStyle, false);
    assert.equal(virtualHost.region, 'eu-west-3');
    assert.equal(virtualHost.prefix, 'a/b/');
    assert.equal(virtualHost.partSize, 64 * 2 ** 20);
    assert.equal(virtualHost.queueSize, 6);
    assert.equal(virtualHost.signPayload, true);
    assert.equal(loadConfig({ ...S3, PIR_S3_SIGN_PAYLOAD: 'false' }).s3!.signPayload, false);
    assert.equal(loadConfig({ ...S3, PIR_S3_READ_CLIENT: 'node' }).s3!.readClient, 'node');
    // In distributed mode too.
    assert.ok(loadConfig({ ...S3, PIR_KAFKA_BROKERS: 'k:9092', PIR_REDIS_URL: 'redis://r', PIR_MONGODB_URL: 'mongodb://m/pir' }).s3);
  });

  it('refuses a bad or partial S3 configuration, naming the variable', () => {
    refuses({ ...S3, PIR_S3_ENDPOINT: 'ftp://x' }, 'PIR_S3_ENDPOINT');
    refuses({ ...S3, PIR_S3_ENDPOINT: 'not a url' }, 'PIR_S3_ENDPOINT');
    refuses({ ...S3, PIR_S3_BUCKET: '' }, 'PIR_S3_BUCKET');
    refuses({ ...S3, PIR_S3_BUCKET: 'Bad_Bucket' }, 'PIR_S3_BUCKET');
    refuses({ ...S3, PIR_S3_ACCESS_KEY_ID: '' }, 'PIR_S3_ACCESS_KEY_ID');
    refuses({ ...S3, PIR_S3_SECRET_ACCESS_KEY: '' }, 'PIR_S3_SECRET_ACCESS_KEY');
    refuses({ ...S3, PIR_S3_REGION: 'US East' }, 'PIR_S3_REGION');
    refuses({ ...S3, PIR_S3_FORCE_PATH_STYLE: 'maybe' }, 'PIR_S3_FORCE_PATH_STYLE');
    refuses({ ...S3, PIR_S3_PREFIX: '../x/' }, 'PIR_S3_PREFIX');
    refuses({ ...S3, PIR_S3_PREFIX: 'no-slash' }, 'PIR_S3_PREFIX');
    refuses({ ...S3, PIR_S3_PART_SIZE: '1MiB' }, 'PIR_S3_PART_SIZE');
    refuses({ ...S3, PIR_S3_TIMEOUT_SECONDS: '0' }, 'PIR_S3_TIMEOUT_SECONDS');
    refuses({ ...S3, PIR_S3_QUEUE_SIZE: '0' }, 'PIR_S3_QUEUE_SIZE');
    refuses({ ...S3, PIR_S3_SIGN_PAYLOAD: 'perhaps' }, 'PIR_S3_SIGN_PAYLOAD');
    refuses({ ...S3, PIR_S3_READ_CLIENT: 'curl' }, 'PIR_S3_READ_CLIENT');
    // S3 settings without an endpoint are a mistake, not silently the filesystem.
    refuses({ PIR_S3_BUCKET: 'pir' }, 'PIR_S3_BUCKET');
  });
});
