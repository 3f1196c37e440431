/**
 * Quotas end to end in embedded mode: real `pir serve` processes with PIR_QUOTAS, 16 concurrent
 * requests against small limits. Glance's quotas are soft (checked against a count taken before
 * the write); PIR's never overshoot.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { PirClient, type Response } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI, serviceUp, services, uniqueName } from '../support/services.js';

const TOKEN = 'e2e-quota-token-0123456789abcdefghij';
const MiB = 1024 * 1024;
const logDir = testLogDir('quotas');

async function startServe(dir: string, quotas: object, extraEnv: Record<string, string> = {}): Promise<{ pir: PirProcess; client: PirClient }> {
  const port = await freePort();
  const pir = await startPirProcess('serve', {
    PIR_DATA_DIR: join(dir, `data-${port}`), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, PIR_QUOTAS: JSON.stringify(quotas), ...extraEnv,
  }, logDir, `serve-${port}`);
  return { pir, client: new PirClient(`http://127.0.0.1:${port}`, TOKEN) };
}

/**
 * PUT …/file: sends the first half of `data`, then waits for `gate` before the rest, so every
 * upload is in flight at once. Resolves with the response (a refusal comes before the gate).
 */
function gatedUpload(client: PirClient, id: string, data: Buffer, gate: Promise<void>, headers: Record<string, string> = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(`${client.baseUrl}/v2/images/${id}/file`), {
      method: 'PUT',
      headers: { 'x-auth-token': client.token, 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked', ...headers },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.write(data.subarray(0, data.length / 2));
    void gate.then(() => { if (!req.destroyed) req.end(data.subarray(data.length / 2)); });
  });
}

