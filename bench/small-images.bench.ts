/**
 * Small images, both modes in one run (issue 10 point 8): 8 clients each create + upload 1 MiB
 * images until active; images/s and p50/p99 beside their targets (embedded ≥ 150/s; distributed
 * ≥ 50/s with p99 ≤ 500 ms) and beside this run's limits: the same 8 clients doing only
 * create + PUT against a discarding loopback server (PIR's HTTP alone can't beat it), and against
 * a bare ingest server that also hashes and durably writes each image (ingest-floor-server.ts:
 * the work no image service can skip, so what PIR adds to it is its bookkeeping).
 *
 * Distributed mode runs `pir api` + `pir worker` on the real services, once per MongoDB-wire
 * server listed in PIR_BENCH_MONGODB_URLS (`label=url,label=url`; default: the one the tests
 * use), so FerretDB's SQLite and PostgreSQL backends are measured side by side. For each run,
 * where the time went is read from the processes' own metrics (PIR_METRICS_PORT): MongoDB-wire
 * commands per image and their mean latency by command, manifest writes per image (won and
 * lost), stage durations, and in embedded mode the SQLite group commit's fdatasyncs per image;
 * and the median pipeline timeline is read from the manifests (MongoDB-wire or SQLite).
 *
 * PIR_BENCH_MODES=embedded (or distributed) measures one mode; PIR_BENCH_SMALL_IMAGES sets how
 * many images (default 200, at most 60 s).
 */
import { fork } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PirClient } from '../test/support/pir-client.js';
import { freePort, startPirProcess, type PirProcess } from '../test/support/pir-process.js';
import { serviceUp, services } from '../test/support/services.js';
import { MiB, processCpuMs } from './limits.js';
import { smallImages, TOKEN } from './ingest.bench.js';
import type { Bench, BenchContext, Figure } from './report.js';
import { randomBytes } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { MongoManifestStore } from '../infra/mongo/mongo-manifest-store.js';
import { SqliteManifestStore } from '../infra/embedded/sqlite-manifest-store.js';
import type { ManifestStore } from '../core/ports.js';
import { STAGES, type ImageDoc } from '../schemas/image.js';
import { CpuMeter, MachineCpu, ferretdbPostgresPid, listenerPid, mainThreadCpuMs } from './process-cpu.js';

const CLIENTS = 8;
/**
 * Images each client uploads before the measured run: enough for a warm service (connections,
 * indexes, Node's optimising compiler and the Kafka broker's JIT). With 2 per client, the
 * distributed run's api and worker spent ~10% of their CPU compiling and ran ~7% slower than
 * after 40 (docs/benchmarks.md, 2026-12-05 03:46–03:58); embedded runs showed no difference.
 */
const WARMUP_PER_CLIENT = 40;

interface Run {
  label: string;
  client: PirClient;
  processes: PirProcess[];
  metricsUrls: string[];
  /** Opens the run's manifest store (MongoDB-wire, or the embedded SQLite file) to read the timeline. */
  openManifest(): ManifestStore;
  stop(): Promise<void>;
}

