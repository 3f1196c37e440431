/**
 * Issue 8 point 3: the per-endpoint concurrency limit holds across worker processes. `pir api`
 * and two `pir worker`s on the real services, PIR_WEBHOOK_ENDPOINT_CONCURRENCY=2; a slow
 * receiver counts the requests it holds at once while 12 pings are delivered: never more than 2,
 * though both workers deliver (each would allow 2 of its own with a per-process limit).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';
import { WebhookReceiver, verify } from '../support/webhook-receiver.js';

const logDir = testLogDir('webhooks-endpoint-limit');
const TOKEN = 'e2e-webhooks-limit-admin-token-0123456789';
const LIMIT = 2;
const PINGS = 12;
const needed = ['redis', 'kafka', 'mongodb'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);
const missingText = missing.map((s) => `${s.name} (${s.where})`).join(', ');

describe('webhooks, distributed: the per-endpoint limit is global across workers', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  let dir: string;
  let api: PirProcess;
  const workers: PirProcess[] = [];
  let base: string;
  const run = uniqueName('e2ewhlim').replace(/[^A-Za-z0-9]/g, '');
  let receiver: WebhookReceiver;

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(base + path, { method, headers: { 'x-auth-token': TOKEN, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };

  before(async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}. Start them with bash infra/local/services.sh start`);
    dir = await makeTempDir('pir-e2e-webhooks-limit-');
    const port = await freePort();
    const mongo = new URL(services.mongodbUrl);
    mongo.pathname = `/${run}`;
    const env = {
      PIR_DATA_DIR: join(dir, 'data'), PIR_ADMIN_TOKEN: TOKEN,
      PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','), PIR_REDIS_URL: services.redisUrl, PIR_MONGODB_URL: mongo.toString(),
      PIR_KAFKA_TOPIC: `pir.${run}`, PIR_REDIS_PREFIX: run,
      PIR_EGRESS_ALLOWLIST: '127.0.0.1/32', PIR_WEBHOOK_ENDPOINT_CONCURRENCY: String(LIMIT), PIR_WEBHOOK_CONCURRENCY: '8', PIR_WEBHOOK_PINGS_PER_MINUTE: String(PINGS),
      PIR_WEBHOOK_SECRET_KEY: randomBytes(32).toString('hex'), PIR_LOG_LEVEL: 'debug',
    };
    api = await startPirProcess('api', { ...env, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info' }, logDir, 'api');
    workers.push(await startPirProcess('worker', env, logDir, 'worker-1'), await startPirProcess('worker', env, logDir, 'worker-2'));
    base = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    await receiver?.stop();
    await api?.stop();
    await Promise.all(workers.map((w) => w.stop().catch(() => null)));
    if (dir) await removeDir(dir);
  });

  it(`never more than ${LIMIT} requests at once at a slow receiver, with two workers delivering`, { timeout: 120_000 }, async (t) => {
    let holding = 0;
    let most = 0;
    receiver = new WebhookReceiver((_n, _req, res) => {
      holding++;
      most = Math.max(most, holding);
      setTimeout(() => { holding--; res.writeHead(200).end('ok'); }, 500);
    });
    await receiver.start();
    const sub = await call('POST', '/v2/webhooks', { url: receiver.url, events: ['image.active'] });
    assert.equal(sub.status, 201, JSON.stringify(sub.body));
    for (let i = 0; i < PINGS; i++) assert.equal((await call('POST', `/v2/webhooks/${sub.body.id}/ping`)).status, 202);
    const got = await receiver.waitFor(PINGS, 90_000);
    for (const g of got) assert.equal(verify(sub.body.secret, g).type, 'webhook.ping');
    assert.equal(new Set(got.map((g) => g.headers['webhook-id'])).size, PINGS);
    const perWorker = workers.map((w) => w.output().split('\n').filter((l) => l.includes('"msg":"webhook delivered"')).length);
    t.diagnostic(`most requests held at once: ${most}; deliveries per worker: ${perWorker.join(', ')}`);
    assert.ok(most <= LIMIT, `the receiver held ${most} requests at once; the limit is ${LIMIT}`);
    assert.equal(most, LIMIT, 'the limit is used, not undercut');
    assert.ok(perWorker.every((n) => n > 0), `both workers delivered (${perWorker.join(', ')})`);
  });
});
