/**
 * Issue 6 points 5, 6, 10–12, 14, 17 on real sockets (and inject() where the wire does not
 * matter): what PIR answers, reads and keeps open when a client misbehaves.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { Agent, request as httpRequest } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { assertStalledReaderCut } from '../../support/stalled-readers.js';
import { activeImage, appFixture, assertErrorShape, listen, queuedImage, RawConnection, TOKEN, type AppFixture } from './app-fixture.js';

const MiB = 1024 * 1024;

function serverSockets(f: AppFixture): Socket[] {
  const sockets: Socket[] = [];
  f.app.server.on('connection', (s: Socket) => sockets.push(s));
  return sockets;
}

describe('HTTP layer: errors in PIR shape', () => {
  let f: AppFixture;
  let port: number;
  before(async () => { f = await appFixture(); port = await listen(f.app); });
  after(async () => f.close());

  it('answers huge headers with a 431 in the JSON error shape and closes', async () => {
    const c = new RawConnection(port);
    await c.write(`GET /v2/images HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    await c.closed;
    const r = c.firstResponse();
    assert.equal(r?.status, 431, c.received.slice(0, 300));
    assertErrorShape(r!.body, 431, 'headers_too_large');
  });

  it('answers a request the parser cannot read with a 400 in the JSON error shape', async () => {
    const c = new RawConnection(port);
    await c.write('THIS IS NOT HTTP\r\n\r\n');
    await c.closed;
    const r = c.firstResponse();
    assert.equal(r?.status, 400, c.received.slice(0, 300));
    assertErrorShape(r!.body, 400, 'malformed_request');
    assert.match(r!.headers['x-openstack-request-id'] ?? '', /^req-[0-9a-f-]{36}$/, 'every answer carries a request id');
  });

  it('answers requests Node lets through but HTTP/1.1 refuses (RFC 9112 §3.2) with a 400 malformed_request and closes', async () => {
    for (const request of [
      'GET /versions HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
      'GET /versions HTTP/1.1\r\n\r\n',
      'GET /versions HTTP/2.0\r\nHost: x\r\n\r\n',
    ]) {
      const c = new RawConnection(port);
      await c.write(request);
      await c.closed;
      const r = c.firstResponse();
      assert.equal(r?.status, 400, `${JSON.stringify(request)}: ${c.received.slice(0, 300)}`);
      assertErrorShape(r!.body, 400, 'malformed_request');
      assert.equal(r!.headers.connection, 'close');
    }
    // HTTP/1.0 needs no Host.
    const old = new RawConnection(port);
    await old.write('GET /versions HTTP/1.0\r\n\r\n');
    await old.closed;
    assert.equal(old.firstResponse()?.status, 200, old.received.slice(0, 300));
  });

  it('answers an Expect other than 100-continue with a 417 in the JSON error shape, before the token check', async () => {
    const c = new RawConnection(port);
    try {
      await c.write('GET /v2/images HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n\r\n');
      await c.waitFor(() => c.firstResponse() !== null);
      const r = c.firstResponse()!;
      assert.equal(r.status, 417, c.received.slice(0, 300));
      assertErrorShape(r.body, 417, 'expectation_failed');
      assert.match(r.headers['x-openstack-request-id']!, /^req-/);
    } finally { c.destroy(); }
  });

  it('answers a very long id, before any token check, with a 414 in the JSON error shape', async () => {
    const response = await f.app.inject({ method: 'GET', url: `/v2/images/${'a'.repeat(5000)}` });
    assert.equal(response.statusCode, 414);
    assertErrorShape(response.json(), 414, 'uri_too_long');
    const badEscape = await f.app.inject({ method: 'GET', url: '/v2/images/%E0%A4%A' });
    assert.equal(badEscape.statusCode, 400);
    assertErrorShape(badEscape.json(), 400, 'bad_url');
  });

  it('answers a malformed %-escape in the query string, as in the path, with a 400 bad_url before any token check', async () => {
    for (const query of ['tag=%ED%BF%BF', 'name=%zz', 'limit=5&name=100%', 'x%FF=1']) {
      for (const headers of [{}, { 'x-auth-token': TOKEN }]) {
        const response = await f.app.inject({ method: 'GET', url: `/v2/images?${query}`, headers });
        assert.equal(response.statusCode, 400, query);
        assertErrorShape(response.json(), 400, 'bad_url');
      }
    }
    const good = await f.app.inject({ method: 'GET', url: '/v2/images?name=caf%C3%A9&tag=a%2Bb+c', headers: { 'x-auth-token': TOKEN } });
    assert.equal(good.statusCode, 200, good.body);
  });
});

describe('HTTP layer: request ids, links, logs', () => {
  it('echoes x-openstack-request-id only in the req-<uuid> form', async () => {
    const f = await appFixture();
    try {
      const good = 'req-0b5e6f2c-8a7d-4c1e-9f3a-2d4b6c8e0a1f';
      const echoed = await f.app.inject({ method: 'GET', url: '/versions', headers: { 'x-openstack-request-id': good } });
      assert.equal(echoed.headers['x-openstack-request-id'], good);
      for (const bad of ['hello', 'req-not-a-uuid', `${good}\u0000`, 'req-0b5e6f2c-8a7d-4c1e-9f3a-2d4b6c8e0a1f-extra', 'x'.repeat(5000)]) {
        const response = await f.app.inject({ method: 'GET', url: '/versions', headers: { 'x-openstack-request-id': bad } });
        const id = response.headers['x-openstack-request-id'] as string;
        assert.match(id, /^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        assert.notEqual(id, bad);
      }
      assert.ok(!JSON.stringify(f.logs).includes('hello'), 'a refused id is not logged');
    } finally { await f.close(); }
  });

  it('builds /versions links from PIR_PUBLIC_URL, never from the Host header', async () => {
    const f = await appFixture({ publicUrl: 'https://images.example.com/pir' });
    try {
      for (const url of ['/', '/versions']) {
        const response = await f.app.inject({ method: 'GET', url, headers: { host: 'evil.example:666' } });
        const hrefs = response.json().versions.flatMap((v: { links: { href: string }[] }) => v.links.map((l) => l.href));
        assert.ok(hrefs.length > 0);
        for (const href of hrefs) assert.equal(href, 'https://images.example.com/pir/v2/');
      }
    } finally { await f.close(); }
    const g = await appFixture();
    try {
      const port = await listen(g.app);
      const body = await (await fetch(`http://127.0.0.1:${port}/versions`, { headers: { host: 'evil.example' } })).json() as { versions: { links: { href: string }[] }[] };
      assert.equal(body.versions[0].links[0].href, `http://127.0.0.1:${port}/v2/`);
    } finally { await g.close(); }
  });

  it('redacts a token put in the query string from the logs', async () => {
    const f = await appFixture();
    try {
      const response = await f.app.inject({ method: 'GET', url: '/v2/images?limit=5&token=SECRET-IN-QUERY&X-Auth-Token=OTHER-SECRET&name=x&sort_key=name' });
      assert.equal(response.statusCode, 401);
      const text = JSON.stringify(f.logs);
      assert.ok(f.logs.some((l) => l.req?.url), 'the request was logged');
      assert.ok(!text.includes('SECRET-IN-QUERY') && !text.includes('OTHER-SECRET'), text.slice(0, 600));
      assert.ok(text.includes('token=[REDACTED]') && text.includes('limit=5') && text.includes('name=x'));
      assert.ok(text.includes('sort_key=name'), 'Glance\'s sort_key is a list parameter, not a secret');
    } finally { await f.close(); }
  });
});

describe('HTTP layer: bodies PIR refuses', () => {
  let f: AppFixture;
  let port: number;
  let sockets: Socket[];
  before(async () => { f = await appFixture(); port = await listen(f.app); sockets = serverSockets(f); });
  after(async () => f.close());

  it('answers Expect: 100-continue from an unauthenticated client with the 401, not 100 Continue', async () => {
    const id = await queuedImage(f);
    const c = new RawConnection(port);
    await c.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${1024 * MiB}\r\nExpect: 100-continue\r\n\r\n`);
    await c.waitFor(() => c.firstResponse() !== null);
    assert.ok(!c.received.startsWith('HTTP/1.1 100'), c.received.slice(0, 100));
    const r = c.firstResponse()!;
    assert.equal(r.status, 401);
    assertErrorShape(r.body, 401, 'token_missing');
    assert.equal(r.headers.connection, 'close');
    await c.closed;
  });

  it('answers Expect: 100-continue with 100 Continue once the upload is wanted', async () => {
    const id = await queuedImage(f);
    const c = new RawConnection(port);
    await c.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nPrefer: respond-async\r\nContent-Type: application/octet-stream\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n`);
    await c.waitFor((t) => t.startsWith('HTTP/1.1 100 Continue\r\n\r\n'));
    await c.write(Buffer.alloc(4096, 1));
    await c.waitFor(() => c.firstResponse() !== null);
    assert.equal(c.firstResponse()!.status, 202);
    c.destroy();
    // …and a refusal for the wrong state is the final answer too.
    const d = new RawConnection(port);
    await d.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${64 * MiB}\r\nExpect: 100-continue\r\n\r\n`);
    await d.waitFor(() => d.firstResponse() !== null);
    assert.ok(!d.received.startsWith('HTTP/1.1 100'));
    assert.equal(d.firstResponse()!.status, 409);
    await d.closed;
  });

  it('answers a transfer coding other than chunked with a 501, before the token check, and closes', async () => {
    const id = await queuedImage(f);
    for (const coding of ['gzip, chunked', ' X-Custom ,Chunked']) {
      const c = new RawConnection(port);
      await c.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: ${coding}\r\n\r\n4\r\nabcd\r\n`);
      await c.waitFor(() => c.firstResponse() !== null);
      const r = c.firstResponse()!;
      assert.equal(r.status, 501, coding);
      assertErrorShape(r.body, 501, 'transfer_coding_unsupported');
      assert.match((r.body as { error: { message: string } }).error.message, /Transfer-Encoding: /);
      assert.equal(r.headers.connection, 'close');
      await c.closed;
    }
    // Chunked alone is taken (and case does not matter): the upload goes through.
    const c = new RawConnection(port);
    await c.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nPrefer: respond-async\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: Chunked\r\n\r\n1000\r\n${'a'.repeat(4096)}\r\n0\r\n\r\n`);
    await c.waitFor(() => c.firstResponse() !== null);
    assert.equal(c.firstResponse()!.status, 202);
    c.destroy();
  });

  it('reads and discards the rest of a body it refused, so that a client sending it all reads the answer', async () => {
    const id = await queuedImage(f);
    const active = await activeImage(f, Buffer.alloc(4096, 7));
    const chunked = (n: number) => Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), Buffer.alloc(n, 1), Buffer.from('\r\n')]);
    const cases = [
      { path: `/v2/images/${id}/file`, token: null, status: 401, code: 'token_missing', framing: 'length' },
      { path: `/v2/images/${active}/file`, token: TOKEN, status: 409, code: null, framing: 'length' },
      // Over the fixture's 64 MiB PIR_MAX_IMAGE_SIZE, chunked as the glance CLI sends: refused mid-stream.
      { path: `/v2/images/${id}/file`, token: TOKEN, status: 413, code: 'image_too_large', framing: 'chunked' },
    ] as const;
    for (const c of cases) {
      const conn = new RawConnection(port);
      const before = sockets.length;
      const size = c.framing === 'length' ? 60 * MiB : 72 * MiB;
      await conn.write(`PUT ${c.path} HTTP/1.1\r\nHost: x\r\n${c.token ? `X-Auth-Token: ${c.token}\r\n` : ''}Content-Type: application/octet-stream\r\n${c.framing === 'length' ? `Content-Length: ${size}` : 'Transfer-Encoding: chunked'}\r\n\r\n`);
      // Like python-requests: the whole body goes out before the answer is looked at.
      for (let sent = 0; sent < size; sent += MiB) await conn.write(c.framing === 'length' ? Buffer.alloc(MiB) : chunked(MiB));
      if (c.framing === 'chunked') await conn.write('0\r\n\r\n');
      assert.equal(conn.error, null, `${c.status}: the client could send its whole body (${conn.error?.message})`);
      await conn.waitFor(() => conn.firstResponse() !== null);
      const r = conn.firstResponse()!;
      assert.equal(r.status, c.status);
      if (c.code) assertErrorShape(r.body, c.status, c.code);
      assert.notEqual(r.headers.connection, 'close', 'the connection stays usable once the body is in');
      const server = sockets[before]!;
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.ok(!server.destroyed, 'the server kept the connection');
      assert.ok(server.bytesRead >= size, `the server read the whole body (${server.bytesRead} bytes)`);
      conn.destroy();
    }
  });

  it('closes the connection once a refused body goes on past the bound, sooner for a caller without a valid token', async (t) => {
    const g = await appFixture({ httpTimeouts: { refusedBodyLingerBytes: 16 * MiB, anonymousBodyLingerBytes: 4 * MiB } });
    try {
      const gPort = await listen(g.app);
      const gSockets = serverSockets(g);
      const id = await queuedImage(g);
      const active = await activeImage(g, Buffer.alloc(4096, 7));
      for (const [path, token, bound] of [[`/v2/images/${id}/file`, null, 4 * MiB], [`/v2/images/${active}/file`, TOKEN, 16 * MiB]] as const) {
        const before = gSockets.length;
        const c = new RawConnection(gPort);
        await c.write(`PUT ${path} HTTP/1.1\r\nHost: x\r\n${token ? `X-Auth-Token: ${token}\r\n` : ''}Content-Type: application/octet-stream\r\nContent-Length: ${60 * MiB}\r\n\r\n`);
        for (let sent = 0; sent < 60 && !c.socket.destroyed && c.error === null; sent++) await c.write(Buffer.alloc(MiB));
        await c.closed;
        const server = gSockets[before]!;
        assert.ok(server.destroyed, 'the server closed its side');
        assert.ok(server.bytesRead > bound && server.bytesRead < bound + 8 * MiB, `the server read ${server.bytesRead} bytes of a refused 60 MiB body, bound ${bound}`);
        t.diagnostic(`${token ? 'with' : 'without'} a token: the server read ${server.bytesRead} bytes of a refused 60 MiB body, bound ${bound}`);
      }
    } finally { await g.close(); }
  });

  it('gives a client that asked to close its answer once its refused body is in', async () => {
    const active = await activeImage(f, Buffer.alloc(4096, 7));
    for (const [version, connection] of [['1.1', 'Connection: close\r\n'], ['1.0', '']] as const) {
      const c = new RawConnection(port);
      await c.write(`PUT /v2/images/${active}/file HTTP/${version}\r\nHost: x\r\n${connection}X-Auth-Token: ${TOKEN}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${24 * MiB}\r\n\r\n`);
      for (let sent = 0; sent < 24; sent++) await c.write(Buffer.alloc(MiB));
      assert.equal(c.error, null, `HTTP/${version}: the client could send its whole body (${c.error?.message})`);
      await c.closed;
      const r = c.firstResponse();
      assert.equal(r?.status, 409, `HTTP/${version}: ${c.received.slice(0, 200)}`);
    }
  });

  it('answers a request once: what the client garbles after its refused body is not answered again', async () => {
    const active = await activeImage(f, Buffer.alloc(4096, 7));
    const c = new RawConnection(port);
    await c.write(`PUT /v2/images/${active}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n`);
    await c.waitFor(() => c.firstResponse() !== null);
    await new Promise((r) => setTimeout(r, 200)); // the rest of the body is being read and discarded
    await c.write('zz\r\nGET /versions HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.closed;
    assert.equal(c.firstResponse()!.status, 409);
    assert.equal(c.received.match(/HTTP\/1\.1 \d{3} /g)?.length, 1, c.received.slice(0, 600));
  });

  it('does not read a refused body on a route that takes no image data', async () => {
    const c = new RawConnection(port);
    await c.write(`POST /v2/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${8 * MiB}\r\n\r\n`);
    await c.waitFor(() => c.firstResponse() !== null);
    assert.equal(c.firstResponse()!.status, 401);
    assert.equal(c.firstResponse()!.headers.connection, 'close');
    await c.closed;
  });
});

describe('HTTP layer: uploads and their connections', () => {
  it('answers a synchronous upload 202 when the pipeline does not settle within PIR_UPLOAD_SETTLE_WAIT_SECONDS', async () => {
    // This fixture runs no pipeline: the image stays importing, as with every worker down.
    const f = await appFixture({ settleWaitMs: 300 });
    try {
      const port = await listen(f.app);
      const id = await queuedImage(f);
      const c = new RawConnection(port);
      const t0 = performance.now();
      await c.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nContent-Type: application/octet-stream\r\nContent-Length: 4096\r\n\r\n`);
      await c.write(Buffer.alloc(4096, 7));
      await c.waitFor(() => c.firstResponse() !== null, 10_000);
      const waited = performance.now() - t0;
      assert.equal(c.firstResponse()!.status, 202);
      assert.ok(waited >= 290, `answered after ${waited.toFixed(0)} ms, before the wait was over`);
      c.destroy();
      const doc = await f.d.manifest.get(id);
      assert.equal(doc?.status, 'importing', 'the image goes on importing');
      assert.equal(doc?.staging?.size, 4096);
      assert.ok(f.logs.some((l) => l.msg?.includes('upload answered 202') && l.image_id === id), 'logged');
    } finally { await f.close(); }
  });

  it('abandons an upload whose body goes silent: 408, image queued, no staging file, connection closed', async () => {
    const f = await appFixture({ idleMs: 400 });
    try {
      const port = await listen(f.app);
      const id = await queuedImage(f);
      const c = new RawConnection(port);
      await c.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${MiB}\r\n\r\n`);
      await c.write(Buffer.alloc(1024, 3));
      await c.waitFor(() => c.firstResponse() !== null, 5000);
      const r = c.firstResponse()!;
      assert.equal(r.status, 408);
      assertErrorShape(r.body, 408, 'upload_idle');
      await c.closed;
      const doc = await f.d.manifest.get(id);
      assert.equal(doc?.status, 'queued');
      assert.equal(doc?.upload, null);
      assert.deepEqual(await readdir(f.d.blobs.stagingDir), []);
    } finally { await f.close(); }
  });

  it('keeps a slow upload that keeps moving', async () => {
    // The idle limit is well above the 150 ms gaps (with 400 ms, a loaded machine that stalled this
    // process for 250 ms fired the idle timer before the next chunk was read: a 408), and still
    // well below the whole upload's 2.4 s.
    const f = await appFixture({ idleMs: 1200 });
    try {
      const port = await listen(f.app);
      const id = await queuedImage(f);
      const c = new RawConnection(port);
      const total = 16 * 1024;
      await c.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nPrefer: respond-async\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\n\r\n`);
      for (let sent = 0; sent < total; sent += 1024) {
        await c.write(Buffer.alloc(1024, 5));
        await new Promise((r) => setTimeout(r, 150)); // 2.4 s in all, each gap well under the idle limit
      }
      await c.waitFor(() => c.firstResponse() !== null);
      assert.equal(c.firstResponse()!.status, 202);
      c.destroy();
    } finally { await f.close(); }
  });

  it('logs a client that disconnects mid-upload as a client abort at info, not as an error', async () => {
    const f = await appFixture();
    try {
      const port = await listen(f.app);
      const id = await queuedImage(f);
      const c = new RawConnection(port);
      await c.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${MiB}\r\n\r\n`);
      await c.write(Buffer.alloc(1024, 3));
      await new Promise((r) => setTimeout(r, 100));
      c.destroy();
      const deadline = Date.now() + 5000;
      while ((await f.d.manifest.get(id))?.status !== 'queued' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // The abort is logged after the image is queued again (and its quota hold settled): wait for
      // the log line (bounded) instead of assuming 100 ms is enough on a loaded machine.
      const logged = () => f.logs.some((l) => l.level === 30 && l.msg === 'client aborted the request');
      while (!logged() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await f.d.manifest.get(id))?.status, 'queued');
      assert.deepEqual(f.logs.filter((l) => l.level >= 50), [], 'nothing at error level');
      assert.ok(f.logs.some((l) => l.level === 30 && l.msg === 'client aborted the request'), JSON.stringify(f.logs.map((l) => l.msg)));
    } finally { await f.close(); }
  });

  it('adds no lasting socket listener per upload on a keep-alive connection', async () => {
    const f = await appFixture();
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const port = await listen(f.app);
      const sockets = serverSockets(f);
      for (let i = 0; i < 15; i++) {
        const id = await queuedImage(f, `ka-${i}`);
        // No workers here: settle the import the moment it starts, as a refusing stage would.
        const settle = (doc: { status: string }) => {
          if (doc.status !== 'importing') return;
          f.d.manifest.changes.off(id, settle);
          void f.d.manifest.update(id, (draft) => {
            draft.status = 'killed';
            draft.failure = { stage: 'unpack', code: 'checksum_mismatch', message: 'refused by the test', at: new Date().toISOString() };
            return [];
          });
        };
        f.d.manifest.changes.on(id, settle);
        const status = await new Promise<number>((resolve, reject) => {
          const req = httpRequest({ host: '127.0.0.1', port, method: 'PUT', path: `/v2/images/${id}/file`, agent, headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream' } }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', reject);
          req.end(Buffer.alloc(2048, i));
        });
        assert.equal(status, 400);
      }
      assert.equal(sockets.length, 1, 'every upload went over one connection');
      assert.ok(sockets[0].listenerCount('close') <= 4, `${sockets[0].listenerCount('close')} close listeners on the socket`);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map(String), []);
    } finally {
      process.off('warning', onWarning);
      agent.destroy();
      await f.close();
    }
  });

  it('answers HEAD …/file from the metadata alone, without opening the data', async () => {
    const f = await appFixture();
    try {
      const bytes = Buffer.alloc(3 * MiB, 9);
      const id = await activeImage(f, bytes);
      let opened = 0;
      const read = f.d.blobs.read.bind(f.d.blobs);
      f.d.blobs.read = (...args: Parameters<typeof read>) => { opened += 1; return read(...args); };
      const head = await f.app.inject({ method: 'HEAD', url: `/v2/images/${id}/file`, headers: { 'x-auth-token': TOKEN } });
      assert.equal(head.statusCode, 200);
      assert.equal(head.headers['content-length'], String(bytes.length));
      assert.equal(head.body, '');
      assert.equal(opened, 0, 'HEAD opened the image data');
      const get = await f.app.inject({ method: 'GET', url: `/v2/images/${id}/file`, headers: { 'x-auth-token': TOKEN } });
      assert.equal(get.rawPayload.length, bytes.length);
      assert.equal(opened, 1);
      // HEAD answers the same headers as a whole GET.
      for (const name of ['content-md5', 'repr-digest', 'accept-ranges', 'content-type']) assert.equal(head.headers[name], get.headers[name], name);
      assert.ok(head.headers['repr-digest']);
    } finally { await f.close(); }
  });
});

describe('HTTP layer: timeouts', () => {
  it('closes a connection whose client stopped reading its answer, and keeps one that reads slowly', async () => {
    const f = await appFixture({ httpTimeouts: { sendStallMs: 800 } });
    try {
      const port = await listen(f.app);
      const id = await activeImage(f, Buffer.alloc(32 * MiB, 9)); // more than the kernel's buffers take
      await assertStalledReaderCut(f.app.server, port, `GET /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\n\r\n`);
    } finally { await f.close(); }
  });

  it('has a headers timeout, keep-alive and idle timeouts, and no limit on a whole request', async () => {
    const f = await appFixture();
    try {
      assert.equal(f.app.server.headersTimeout, 30_000);
      assert.equal(f.app.server.keepAliveTimeout, 65_000);
      assert.equal(f.app.server.requestTimeout, 0, 'a multi-hour upload that keeps moving is never cut');
      assert.equal(f.app.server.timeout, 300_000);
    } finally { await f.close(); }
  });

  it('answers 408 body_timeout and closes when a JSON body trickles past its deadline; an upload that keeps moving is not cut', async () => {
    const f = await appFixture({ httpTimeouts: { bufferedBodyMs: 400 } });
    try {
      const port = await listen(f.app);
      const c = new RawConnection(port);
      await c.write(`POST /v2/images HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
      const trickle = setInterval(() => void c.write(' '), 100); // never idle, never done
      try {
        await c.waitFor(() => c.firstResponse() !== null, 5000);
        await c.closed;
      } finally { clearInterval(trickle); }
      assert.equal(c.firstResponse()!.status, 408);
      assert.equal(c.firstResponse()!.headers.connection, 'close');
      assertErrorShape(c.firstResponse()!.body, 408, 'body_timeout');
      // Image data is no buffered body: 1 KiB in four pieces over ~1 s is taken.
      const id = await queuedImage(f);
      const u = new RawConnection(port);
      await u.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nContent-Type: application/octet-stream\r\nPrefer: respond-async\r\nContent-Length: 1024\r\n\r\n`);
      for (let i = 0; i < 4; i++) { await new Promise((r) => setTimeout(r, 250)); await u.write(Buffer.alloc(256, 1)); }
      await u.waitFor(() => u.firstResponse() !== null, 5000);
      assert.equal(u.firstResponse()!.status, 202);
      u.destroy();
      // A JSON body that arrives in time is answered as usual.
      const quick = await fetch(`http://127.0.0.1:${port}/v2/images`, { method: 'POST', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/json' }, body: '{"name": "in time"}' });
      assert.equal(quick.status, 201);
    } finally { await f.close(); }
  });

  it('closes a silent connection, but not one whose upload waits for its import', async () => {
    const f = await appFixture({ httpTimeouts: { socketIdleMs: 300 } });
    try {
      const port = await listen(f.app);
      const silent = new RawConnection(port);
      const started = Date.now();
      await silent.closed;
      assert.ok(Date.now() - started < 3000, 'a connection that sends nothing is closed');
      const id = await queuedImage(f);
      // The import "takes" 1.2 s (four idle periods) with nothing on the wire, then is refused.
      f.d.manifest.changes.on(id, function settle(doc: { status: string }) {
        if (doc.status !== 'importing') return;
        f.d.manifest.changes.off(id, settle);
        setTimeout(() => void f.d.manifest.update(id, (draft) => {
          draft.status = 'killed';
          draft.failure = { stage: 'inspect', code: 'checksum_mismatch', message: 'refused by the test', at: new Date().toISOString() };
          return [];
        }), 1200);
      });
      const c = new RawConnection(port);
      await c.write(`PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${TOKEN}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n`);
      await c.write(Buffer.alloc(1024, 1));
      await c.waitFor(() => c.firstResponse() !== null, 5000);
      assert.equal(c.firstResponse()!.status, 400);
      assert.equal(c.firstResponse()!.body.error.error_code, 'checksum_mismatch');
      c.destroy();
    } finally { await f.close(); }
  });
});

describe('HTTP layer: shutting down', () => {
  it('answers a request that arrives while PIR closes with a 503 in the JSON error shape', async () => {
    const f = await appFixture();
    const port = await listen(f.app);
    const c = new RawConnection(port);
    try {
      await c.write('GET /versions HTTP/1.1\r\nHost: x\r\n'); // headers not finished: the connection is busy
      await new Promise((r) => setTimeout(r, 100));
      const closing = f.app.close();
      await new Promise((r) => setTimeout(r, 100));
      await c.write('\r\n');
      await c.waitFor(() => c.firstResponse() !== null);
      const r = c.firstResponse()!;
      assert.equal(r.status, 503);
      assertErrorShape(r.body, 503, 'shutting_down');
      await closing;
    } finally {
      c.destroy();
      await f.close().catch(() => {});
    }
  });
});