async function start(label: string, mongoUrl: string | null, dir: string): Promise<Run> {
  const port = await freePort();
  const tag = `bsmall${Date.now().toString(36)}`;
  const data = join(dir, `data-${tag}`);
  const base: Record<string, string> = { PIR_DATA_DIR: data, PIR_ADMIN_TOKEN: TOKEN, PIR_PORT: String(port), PIR_LOG_LEVEL: 'info' }; // pir-process waits for the info line "PIR started"
  const logs = join(dir, 'logs');
  const processes: PirProcess[] = [];
  const metricsUrls: string[] = [];
  const withMetrics = async (role: 'serve' | 'api' | 'worker', env: Record<string, string>) => {
    const metricsPort = await freePort();
    processes.push(await startPirProcess(role, { ...env, PIR_METRICS_PORT: String(metricsPort) }, logs, `${tag}-${role}`));
    metricsUrls.push(`http://127.0.0.1:${metricsPort}/metrics`);
  };
  if (mongoUrl === null) {
    await withMetrics('serve', base);
  } else {
    const mongo = new URL(mongoUrl);
    mongo.pathname = `/${tag}`;
    const env = { ...base, PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','), PIR_REDIS_URL: services.redisUrl, PIR_MONGODB_URL: mongo.toString(), PIR_KAFKA_TOPIC: `pir.${tag}`, PIR_REDIS_PREFIX: tag };
    await withMetrics('api', env);
    await withMetrics('worker', env);
  }
  return {
    label,
    client: new PirClient(`http://127.0.0.1:${port}`, TOKEN),
    processes,
    metricsUrls,
    openManifest() {
      if (mongoUrl === null) return new SqliteManifestStore({ path: join(data, 'manifest.sqlite') });
      const u = new URL(mongoUrl);
      u.pathname = `/${tag}`;
      return new MongoManifestStore({ url: u.toString() });
    },
    async stop() {
      for (const p of processes) await p.stop();
      await rm(data, { recursive: true, force: true });
    },
  };
}

/** Sums of every sample of the Prometheus text, by name + labels (counters and histogram parts). */
async function scrape(urls: string[]): Promise<Map<string, number>> {
  const sums = new Map<string, number>();
  for (const url of urls) {
    const text = await (await fetch(url)).text();
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^(\S+?)(\{[^}]*\})?\s+(\S+)$/.exec(line);
      if (!m) continue;
      const key = m[1]! + (m[2] ?? '');
      sums.set(key, (sums.get(key) ?? 0) + Number(m[3]));
    }
  }
  return sums;
}

function delta(after: Map<string, number>, before: Map<string, number>, re: RegExp): { labels: string; value: number }[] {
  const out: { labels: string; value: number }[] = [];
  for (const [key, v] of after) {
    const m = re.exec(key);
    if (m) out.push({ labels: m[1] ?? '', value: v - (before.get(key) ?? 0) });
  }
  return out;
}

