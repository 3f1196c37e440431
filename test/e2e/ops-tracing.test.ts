/**
 * One connected trace per image across processes (distributed): `pir api` and `pir worker` export
 * spans to JSON-lines files (OTEL_TRACES_EXPORTER=pir-test-file); one upload must read as one
 * trace: the PUT request (api) → the dispatcher's consumer span (worker, child of and linked to
 * the request's context, carried by the outbox event's Kafka header) → a span per stage (carried
 * in the BullMQ job) with image id, format, bytes and outcome → the webhook delivery that the
 * image's `image.active` sets off (a client span in the worker, whose traceparent the receiver
 * gets). Job log lines carry trace_id, span_id, image_id and project_id.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { SpanRecord } from '../../infra/telemetry/tracing.js';
import { makeTempDir, removeDir } from '../support/images.js';
import { PirClient } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, waitFor, type PirProcess } from '../support/pir-process.js';
import { requireServices, services, uniqueName } from '../support/services.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

const logDir = testLogDir('ops-tracing');
const TOKEN = 'e2e-tracing-token-0123456789abcdef0123456789';

async function spans(path: string): Promise<SpanRecord[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  // Only whole lines: the exporting process may be writing the last one as this reads.
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as SpanRecord);
}

describe('tracing in embedded mode (pir serve)', () => {
  let pir: PirProcess | undefined;
  let dir = '';
  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  it('traces the same way: request → dispatcher → every stage, one trace', async () => {
    dir = await makeTempDir('pir-e2e-trace-embedded-');
    const spansFile = join(dir, 'spans.jsonl');
    const port = await freePort();
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, OTEL_TRACES_EXPORTER: 'pir-test-file', PIR_TEST_SPANS_FILE: spansFile }, logDir, 'serve');
    const client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
    const image = await client.createImage({ name: 'traced-embedded', disk_format: 'raw', container_format: 'bare' });
    const file = join(dir, 'x.raw');
    await writeFile(file, randomBytes(64 * 1024));
    assert.equal((await client.putData(image.id, file)).status, 204);
    await waitFor(async () => (await spans(spansFile)).filter((s) => s.name.startsWith('stage ')).length >= 4, 10_000, 'four stage spans');
    const all = await spans(spansFile);
    const request = all.find((s) => s.name === 'PUT /v2/images/:id/file')!;
    const dispatch = all.find((s) => s.name === 'process image.import.started')!;
    assert.equal(request.scope, '@fastify/otel');
    const byId = new Map(all.map((s) => [s.span_id, s]));
    let p = dispatch.parent_span_id;
    while (p && p !== request.span_id) p = byId.get(p)?.parent_span_id ?? null;
    assert.equal(p, request.span_id, 'the dispatcher continues the request');
    const stages = all.filter((s) => s.name.startsWith('stage '));
    assert.deepEqual(stages.map((s) => [s.name, s.trace_id, s.parent_span_id, s.attributes['pir.outcome']]),
      ['unpack', 'inspect', 'checksum', 'promote'].map((st) => [`stage ${st}`, request.trace_id, dispatch.span_id, 'done']));
    assert.equal(stages[0]!.service, 'pir-serve');
    // Spans cost on small images: the upload's trace is the request, the dispatcher and one per
    // stage; no span for the route handler or for each Fastify hook.
    const inTrace = all.filter((s) => s.trace_id === request.trace_id);
    assert.deepEqual(inTrace.filter((s) => s.scope === '@fastify/otel').map((s) => s.name), ['PUT /v2/images/:id/file']);
    assert.equal(inTrace.length, 6, inTrace.map((s) => s.name).join(', '));
  });

  /**
   * What a request starts and answers 202 for, failing on a 404 URL: its span (`spanName`) is in
   * the request's trace, with an error status and the code, and no span holds the URL's query.
   */
  async function failedBackgroundSpan(spanName: string, path: string, route: string, body: (url: string) => unknown): Promise<void> {
    const server = createServer((_req, res) => { res.statusCode = 404; res.end('no such disk'); });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const dir2 = await makeTempDir(`pir-e2e-trace-${spanName}-`);
    let serve: PirProcess | undefined;
    try {
      const spansFile = join(dir2, 'spans.jsonl');
      const port = await freePort();
      serve = await startPirProcess('serve', { PIR_DATA_DIR: join(dir2, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, PIR_EGRESS_ALLOWLIST: '127.0.0.1', OTEL_TRACES_EXPORTER: 'pir-test-file', PIR_TEST_SPANS_FILE: spansFile }, logDir, `serve-${spanName}`);
      const client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
      const image = await client.createImage({ name: `traced-${spanName}`, disk_format: 'raw', container_format: 'bare' });
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/disk.raw?sig=secret-sig`;
      const started = await fetch(`http://127.0.0.1:${port}/v2/images/${image.id}/${path}`, { method: 'POST', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/json' }, body: JSON.stringify(body(url)) });
      assert.equal(started.status, 202);
      await waitFor(async () => (await spans(spansFile)).some((sp) => sp.name === spanName), 10_000, `the ${spanName} span`);
      const all = await spans(spansFile);
      const background = all.find((sp) => sp.name === spanName)!;
      const request = all.find((sp) => sp.name === route)!;
      assert.equal(background.trace_id, request.trace_id);
      assert.equal(background.status, 2, 'an error status');
      assert.equal(background.attributes['pir.error.code'], 'upstream_status');
      assert.equal(background.attributes['pir.image.id'], image.id);
      assert.doesNotMatch(JSON.stringify(all), /secret-sig/, "the URL's query is in no span");
    } finally {
      await serve?.stop();
      server.close();
      await removeDir(dir2);
    }
  }

  it("a web-download that fails after the 202 is a span of the import's trace, with an error status and the code", async () => {
    await failedBackgroundSpan('web-download', 'import', 'POST /v2/images/:id/import', (uri) => ({ method: { name: 'web-download', uri } }));
  });

  it("a location registration that fails after the 202 is a span of the POST's trace (through its job), with an error status and the code", async () => {
    await failedBackgroundSpan('register-location', 'locations', 'POST /v2/images/:id/locations', (url) => ({ url }));
  });
});

