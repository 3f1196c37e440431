/**
 * PIR's ingest end to end, over loopback HTTP against real `pir` processes, beside this
 * machine's limits measured in the same run:
 * - a 2 GiB raw upload, start of PUT → active (the sync 204): ≥ 70% (embedded) / 60%
 *   (distributed) of the lower of the fsync-write and one-core sha512 rates;
 * - last byte sent → active for 1 MiB, 256 MiB and 2 GiB: ≤ 150 ms embedded, ≤ 400 ms distributed;
 * - 1 MiB images, 8 concurrent clients, create + upload until active: images/s, p50/p99;
 * - peak RSS of each PIR process during a 4 GiB upload: < 250 MiB.
 * Distributed mode runs when Redis, Kafka and the MongoDB-wire server answer on their usual
 * loopback ports (bash infra/local/services.sh start); otherwise it says so and is left out.
 * PIR_BENCH_MODES=embedded (or distributed) measures one mode only.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { PirClient } from '../test/support/pir-client.js';
import { freePort, startPirProcess, type PirProcess } from '../test/support/pir-process.js';
import { serviceUp, services } from '../test/support/services.js';
import { GiB, MiB, loopbackHttp, sequentialWriteWithFsync, sha512OneCore } from './limits.js';
import { median, type Bench, type BenchContext, type Figure } from './report.js';

const TOKEN = 'bench-token-0123456789abcdefghijklmn';
const CHUNK = 1 * MiB;

interface Cluster {
  mode: 'embedded' | 'distributed';
  client: PirClient;
  processes: PirProcess[];
  stop(): Promise<void>;
}

async function startCluster(mode: Cluster['mode'], dir: string): Promise<Cluster> {
  const port = await freePort();
  const tag = `bench${Date.now().toString(36)}`;
  const base: Record<string, string> = { PIR_DATA_DIR: join(dir, `data-${mode}`), PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info' };
  const logs = join(dir, 'logs');
  let processes: PirProcess[];
  if (mode === 'embedded') {
    processes = [await startPirProcess('serve', base, logs, 'serve')];
  } else {
    const mongo = new URL(services.mongodbUrl);
    mongo.pathname = `/${tag}`;
    const env = { ...base, PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','), PIR_REDIS_URL: services.redisUrl, PIR_MONGODB_URL: mongo.toString(), PIR_KAFKA_TOPIC: `pir.${tag}`, PIR_REDIS_PREFIX: tag };
    processes = [await startPirProcess('api', env, logs, 'api'), await startPirProcess('worker', env, logs, 'worker')];
  }
  return {
    mode,
    client: new PirClient(`http://127.0.0.1:${port}`, TOKEN),
    processes,
    async stop() {
      for (const p of processes) await p.stop();
      await rm(base.PIR_DATA_DIR, { recursive: true, force: true });
    },
  };
}

/** Streams `size` bytes (views of a random buffer) as PUT …/file; times the whole call and the wait after the last byte. */
function upload(client: PirClient, id: string, size: number, data: Buffer): Promise<{ totalMs: number; afterLastByteMs: number; status: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let lastByteAt = 0;
    const req = request(new URL(`${client.baseUrl}/v2/images/${id}/file`), {
      method: 'PUT',
      headers: { 'x-auth-token': TOKEN, 'content-type': 'application/octet-stream', 'content-length': String(size) },
    }, (res) => {
      res.resume();
      res.on('end', () => {
        const t = performance.now();
        resolve({ totalMs: t - t0, afterLastByteMs: t - lastByteAt, status: res.statusCode ?? 0 });
      });
    });
    req.on('error', reject);
    req.on('finish', () => { lastByteAt = performance.now(); });
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        const offset = sent % data.length;
        const n = Math.min(CHUNK, size - sent, data.length - offset);
        sent += n;
        if (!req.write(data.subarray(offset, offset + n))) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

async function newImage(client: PirClient): Promise<string> {
  return (await client.createImage({ name: 'bench', disk_format: 'raw', container_format: 'bare' })).id;
}

async function uploadOne(client: PirClient, size: number, data: Buffer) {
  const result = await upload(client, await newImage(client), size, data);
  if (result.status !== 204) throw new Error(`upload of ${size} bytes answered ${result.status}`);
  return result;
}

/** Peak resident memory of a process so far (Linux VmHWM), in MiB. */
async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  return kib / 1024;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** 8 clients each create + upload 1 MiB images until 200 are done or 60 s have passed. */
async function smallImages(client: PirClient, data: Buffer, clients = 8, perClient = 25, maxSeconds = 60): Promise<{ perSecond: number; p50: number; p99: number; count: number }> {
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    for (let i = 0; i < perClient && performance.now() - t0 < maxSeconds * 1000; i++) {
      const start = performance.now();
      await uploadOne(client, MiB, data);
      latencies.push(performance.now() - start);
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  return { perSecond: latencies.length / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99), count: latencies.length };
}

async function measureMode(mode: Cluster['mode'], ctx: BenchContext, data: Buffer, ceiling: number): Promise<Figure[]> {
  const figures: Figure[] = [];
  const ingestTarget = mode === 'embedded' ? 0.7 : 0.6;
  const latencyTarget = mode === 'embedded' ? 150 : 400;
  const cluster = await startCluster(mode, ctx.dir);
  try {
    ctx.log(`${mode}: 2 GiB upload ×3`);
    const rates: number[] = [];
    for (let i = 0; i < 3; i++) rates.push((2 * GiB) / MiB / ((await uploadOne(cluster.client, 2 * GiB, data)).totalMs / 1000));
    figures.push({ name: `${mode}: 2 GiB raw, PUT start → active`, value: median(rates), unit: 'MiB/s', limit: ceiling, targetRatio: ingestTarget, note: `runs ${rates.map((r) => r.toFixed(0)).join(', ')}; limit = min(write+fsync, sha512)` });

    for (const [label, size, runs] of [['1 MiB', MiB, 15], ['256 MiB', 256 * MiB, 5], ['2 GiB', 2 * GiB, 3]] as const) {
      ctx.log(`${mode}: last byte → active, ${label} ×${runs}`);
      const waits: number[] = [];
      for (let i = 0; i < runs; i++) waits.push((await uploadOne(cluster.client, size, data)).afterLastByteMs);
      figures.push({ name: `${mode}: last byte → active, ${label}`, value: median(waits), unit: 'ms', atMost: latencyTarget, note: `median of ${runs}; max ${Math.max(...waits).toFixed(0)} ms` });
    }

    ctx.log(`${mode}: 1 MiB images, 8 clients`);
    const small = await smallImages(cluster.client, data);
    figures.push({ name: `${mode}: 1 MiB images, 8 clients`, value: small.perSecond, unit: 'img/s', note: `${small.count} images; p50 ${small.p50.toFixed(0)} ms, p99 ${small.p99.toFixed(0)} ms (Glance on this machine: 11–17 img/s, with ~45% HTTP 500s)` });

    ctx.log(`${mode}: 4 GiB upload for peak memory`);
    await uploadOne(cluster.client, 4 * GiB, data);
    for (const p of cluster.processes) {
      figures.push({ name: `${mode}: peak RSS of pir ${p.role} (4 GiB upload)`, value: await peakRssMiB(p.child.pid!), unit: 'MiB', atMost: 250 });
    }
  } finally {
    await cluster.stop();
  }
  return figures;
}

const bench: Bench = {
  name: 'ingest over HTTP (pir serve; pir api + worker on the real services)',
  async run(ctx) {
    const data = randomBytes(64 * MiB);
    ctx.log('limits: sha512 on one core, write + fdatasync, loopback HTTP');
    const sha512 = await sha512OneCore();
    const write = await sequentialWriteWithFsync(ctx.dir, 2 * GiB);
    const http = await loopbackHttp(2 * GiB);
    const ceiling = Math.min(sha512, write);
    const modes = (process.env.PIR_BENCH_MODES ?? 'embedded,distributed').split(',');
    const figures: Figure[] = [
      { name: 'limit: sha512, one core', value: sha512, unit: 'MiB/s' },
      { name: 'limit: sequential write + fdatasync', value: write, unit: 'MiB/s' },
      { name: 'limit: loopback HTTP (discarding server)', value: http, unit: 'MiB/s' },
    ];
    if (modes.includes('embedded')) figures.push(...(await measureMode('embedded', ctx, data, ceiling)));
    if (!modes.includes('distributed')) return figures;
    const missing = [];
    for (const name of ['redis', 'kafka', 'mongodb'] as const) if (!(await serviceUp(name)).up) missing.push(name);
    if (missing.length === 0) {
      figures.push(...(await measureMode('distributed', ctx, data, ceiling)));
    } else {
      ctx.log(`distributed mode left out: not running: ${missing.join(', ')} (bash infra/local/services.sh start)`);
      figures.push({ name: `distributed: not measured (${missing.join(', ')} not running)`, value: NaN, unit: '' });
    }
    return figures;
  },
};

export default bench;
