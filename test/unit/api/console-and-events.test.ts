/**
 * The console's server side over real HTTP: /console and its hashed assets (strict CSP, immutable
 * caching, nothing else served from the build directory), GET /v2/events (token required, the
 * pir.hello first message, the caller's image events in order, nothing of another project's
 * private image, each message the webhook body), /v2/schemas/events, and POST /auth/tokens'
 * input checks (absent without Keystone; hostile bodies are 400s; the page offers the password
 * form exactly when it is served).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import { AUTH_DELAYS, CALLERS, testApp, type TestApp } from './tenant-app.js';
import { DEFAULT_STREAMS_PER_USER, MAX_BUFFERED_BYTES, TOKEN_RECHECK_MS } from '../../../api/routes/events.js';
import { openEventStream, type EventStreamReader } from '../../support/event-stream.js';
import { tokenExchangeRoutes } from '../../../api/routes/token-exchange.js';
import { consoleRoutes } from '../../../api/routes/console.js';
import { handleError } from '../../../api/error-handler.js';

describe('console and event stream (HTTP)', () => {
  let t: TestApp;
  let url = '';
  before(async () => {
    t = await testApp();
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => { await t.close(); });

  it('serves the built page with a strict CSP and no token or data in it', async () => {
    const page = await fetch(`${url}/console`);
    const html = await page.text();
    assert.equal(page.status, 200, 'the console is built by npm run build (dist/console-app)');
    const csp = page.headers.get('content-security-policy') ?? '';
    for (const directive of ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "form-action 'none'"]) assert.ok(csp.includes(directive), directive);
    assert.ok(!/unsafe/.test(csp));
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    assert.equal(page.headers.get('set-cookie'), null);
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/);
    const assets = [...html.matchAll(/(?:src|href)="(\/console\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    assert.ok(assets.length >= 2, 'a script and a stylesheet');
    for (const asset of assets) {
      assert.match(asset, /-[A-Za-z0-9_-]{8}\.(js|css)$/, 'content-hashed name');
      const r = await fetch(`${url}${asset}`);
      await r.arrayBuffer();
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    }
    assert.equal((await fetch(`${url}/console/`)).status, 200);
    assert.ok(html.includes('<meta name="pir-sign-in" content="token">'), 'token sign-in only (no Keystone)');
  });

  it('serves nothing else from the build directory', async () => {
    for (const path of ['/console/assets/nope.js', '/console/assets/..%2Findex.html', '/console/assets/%2e%2e%2f%2e%2e%2fpackage.json', '/console/index.html']) {
      const r = await fetch(`${url}${path}`);
      assert.equal(r.status, 404, path);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/, path);
      assert.equal((await r.json()).error.error_code, 'no_route', path);
    }
  });

  it('GET /v2/events needs a token, in the header', async () => {
    const r = await fetch(`${url}/v2/events`);
    assert.equal(r.status, 401);
    assert.equal((await r.json()).error.error_code, 'token_missing');
    assert.equal((await t.call('a-member', 'GET', '/v2/schemas/events')).json().name, 'events');
  });

  it('streams the caller\'s image events, never another project\'s private image', async () => {
    const a = await openEventStream(url, 'a-member');
    const b = await openEventStream(url, 'b-member');
    try {
      assert.equal((await a.hello).data.project_id, 'A');
      assert.equal((await b.hello).data.project_id, 'B');
      const mine = await t.create('a-member', { name: 'live-a', visibility: 'private' });
      await t.activate('a-member', mine);
      const active = await a.waitFor((m) => m.event === 'image.active' && m.data.data.id === mine, 10_000, 'image.active');
      assert.equal(active.data.type, 'image.active');
      assert.equal(active.data.data.status, 'active');
      assert.match(active.id, /^[0-9a-f-]{36}$/);
      const order = a.messages.filter((m) => m.data?.data?.id === mine).map((m) => m.event);
      assert.equal(order[0], 'image.created');
      assert.ok(order.indexOf('image.staged') < order.indexOf('image.active'));
      assert.ok(order.includes('image.stage.completed'), 'stage by stage');
      assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${mine}`)).statusCode, 204);
      await a.waitFor((m) => m.event === 'image.deleted' && m.data.data.id === mine, 10_000, 'image.deleted');
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(b.messages.filter((m) => m.data?.data?.id === mine), [], 'B heard of A\'s private image');
    } finally {
      a.close();
      b.close();
    }
  });
});

describe('event stream: who keeps hearing', () => {
  let t: TestApp;
  let url = '';
  before(async () => {
    t = await testApp();
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    delete CALLERS['revocable'];
    await t.close();
  });

  it('ends a stream whose token was revoked, with pir.goodbye, within the recheck', async () => {
    CALLERS['revocable'] = { project_id: 'C', user_id: 'c9', roles: ['member'] };
    const stream = await openEventStream(url, 'revocable');
    try {
      await stream.hello;
      const revokedAt = Date.now();
      delete CALLERS['revocable'];
      const bye = await stream.waitFor((m) => m.event === 'pir.goodbye', TOKEN_RECHECK_MS + 3000, 'pir.goodbye');
      assert.deepEqual(bye.data, { reason: 'token_invalid' });
      assert.ok(Date.now() - revokedAt <= TOKEN_RECHECK_MS + 3000);
      // Nothing after it: a public image made now does not reach the closed stream.
      const seen = stream.messages.length;
      const pub = await t.create('admin', { name: 'after-revocation', visibility: 'public' });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(stream.messages.length, seen, `heard of ${pub} after its token was revoked`);
    } finally {
      stream.close();
    }
  });

  it('tells an accepted member of a shared image nothing of its deletion (owner and admins only)', async () => {
    const b = await openEventStream(url, 'b-member');
    const admin = await openEventStream(url, 'admin');
    try {
      await b.hello;
      await admin.hello;
      const id = await t.create('a-member', { name: 'shared-then-deleted', visibility: 'shared' });
      assert.equal((await t.call('a-member', 'POST', `/v2/images/${id}/members`, { member: 'B' })).statusCode, 200);
      assert.equal((await t.call('b-member', 'PUT', `/v2/images/${id}/members/B`, { status: 'accepted' })).statusCode, 200);
      assert.equal((await t.patch('a-member', id, [{ op: 'replace', path: '/tags', value: ['seen'] }])).statusCode, 200);
      await b.waitFor((m) => m.event === 'image.updated' && m.data.data.id === id, 10_000, "the member's image.updated");
      assert.equal((await t.call('a-member', 'DELETE', `/v2/images/${id}`)).statusCode, 204);
      await admin.waitFor((m) => m.event === 'image.deleted' && m.data.data.id === id, 10_000, "the admin's image.deleted");
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(b.messages.filter((m) => m.event === 'image.deleted' && m.data.data.id === id), []);
    } finally {
      b.close();
      admin.close();
    }
  });
});

describe('POST /auth/tokens input', () => {
  it('is not served without Keystone', async () => {
    const t = await testApp();
    try {
      assert.equal((await t.app.inject({ method: 'POST', url: '/auth/tokens', payload: { username: 'u', password: 'p', project: 'x' } })).statusCode, 404);
    } finally {
      await t.close();
    }
  });

  it('is announced by the console page when served (so the page need not probe for it)', async () => {
    const app = Fastify();
    try {
      await consoleRoutes(app, { passwordSignIn: true });
      const html = (await app.inject({ method: 'GET', url: '/console' })).body;
      assert.ok(html.includes('<meta name="pir-sign-in" content="token password">'), html.slice(0, 300));
    } finally {
      await app.close();
    }
  });

  it('refuses hostile bodies with 400 before asking Keystone', async () => {
    const app = Fastify({ ajv: { customOptions: { coerceTypes: false, removeAdditional: false } } }); // as api/app.ts
    app.setErrorHandler(handleError);
    // An unroutable Keystone: any request that got through would answer 503, not 400.
    await app.register(async (root) => tokenExchangeRoutes(root, { url: 'http://127.0.0.1:9/v3', timeoutSeconds: 1 }));
    const bodies: unknown[] = [{}, { username: 'u' }, { username: 'u', password: '', project: 'p' }, { username: 'u', password: 'p', project: 'p', extra: 1 },
      { username: 'x'.repeat(256), password: 'p', project: 'p' }, { username: 1, password: 'p', project: 'p' }, 'not json'];
    for (const payload of bodies) {
      const r = await app.inject({ method: 'POST', url: '/auth/tokens', payload: payload as string, headers: { 'content-type': 'application/json' } });
      assert.equal(r.statusCode, 400, JSON.stringify(payload));
      assert.ok(r.json().error, 'PIR error shape');
    }
    const unreachable = await app.inject({ method: 'POST', url: '/auth/tokens', payload: { username: 'u', password: 'p', project: 'p' } });
    assert.equal(unreachable.statusCode, 503);
    assert.equal(unreachable.json().error.error_code, 'identity_unavailable');
    await app.close();
  });
});

describe('event stream: a client that stops reading', () => {
  let t: TestApp;
  let url = '';
  before(async () => {
    t = await testApp();
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => { await t.close(); });

  it('is closed once more than MAX_BUFFERED_BYTES of its events wait unsent, instead of PIR holding every one', async () => {
    const { port } = new URL(url);
    const socket = connect(Number(port), '127.0.0.1');
    await once(socket, 'connect');
    socket.write(`GET /v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: a-member\r\n\r\n`);
    await once(socket, 'data');
    socket.pause(); // reads nothing more: the kernel's buffers fill, then PIR's
    const connections = () => new Promise<number>((resolve, reject) => t.app.server.getConnections((error, n) => (error ? reject(error) : resolve(n))));
    assert.equal(await connections(), 1);
    const id = await t.create('a-member', { name: 'chatty', visibility: 'private' });
    const big = 'x'.repeat(60_000);
    let patches = 0;
    // Each event carries the image (~60 KB): far more than the socket buffers and the cap together.
    while (patches < 600 && (await connections()) > 0) {
      const res = await t.patch('a-member', id, [{ op: 'add', path: '/big', value: `${big}${patches++}` }]);
      assert.equal(res.statusCode, 200);
    }
    assert.equal(await connections(), 0, `the stream was still open after ${patches} events of ~60 KB`);
    assert.ok(patches * 60_000 > MAX_BUFFERED_BYTES, `closed after ${patches} events`);
    socket.destroy();
  });
});

describe('event stream: open streams per user', () => {
  let t: TestApp;
  let url = '';
  const open: EventStreamReader[] = [];
  before(async () => {
    t = await testApp();
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    for (const s of open) s.close();
    for (const token of ['cap-1', 'cap-2']) delete CALLERS[token];
    await t.close();
  });

  const openAs = async (token: string) => {
    const stream = await openEventStream(url, token);
    open.push(stream);
    await stream.hello;
    return stream;
  };
  const refused = async (token: string) => {
    const r = await fetch(`${url}/v2/events`, { headers: { 'x-auth-token': token } });
    if (r.status === 200) await r.body?.cancel(); // a stream: nothing to read as JSON
    return { status: r.status, body: r.status === 200 ? null : await r.json() as { error: { error_code: string; message: string } } };
  };
  /** Opens one more stream for `token` once PIR has seen a stream end (the slot is given back on the server's close). */
  const openOnceFree = async (token: string) => {
    for (let i = 0; i < 100; i++) {
      const stream = await openAs(token).catch((e: Error) => { if (/answered 429/.test(e.message)) return null; throw e; });
      if (stream) return stream;
      await new Promise((done) => setTimeout(done, 50));
    }
    return assert.fail(`no slot came free for ${token}`);
  };

  it(`answers 429 too_many_streams to a user's stream past ${DEFAULT_STREAMS_PER_USER}; one that ends frees its slot; other users are not affected`, async () => {
    const mine: EventStreamReader[] = [];
    for (let i = 0; i < DEFAULT_STREAMS_PER_USER; i++) mine.push(await openAs('a-member'));
    const over = await refused('a-member');
    assert.equal(over.status, 429);
    assert.equal(over.body?.error.error_code, 'too_many_streams');
    assert.match(over.body!.error.message, /has 16 event streams open .*PIR_EVENT_STREAMS_PER_USER.*close one/);
    // Another user of the same project, and another project's, open theirs.
    await openAs('a-reader');
    await openAs('b-member');
    // A client that disconnects gives its slot back.
    mine[0]!.close();
    await openOnceFree('a-member');
    assert.equal((await refused('a-member')).status, 429, 'full again');
  });

  it('keeps no slot for a client that left while its token was being checked', async () => {
    CALLERS['slow-1'] = { project_id: 'D', user_id: 'd1', roles: ['member'] };
    AUTH_DELAYS['slow-1'] = 300;
    try {
      const { port } = new URL(url);
      // More clients than the user's slots, each gone 20 ms into its token's 300 ms check.
      await Promise.all(Array.from({ length: DEFAULT_STREAMS_PER_USER + 2 }, async () => {
        const socket = connect(Number(port), '127.0.0.1');
        await once(socket, 'connect');
        socket.write(`GET /v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: slow-1\r\n\r\n`);
        await new Promise((done) => setTimeout(done, 20));
        socket.destroy();
      }));
      await new Promise((done) => setTimeout(done, 500)); // every check has ended
      const stream = await openAs('slow-1');
      assert.equal((await stream.hello).data.user_id, 'd1');
    } finally {
      delete AUTH_DELAYS['slow-1'];
      delete CALLERS['slow-1'];
    }
  });

  it('counts a user and project whatever the token, and a stream ended by pir.goodbye gives its slot back', async () => {
    CALLERS['cap-1'] = { project_id: 'C', user_id: 'c7', roles: ['member'] };
    CALLERS['cap-2'] = { project_id: 'C', user_id: 'c7', roles: ['member'] };
    const first = [];
    for (let i = 0; i < DEFAULT_STREAMS_PER_USER; i++) first.push(await openAs('cap-1'));
    assert.equal((await refused('cap-2')).status, 429, "a new token of the same user gets no more");
    delete CALLERS['cap-1'];
    await first[0]!.waitFor((m) => m.event === 'pir.goodbye', TOKEN_RECHECK_MS + 3000, 'pir.goodbye');
    await openOnceFree('cap-2');
  });
});