describe('tracing across processes (distributed)', () => {
  const processes: PirProcess[] = [];
  let dir = '';
  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    if (dir) await removeDir(dir);
  });

  it('one upload is one connected trace from the request through every stage to the webhook delivery', async (t) => {
    if (!(await requireServices(t, ['kafka', 'mongodb', 'redis']))) return;
    dir = await makeTempDir('pir-e2e-trace-');
    const run = uniqueName('trace').replace(/[^A-Za-z0-9]/g, '');
    const mongo = new URL(services.mongodbUrl);
    mongo.pathname = `/${run}`;
    const env = {
      PIR_DATA_DIR: join(dir, 'data'),
      PIR_ADMIN_TOKEN: TOKEN,
      PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','),
      PIR_REDIS_URL: services.redisUrl,
      PIR_MONGODB_URL: mongo.toString(),
      PIR_KAFKA_TOPIC: `pir.${run}`,
      PIR_REDIS_PREFIX: run,
      OTEL_TRACES_EXPORTER: 'pir-test-file',
      PIR_EGRESS_ALLOWLIST: '127.0.0.1/32',
      PIR_WEBHOOK_SECRET_KEY: randomBytes(32).toString('hex'),
    };
    const receiver = await new WebhookReceiver().start();
    t.after(() => receiver.stop());
    const apiSpans = join(dir, 'api-spans.jsonl');
    const workerSpans = join(dir, 'worker-spans.jsonl');
    const port = await freePort();
    processes.push(await startPirProcess('api', { ...env, PIR_PORT: String(port), PIR_TEST_SPANS_FILE: apiSpans }, logDir, 'api'));
    const worker = await startPirProcess('worker', { ...env, PIR_TEST_SPANS_FILE: workerSpans }, logDir, 'worker');
    processes.push(worker);
    const client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
    const image = await client.createImage({ name: 'traced', disk_format: 'raw', container_format: 'bare' });
    const subscribed = await fetch(`http://127.0.0.1:${port}/v2/webhooks`, {
      method: 'POST', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/json' },
      body: JSON.stringify({ url: receiver.url, events: ['image.active'], filters: { image_ids: [image.id] } }),
    });
    assert.equal(subscribed.status, 201, await subscribed.text());
    const file = join(dir, 'traced.raw');
    await writeFile(file, randomBytes(512 * 1024));
    const put = await client.putData(image.id, file);
    assert.equal(put.status, 204);

    await waitFor(async () => (await spans(workerSpans)).filter((s) => s.name.startsWith('stage ')).length >= 4, 10_000, 'four stage spans');
    const [delivered] = await receiver.waitFor(1, 30_000);
    await waitFor(async () => (await spans(workerSpans)).some((s) => s.name === 'POST webhook image.active'), 10_000, 'the delivery span');
    const request = (await spans(apiSpans)).find((s) => s.name === 'PUT /v2/images/:id/file');
    assert.ok(request, 'the upload request has a server span');
    assert.equal(request.scope, '@fastify/otel', 'the HTTP server span comes from @fastify/otel');
    assert.equal(request.kind, 1, 'SERVER');
    assert.equal(request.parent_span_id, null, 'the upload starts the trace');
    assert.equal(request.attributes['http.response.status_code'], 204);
    // A span is written when it ends, after its children: wait until every span of the trace
    // has its parent written (the fan-out job's spans end after the delivery's).
    const traceSpans = async () => [...await spans(apiSpans), ...await spans(workerSpans)].filter((s) => s.trace_id === request.trace_id);
    await waitFor(async () => {
      const all = await traceSpans();
      const ids = new Set(all.map((s) => s.span_id));
      return all.every((s) => s.span_id === request.span_id || (s.parent_span_id !== null && ids.has(s.parent_span_id)));
    }, 15_000, 'every span of the trace written with its parent').catch(() => undefined); // the assertions below say what is missing
    const inWorker = (await spans(workerSpans)).filter((s) => s.trace_id === request.trace_id);
    const inApi = (await spans(apiSpans)).filter((s) => s.trace_id === request.trace_id);
    const byId = new Map([...inApi, ...inWorker].map((s) => [s.span_id, s]));
    /** Whether `span`'s parent chain reaches `ancestor` through spans of this trace. */
    const descends = (span: SpanRecord, ancestor: SpanRecord) => {
      for (let p = span.parent_span_id; p; p = byId.get(p)?.parent_span_id ?? null) if (p === ancestor.span_id) return true;
      return false;
    };
    const dispatch = inWorker.find((s) => s.name === 'process image.import.started');
    assert.ok(dispatch, `the dispatcher span is in the request's trace: ${JSON.stringify(inWorker.map((s) => s.name))}`);
    assert.ok(descends(dispatch, request), 'the dispatcher continues the request (event traceparent → Kafka)');
    assert.deepEqual(dispatch.links, [{ trace_id: request.trace_id, span_id: dispatch.parent_span_id }], 'and links to the producer context');
    // The auto-instrumentations, all in the same trace: Kafka produce (api) and consume (worker),
    // MongoDB in both, ioredis and BullMQ's own spans in the worker.
    const has = (service: string, scope: string, kind?: number) => [...inApi, ...inWorker].some((s) => s.service === service && s.scope === scope && (kind === undefined || s.kind === kind));
    assert.ok(has('pir-api', '@opentelemetry/instrumentation-kafkajs', 3), 'kafkajs produce span in the api');
    assert.ok(has('pir-worker', '@opentelemetry/instrumentation-kafkajs', 4), 'kafkajs consume span in the worker');
    assert.ok(has('pir-api', '@opentelemetry/instrumentation-mongodb', 2) && has('pir-worker', '@opentelemetry/instrumentation-mongodb', 2), 'mongodb spans in both');
    assert.ok(has('pir-worker', '@opentelemetry/instrumentation-ioredis', 2), 'ioredis spans in the worker');
    assert.ok(inWorker.some((s) => s.scope === 'bullmq' && s.name === 'process pir-unpack'), 'BullMQ\'s own process span');
    const orphans = [...inApi, ...inWorker].filter((s) => s.span_id !== request.span_id && !descends(s, request));
    assert.deepEqual(orphans.map((s) => `${s.service} ${s.scope} ${s.name}`), [], 'every span of the trace hangs from the upload request');
    // The webhook delivery: a client span in the same trace, and the receiver continues it.
    const delivery = inWorker.find((s) => s.name === 'POST webhook image.active');
    assert.ok(delivery, 'the delivery span is in the request\'s trace');
    assert.equal(delivery.kind, 2, 'CLIENT');
    assert.equal(delivery.attributes['http.response.status_code'], 200);
    assert.equal(delivery.attributes['pir.webhook.event'], 'image.active');
    assert.equal(delivered!.headers.traceparent, `00-${request.trace_id}-${delivery.span_id}-01`, 'the receiver gets the delivery span as its parent');
    const stages = inWorker.filter((s) => s.name.startsWith('stage '));
    assert.deepEqual(stages.map((s) => s.name), ['stage unpack', 'stage inspect', 'stage checksum', 'stage promote']);
    for (const s of stages) {
      assert.equal(s.parent_span_id, dispatch.span_id, `${s.name} continues the dispatch (traceparent in the BullMQ job)`);
      assert.equal(s.attributes['pir.image.id'], image.id);
      assert.equal(s.attributes['pir.image.disk_format'], 'raw');
      assert.equal(s.attributes['pir.image.bytes'], 512 * 1024);
      assert.equal(s.attributes['pir.outcome'], 'done');
      assert.ok(s.end_ms >= s.start_ms);
    }
    // The api's /metrics in distributed mode: Mongo counts, BullMQ queues, Kafka consumer lag.
    await waitFor(async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { 'x-auth-token': TOKEN } })).text();
      return /^pir_images\{status="active"\} 1$/m.test(text) && /^pir_kafka_consumer_lag\{group="pir-dispatcher"\} 0$/m.test(text)
        && /^pir_queue_depth\{queue="promote"\} 0$/m.test(text) && /^pir_ingested_bytes_total 524288$/m.test(text);
    }, 15_000, 'distributed metrics: 1 active image, no lag, empty queues, bytes ingested');

    const started = worker.output().split('\n').filter((l) => l.includes('"msg":"stage started"')).map((l) => JSON.parse(l));
    assert.equal(started.length, 4);
    for (const line of started) {
      assert.equal(line.trace_id, request.trace_id);
      assert.match(line.span_id, /^[0-9a-f]{16}$/);
      assert.equal(line.image_id, image.id);
      assert.equal(line.project_id, 'admin');
    }
  });
});