async function waitFor(what: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('quotas (pir serve, PIR_QUOTAS)', () => {
  let dir: string;
  const running: PirProcess[] = [];
  before(async () => { dir = await makeTempDir('pir-e2e-quotas-'); });
  after(async () => {
    for (const p of running) await p.stop();
    await removeDir(dir);
  });

  it('16 concurrent uploads against image_count_uploading = 3: exactly 3 in flight, 13 refused with 413', async () => {
    const { pir, client } = await startServe(dir, { default: { image_count_uploading: 3 } });
    running.push(pir);
    const images = await Promise.all(Array.from({ length: 16 }, (_, i) => client.createImage({ name: `u${i}`, disk_format: 'raw', container_format: 'bare' })));
    let open!: () => void;
    const gate = new Promise<void>((resolve) => { open = resolve; });
    const data = randomBytes(MiB);
    const settled: Response[] = [];
    const uploads = images.map((image) => gatedUpload(client, image.id, data, gate).then((r) => { settled.push(r); return r; }));
    // Every refusal arrives while the 3 winners are still holding their half-sent bodies.
    await waitFor(async () => settled.length >= 13);
    const usage = (await client.call('GET', '/v2/info/usage')).body.usage;
    assert.deepEqual(usage.image_count_uploading, { limit: 3, usage: 3 });
    open();
    const results = await Promise.all(uploads);
    const ok = results.filter((r) => r.status === 204);
    const refused = results.filter((r) => r.status === 413);
    assert.equal(ok.length, 3, JSON.stringify(results.map((r) => r.status)));
    assert.equal(refused.length, 13);
    for (const r of refused) {
      assert.equal(r.body.error.error_code, 'quota_exceeded');
      assert.match(r.body.error.message, /Project admin is over a limit for \[Resource image_count_uploading is over limit of 3 due to current usage 3 and delta 1\]/);
    }
    // The refused images are back in queued, and their slots are free again: another upload fits.
    const statuses = await Promise.all(images.map(async (i) => (await client.getImage(i.id)).body.status));
    assert.equal(statuses.filter((s) => s === 'active').length, 3);
    assert.equal(statuses.filter((s) => s === 'queued').length, 13);
    await waitFor(async () => (await client.call('GET', '/v2/info/usage')).body.usage.image_count_uploading.usage === 0);
    const retry = images[statuses.indexOf('queued')];
    assert.equal((await gatedUpload(client, retry.id, data, Promise.resolve())).status, 204);
    const after = (await client.call('GET', '/v2/info/usage')).body.usage;
    assert.deepEqual(after.image_size_total, { limit: -1, usage: 4 }); // MiB, as Glance
    assert.deepEqual(after.image_count_total, { limit: -1, usage: 16 });
  });

  it('16 concurrent uploads against image_size_total = 5 MiB: never more than 5 MiB stored', async (t) => {
    const { pir, client } = await startServe(dir, { default: { image_size_total: 5 } });
    running.push(pir);
    const images = await Promise.all(Array.from({ length: 16 }, (_, i) => client.createImage({ name: `s${i}`, disk_format: 'raw', container_format: 'bare' })));
    const data = randomBytes(MiB);
    // Half announce their size (held at once), half stream without it (held as bytes arrive).
    const results = await Promise.all(images.map((image, i) => gatedUpload(client, image.id, data, Promise.resolve(), i % 2 === 0 ? { 'x-openstack-image-size': String(MiB) } : {})));
    const ok = results.filter((r) => r.status === 204).length;
    assert.ok(ok >= 1 && ok <= 5, `${ok} uploads succeeded`);
    t.diagnostic(`${ok} of 16 uploads fit in 5 MiB`);
    for (const r of results.filter((r) => r.status !== 204)) {
      assert.equal(r.status, 413, JSON.stringify(r.body));
      assert.match(r.body.error.message, /Resource image_size_total is over limit of 5/);
    }
    const docs = await Promise.all(images.map(async (i) => (await client.getImage(i.id)).body));
    const stored = docs.filter((d) => d.status === 'active').reduce((s, d) => s + d.size, 0);
    assert.ok(stored <= 5 * MiB, `${stored} bytes stored`);
    assert.equal(docs.filter((d) => d.status === 'active').length, ok);
    await waitFor(async () => (await client.call('GET', '/v2/info/usage')).body.usage.image_stage_total.usage === 0);
    const usage = (await client.call('GET', '/v2/info/usage')).body.usage;
    assert.deepEqual(usage.image_size_total, { limit: 5, usage: ok });
    // Deleting an image gives its size back.
    const active = docs.find((d) => d.status === 'active');
    assert.equal((await client.call('DELETE', `/v2/images/${active.id}`)).status, 204);
    assert.equal((await client.call('GET', '/v2/info/usage')).body.usage.image_size_total.usage, ok - 1);
  });

  it('30 concurrent creates against image_count_total = 20: exactly 20 created, then a delete frees one', async () => {
    const { pir, client } = await startServe(dir, { default: { image_count_total: 5 }, projects: { admin: { image_count_total: 20 } } });
    running.push(pir);
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => client.call('POST', '/v2/images', { name: `c${i}` })));
    const created = results.filter((r) => r.status === 201);
    assert.equal(created.length, 20);
    for (const r of results.filter((r) => r.status !== 201)) {
      assert.equal(r.status, 413);
      assert.match(r.body.error.message, /Resource image_count_total is over limit of 20 due to current usage 20 and delta 1/);
    }
    assert.equal((await client.call('GET', '/v2/images?limit=100')).body.images.length, 20);
    assert.equal((await client.call('DELETE', `/v2/images/${created[0].body.id}`)).status, 204);
    assert.equal((await client.call('POST', '/v2/images', { name: 'one more' })).status, 201);
    assert.equal((await client.call('POST', '/v2/images', { name: 'one too many' })).status, 413);
  });

  it('limits are per project: each project of the tokens file has its own limits and usage', async () => {
    const tokens = join(dir, 'tokens.json');
    await writeFile(tokens, JSON.stringify({ tokens: [
      { token: 'quota-token-small', project_id: 'small', user_id: 'sam', roles: ['member'] },
      { token: 'quota-token-big', project_id: 'big', user_id: 'bea', roles: ['member'] },
    ] }), { mode: 0o600 });
    const { pir, client } = await startServe(dir, { default: { image_count_total: 2 }, projects: { big: { image_count_total: 10 } } }, { PIR_TOKENS_FILE: tokens });
    running.push(pir);
    const small = new PirClient(client.baseUrl, 'quota-token-small');
    const big = new PirClient(client.baseUrl, 'quota-token-big');
    const smallResults = await Promise.all(Array.from({ length: 16 }, (_, i) => small.call('POST', '/v2/images', { name: `small${i}` })));
    const bigResults = await Promise.all(Array.from({ length: 16 }, (_, i) => big.call('POST', '/v2/images', { name: `big${i}` })));
    assert.equal(smallResults.filter((r) => r.status === 201).length, 2);
    assert.equal(bigResults.filter((r) => r.status === 201).length, 10);
    assert.match(smallResults.find((r) => r.status === 413)!.body.error.message, /^Project small is over a limit/);
    assert.deepEqual((await small.call('GET', '/v2/info/usage')).body.usage.image_count_total, { limit: 2, usage: 2 });
    assert.deepEqual((await big.call('GET', '/v2/info/usage')).body.usage.image_count_total, { limit: 10, usage: 10 });
  });
});

