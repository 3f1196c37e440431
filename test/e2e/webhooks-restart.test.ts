/**
 * Issue 8 point 6: nothing is lost across a Kafka, Redis or MongoDB-wire (FerretDB) server
 * restart. `pir api` + `pir worker` run on private instances of the three services
 * (test/support/private-services.ts; the shared ones on the default ports are never touched).
 * For each service: images go active while a slow receiver holds its deliveries in flight, the
 * service is stopped mid-run and started again, more images go active after it; every image's
 * image.active reaches the receiver, signed, and a repeated delivery carries the same webhook-id.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { PrivateServices, type PrivateService } from '../support/private-services.js';
import { inCI, uniqueName } from '../support/services.js';
import { WebhookReceiver, verify } from '../support/webhook-receiver.js';
import { execFileSync } from 'node:child_process';

const logDir = testLogDir('webhooks-restart');
const TOKEN = 'e2e-webhooks-restart-token-0123456789abcdef';
const haveRedis = (() => { try { execFileSync('redis-server', ['--version']); return true; } catch { return false; } })();

describe('webhooks, distributed: nothing is lost across a service restart (private Kafka, Redis, FerretDB)', { skip: !haveRedis && !inCI ? 'redis-server not installed' : false, timeout: 600_000 }, () => {
  let dir: string;
  let svc: PrivateServices;
  let api: PirProcess;
  let worker: PirProcess;
  let base: string;
  const receivers: WebhookReceiver[] = [];

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(base + path, { method, headers: { 'x-auth-token': TOKEN, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(60_000) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  /** Creates and uploads an image (the PUT answers once it is active); retries while a service is still coming back. */
  const activeImage = async (name: string) => {
    for (let attempt = 0; ; attempt++) {
      try {
        const created = await call('POST', '/v2/images', { name, disk_format: 'raw', container_format: 'bare' });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const id = created.body.id as string;
        const res = await fetch(`${base}/v2/images/${id}/file`, { method: 'PUT', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream' }, body: randomBytes(64 * 1024), signal: AbortSignal.timeout(90_000) });
        assert.equal(res.status, 204, await res.text());
        return id;
      } catch (error) {
        if (attempt >= 5) throw error;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  };

  before(async () => {
    dir = await makeTempDir('pir-e2e-webhooks-restart-');
    svc = await PrivateServices.create();
    await svc.startAll();
    const run = uniqueName('whrs').replace(/[^A-Za-z0-9]/g, '');
    const port = await freePort();
    const env = {
      PIR_DATA_DIR: join(dir, 'data'), PIR_ADMIN_TOKEN: TOKEN,
      PIR_KAFKA_BROKERS: svc.kafkaBroker, PIR_REDIS_URL: svc.redisUrl, PIR_MONGODB_URL: svc.mongodbUrl(run),
      PIR_KAFKA_TOPIC: `pir.${run}`, PIR_REDIS_PREFIX: run,
      PIR_EGRESS_ALLOWLIST: '127.0.0.1/32', PIR_WEBHOOK_RETRY_SCHEDULE: '500ms,1s,2s,2s,2s,2s,2s,2s', PIR_WEBHOOK_TIMEOUT_SECONDS: '30',
      PIR_WEBHOOK_DISABLE_AFTER_FAILURES: '1000', PIR_WEBHOOK_SECRET_KEY: randomBytes(32).toString('hex'),
    };
    // A broker started a moment ago may still be electing leaders of the new topic (slow on a
    // loaded machine), and PIR refuses to start on a broker that is not ready: start again, as a
    // supervisor would.
    const startRole = async (role: 'api' | 'worker', roleEnv: Record<string, string>) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await startPirProcess(role, roleEnv, logDir, `${role}-${attempt}`);
        } catch (error) {
          if (attempt >= 4) throw error;
          await new Promise((r) => setTimeout(r, 3000));
        }
      }
    };
    api = await startRole('api', { ...env, PIR_PORT: String(port) });
    worker = await startRole('worker', env);
    base = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    for (const r of receivers) await r.stop();
    await api?.stop();
    await worker?.stop();
    await svc?.destroy();
    if (dir) await removeDir(dir);
  });

  for (const service of ['redis', 'kafka', 'ferretdb'] as const satisfies readonly PrivateService[]) {
    it(`${service} restarted mid-run: every image.active is delivered, repeats keep their webhook-id`, { timeout: 180_000 }, async (t) => {
      // The receiver answers nothing until the restart begins, then holds each request 700 ms, so
      // deliveries are in flight or queued when the service stops, however slowly the images
      // became active (on a loaded machine all three could otherwise be answered before).
      const answered = new Set<string>();
      let restartBegun!: () => void;
      const restarting = new Promise<void>((resolve) => { restartBegun = resolve; });
      const r = new WebhookReceiver((_n, req, res) => {
        void restarting.then(() => setTimeout(() => { if (!res.destroyed) { res.writeHead(200).end('ok'); answered.add(String(req.headers['webhook-id'])); } }, 700));
      });
      receivers.push(await r.start());
      const prefix = `rs-${service}-`;
      const sub = await call('POST', '/v2/webhooks', { url: r.url, events: ['image.active'], filters: { name_prefix: prefix } });
      assert.equal(sub.status, 201, JSON.stringify(sub.body));
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push(await activeImage(`${prefix}${i}`));
      const answeredAtStop = answered.size;
      assert.ok(answeredAtStop < 3, 'the restart happens while deliveries are still owed');
      const t0 = Date.now();
      const restart = svc.restart(service, 2000);
      restartBegun();
      await restart;
      t.diagnostic(`${service}: ${3 - answeredAtStop} of 3 deliveries owed when it stopped; down and back in ${Date.now() - t0} ms`);
      for (let i = 3; i < 5; i++) ids.push(await activeImage(`${prefix}${i}`));
      const webhookIdOf = new Map<string, string>();
      const end = Date.now() + 120_000;
      while (webhookIdOf.size < ids.length) {
        if (Date.now() > end) throw new Error(`${webhookIdOf.size} of ${ids.length} images delivered after the ${service} restart; missing ${ids.filter((id) => !webhookIdOf.has(id)).join(', ')}`);
        for (const got of r.received) {
          const body = verify(sub.body.secret, got);
          assert.equal(body.type, 'image.active');
          const imageId = String(body.data.id);
          const wid = String(got.headers['webhook-id']);
          const seen = webhookIdOf.get(imageId);
          if (seen) assert.equal(wid, seen, `a repeated delivery of ${imageId} keeps its webhook-id`);
          else webhookIdOf.set(imageId, wid);
        }
        await new Promise((res) => setTimeout(res, 200));
      }
      assert.deepEqual([...webhookIdOf.keys()].sort(), [...ids].sort());
      assert.equal(new Set(webhookIdOf.values()).size, ids.length, 'one webhook-id per image');
      t.diagnostic(`${service}: ${r.received.length} requests for ${ids.length} images`);
    });
  }
});
