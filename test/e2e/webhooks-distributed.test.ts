/**
 * Webhooks in distributed mode on the real services (Kafka, Redis, FerretDB): `pir api` and a
 * `pir worker`. An image going active is delivered, signed; a worker SIGKILLed while its
 * delivery is in flight (the receiver holds the request) leaves the job locked, another worker
 * takes it once the lock lapses, and the receiver gets the event again with the same webhook-id.
 * The same with five subscribers: the worker dies in the middle of the event's fan-out (its first
 * attempts), and every subscriber still gets the event, any repeat with the same webhook-id.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';
import { WebhookReceiver, verify } from '../support/webhook-receiver.js';

const logDir = testLogDir('webhooks-distributed');
const TOKEN = 'e2e-webhooks-admin-token-0123456789abcdef';
const needed = ['redis', 'kafka', 'mongodb'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);
const missingText = missing.map((s) => `${s.name} (${s.where})`).join(', ');

describe('webhooks, distributed (pir api + pir worker on Kafka, Redis, FerretDB)', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  let dir: string;
  let env: Record<string, string>;
  let api: PirProcess;
  const workers: PirProcess[] = [];
  let base: string;
  const run = uniqueName('e2ewh').replace(/[^A-Za-z0-9]/g, '');
  const receivers: WebhookReceiver[] = [];

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(base + path, { method, headers: { 'x-auth-token': TOKEN, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  const activeImage = async () => {
    const id = (await call('POST', '/v2/images', { disk_format: 'raw', container_format: 'bare' })).body.id as string;
    return {
      id,
      async upload() {
        const res = await fetch(`${base}/v2/images/${id}/file`, { method: 'PUT', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream' }, body: randomBytes(64 * 1024) });
        assert.equal(res.status, 204, await res.text());
      },
    };
  };

  before(async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}. Start them with bash infra/local/services.sh start`);
    dir = await makeTempDir('pir-e2e-webhooks-');
    const port = await freePort();
    const mongo = new URL(services.mongodbUrl);
    mongo.pathname = `/${run}`;
    env = {
      PIR_DATA_DIR: join(dir, 'data'), PIR_ADMIN_TOKEN: TOKEN,
      PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','), PIR_REDIS_URL: services.redisUrl, PIR_MONGODB_URL: mongo.toString(),
      PIR_KAFKA_TOPIC: `pir.${run}`, PIR_REDIS_PREFIX: run,
      PIR_EGRESS_ALLOWLIST: '127.0.0.1/32', PIR_WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms', PIR_WEBHOOK_TIMEOUT_SECONDS: '60',
      PIR_WEBHOOK_SECRET_KEY: randomBytes(32).toString('hex'),
    };
    api = await startPirProcess('api', { ...env, PIR_PORT: String(port) }, logDir, 'api');
    workers.push(await startPirProcess('worker', env, logDir, 'worker-1'));
    base = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    for (const r of receivers) await r.stop();
    await api?.stop();
    await Promise.all(workers.map((w) => w.stop().catch(() => null)));
    if (dir) await removeDir(dir);
  });

  it('delivers image.active, signed', async () => {
    const r = new WebhookReceiver();
    receivers.push(await r.start());
    const image = await activeImage();
    const sub = await call('POST', '/v2/webhooks', { url: r.url, events: ['image.active'], filters: { image_ids: [image.id] } });
    assert.equal(sub.status, 201, JSON.stringify(sub.body));
    await image.upload();
    const [got] = await r.waitFor(1, 60_000);
    const body = verify(sub.body.secret, got!);
    assert.equal(body.type, 'image.active');
    assert.equal(body.data.id, image.id);
  });

  it('a worker SIGKILLed mid-delivery: another worker delivers again with the same webhook-id', async () => {
    let killed: Promise<void> | null = null;
    const r = new WebhookReceiver((n, _req, res) => {
      if (n === 1) {
        killed = workers[0]!.kill(); // the request stays unanswered; its worker dies holding the job
        return;
      }
      res.writeHead(200).end('ok');
    });
    receivers.push(await r.start());
    const image = await activeImage();
    const sub = await call('POST', '/v2/webhooks', { url: r.url, events: ['image.active'], filters: { image_ids: [image.id] } });
    await image.upload();
    await r.waitFor(1, 60_000);
    await killed;
    workers.push(await startPirProcess('worker', env, logDir, 'worker-2'));
    const got = await r.waitFor(2, 90_000);
    assert.equal(got[1]!.headers['webhook-id'], got[0]!.headers['webhook-id'], 'the redelivery carries the same webhook-id');
    assert.equal(verify(sub.body.secret, got[1]!).data.id, image.id);
    const end = Date.now() + 20_000;
    let d: any;
    while (Date.now() < end) {
      d = (await call('GET', `/v2/webhooks/${sub.body.id}/deliveries`)).body.deliveries[0];
      if (d?.status === 'delivered') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(d.status, 'delivered', JSON.stringify(d));
  });

  it('a worker SIGKILLed mid fan-out to five subscribers: every one gets the event, repeats keep their webhook-id', { timeout: 180_000 }, async () => {
    const worker = workers.at(-1)!;
    let killed: Promise<void> | null = null;
    const rs: WebhookReceiver[] = [];
    for (let i = 0; i < 5; i++) {
      rs.push(new WebhookReceiver((n, _req, res) => {
        if (i === 2 && n === 1) {
          killed = worker.kill(); // this first attempt stays unanswered; the fan-out's worker dies
          return;
        }
        res.writeHead(204).end();
      }));
    }
    for (const r of rs) receivers.push(await r.start());
    const image = await activeImage();
    const subs = [];
    for (const r of rs) subs.push((await call('POST', '/v2/webhooks', { url: r.url, events: ['image.active'], filters: { image_ids: [image.id] } })).body);
    await image.upload();
    await rs[2]!.waitFor(1, 60_000);
    await killed;
    workers.push(await startPirProcess('worker', env, logDir, `worker-${workers.length + 1}`));
    await rs[2]!.waitFor(2, 90_000);
    for (const [i, r] of rs.entries()) {
      const got = await r.waitFor(1, 60_000);
      const ids = new Set(got.map((g) => g.headers['webhook-id']));
      assert.equal(ids.size, 1, `subscriber ${i}: every request carries one webhook-id (${[...ids].join(', ')})`);
      for (const g of got) assert.equal(verify(subs[i].secret, g).data.id, image.id);
    }
    const end = Date.now() + 30_000;
    let statuses: string[] = [];
    while (Date.now() < end) {
      statuses = await Promise.all(subs.map(async (s) => (await call('GET', `/v2/webhooks/${s.id}/deliveries`)).body.deliveries[0]?.status ?? 'none'));
      if (statuses.every((x) => x === 'delivered')) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.deepEqual(statuses, subs.map(() => 'delivered'));
  });
});