/** Where the time went, per image, from the processes' metrics. */
function breakdown(before: Map<string, number>, after: Map<string, number>, images: number): string {
  const parts: string[] = [];
  // Labels in the order prom-client prints them: store, then command.
  const counts = delta(after, before, /^pir_mongo_command_duration_seconds_count\{(store="[^"]+",command="[^"]+")\}$/).filter((c) => c.value > 0);
  const sums = new Map(delta(after, before, /^pir_mongo_command_duration_seconds_sum\{(store="[^"]+",command="[^"]+")\}$/).map((s) => [s.labels, s.value]));
  if (counts.length) {
    const total = counts.reduce((a, c) => a + c.value, 0);
    const stores = [...new Set(counts.map((c) => /store="([^"]+)"/.exec(c.labels)![1]!))];
    parts.push(`mongo cmds/img ${(total / images).toFixed(1)} (` + stores.map((store) => {
      const mine = counts.filter((c) => c.labels.startsWith(`store="${store}"`)).sort((a, b) => b.value - a.value);
      return `${store} ` + mine.map((c) => `${/command="([^"]+)"/.exec(c.labels)![1]} ${(c.value / images).toFixed(1)}×${(((sums.get(c.labels) ?? 0) / c.value) * 1000).toFixed(1)}ms`).join(', ');
    }).join('; ') + ')');
  }
  const writes = delta(after, before, /^pir_manifest_writes_total\{(.*)\}$/).filter((w) => w.value > 0);
  if (writes.length) parts.push('manifest writes/img ' + writes.map((w) => `${w.labels.replace(/"/g, '')}: ${(w.value / images).toFixed(2)}`).join('; '));
  // Embedded: the SQLite group commit's fdatasyncs per image, and how many writes each one covered.
  const syncs = delta(after, before, /^pir_sqlite_wal_syncs_total\{db="([^"]+)"\}$/).filter((w) => w.value > 0);
  const synced = new Map(delta(after, before, /^pir_sqlite_durable_writes_total\{db="([^"]+)"\}$/).map((w) => [w.labels, w.value]));
  if (syncs.length) parts.push('WAL fdatasyncs/img ' + syncs.map((w) => `${w.labels} ${(w.value / images).toFixed(2)} (${((synced.get(w.labels) ?? 0) / w.value).toFixed(2)} writes each)`).join(', '));
  // How late the event loop ran a timer, per process, at the end of the run: prom-client's gauges
  // (not deltas) from a 10 ms interval timer, whose interval they include.
  const lag = (q: string) => [...after].filter(([k]) => k.startsWith(`pir_nodejs_eventloop_lag_${q}_seconds`)).map(([, v]) => Math.max(0, v * 1000 - 10).toFixed(1));
  if (lag('p50').length) parts.push(`event-loop delay p50 ${lag('p50').join('/')} ms, p99 ${lag('p99').join('/')} ms`);
  const stageCount = delta(after, before, /^pir_stage_duration_seconds_count\{stage="([^"]+)",outcome="done"\}$/);
  const stageSum = new Map(delta(after, before, /^pir_stage_duration_seconds_sum\{stage="([^"]+)",outcome="done"\}$/).map((s) => [s.labels, s.value]));
  if (stageCount.length) parts.push('stage work mean ' + stageCount.filter((s) => s.value > 0).map((s) => `${s.labels} ${(((stageSum.get(s.labels) ?? 0) / s.value) * 1000).toFixed(1)}ms`).join(', '));
  return parts.join(' | ');
}

/**
 * The pipeline's timeline, median over the images made since `since` (ISO), from their manifests:
 * create → import started (upload and its writes), import started → first stage started
 * (outbox relay, Kafka, dispatcher, BullMQ), each stage's work, and the hops between stages
 * (the stage's completion write, BullMQ's move to the next queue, the next stage's start write).
 */
async function timeline(store: ManifestStore, since: string): Promise<string> {
  try {
    const docs = (await store.list({ scope: { project_id: '', admin: true }, visibility: 'all', memberStatus: 'all', where: { status: ['active'] }, sort: [{ key: 'created_at', dir: 'asc' }], limit: 100_000 }))
      .filter((d) => d.created_at >= since && d.pipeline);
    if (docs.length === 0) return '';
    const ms = (a: string | null | undefined, b: string | null | undefined) => (a && b ? Date.parse(b) - Date.parse(a) : NaN);
    const med = (f: (d: ImageDoc) => number) => {
      const v = docs.map(f).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
      return v.length ? v[Math.floor(v.length / 2)]! : NaN;
    };
    const parts = [`create→import ${med((d) => ms(d.created_at, d.pipeline!.started_at)).toFixed(0)}`, `import→${STAGES[0]} start ${med((d) => ms(d.pipeline!.started_at, d.pipeline!.stages[STAGES[0]].started_at)).toFixed(0)}`];
    for (let i = 0; i < STAGES.length; i++) {
      const s = STAGES[i]!;
      parts.push(`${s} ${med((d) => ms(d.pipeline!.stages[s].started_at, d.pipeline!.stages[s].ended_at)).toFixed(0)}`);
      if (i + 1 < STAGES.length) parts.push(`→ ${med((d) => ms(d.pipeline!.stages[s].ended_at, d.pipeline!.stages[STAGES[i + 1]!].started_at)).toFixed(0)}`);
    }
    return `timeline ms (median of ${docs.length}): ${parts.join(', ')}`;
  } finally {
    await store.close();
  }
}

/**
 * The floor: the same clients and client code as PIR's run (create, PUT, 204), against
 * ingest-floor-server.ts in a child process, which does only what no image service can skip
 * (receive, md5 + sha512, write + fdatasync). Images/s, and its CPU per image beside the client's.
 */
async function ingestFloor(data: Buffer, dir: string, seconds = 10): Promise<Figure> {
  const files = join(dir, `floor-${Date.now().toString(36)}`);
  await mkdir(files, { recursive: true });
  const child = fork(fileURLToPath(new URL('./ingest-floor-server.js', import.meta.url)), [files], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m) => resolve(Number(m)));
      child.once('exit', (code) => reject(new Error(`the floor server exited with ${code}`)));
    });
    const client = new PirClient(`http://127.0.0.1:${port}`, TOKEN);
    await smallImages(client, data, CLIENTS, 4, 30); // warm up
    const server0 = processCpuMs(child.pid!);
    const client0 = process.cpuUsage();
    const r = await smallImages(client, data, CLIENTS, 10_000, seconds);
    const clientUsed = process.cpuUsage(client0);
    const serverMs = (processCpuMs(child.pid!) - server0) / r.count;
    const clientMs = (clientUsed.user + clientUsed.system) / 1000 / r.count;
    return {
      name: 'limit: bare ingest (receive, md5 + sha512, write + fdatasync), 8 clients', value: r.perSecond, unit: 'img/s',
      note: `${r.count} images; p50 ${r.p50.toFixed(0)} ms; CPU ms/img server ${serverMs.toFixed(1)}, bench client ${clientMs.toFixed(1)}; load avg ${loadavg()[0]!.toFixed(1)}`,
    };
  } finally {
    child.disconnect();
    await once(child, 'exit').catch(() => {});
    await rm(files, { recursive: true, force: true });
  }
}

