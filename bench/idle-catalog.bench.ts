/**
 * What a distributed PIR costs its MongoDB-wire server while nothing happens, by catalog size:
 * the periodic reads (outbox and stale-image sweepers, the gauges behind /metrics) are index
 * lookups on MongoDB but scan the collection on FerretDB's SQLite backend, so there they grow
 * with the catalog (infra/pacing.ts bounds them). Seeds PIR_BENCH_IDLE_IMAGES images (default
 * 2,000) into a fresh database, starts `pir api` + `pir worker`, lets their first passes run,
 * then for PIR_BENCH_IDLE_SECONDS (default 45) scrapes /metrics every 15 s (as Prometheus
 * would) and measures each process's CPU. The limit beside the server's share is the whole of
 * one core, which it would take from the work it is there for. Then the same catalog, each image
 * with its first metadata revision, answers 20 PATCHes (each a new revision: finding an image's
 * newest revision scanned every image's history on FerretDB before it went by `_id`), timed
 * beside a GET of the same image.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MongoCatalogStore } from '../infra/mongo/mongo-catalog-store.js';
import { MongoManifestStore } from '../infra/mongo/mongo-manifest-store.js';
import { makeDoc } from '../test/contract/helpers.js';
import { freePort, startPirProcess, type PirProcess } from '../test/support/pir-process.js';
import { serviceUp, services } from '../test/support/services.js';
import { TOKEN } from './ingest.bench.js';
import { CpuMeter, listenerPid } from './process-cpu.js';
import type { Bench, BenchContext, Figure } from './report.js';

const WARMUP_MS = 15_000;

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)]!;
}
const SCRAPE_EVERY_MS = 15_000;

async function measure(ctx: BenchContext, images: number, seconds: number): Promise<Figure[]> {
  const tag = `bidle${Date.now().toString(36)}`;
  const mongo = new URL(services.mongodbUrl);
  mongo.pathname = `/${tag}`;
  ctx.log(`seeding ${images} images into ${tag}`);
  const store = new MongoManifestStore({ url: mongo.toString() });
  const docs = Array.from({ length: images }, (_, i) => ({
    ...makeDoc({ status: 'active', name: `ubuntu-24.04-server-cloudimg ${i}`, owner: 'admin' }),
    properties: { os_distro: 'ubuntu', os_version: '24.04', description: 'x'.repeat(300) },
  }));
  await store.createMany(docs);
  await store.close();
  const catalog = new MongoCatalogStore({ url: mongo.toString() });
  await catalog.start();
  for (const doc of docs) {
    await catalog.appendFirstRevision({ image_id: doc.id, at: doc.created_at, project_id: 'admin', user_id: 'admin', action: 'create', patch: [{ op: 'add', path: '/name', value: doc.name }], metadata: { name: doc.name, properties: doc.properties } });
  }
  await catalog.close();

  const data = join(ctx.dir, `data-${tag}`);
  const logs = join(ctx.dir, 'logs');
  const metricsPort = await freePort();
  const env = {
    PIR_ADMIN_TOKEN: TOKEN, PIR_LOG_LEVEL: 'info', PIR_MONGODB_URL: mongo.toString(), PIR_KAFKA_BROKERS: services.kafkaBrokers.join(','),
    PIR_REDIS_URL: services.redisUrl, PIR_KAFKA_TOPIC: `pir.${tag}`, PIR_REDIS_PREFIX: tag,
  };
  const processes: PirProcess[] = [];
  try {
    const apiPort = await freePort();
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    processes.push(await startPirProcess('api', { ...env, PIR_DATA_DIR: `${data}-api`, PIR_PORT: String(apiPort), PIR_METRICS_PORT: String(metricsPort) }, logs, `${tag}-api`));
    processes.push(await startPirProcess('worker', { ...env, PIR_DATA_DIR: `${data}-worker` }, logs, `${tag}-worker`));
    ctx.log(`api + worker up; ${WARMUP_MS / 1000} s for their first passes, then ${seconds} s measured`);
    await sleep(WARMUP_MS);
    const wire = listenerPid(Number(mongo.port || 27017));
    const cpu = new CpuMeter({ 'mongo-wire': wire, api: processes[0]!.child.pid, worker: processes[1]!.child.pid });
    const t0 = performance.now();
    let scrapes = 0;
    while (performance.now() - t0 < seconds * 1000) {
      await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      scrapes++;
      await sleep(Math.min(SCRAPE_EVERY_MS, seconds * 1000 - (performance.now() - t0)));
    }
    const wallMs = performance.now() - t0;
    const used = cpu.since();
    const share = (name: string) => (100 * (used[name] ?? NaN)) / wallMs;
    const note = `${images} images; ${scrapes} scrapes of /metrics in ${(wallMs / 1000).toFixed(0)} s; api ${share('api').toFixed(1)}%, worker ${share('worker').toFixed(1)}% of a core`;
    ctx.log('20 PATCHes and 20 GETs of one image');
    const image = `${apiUrl}/v2/images/${docs[7]!.id}`;
    const headers = { 'x-auth-token': TOKEN };
    const timed = async (init: RequestInit) => {
      const t = performance.now();
      const res = await fetch(image, { ...init, headers: { ...headers, ...init.headers } });
      await res.text();
      if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${image}: ${res.status}`);
      return performance.now() - t;
    };
    const patches: number[] = [];
    const gets: number[] = [];
    for (let i = 0; i < 20; i++) {
      patches.push(await timed({ method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' }, body: JSON.stringify([{ op: 'add', path: '/bench_round', value: String(i) }]) }));
      gets.push(await timed({}));
    }
    return [
      { name: `idle, ${images} images: MongoDB-wire server CPU`, value: share('mongo-wire'), unit: '% of a core', limit: 100, note },
      { name: `PATCH of an image, ${images} images with history: p50`, value: median(patches), unit: 'ms', limit: median(gets), note: `limit: GET of the same image, p50; PATCH max ${Math.max(...patches).toFixed(0)} ms` },
    ];
  } finally {
    for (const p of processes) await p.stop();
    await rm(`${data}-api`, { recursive: true, force: true });
    await rm(`${data}-worker`, { recursive: true, force: true });
    const { MongoClient } = await import('mongodb');
    const client = await new MongoClient(services.mongodbUrl).connect();
    await client.db(tag).dropDatabase().catch(() => undefined);
    await client.close();
  }
}

const bench: Bench = {
  name: 'idle distributed PIR: the MongoDB-wire server\'s CPU by catalog size',
  async run(ctx) {
    const missing = [];
    for (const name of ['mongodb', 'redis', 'kafka'] as const) if (!(await serviceUp(name)).up) missing.push(name);
    if (missing.length) return [{ name: `not measured (${missing.join(', ')} not running)`, value: NaN, unit: '' }];
    const images = Number(process.env.PIR_BENCH_IDLE_IMAGES ?? 2000);
    const seconds = Number(process.env.PIR_BENCH_IDLE_SECONDS ?? 45);
    return measure(ctx, images, seconds);
  },
};

export default bench;
