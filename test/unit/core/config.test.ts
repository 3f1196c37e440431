import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, distributedUrls, loadConfig, parseSize } from '../../../infra/config.js';

describe('config', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({});
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 9292);
    assert.equal(config.maxImageSize, 2 ** 40);
    assert.equal(config.adminToken, null);
    assert.equal(config.unpackRatioFloor, 2 ** 30);
    assert.equal(distributedUrls(config), null);
  });
  it('reads PIR_SHUTDOWN_TIMEOUT_SECONDS (default 60, 1 to 3600)', () => {
    assert.equal(loadConfig({}).shutdownTimeoutSeconds, 60);
    assert.equal(loadConfig({ PIR_SHUTDOWN_TIMEOUT_SECONDS: '5' }).shutdownTimeoutSeconds, 5);
    assert.throws(() => loadConfig({ PIR_SHUTDOWN_TIMEOUT_SECONDS: '0' }), /PIR_SHUTDOWN_TIMEOUT_SECONDS: "0" must be a whole number from 1 to 3600/);
  });
  it('reads PIR_DEACTIVATE_POLICY (admin by default, or owner)', () => {
    assert.equal(loadConfig({}).deactivatePolicy, 'admin');
    assert.equal(loadConfig({ PIR_DEACTIVATE_POLICY: 'owner' }).deactivatePolicy, 'owner');
    assert.throws(() => loadConfig({ PIR_DEACTIVATE_POLICY: 'member' }), /PIR_DEACTIVATE_POLICY: "member" is not admin or owner/);
  });

  it('reads PIR_EVENT_STREAMS_PER_USER (default 16, 1 to 10000)', () => {
    assert.equal(loadConfig({}).eventStreamsPerUser, 16);
    assert.equal(loadConfig({ PIR_EVENT_STREAMS_PER_USER: '4' }).eventStreamsPerUser, 4);
    assert.throws(() => loadConfig({ PIR_EVENT_STREAMS_PER_USER: '0' }), /PIR_EVENT_STREAMS_PER_USER: "0" must be a whole number from 1 to 10000/);
  });
  it('reads the unpack ratio floor as a size', () => {
    assert.equal(loadConfig({ PIR_UNPACK_RATIO_FLOOR: '256MiB' }).unpackRatioFloor, 256 * 2 ** 20);
    assert.equal(loadConfig({ PIR_UNPACK_RATIO_FLOOR: '0' }).unpackRatioFloor, 0);
    assert.throws(() => loadConfig({ PIR_UNPACK_RATIO_FLOOR: '-1' }), /PIR_UNPACK_RATIO_FLOOR: "-1" is not a size/);
  });
  it('parses sizes with units', () => {
    assert.equal(parseSize('X', '1073741824'), 2 ** 30);
    assert.equal(parseSize('X', '512MiB'), 512 * 2 ** 20);
    assert.equal(parseSize('X', '1 TiB'), 2 ** 40);
    assert.equal(parseSize('X', '4g'), 4 * 2 ** 30);
    assert.throws(() => parseSize('PIR_MAX_IMAGE_SIZE', 'lots'), /PIR_MAX_IMAGE_SIZE: "lots" is not a size/);
  });
  it('names the variable in every refusal', () => {
    assert.throws(() => loadConfig({ PIR_PORT: '99999' }), (e: Error) => e instanceof ConfigError && /PIR_PORT/.test(e.message));
    assert.throws(() => loadConfig({ PIR_REDIS_URL: 'http://x' }), /PIR_REDIS_URL/);
    assert.throws(() => loadConfig({ PIR_KAFKA_BROKERS: 'no-port' }), /PIR_KAFKA_BROKERS/);
    assert.throws(() => loadConfig({ PIR_ALLOW_ENCRYPTED_IMAGES: 'maybe' }), /PIR_ALLOW_ENCRYPTED_IMAGES/);
    assert.throws(() => loadConfig({ PIR_KAFKA_TOPIC: 'a b' }), /PIR_KAFKA_TOPIC/);
  });
  it('needs all three service URLs for distributed mode', () => {
    assert.throws(() => loadConfig({ PIR_REDIS_URL: 'redis://127.0.0.1:6379' }), /distributed mode needs all three/);
    const config = loadConfig({ PIR_REDIS_URL: 'redis://r:6379', PIR_KAFKA_BROKERS: 'k1:9092,k2:9092', PIR_MONGODB_URL: 'mongodb://m/pir' });
    assert.deepEqual(distributedUrls(config), { redisUrl: 'redis://r:6379', kafkaBrokers: ['k1:9092', 'k2:9092'], mongodbUrl: 'mongodb://m/pir' });
  });
});