/** The limit: the same clients doing create + PUT of 1 MiB to a server that discards (loopback HTTP alone). */
async function httpLimit(data: Buffer, seconds = 5): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(req.method === 'POST' ? 201 : 204, { 'content-type': 'application/json' }).end(req.method === 'POST' ? '{"id":"x"}' : undefined));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  let n = 0;
  const t0 = performance.now();
  const one = (method: string, path: string, body: Buffer | null) => fetch(`http://127.0.0.1:${port}${path}`, { method, body: body as unknown as RequestInit['body'], headers: { 'content-type': 'application/octet-stream' } }).then((r) => r.arrayBuffer());
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (performance.now() - t0 < seconds * 1000) {
      await one('POST', '/v2/images', Buffer.from('{}'));
      await one('PUT', '/v2/images/x/file', data.subarray(0, MiB));
      n++;
    }
  }));
  const rate = n / ((performance.now() - t0) / 1000);
  server.close();
  return rate;
}

async function measure(label: string, mongoUrl: string | null, ctx: BenchContext, data: Buffer, count: number): Promise<Figure[]> {
  const run = await start(label, mongoUrl, ctx.dir);
  try {
    await smallImages(run.client, data, CLIENTS, WARMUP_PER_CLIENT, 30); // not counted
    const before = await scrape(run.metricsUrls);
    const since = new Date().toISOString();
    // CPU per image of each process on the path (the MongoDB-wire server may be shared with other runs).
    const pids: Record<string, number | null | undefined> = Object.fromEntries(run.processes.map((p) => [p.role, p.child.pid]));
    if (mongoUrl) {
      const wire = listenerPid(Number(new URL(mongoUrl).port || 27017));
      pids['mongo-wire'] = wire;
      if (wire) pids.postgres = ferretdbPostgresPid(wire);
      // The broker and Redis are on the path too (and on the same cores): without them the
      // processes listed account for only part of the machine's busy time.
      pids.kafka = listenerPid(Number(services.kafkaBrokers[0]!.split(':').pop()));
      pids.redis = listenerPid(Number(new URL(services.redisUrl).port || 6379));
    }
    const cpu = new CpuMeter(pids);
    const machine = new MachineCpu();
    // The JavaScript thread of the process that takes the uploads (serve, or api): a Node server's first bound.
    const front = run.processes[0]!.child.pid!;
    const frontMain0 = mainThreadCpuMs(front);
    ctx.log(`${label}: ${count} × 1 MiB, ${CLIENTS} clients`);
    const client0 = process.cpuUsage();
    const r = await smallImages(run.client, data, CLIENTS, Math.ceil(count / CLIENTS), 60);
    const clientUsed = process.cpuUsage(client0);
    const used = cpu.since();
    const frontMain = (mainThreadCpuMs(front) - frontMain0) / r.count;
    const machineNote = machine.note();
    const after = await scrape(run.metricsUrls);
    const cpuNote = 'CPU ms/img ' + Object.entries(used).map(([name, ms]) => `${name} ${(ms / r.count).toFixed(1)}`).join(', ')
      + ` (${run.processes[0]!.role}'s main thread ${frontMain.toFixed(1)}); ${machineNote}`;
    const embedded = mongoUrl === null;
    const steps = await timeline(run.openManifest(), since).catch((err: Error) => `timeline failed: ${err.message}`);
    // What the CPU these processes and the bench's client spent per image allows on this machine's cores.
    const clientMs = (clientUsed.user + clientUsed.system) / 1000 / r.count;
    const pathMs = Object.values(used).reduce((a, b) => a + b, 0) / r.count + clientMs;
    const cpuBound: Figure = {
      name: `${label}: the CPU bound (${availableParallelism()} cores ÷ CPU per image)`, value: (availableParallelism() * 1000) / pathMs, unit: 'img/s',
      note: `${pathMs.toFixed(1)} ms of CPU per image: the processes above and the bench client ${clientMs.toFixed(1)}`,
    };
    return [
      { name: `${label}: 1 MiB images, ${CLIENTS} clients`, value: r.perSecond, unit: 'img/s', atLeast: embedded ? 150 : 50, note: `${r.count} images; load avg ${loadavg()[0]!.toFixed(1)}; ${cpuNote} | ${breakdown(before, after, r.count)}${steps ? ` | ${steps}` : ''}` },
      { name: `${label}: p50 create → active`, value: r.p50, unit: 'ms' },
      { name: `${label}: p99 create → active`, value: r.p99, unit: 'ms', ...(embedded ? {} : { atMost: 500 }) },
      cpuBound,
    ];
  } finally {
    await run.stop();
  }
}

