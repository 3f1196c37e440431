/** /healthz, /readyz and /metrics of a real embedded PIR (in-process, injected requests). */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { loadConfig } from '../../../infra/config.js';
import { startPir, type RunningPir } from '../../../infra/runtime.js';
import { keystoneCheck, redact, runChecks } from '../../../infra/telemetry/health.js';
import { createServer } from 'node:net';
import { refreshMetricSources } from '../../../infra/telemetry/metrics.js';

const ADMIN = 'admin-token-for-ops-tests-0123456789';

/** The value of one sample line of Prometheus text, or 0 when absent. */
function sample(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('health and metrics (embedded)', () => {
  let dir: string;
  let pir: RunningPir;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-ops-'));
    const config = loadConfig({ PIR_DATA_DIR: dir, PIR_PORT: '0', PIR_ADMIN_TOKEN: ADMIN, PIR_METRICS_PORT: '0' });
    pir = await startPir(config, { api: true, worker: true }, pino({ level: 'silent' }));
  });
  after(async () => {
    await pir.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('/healthz answers without a token', async () => {
    const res = await pir.app!.inject({ url: '/healthz' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { status: 'ok' });
  });

  it('/readyz lists every dependency with its latency, without a token', async () => {
    const res = await pir.app!.inject({ url: '/readyz' });
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.equal(body.status, 'ready');
    assert.deepEqual(body.checks.map((c: { name: string }) => c.name), ['manifest_store', 'event_bus', 'job_queue', 'blob_store', 'blob_staging']);
    for (const c of body.checks) {
      assert.equal(c.ok, true, c.name);
      assert.equal(typeof c.latency_ms, 'number');
    }
    assert.equal(body.checks[0].kind, 'sqlite');
  });

  it('/metrics on the API port needs the admin token; the metrics port needs none', async () => {
    assert.equal((await pir.app!.inject({ url: '/metrics' })).statusCode, 401);
    const ok = await pir.app!.inject({ url: '/metrics', headers: { 'x-auth-token': ADMIN } });
    assert.equal(ok.statusCode, 200);
    assert.match(ok.headers['content-type'] as string, /^text\/plain/);
    assert.match(ok.body, /^pir_images\{status="active"\} \d+$/m);
    const open = await fetch(`${pir.metricsUrl}/metrics`);
    assert.equal(open.status, 200);
    const text = await open.text();
    assert.match(text, /# TYPE pir_stage_duration_seconds histogram/);
    for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) assert.match(line, /^pir_/, 'every metric is pir_…');
    assert.equal((await fetch(`${pir.metricsUrl}/readyz`)).status, 200);
  });

  it('values move as an image is uploaded and downloaded', async () => {
    const scrape = async () => (await fetch(`${pir.metricsUrl}/metrics`)).text();
    const before = await scrape();
    const headers = { 'x-auth-token': ADMIN };
    const created = await pir.app!.inject({ method: 'POST', url: '/v2/images', headers, payload: { name: 'm', disk_format: 'raw', container_format: 'bare' } });
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json().id as string;
    const bytes = randomBytes(256 * 1024);
    const put = await pir.app!.inject({ method: 'PUT', url: `/v2/images/${id}/file`, headers: { ...headers, 'content-type': 'application/octet-stream' }, payload: bytes });
    assert.equal(put.statusCode, 204, put.body);
    const got = await pir.app!.inject({ url: `/v2/images/${id}/file`, headers });
    assert.equal(got.rawPayload.length, bytes.length);
    refreshMetricSources();
    const afterText = await scrape();
    assert.equal(sample(afterText, 'pir_ingested_bytes_total') - sample(before, 'pir_ingested_bytes_total'), bytes.length);
    assert.equal(sample(afterText, 'pir_served_bytes_total') - sample(before, 'pir_served_bytes_total'), bytes.length);
    assert.equal(sample(afterText, 'pir_images', 'status="active"') - sample(before, 'pir_images', 'status="active"'), 1);
    for (const stage of ['unpack', 'inspect', 'checksum', 'promote']) {
      const n = (t: string) => sample(t, 'pir_stage_duration_seconds_count', `stage="${stage}",outcome="done"`);
      assert.equal(n(afterText) - n(before), 1, `one ${stage} run observed`);
    }
    assert.ok(sample(afterText, 'pir_http_request_duration_seconds_count', 'method="PUT",route="/v2/images/:id/file",status_code="204"') >= 1, 'latency by route pattern');
    assert.doesNotMatch(afterText, new RegExp(id), 'no image id in any label');
    assert.match(afterText, /^pir_queue_depth\{queue="unpack"\} 0$/m);
    assert.match(afterText, /^pir_outbox_backlog \d+$/m);
  });
});

describe('ops dashboard routes (embedded)', () => {
  let dir: string;
  let pir: RunningPir;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pir-ops-page-'));
    pir = await startPir(loadConfig({ PIR_DATA_DIR: dir, PIR_PORT: '0', PIR_ADMIN_TOKEN: ADMIN, PIR_TRACE_UI_URL: 'http://jaeger.example:16686/' }), { api: true, worker: true }, pino({ level: 'silent' }));
  });
  after(async () => {
    await pir.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the page and its bundled assets (no CDN), with a strict content security policy', async () => {
    const page = await pir.app!.inject({ url: '/ops' });
    assert.equal(page.statusCode, 200);
    assert.match(page.headers['content-security-policy'] as string, /default-src 'self'/);
    assert.match(page.body, /"traceUiUrl": "http:\/\/jaeger.example:16686"/);
    assert.doesNotMatch(page.body, /https?:\/\/(?!jaeger\.example)/, 'nothing loaded from elsewhere');
    for (const asset of ['app.js', 'app.css', 'uplot.js', 'uplot.css']) {
      const res = await pir.app!.inject({ url: `/ops/assets/${asset}` });
      assert.equal(res.statusCode, 200, asset);
      assert.ok(res.body.length > 100, asset);
    }
    assert.equal((await pir.app!.inject({ url: '/ops/assets/..%2F..%2Fpackage.json' })).statusCode, 404);
    assert.equal((await pir.app!.inject({ url: '/ops/assets/constructor' })).statusCode, 404);
  });

  it('streams snapshots to an admin only: statuses, queues, this process, recent images with their stages', async () => {
    assert.equal((await fetch(`${pir.url}/ops/api/stream`)).status, 401);
    const controller = new AbortController();
    const res = await fetch(`${pir.url}/ops/api/stream`, { headers: { 'x-auth-token': ADMIN }, signal: controller.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('\n\n')) text += (await reader.read()).value ?? '';
    controller.abort();
    assert.match(text, /^event: snapshot\ndata: /);
    const snapshot = JSON.parse(text.split('\n')[1]!.slice('data: '.length));
    assert.equal(typeof snapshot.statuses.active, 'number');
    assert.deepEqual(snapshot.queues.map((q: { stage: string }) => q.stage), ['unpack', 'inspect', 'checksum', 'promote']);
    assert.equal(snapshot.processes.length, 1);
    assert.equal(snapshot.processes[0].role, 'serve');
    assert.equal(snapshot.processes[0].pid, process.pid);
    assert.ok(Array.isArray(snapshot.recent) && Array.isArray(snapshot.failed));
  });
});

describe('dependency checks', () => {
  it('a failing or hanging check makes the answer not ready, names it, and hides credentials', async () => {
    const r = await runChecks([
      { name: 'fine', kind: 'x', check: async () => {} },
      { name: 'down', kind: 'redis', check: async () => { throw new Error('connect ECONNREFUSED redis://pir:s3cret@10.0.0.1:6379'); } },
      { name: 'slow', kind: 'kafka', check: () => new Promise(() => {}) },
    ], 100);
    assert.equal(r.ok, false);
    assert.deepEqual(r.checks.map((c) => [c.name, c.ok]), [['fine', true], ['down', false], ['slow', false]]);
    assert.equal(r.checks[1]!.error, 'connect ECONNREFUSED redis://***@10.0.0.1:6379');
    assert.match(r.checks[2]!.error!, /no answer within 100 ms/);
    assert.ok(r.checks[2]!.latency_ms >= 90);
  });

  it('redact leaves URLs without credentials alone', () => {
    assert.equal(redact('mongodb://db:27017/pir down'), 'mongodb://db:27017/pir down');
    assert.equal(redact('mongodb+srv://u:p@x/y'), 'mongodb+srv://***@x/y');
  });
});

describe('the identity check', () => {
  it('names why Keystone did not answer (fetch itself says only "fetch failed")', async () => {
    // A port that was just free: nothing listens there.
    const port = await new Promise<number>((resolve) => { const srv = createServer().listen(0, '127.0.0.1', () => { const p = (srv.address() as { port: number }).port; srv.close(() => resolve(p)); }); });
    await assert.rejects(keystoneCheck(`http://127.0.0.1:${port}/v3`).check(), /Keystone did not answer GET \/v3 \(ECONNREFUSED\)/);
  });
});
