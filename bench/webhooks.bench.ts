/**
 * Webhook latency and throughput: from the manifest write that makes an image active (the
 * event's `timestamp`, which is the body's) to the receiver having the delivery, p50 and p99,
 * with 1 and with 100 subscribers (fast receivers on loopback, each its own server), in
 * embedded mode and, when Kafka, Redis and a MongoDB-wire server are up, distributed mode (api
 * and worker roles in this one process, on the real services). Also deliveries per second to
 * 100 receivers. Targets (issue 8): p50 ≤ 50 ms embedded and ≤ 250 ms distributed with 1
 * subscriber; p99 ≤ 1 s with 100.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import pino from 'pino';
import { loadConfig } from '../infra/config.js';
import { startPir, type RunningPir } from '../infra/runtime.js';
import { serviceUp, services } from '../test/support/services.js';
import type { Bench, Figure } from './report.js';
import { CpuMeter, ferretdbPostgresPid, listenerPid } from './process-cpu.js';

const TOKEN = 'bench-webhooks-admin-token-0123456789abcdef';
const IMAGES_ONE = 40;
const IMAGES_MANY = 10;
const SUBSCRIBERS = 100;

interface Receiver { server: Server; url: string; latencies: number[] }

async function receiver(): Promise<Receiver> {
  const latencies: number[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { type: string; timestamp: string };
      if (body.type === 'image.active') latencies.push(Date.now() - Date.parse(body.timestamp));
      res.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`, latencies };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

async function call(pir: RunningPir, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(pir.url + path, { method, headers: { 'x-auth-token': TOKEN, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path} → ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function activeImages(pir: RunningPir, n: number, data: Buffer): Promise<void> {
  for (let i = 0; i < n; i++) {
    const { id } = await call(pir, 'POST', '/v2/images', { disk_format: 'raw', container_format: 'bare' });
    const res = await fetch(`${pir.url}/v2/images/${id}/file`, { method: 'PUT', headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream' }, body: new Uint8Array(data) });
    if (res.status !== 204) throw new Error(`upload → ${res.status}`);
  }
}

async function waitCount(rs: Receiver[], total: number, ms: number, log: (m: string) => void = () => {}): Promise<void> {
  const end = Date.now() + ms;
  let shown = Date.now();
  while (rs.reduce((a, r) => a + r.latencies.length, 0) < total) {
    if (Date.now() - shown > 10_000) {
      shown = Date.now();
      log(`${rs.reduce((a, r) => a + r.latencies.length, 0)} of ${total} deliveries so far`);
    }
    if (Date.now() > end) throw new Error(`only ${rs.reduce((a, r) => a + r.latencies.length, 0)} of ${total} deliveries arrived`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function scenario(mode: 'embedded' | 'distributed', dir: string, log: (m: string) => void): Promise<Figure[]> {
  const run = `whbench${Date.now()}${randomBytes(3).toString('hex')}`;
  const env: Record<string, string> = {
    PIR_DATA_DIR: join(dir, run), PIR_PORT: '0', PIR_ADMIN_TOKEN: TOKEN, PIR_EGRESS_ALLOWLIST: '127.0.0.1/32', PIR_LOG_LEVEL: 'warn',
    PIR_WEBHOOK_CONCURRENCY: '128',
  };
  if (mode === 'distributed') {
    const mongo = new URL(services.mongodbUrl);
    mongo.pathname = `/${run}`;
    Object.assign(env, { PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','), PIR_REDIS_URL: services.redisUrl, PIR_MONGODB_URL: mongo.toString(), PIR_KAFKA_TOPIC: `pir.${run}`, PIR_REDIS_PREFIX: run });
  }
  mkdirSync(env.PIR_DATA_DIR!, { recursive: true });
  const pir = await startPir(loadConfig(env), { api: true, worker: true }, pino({ level: 'warn' }));
  const receivers: Receiver[] = [];
  const data = randomBytes(64 * 1024);
  try {
    // 1 subscriber.
    const one = await receiver();
    receivers.push(one);
    const sub = await call(pir, 'POST', '/v2/webhooks', { url: one.url, events: ['image.active'] });
    log(`${mode}: ${IMAGES_ONE} images, 1 subscriber`);
    await activeImages(pir, IMAGES_ONE, data);
    await waitCount([one], IMAGES_ONE, 60_000);
    await call(pir, 'DELETE', `/v2/webhooks/${sub.id}`);
    // 100 subscribers.
    const many: Receiver[] = [];
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const r = await receiver();
      many.push(r);
      receivers.push(r);
      await call(pir, 'POST', '/v2/webhooks', { url: r.url, events: ['image.active'] });
    }
    log(`${mode}: ${IMAGES_MANY} images, ${SUBSCRIBERS} subscribers`);
    // CPU per delivery: PIR (api and worker run in this process), and in distributed mode the
    // MongoDB-wire server, its PostgreSQL and Redis (servers other runs may share).
    const pids: Record<string, number | null> = { pir: process.pid };
    if (mode === 'distributed') {
      pids['mongo-wire'] = listenerPid(Number(new URL(services.mongodbUrl).port || 27017));
      if (pids['mongo-wire']) pids.postgres = ferretdbPostgresPid(pids['mongo-wire']);
      pids.redis = listenerPid(Number(new URL(services.redisUrl).port || 6379));
    }
    const cpu = new CpuMeter(pids);
    const t0 = performance.now();
    await activeImages(pir, IMAGES_MANY, data);
    await waitCount(many, IMAGES_MANY * SUBSCRIBERS, 300_000, log);
    const seconds = (performance.now() - t0) / 1000;
    const used = cpu.since();
    const cpuNote = 'CPU ms per delivery: ' + Object.entries(used).map(([name, ms]) => `${name} ${(ms / (IMAGES_MANY * SUBSCRIBERS)).toFixed(2)}`).join(', ');
    const all = many.flatMap((r) => r.latencies);
    const target1 = mode === 'embedded' ? 50 : 250;
    return [
      { name: `${mode}: active → received, 1 subscriber, p50`, value: pct(one.latencies, 50), unit: 'ms', atMost: target1, note: `${one.latencies.length} deliveries` },
      { name: `${mode}: active → received, 1 subscriber, p99`, value: pct(one.latencies, 99), unit: 'ms' },
      { name: `${mode}: active → received, ${SUBSCRIBERS} subscribers, p50`, value: pct(all, 50), unit: 'ms' },
      { name: `${mode}: active → received, ${SUBSCRIBERS} subscribers, p99`, value: pct(all, 99), unit: 'ms', atMost: 1000, note: `${all.length} deliveries` },
      { name: `${mode}: deliveries per second to ${SUBSCRIBERS} receivers`, value: all.length / seconds, unit: '/s', note: `uploads included in the time: a floor; ${cpuNote}; load avg ${loadavg()[0]!.toFixed(1)}` },
    ];
  } finally {
    await pir.stop();
    for (const r of receivers) { r.server.closeAllConnections(); r.server.close(); }
    rmSync(env.PIR_DATA_DIR!, { recursive: true, force: true });
  }
}

const bench: Bench = {
  name: 'webhooks: image active → receiver',
  async run(ctx) {
    const modes = (process.env.PIR_BENCH_MODES ?? 'embedded,distributed').split(',');
    const figures = modes.includes('embedded') ? await scenario('embedded', ctx.dir, ctx.log) : [];
    if (!modes.includes('distributed')) return figures;
    const up = await Promise.all((['redis', 'kafka', 'mongodb'] as const).map((s) => serviceUp(s)));
    if (up.every((u) => u.up)) figures.push(...(await scenario('distributed', ctx.dir, ctx.log)));
    else ctx.log('distributed: skipped (Kafka, Redis or the MongoDB-wire server is not running)');
    return figures;
  },
};
export default bench;