/** `sqlite=mongodb://…,pg=mongodb://…` → [[label, url]]; default: the tests' server. */
function mongoTargets(): [string, string][] {
  const spec = process.env.PIR_BENCH_MONGODB_URLS;
  if (!spec) return [['distributed', services.mongodbUrl]];
  return spec.split(',').map((part) => {
    const i = part.indexOf('=');
    return i > 0 ? [`distributed (${part.slice(0, i)})`, part.slice(i + 1)] : ['distributed', part];
  });
}

const bench: Bench = {
  name: 'small images: 1 MiB, 8 clients, create → active (both modes)',
  async run(ctx) {
    const data = randomBytes(8 * MiB);
    const count = Number(process.env.PIR_BENCH_SMALL_IMAGES ?? 200);
    const modes = (process.env.PIR_BENCH_MODES ?? 'embedded,distributed').split(',');
    ctx.log('limit: 8 clients, POST + PUT 1 MiB to a discarding loopback server');
    const figures: Figure[] = [{ name: 'limit: loopback HTTP, POST + PUT 1 MiB, 8 clients', value: await httpLimit(data), unit: 'img/s' }];
    ctx.log('limit: the same clients against a bare ingest server (receive, md5 + sha512, write + fdatasync)');
    figures.push(await ingestFloor(data, ctx.dir));
    if (modes.includes('embedded')) figures.push(...(await measure('embedded', null, ctx, data, count)));
    if (!modes.includes('distributed')) return figures;
    const missing = [];
    for (const name of ['redis', 'kafka'] as const) if (!(await serviceUp(name)).up) missing.push(name);
    if (missing.length) {
      figures.push({ name: `distributed: not measured (${missing.join(', ')} not running)`, value: NaN, unit: '' });
      return figures;
    }
    for (const [label, url] of mongoTargets()) figures.push(...(await measure(label, url, ctx, data, count)));
    return figures;
  },
};

export default bench;
