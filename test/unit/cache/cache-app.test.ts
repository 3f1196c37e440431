/**
 * The cache's HTTP app against a fake upstream: a download whose bytes do not match the image's
 * os_hash_value is cut off (never a complete 200); the webhook receiver takes only signed
 * deliveries; the cache API refuses non-administrators; other calls pass through.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, get, type Server } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildCacheApp, WEBHOOK_PATH } from '../../../cache/cache-app.js';
import { CacheStore } from '../../../cache/cache-store.js';
import { PrefetchQueue } from '../../../cache/prefetch-queue.js';
import { Upstream } from '../../../cache/upstream.js';
import { signatureHeader } from '../../../core/webhooks/signing.js';
import { assertStalledReaderCut } from '../../support/stalled-readers.js';
import { makeTempDir, removeDir } from '../../support/images.js';

const log = pino({ level: 'silent' });
const ADMIN = 'unit-cache-admin-0123456789abcdefghijkl';
const USER = 'unit-user-token';
const SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const ID = '11111111-2222-4333-8444-555555555555';
const MISSING = '22222222-2222-4333-8444-555555555555';
const QUEUED = '33333333-2222-4333-8444-555555555555';

describe('cache app', () => {
  let dir: string;
  let upstream: Server;
  let app: FastifyInstance;
  let base: string;
  const data = randomBytes(3 * 2 ** 20);
  let claimedHash = createHash('sha512').update(randomBytes(8)).digest('hex'); // not the data's
  const events: string[] = [];

  before(async () => {
    dir = await makeTempDir('pir-cache-app-');
    upstream = createServer((request, response) => {
      if (request.headers['x-auth-token'] !== USER && request.headers['x-auth-token'] !== ADMIN) {
        response.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Keystone uri="http://keystone.test/v3"' }).end('{"error":"nope"}');
        return;
      }
      if (request.url === '/metrics') return void response.writeHead(request.headers['x-auth-token'] === ADMIN ? 200 : 403).end();
      if (request.url === `/v2/images/${MISSING}`) return void response.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      if (request.url === `/v2/images/${QUEUED}`) return void response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: QUEUED, status: 'queued' }));
      if (request.url === `/v2/images/${ID}`) {
        return void response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: ID, status: 'active', size: data.length, os_hash_algo: 'sha512', os_hash_value: claimedHash, checksum: null }));
      }
      if (request.url === `/v2/images/${ID}/file`) {
        response.writeHead(200, { 'content-length': data.length });
        if (request.method === 'HEAD') return void response.end();
        // Slowly, so the client is mid-download when the hash turns out wrong.
        let offset = 0;
        const timer = setInterval(() => {
          response.write(data.subarray(offset, offset + 256 * 1024));
          offset += 256 * 1024;
          if (offset >= data.length) { clearInterval(timer); response.end(); }
        }, 5);
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' }).end(JSON.stringify({ path: request.url, method: request.method }));
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const port = (upstream.address() as { port: number }).port;
    const store = new CacheStore(join(dir, 'cache'), 2 ** 30, log, { evicted() {}, corrupt() {}, upstreamBytes() {} });
    await store.open();
    const client = new Upstream({ base: `http://127.0.0.1:${port}`, decisionTtlMs: 1, maxDecisions: 10, timeoutMs: 5000 });
    app = await buildCacheApp({
      log, store, upstream: client, queue: new PrefetchQueue(store, client, log), adminToken: ADMIN, upstreamToken: ADMIN,
      webhookSecret: () => SECRET, onEvent: async (type, imageId) => { events.push(`${type}:${imageId}`); },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  after(async () => {
    await app?.close();
    upstream?.close();
    if (dir) await removeDir(dir);
  });

  it('cuts a download off when the bytes do not match os_hash_value, and keeps nothing', async () => {
    const outcome = await new Promise<{ status: number; bytes: number; complete: boolean; error: string | null }>((resolve) => {
      get(`${base}/v2/images/${ID}/file`, { headers: { 'x-auth-token': USER } }, (response) => {
        let bytes = 0;
        response.on('data', (chunk: Buffer) => { bytes += chunk.length; });
        response.on('end', () => resolve({ status: response.statusCode!, bytes, complete: response.complete, error: null }));
        response.on('error', (error) => resolve({ status: response.statusCode!, bytes, complete: false, error: error.message }));
        response.on('aborted', () => resolve({ status: response.statusCode!, bytes, complete: false, error: 'aborted' }));
      });
    });
    assert.equal(outcome.status, 200);
    assert.equal(outcome.complete, false, `the client got ${outcome.bytes} bytes declared complete`);
    assert.ok(outcome.bytes < data.length);
    const listed = await (await fetch(`${base}/v2/cache`, { headers: { 'x-auth-token': ADMIN } })).json() as { cached_images: unknown[] };
    assert.deepEqual(listed.cached_images, []);
  });

  it('serves the same image once the upstream\'s hash is right', async () => {
    claimedHash = createHash('sha512').update(data).digest('hex');
    const response = await fetch(`${base}/v2/images/${ID}/file`, { headers: { 'x-auth-token': USER } });
    assert.equal(response.status, 200);
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(data));
  });

  it('takes only signed, fresh webhook deliveries', async () => {
    const body = JSON.stringify({ type: 'image.deleted', timestamp: new Date().toISOString(), data: { id: ID, status: 'deleted' } });
    const now = Math.floor(Date.now() / 1000);
    const send = (headers: Record<string, string>) => fetch(`${base}${WEBHOOK_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    assert.equal((await send({ 'webhook-id': 'msg_1', 'webhook-timestamp': String(now), 'webhook-signature': 'v1,AAAA' })).status, 401);
    assert.equal((await send({ 'webhook-id': 'msg_1', 'webhook-timestamp': String(now - 3600), 'webhook-signature': signatureHeader([SECRET], 'msg_1', now - 3600, body) })).status, 401);
    assert.deepEqual(events, []);
    assert.equal((await send({ 'webhook-id': 'msg_1', 'webhook-timestamp': String(now), 'webhook-signature': signatureHeader([SECRET], 'msg_1', now, body) })).status, 204);
    assert.deepEqual(events, [`image.deleted:${ID}`]);
  });

  it('keeps the cache API and /metrics for administrators', async () => {
    assert.equal((await fetch(`${base}/v2/cache`)).status, 401);
    assert.equal((await fetch(`${base}/v2/cache`, { headers: { 'x-auth-token': USER } })).status, 403);
    assert.equal((await fetch(`${base}/metrics`, { headers: { 'x-auth-token': USER } })).status, 403);
    // A token the upstream does not take: its 401, as Glance would answer, not 403.
    for (const [method, path] of [['GET', '/v2/cache'], ['GET', '/metrics'], ['PUT', `/v2/cache/${ID}`]]) {
      const rejected = await fetch(`${base}${path}`, { method, headers: { 'x-auth-token': 'not-a-token' } });
      assert.equal(rejected.status, 401, path);
      assert.equal(rejected.headers.get('www-authenticate'), 'Keystone uri="http://keystone.test/v3"');
      assert.equal(await rejected.text(), '{"error":"nope"}');
    }
    const metrics = await fetch(`${base}/metrics`, { headers: { 'x-auth-token': ADMIN } });
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /pir_cache_hits_total/);
    assert.equal((await fetch(`${base}/v2/cache/..%2F..%2Fetc`, { method: 'PUT', headers: { 'x-auth-token': ADMIN } })).status, 400);
    assert.equal((await fetch(`${base}/v2/cache`, { method: 'DELETE', headers: { 'x-auth-token': ADMIN, 'x-image-cache-clear-target': 'everything' } })).status, 400);
  });

  it('looks an image up upstream before queueing or removing it, as Glance\'s cache API does', async () => {
    const call = (method: string, id: string) => fetch(`${base}/v2/cache/${id}`, { method, headers: { 'x-auth-token': ADMIN } });
    const missing = await call('PUT', MISSING);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { error_code: string } }).error.error_code, 'not_found');
    const queued = await call('PUT', QUEUED);
    assert.equal(queued.status, 400);
    assert.match(((await queued.json()) as { error: { message: string } }).error.message, /active.*queued/);
    const listed = await (await fetch(`${base}/v2/cache`, { headers: { 'x-auth-token': ADMIN } })).json() as { queued_images: string[] };
    assert.deepEqual(listed.queued_images.filter((id) => id === MISSING || id === QUEUED), [], 'neither was queued');
    assert.equal((await call('DELETE', QUEUED)).status, 204, 'an image that exists but is not cached: nothing to remove, done');
    assert.equal((await call('DELETE', MISSING)).status, 404, 'neither cached nor known upstream');
  });

  it('answers the cache paths\' other methods 405 with Allow, as Glance', async () => {
    for (const [method, path, allow] of [
      ['POST', '/v2/cache', 'GET, DELETE'], ['PATCH', '/v2/cache', 'GET, DELETE'], ['HEAD', '/v2/cache', 'GET, DELETE'], ['OPTIONS', '/v2/cache', 'GET, DELETE'],
      ['GET', `/v2/cache/${ID}`, 'DELETE, PUT'], ['POST', `/v2/cache/${ID}`, 'DELETE, PUT'], ['HEAD', `/v2/cache/${ID}`, 'DELETE, PUT'], ['OPTIONS', `/v2/cache/${ID}`, 'DELETE, PUT'],
    ]) {
      const response = await fetch(`${base}${path}`, { method, headers: { 'x-auth-token': ADMIN } });
      assert.equal(response.status, 405, `${method} ${path}`);
      assert.equal(response.headers.get('allow'), allow);
      assert.equal(response.headers.get('x-upstream'), null, 'not passed upstream');
      if (method !== 'HEAD') assert.equal(((await response.json()) as { error: { error_code: string } }).error.error_code, 'method_not_allowed');
    }
  });

  it('passes other calls through with their method, path, query and body', async () => {
    const response = await fetch(`${base}/v2/images?limit=2`, { method: 'POST', headers: { 'x-auth-token': USER, 'content-type': 'application/json' }, body: '{"a":1}' });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-upstream'), 'yes');
    assert.deepEqual(await response.json(), { path: '/v2/images?limit=2', method: 'POST' });
  });

  it('announces the cache API in its own /versions (what glance cache-* looks for) and passes other calls to / through', async () => {
    for (const [path, status] of [['/versions', 200], ['/', 300]] as const) {
      const response = await fetch(`${base}${path}`);
      assert.equal(response.status, status);
      assert.equal(response.headers.get('x-upstream'), null, 'answered by the cache, not the upstream');
      const ids = (await response.json() as { versions: { id: string; status: string; links: { href: string }[] }[] }).versions;
      assert.deepEqual(ids.filter((v) => v.status === 'CURRENT').map((v) => v.id), ['v2.17']);
      for (const id of ['v2.16', 'v2.15', 'v2.14', 'v2.13', 'v2.12', 'v2.0']) assert.ok(ids.some((v) => v.id === id), id);
      assert.equal(ids[0]!.links[0]!.href, `${base}/v2/`);
    }
    const posted = await fetch(`${base}/`, { method: 'POST', headers: { 'x-auth-token': USER, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(posted.headers.get('x-upstream'), 'yes');
  });
});

describe('cache app: connections', () => {
  it('closes a connection whose client stopped reading, and keeps one that reads slowly, as the API does', async () => {
    const dir = await makeTempDir('pir-cache-stall-');
    const big = Buffer.alloc(32 * 2 ** 20, 7); // more than the kernel's buffers take
    const upstream = createServer((_request, response) => response.writeHead(200, { 'content-length': big.length }).end(big));
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const client = new Upstream({ base: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`, decisionTtlMs: 1, maxDecisions: 10, timeoutMs: 5000 });
    const store = new CacheStore(join(dir, 'cache'), 2 ** 30, log, { evicted() {}, corrupt() {}, upstreamBytes() {} });
    await store.open();
    const app = await buildCacheApp({
      log, store, upstream: client, queue: new PrefetchQueue(store, client, log), adminToken: ADMIN,
      webhookSecret: () => null, onEvent: async () => {}, httpTimeouts: { sendStallMs: 800 },
    });
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      assert.equal(app.server.headersTimeout, 30_000);
      assert.equal(app.server.timeout, 300_000, 'a silent connection is closed');
      const port = (app.server.address() as { port: number }).port;
      await assertStalledReaderCut(app.server, port, `GET /v2/images?limit=1000 HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${USER}\r\n\r\n`);
    } finally {
      await app.close();
      upstream.close();
      await removeDir(dir);
    }
  });
});

describe('cache app: ranges, ids, headers and an upstream in trouble', () => {
  const OWN = 'unit-cache-own-admin-token-0123456789ab';
  const UP_ADMIN = 'upstream-admin-token';
  const IMG = 'aaaaaaaa-2222-4333-8444-555555555555';
  const BAD = 'bbbbbbbb-2222-4333-8444-555555555555';
  const HANG = 'cccccccc-2222-4333-8444-555555555555';
  const data = randomBytes(2 ** 20);
  const hashOf = (id: string) => (id === BAD ? createHash('sha512').update(randomBytes(8)).digest('hex') : createHash('sha512').update(data).digest('hex'));
  let hang = true;
  let hangFetches = 0;
  let metricsDown = false;
  let dir: string;
  let upstream: Server;
  let app: FastifyInstance;
  let base: string;

  before(async () => {
    dir = await makeTempDir('pir-cache-edges-');
    upstream = createServer((request, response) => {
      const token = request.headers['x-auth-token'];
      if (token !== USER && token !== UP_ADMIN) return void response.writeHead(401).end();
      if (request.url === '/metrics') return void response.writeHead(metricsDown ? 503 : token === UP_ADMIN ? 200 : 403).end();
      const match = /^\/v2\/images\/([0-9a-f-]+)(\/file)?$/.exec(request.url ?? '');
      if (!match) return void response.writeHead(404).end();
      const id = match[1]!;
      if (!match[2]) {
        return void response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id, status: 'active', size: data.length, os_hash_algo: 'sha512', os_hash_value: hashOf(id), checksum: null }));
      }
      if (request.method === 'HEAD') return void response.writeHead(200, { 'content-length': data.length }).end();
      if (id === HANG) hangFetches += 1;
      if (id === HANG && hang) return; // accepts, never answers
      response.writeHead(200, { 'content-length': data.length });
      let offset = 0;
      const timer = setInterval(() => {
        response.write(data.subarray(offset, offset + 64 * 1024));
        offset += 64 * 1024;
        if (offset >= data.length) { clearInterval(timer); response.end(); }
      }, 3);
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const client = new Upstream({ base: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`, decisionTtlMs: 1, maxDecisions: 10, timeoutMs: 400 });
    const store = new CacheStore(join(dir, 'cache'), 2 ** 30, log, { evicted() {}, corrupt() {}, upstreamBytes() {} });
    await store.open();
    app = await buildCacheApp({
      log, store, upstream: client, queue: new PrefetchQueue(store, client, log), adminToken: OWN, upstreamToken: null,
      webhookSecret: () => null, onEvent: async () => {},
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  after(async () => {
    await app?.close();
    upstream?.closeAllConnections();
    upstream?.close();
    if (dir) await removeDir(dir);
  });

  /** A GET through node:http, telling a complete answer from one cut off. */
  const fetchRaw = (path: string, headers: Record<string, string>) => new Promise<{ status: number; bytes: number; complete: boolean; headers: Record<string, unknown> }>((resolve) => {
    get(`${base}${path}`, { headers }, (response) => {
      let bytes = 0;
      const done = (complete: boolean) => resolve({ status: response.statusCode!, bytes, complete, headers: response.headers });
      response.on('data', (chunk: Buffer) => { bytes += chunk.length; });
      response.on('end', () => done(response.complete));
      response.on('error', () => done(false));
      response.on('aborted', () => done(false));
    });
  });

  it('never completes a range read from a fill that fails its hash, wherever the range ends', async () => {
    const cut = await fetchRaw(`/v2/images/${BAD}/file`, { 'x-auth-token': USER, range: 'bytes=0-999' });
    assert.equal(cut.status, 206);
    assert.equal(cut.complete, false, `a range of ${cut.bytes} bytes of unverified data was answered as complete`);
  });

  it('takes an id in any case as one image: one entry, one fill', async () => {
    const lower = await fetchRaw(`/v2/images/${IMG}/file`, { 'x-auth-token': USER });
    assert.equal(lower.complete, true);
    assert.equal(lower.bytes, data.length);
    // (recorded just after the fill's last byte went out)
    for (let i = 0; i < 200 && !(await (await fetch(`${base}/v2/cache`, { headers: { 'x-auth-token': OWN } })).text()).includes(`"image_id":"${IMG}"`); i++) await new Promise((r) => setTimeout(r, 10));
    const upper = await fetchRaw(`/v2/images/${IMG.toUpperCase()}/file`, { 'x-auth-token': USER });
    assert.equal(upper.headers['x-pir-cache'], 'hit');
    assert.equal(upper.bytes, data.length);
    const listed = await (await fetch(`${base}/v2/cache`, { headers: { 'x-auth-token': OWN } })).json() as { cached_images: { image_id: string }[] };
    assert.deepEqual(listed.cached_images.map((e) => e.image_id), [IMG]);
  });

  it('answers HEAD for the whole image whatever Range says, with Repr-Digest and the request id, as the upstream', async () => {
    const requestId = 'req-0a1b2c3d-0000-4000-8000-000000000001';
    const head = await fetch(`${base}/v2/images/${IMG}/file`, { method: 'HEAD', headers: { 'x-auth-token': USER, range: 'bytes=0-9', 'x-openstack-request-id': requestId } });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(data.length));
    assert.equal(head.headers.get('content-range'), null);
    assert.equal(head.headers.get('repr-digest'), `sha-512=:${Buffer.from(hashOf(IMG), 'hex').toString('base64')}:`);
    assert.equal(head.headers.get('x-openstack-request-id'), requestId);
    const listed = await fetch(`${base}/v2/cache`, { headers: { 'x-auth-token': OWN } });
    assert.match(listed.headers.get('x-openstack-request-id') ?? '', /^req-[0-9a-f-]{36}$/);
  });

  it('answers 503 upstream_unavailable, without the image\'s headers, to every reader of a fill whose upstream never answers; the next request fetches again', async () => {
    const read = () => fetch(`${base}/v2/images/${HANG}/file`, { headers: { 'x-auth-token': USER } });
    const answers = await Promise.all([read(), read()]);
    assert.equal(hangFetches, 1, 'the second client joined the first one\'s fill');
    for (const answer of answers) {
      assert.equal(answer.status, 503);
      assert.equal(((await answer.json()) as { error: { error_code: string } }).error.error_code, 'upstream_unavailable');
      for (const name of ['accept-ranges', 'repr-digest', 'content-md5', 'x-pir-cache']) assert.equal(answer.headers.get(name), null, name);
      assert.notEqual(answer.headers.get('content-length'), String(data.length));
    }
    hang = false;
    const second = await fetchRaw(`/v2/images/${HANG}/file`, { 'x-auth-token': USER });
    assert.equal(second.complete, true);
    assert.equal(second.bytes, data.length);
  });

  it('answers an absolute-form target with 404, not 500', async () => {
    const socket = connect((app.server.address() as { port: number }).port, '127.0.0.1');
    await once(socket, 'connect');
    socket.end(`GET http://127.0.0.1:1/x HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${USER}\r\nConnection: close\r\n\r\n`);
    let text = '';
    for await (const chunk of socket) text += chunk;
    assert.match(text, /^HTTP\/1\.1 404 /);
  });

  it('says 503, not 403, when the upstream cannot tell whether a token is an admin\'s', async () => {
    metricsDown = true;
    const response = await fetch(`${base}/v2/cache`, { headers: { 'x-auth-token': UP_ADMIN } });
    metricsDown = false;
    assert.equal(response.status, 503);
    assert.equal(((await response.json()) as { error: { error_code: string } }).error.error_code, 'upstream_unavailable');
    assert.equal((await fetch(`${base}/v2/cache`, { headers: { 'x-auth-token': UP_ADMIN } })).status, 200, 'the failure was not remembered as a no');
  });

  it('with the node\'s own admin token and no upstream identity: queueing is refused by name, removing is done', async () => {
    const put = await fetch(`${base}/v2/cache/${BAD}`, { method: 'PUT', headers: { 'x-auth-token': OWN } });
    assert.equal(put.status, 400);
    assert.equal(((await put.json()) as { error: { error_code: string } }).error.error_code, 'cache_needs_upstream_token');
    assert.equal((await fetch(`${base}/v2/cache/${BAD}`, { method: 'DELETE', headers: { 'x-auth-token': OWN } })).status, 204);
    assert.equal((await fetch(`${base}/v2/cache/${BAD}`, { method: 'PUT', headers: { 'x-auth-token': UP_ADMIN } })).status, 202);
  });
});
