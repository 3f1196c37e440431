/**
 * Webhooks end to end in embedded mode (one in-process PIR, real HTTP receivers started here):
 * delivery on image.active verified with the standardwebhooks package; retries on 500, a
 * timeout and a refused connection, with the same webhook-id; Retry-After; 410 disabling;
 * disabling after a run of failures; redelivery; secret rotation; visibility (no delivery to a
 * project that cannot see the image, delivery to one that can see a public image); and the
 * pending deliveries surviving a restart of PIR.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../infra/config.js';
import { startPir, type RunningPir } from '../../infra/runtime.js';
import { freePort } from '../support/pir-process.js';
import { testLogLevel } from '../support/services.js';
import { WebhookReceiver, verify } from '../support/webhook-receiver.js';

const ALICE = 'alice-token-0123456789-abcdefghijklmnop';
const BOB = 'bob-token-0123456789-abcdefghijklmnopqrs';
const ADMIN = 'admin-token-0123456789-abcdefghijklmno';
const SCHEDULE = '200ms,200ms,200ms';

describe('webhooks (embedded, real receivers)', () => {
  let dir: string;
  let pir: RunningPir;
  let base: string;
  let imageFile: string;
  const receivers: WebhookReceiver[] = [];

  const env = (extra: Record<string, string> = {}) => ({
    PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: '0', PIR_ADMIN_TOKEN: ADMIN, PIR_TOKENS_FILE: join(dir, 'tokens.json'),
    // A 3 s timeout: with 1 s, a loaded machine that stalled this process (receivers and PIR both)
    // for a second turned a prompt answer into a timeout and a retry (an extra attempt or request).
    PIR_EGRESS_ALLOWLIST: '127.0.0.1/32', PIR_WEBHOOK_RETRY_SCHEDULE: SCHEDULE, PIR_WEBHOOK_TIMEOUT_SECONDS: '3',
    PIR_WEBHOOK_CONNECT_TIMEOUT_SECONDS: '1', PIR_WEBHOOK_DISABLE_AFTER_FAILURES: '2', PIR_WEBHOOK_ROTATION_GRACE_SECONDS: '3600', ...extra,
  });
  const start = async () => {
    pir = await startPir(loadConfig(env()), { api: true, worker: true }, pino({ level: testLogLevel }));
    base = pir.url!;
  };
  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(base + path, { method, headers: { 'x-auth-token': token, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  const receiver = async (r = new WebhookReceiver()) => { receivers.push(r); return r.start(); };
  const newImage = async (token = ALICE, fields: Record<string, unknown> = {}) => (await call(token, 'POST', '/v2/images', { disk_format: 'raw', container_format: 'bare', ...fields })).body.id as string;
  const upload = async (id: string, token = ALICE) => {
    const { readFile } = await import('node:fs/promises');
    const res = await fetch(`${base}/v2/images/${id}/file`, { method: 'PUT', headers: { 'x-auth-token': token, 'content-type': 'application/octet-stream' }, body: await readFile(imageFile) });
    assert.equal(res.status, 204, await res.text());
    for (let i = 0; i < 500; i++) {
      const img = await call(token, 'GET', `/v2/images/${id}`);
      if (img.body.status === 'active') return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`image ${id} did not become active`);
  };
  const subscribe = async (token: string, body: Record<string, unknown>) => {
    const res = await call(token, 'POST', '/v2/webhooks', body);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body as { id: string; secret: string };
  };
  const deliveries = async (token: string, id: string) => (await call(token, 'GET', `/v2/webhooks/${id}/deliveries`)).body.deliveries as any[];
  const until = async (what: string, check: () => Promise<boolean>, ms = 15_000) => {
    const end = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-webhooks-'));
    await writeFile(join(dir, 'tokens.json'), JSON.stringify({ tokens: [
      { token: ALICE, project_id: 'alice-project', user_id: 'alice', roles: ['member', 'reader'] },
      { token: BOB, project_id: 'bob-project', user_id: 'bob', roles: ['member', 'reader'] },
    ] }));
    imageFile = join(dir, 'disk.raw');
    await writeFile(imageFile, randomBytes(64 * 1024));
    await start();
  });
  after(async () => {
    for (const r of receivers) await r.stop();
    await pir?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('delivers image.active, signed (standardwebhooks verifies it), with the image as the subscriber sees it; another project that cannot see the image gets nothing', async () => {
    const alice = await receiver();
    const bob = await receiver();
    const id = await newImage();
    const sa = await subscribe(ALICE, { url: alice.url, events: ['image.active'], filters: { image_ids: [id] } });
    const sb = await subscribe(BOB, { url: bob.url, events: ['image.*'], filters: { image_ids: [id] } });
    assert.match(sa.secret, /^whsec_/);
    await upload(id);
    const [got] = await alice.waitFor(1);
    const body = verify(sa.secret, got!);
    assert.equal(body.type, 'image.active');
    assert.equal(body.data.id, id);
    assert.equal(body.data.status, 'active');
    assert.equal(body.data.owner, 'alice-project');
    assert.match(String(got!.headers['webhook-id']), /^msg_/);
    await until('the attempt to be recorded', async () => (await deliveries(ALICE, sa.id))[0]?.status === 'delivered');
    const [d] = await deliveries(ALICE, sa.id);
    assert.equal(d.attempts[0].status, 200);
    assert.equal(typeof d.attempts[0].latency_ms, 'number');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(bob.received.length, 0, 'bob cannot see alice\'s private image');
    assert.equal((await deliveries(BOB, sb.id)).length, 0);
    assert.equal((await call(BOB, 'GET', `/v2/webhooks/${sa.id}`)).status, 404, 'another project\'s webhook is not found');
  });

  it('a public image is delivered to another project\'s matching subscription', async () => {
    const bob = await receiver();
    const id = await newImage(ADMIN, { visibility: 'public' });
    const sb = await subscribe(BOB, { url: bob.url, events: ['image.active'], filters: { image_ids: [id], visibility: ['public'] } });
    await upload(id, ADMIN);
    const [got] = await bob.waitFor(1);
    assert.equal(verify(sb.secret, got!).data.id, id);
  });

  it('retries on 500 and on a timeout with the same webhook-id, and records every attempt', async () => {
    const r = await receiver(new WebhookReceiver((n, _req, res) => {
      if (n === 1) res.writeHead(500).end('boom');
      else if (n === 2) setTimeout(() => { if (!res.destroyed) res.writeHead(200).end(); }, 5000); // past the 3 s timeout
      else res.writeHead(200).end('ok');
    }));
    const id = await newImage();
    const s = await subscribe(ALICE, { url: r.url, events: ['image.active'], filters: { image_ids: [id] } });
    await upload(id);
    const got = await r.waitFor(3);
    assert.equal(new Set(got.map((g) => g.headers['webhook-id'])).size, 1, 'webhook-id is stable across retries');
    for (const g of got) verify(s.secret, g);
    await until('delivered', async () => (await deliveries(ALICE, s.id))[0]?.status === 'delivered');
    const [d] = await deliveries(ALICE, s.id);
    assert.deepEqual(d.attempts.map((a: any) => a.status), [500, null, 200]);
    assert.match(d.attempts[1].error, /^timeout/);
    assert.ok(d.attempts[0].next_attempt_at, 'a failed attempt says when the next is due');
  });

  it('honours Retry-After', async () => {
    const r = await receiver(new WebhookReceiver((n, _req, res) => {
      if (n === 1) res.writeHead(503, { 'retry-after': '2' }).end();
      else res.writeHead(204).end();
    }));
    const id = await newImage();
    await subscribe(ALICE, { url: r.url, events: ['image.active'], filters: { image_ids: [id] } });
    await upload(id);
    const got = await r.waitFor(2, 10_000);
    const gap = got[1]!.at - got[0]!.at;
    assert.ok(gap >= 1900, `second attempt ${gap} ms after the first, Retry-After said 2 s (schedule 200 ms)`);
  });

  it('a refused connection is retried until the schedule ends; redelivery then delivers with the same webhook-id', async () => {
    const port = await freePort();
    const id = await newImage();
    const s = await subscribe(ALICE, { url: `http://127.0.0.1:${port}/hook`, events: ['image.active'], filters: { image_ids: [id] } });
    await upload(id);
    await until('the delivery to fail for good', async () => (await deliveries(ALICE, s.id))[0]?.status === 'failed');
    const [d] = await deliveries(ALICE, s.id);
    assert.equal(d.attempts.length, 4, 'first attempt + 3 retries');
    assert.ok(d.attempts.every((a: any) => a.status === null && /^connection_failed/.test(a.error)), JSON.stringify(d.attempts));
    const r = new WebhookReceiver();
    receivers.push(r);
    await r.start(port); // the port the failed attempts went to
    const again = await call(ALICE, 'POST', `/v2/webhooks/${s.id}/deliveries/${d.id}/redeliver`);
    assert.equal(again.status, 202, JSON.stringify(again.body));
    const [got] = await r.waitFor(1);
    assert.equal(got!.headers['webhook-id'], d.id);
    assert.equal(verify(s.secret, got!).data.id, id);
    await until('delivered', async () => (await deliveries(ALICE, s.id))[0]?.status === 'delivered');
  });

  it('410 disables the endpoint, and its owner sees why', async () => {
    const r = await receiver(new WebhookReceiver((_n, _req, res) => { res.writeHead(410).end(); }));
    const s = await subscribe(ALICE, { url: r.url, events: ['image.active'] });
    assert.equal((await call(ALICE, 'POST', `/v2/webhooks/${s.id}/ping`)).status, 202);
    await until('disabled', async () => (await call(ALICE, 'GET', `/v2/webhooks/${s.id}`)).body.enabled === false);
    const shown = (await call(ALICE, 'GET', `/v2/webhooks/${s.id}`)).body;
    assert.match(shown.disabled_reason, /410/);
    assert.equal(r.received.length, 1, 'no retry after 410');
    assert.equal((await call(ALICE, 'POST', `/v2/webhooks/${s.id}/ping`)).status, 409, 'a disabled webhook is not pinged');
    const enabled = await call(ALICE, 'PATCH', `/v2/webhooks/${s.id}`, { enabled: true });
    assert.equal(enabled.body.enabled, true);
    assert.equal(enabled.body.disabled_reason, null);
  });

  it('a run of failed deliveries disables the endpoint with the reason', async () => {
    const r = await receiver(new WebhookReceiver((_n, _req, res) => { res.writeHead(400).end('no'); }));
    const s = await subscribe(ALICE, { url: r.url, events: ['image.active'] });
    await call(ALICE, 'POST', `/v2/webhooks/${s.id}/ping`);
    await r.waitFor(1);
    await until('first failure counted', async () => (await call(ALICE, 'GET', `/v2/webhooks/${s.id}`)).body.consecutive_failures === 1);
    assert.equal((await call(ALICE, 'GET', `/v2/webhooks/${s.id}`)).body.enabled, true);
    await call(ALICE, 'POST', `/v2/webhooks/${s.id}/ping`);
    await until('disabled', async () => (await call(ALICE, 'GET', `/v2/webhooks/${s.id}`)).body.enabled === false);
    assert.match((await call(ALICE, 'GET', `/v2/webhooks/${s.id}`)).body.disabled_reason, /2 deliveries in a row failed.*HTTP 400/);
    assert.equal(r.received.length, 2, '4xx other than 408/429 is not retried');
  });

  it('after a rotation both the old and the new secret verify, during the grace period', async () => {
    const r = await receiver();
    const s = await subscribe(ALICE, { url: r.url, events: ['image.active'] });
    const rotated = await call(ALICE, 'POST', `/v2/webhooks/${s.id}/rotate-secret`);
    assert.equal(rotated.status, 200);
    assert.match(rotated.body.secret, /^whsec_/);
    assert.notEqual(rotated.body.secret, s.secret);
    assert.equal((await call(ALICE, 'GET', `/v2/webhooks/${s.id}`)).body.secret, undefined, 'the secret is shown only at creation and rotation');
    await call(ALICE, 'POST', `/v2/webhooks/${s.id}/ping`);
    const [got] = await r.waitFor(1);
    assert.equal(String(got!.headers['webhook-signature']).split(' ').length, 2);
    assert.equal(verify(s.secret, got!).type, 'webhook.ping');
    assert.equal(verify(rotated.body.secret, got!).type, 'webhook.ping');
  });

  it('deliveries pending when PIR stops are made after it starts again', async () => {
    const port = await freePort();
    const id = await newImage();
    const s = await subscribe(ALICE, { url: `http://127.0.0.1:${port}/hook`, events: ['image.active'], filters: { image_ids: [id] } });
    await upload(id);
    await until('a first failed attempt', async () => ((await deliveries(ALICE, s.id))[0]?.attempts.length ?? 0) >= 1);
    await pir.stop();
    const r = new WebhookReceiver();
    receivers.push(r);
    await r.start(port);
    await start();
    const [got] = await r.waitFor(1);
    assert.equal(verify(s.secret, got!).data.id, id);
  });
});