const needed = ['redis', 'kafka', 'mongodb'] as const;
const missing = (await Promise.all(needed.map(async (name) => ({ name, ...(await serviceUp(name)) })))).filter((s) => !s.up);
const missingText = missing.map((s) => `${s.name} (${s.where})`).join(', ');

describe('quotas and web-download in distributed mode (pir api + pir worker, FerretDB ledger)', { skip: missing.length && !inCI ? `not running: ${missingText}` : false }, () => {
  let dir: string;
  const running: PirProcess[] = [];
  let client: PirClient;
  let server: ReturnType<typeof createServer>;
  let base: string;
  const data = randomBytes(MiB);

  before(async () => {
    if (missing.length) throw new Error(`CI is set but these services are not running: ${missingText}`);
    dir = await makeTempDir('pir-e2e-quotas-dist-');
    server = createServer((req, res) => {
      if (req.url === '/disk.raw') return res.writeHead(200, { 'content-length': String(data.length) }).end(data);
      res.writeHead(404).end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const serverPort = (server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${serverPort}`;
    const run = uniqueName('quota').replace(/[^A-Za-z0-9]/g, '');
    const mongo = new URL(services.mongodbUrl);
    mongo.pathname = `/${run}`;
    const port = await freePort();
    const env = {
      PIR_DATA_DIR: join(dir, 'data'), PIR_ADMIN_TOKEN: TOKEN,
      PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','), PIR_REDIS_URL: services.redisUrl, PIR_MONGODB_URL: mongo.toString(),
      PIR_KAFKA_TOPIC: `pir.${run}`, PIR_REDIS_PREFIX: run,
      PIR_QUOTAS: JSON.stringify({ default: { image_count_uploading: 3 } }),
      PIR_EGRESS_ALLOWLIST: `127.0.0.1:${serverPort}`,
    };
    running.push(await startPirProcess('api', { ...env, PIR_PORT: String(port) }, logDir, 'dist-api'));
    running.push(await startPirProcess('worker', env, logDir, 'dist-worker'));
    client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
  });
  after(async () => {
    for (const p of running) await p.stop();
    server?.close();
    if (dir) await removeDir(dir);
  });

  it('16 concurrent uploads: exactly 3 in flight; the worker gives the slots back through Kafka; web-download counts too', async () => {
    const images = await Promise.all(Array.from({ length: 16 }, (_, i) => client.createImage({ name: `d${i}`, disk_format: 'raw', container_format: 'bare' })));
    let open!: () => void;
    const gate = new Promise<void>((resolve) => { open = resolve; });
    const settled: Response[] = [];
    const uploads = images.map((image) => gatedUpload(client, image.id, data, gate).then((r) => { settled.push(r); return r; }));
    await waitFor(async () => settled.length >= 13, 60_000);
    // All 3 slots are taken: a web-download is refused too.
    const extra = await client.createImage({ name: 'webdl', disk_format: 'raw', container_format: 'bare' });
    const refusedImport = await client.call('POST', `/v2/images/${extra.id}/import`, { method: { name: 'web-download', uri: `${base}/disk.raw` } });
    assert.equal(refusedImport.status, 413);
    assert.equal((await client.getImage(extra.id)).body.status, 'queued');
    open();
    const results = await Promise.all(uploads);
    assert.equal(results.filter((r) => r.status === 204).length, 3, JSON.stringify(results.map((r) => r.status)));
    assert.equal(results.filter((r) => r.status === 413).length, 13);
    // The worker made them active; its quota consumer (group pir-quota) gave the slots back.
    await waitFor(async () => (await client.call('GET', '/v2/info/usage')).body.usage.image_count_uploading.usage === 0, 60_000);
    assert.equal((await client.call('POST', `/v2/images/${extra.id}/import`, { method: { name: 'web-download', uri: `${base}/disk.raw` } })).status, 202);
    await waitFor(async () => (await client.getImage(extra.id)).body.status === 'active', 60_000);
    await waitFor(async () => (await client.call('GET', '/v2/info/usage')).body.usage.image_count_uploading.usage === 0, 60_000);
    assert.deepEqual((await client.call('GET', '/v2/info/usage')).body.usage.image_size_total, { limit: -1, usage: 4 });
  });
});