describe('config (issue 6)', () => {
  it('refuses an admin token shorter than 32 characters, naming the variable', () => {
    assert.throws(() => loadConfig({ PIR_ADMIN_TOKEN: 'a' }), /PIR_ADMIN_TOKEN: must be at least 32 characters \(it has 1\)/);
    assert.throws(() => loadConfig({ PIR_ADMIN_TOKEN: 'x'.repeat(31) }), /PIR_ADMIN_TOKEN/);
    assert.throws(() => loadConfig({ PIR_ADMIN_TOKEN: `${'x'.repeat(31)} y` }), /PIR_ADMIN_TOKEN: may hold only printable/);
    assert.equal(loadConfig({ PIR_ADMIN_TOKEN: 'x'.repeat(32) }).adminToken, 'x'.repeat(32));
  });
  it('reads PIR_PUBLIC_URL as a base URL, PIR_UPLOAD_IDLE_SECONDS and PIR_UPLOAD_SETTLE_WAIT_SECONDS', () => {
    assert.equal(loadConfig({}).publicUrl, null);
    assert.equal(loadConfig({ PIR_PUBLIC_URL: 'https://images.example.com/pir/' }).publicUrl, 'https://images.example.com/pir');
    assert.throws(() => loadConfig({ PIR_PUBLIC_URL: 'ftp://x' }), /PIR_PUBLIC_URL/);
    assert.throws(() => loadConfig({ PIR_PUBLIC_URL: 'https://x/?a=b' }), /PIR_PUBLIC_URL/);
    assert.throws(() => loadConfig({ PIR_PUBLIC_URL: 'not a url' }), /PIR_PUBLIC_URL/);
    assert.equal(loadConfig({}).uploadIdleSeconds, 60);
    assert.equal(loadConfig({ PIR_UPLOAD_IDLE_SECONDS: '5' }).uploadIdleSeconds, 5);
    assert.throws(() => loadConfig({ PIR_UPLOAD_IDLE_SECONDS: '0' }), /PIR_UPLOAD_IDLE_SECONDS/);
    assert.equal(loadConfig({}).uploadSettleWaitSeconds, 300);
    assert.equal(loadConfig({ PIR_UPLOAD_SETTLE_WAIT_SECONDS: '20' }).uploadSettleWaitSeconds, 20);
    assert.throws(() => loadConfig({ PIR_UPLOAD_SETTLE_WAIT_SECONDS: 'soon' }), /PIR_UPLOAD_SETTLE_WAIT_SECONDS/);
  });

  it('webhook delivery records are kept 30 days, and never less than a run of the retry schedule plus a day', () => {
    const DAY = 86_400_000;
    assert.equal(loadConfig({}).webhooks.deliveryRetentionMs, 30 * DAY);
    assert.equal(loadConfig({ PIR_WEBHOOK_DELIVERY_RETENTION_DAYS: '7' }).webhooks.deliveryRetentionMs, 7 * DAY);
    // A schedule of 40 days: unset, the retention grows to 41 days; set shorter, start-up refuses it.
    assert.equal(loadConfig({ PIR_WEBHOOK_RETRY_SCHEDULE: '7d,7d,7d,7d,7d,5d' }).webhooks.deliveryRetentionMs, 41 * DAY);
    assert.throws(() => loadConfig({ PIR_WEBHOOK_RETRY_SCHEDULE: '7d,7d,7d,7d,7d,5d', PIR_WEBHOOK_DELIVERY_RETENTION_DAYS: '30' }),
      /PIR_WEBHOOK_DELIVERY_RETENTION_DAYS: 30 days is shorter than a run of PIR_WEBHOOK_RETRY_SCHEDULE plus a day \(41 days\)/);
    assert.throws(() => loadConfig({ PIR_WEBHOOK_DELIVERY_RETENTION_DAYS: '0' }), /PIR_WEBHOOK_DELIVERY_RETENTION_DAYS/);
  });
});
