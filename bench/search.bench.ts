/**
 * Keyword search and gallery listing at 100,000 images, through HTTP (the real Fastify app on
 * loopback, a keep-alive client), p50/p99 latency at limit 25 (issue 11: search p99 ≤ 50 ms at
 * 100,000 images embedded):
 * - q=debian (a word of ~1 image in 6), q=debian 12 (two words ANDed), q=deb (a prefix),
 *   q=gpu cuda (rare words), q=<one image's unique word>, a member's default view with q, and
 *   q=debian bookworm with sort=relevance (every match ranked, best score tier first);
 * - ?gallery=<g>, ?gallery=<root>&recursive=true, GET /v2/galleries/{root}?recursive=true
 *   (counts) for one project's tree of galleries among all images;
 * - embedded (SQLite) and on the MongoDB-wire store (PIR_TEST_MONGODB_URL, default FerretDB on
 *   :27017; 2,000 images by default: FerretDB 1.24 decodes every document its backend returns,
 *   see README "Keyword search"). The run prints which server and backend it measured (FerretDB's
 *   explain: PostgreSQL answers with a plan tree, SQLite with rows) and, when that server runs on
 *   this machine, its CPU per query (FerretDB and its PostgreSQL), steadier than latency under load.
 * PIR_BENCH_SEARCH_IMAGES, PIR_BENCH_SEARCH_FERRET_IMAGES and PIR_BENCH_MODES change the runs;
 * PIR_BENCH_SEARCH_CASES (comma-separated parts of case names) runs only those cases (the
 * reference always runs): a collection scan at 20,000 images on FerretDB takes ~30 s a query.
 */
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { MongoClient } from 'mongodb';
import type { CatalogStore } from '../core/catalog-ports.js';
import type { ManifestStore } from '../core/ports.js';
import { SqliteManifestStore } from '../infra/embedded/sqlite-manifest-store.js';
import { MongoManifestStore } from '../infra/mongo/mongo-manifest-store.js';
import { MongoCatalogStore } from '../infra/mongo/mongo-catalog-store.js';
import type { ImageDoc, Visibility } from '../schemas/image.js';
import { inProcessApp } from '../test/support/in-process-app.js';
import { serviceUp, services } from '../test/support/services.js';
import { median, percentile, sample, type Bench, type BenchContext, type Figure } from './report.js';
import { CpuMeter, ferretdbPostgresPid, listenerPid } from './process-cpu.js';

const IMAGES = Number(process.env.PIR_BENCH_SEARCH_IMAGES || 100_000);
const FERRET_IMAGES = Number(process.env.PIR_BENCH_SEARCH_FERRET_IMAGES || 2_000);
const PROJECTS = 100;
const MEMBER = 'p007';
const DISTROS: [string, string[], string[]][] = [
  ['Debian', ['10', '11', '12'], ['buster', 'bullseye', 'bookworm']],
  ['Ubuntu', ['20.04', '22.04', '24.04'], ['focal', 'jammy', 'noble']],
  ['Fedora', ['39', '40', '41'], ['cloud', 'coreos', 'server']],
  ['Rocky', ['8', '9'], ['minimal', 'generic']],
  ['Alpine', ['3.19', '3.20'], ['virt', 'standard']],
  ['Windows', ['2019', '2022'], ['datacenter', 'standard']],
];
/** The galleries of MEMBER's project: linux/{debian,ubuntu,fedora,rocky}. */
const GALLERIES = ['linux', 'debian', 'ubuntu', 'fedora', 'rocky'];
const galleryId = (k: number) => `00000000-0000-4000-8000-${String(k).padStart(12, '0')}`;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

export function* imageBatches(n: number, batch = 5000): Generator<ImageDoc[]> {
  const random = rng(11);
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!;
  const t0 = Date.parse('2025-01-01T00:00:00Z');
  let docs: ImageDoc[] = [];
  for (let i = 0; i < n; i++) {
    if (docs.length === batch) {
      yield docs;
      docs = [];
    }
    const owner = `p${String(i % PROJECTS).padStart(3, '0')}`;
    const r = random();
    const visibility: Visibility = r < 0.7 ? 'private' : r < 0.8 ? 'public' : r < 0.95 ? 'shared' : 'community';
    const created = new Date(t0 + i * 1500).toISOString();
    const d = Math.floor(random() * DISTROS.length);
    const [distro, versions, flavors] = DISTROS[d]!;
    const v = Math.floor(random() * versions.length);
    const gpu = random() < 0.01;
    const properties: Record<string, string> = {
      os_distro: distro.toLowerCase(), os_version: versions[v]!, hw_disk_bus: 'virtio',
      description: `${distro} ${versions[v]} ${flavors[v % flavors.length]} image built by the nightly pipeline run ${i}${gpu ? ' with CUDA drivers' : ''}`,
    };
    // MEMBER's Linux images go to its galleries (linux/<distro>, Alpine at linux itself).
    if (owner === MEMBER && d < 5) properties.pir_gallery_id = galleryId(d < 4 ? d + 1 : 0);
    docs.push({
      id: randomUUID(), revision: 3, name: `${distro} ${versions[v]} ${pick(flavors)} build${i}`, owner, status: 'active', visibility,
      protected: false, os_hidden: false, disk_format: 'qcow2', container_format: 'bare', min_disk: 10, min_ram: 512,
      size: Math.floor(random() * 2 ** 31), virtual_size: 10 * 2 ** 30, checksum: null, os_hash_algo: null, os_hash_value: null,
      tags: [random() < 0.5 ? 'x86_64' : 'aarch64', 'cloud-init', ...(gpu ? ['gpu'] : [])], properties,
      members: visibility === 'shared' && owner !== MEMBER && random() < 0.1 ? [{ member_id: MEMBER, status: 'accepted', created_at: created, updated_at: created }] : [],
      created_at: created, updated_at: created, expected: {}, upload: null, staging: null, pipeline: null, failure: null, outbox: [],
    });
  }
  if (docs.length) yield docs;
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function httpGet(url: string, token: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request(url, { agent, headers: { 'x-auth-token': token } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    }).on('error', reject).end();
  });
}

interface Case {
  name: string;
  path: string;
  as?: string;
  /** Held to the issue's target (search p99 ≤ 50 ms) in embedded mode. */
  search?: boolean;
  /** Measure the second page: `marker` = the last image of the first. */
  pageTwo?: boolean;
}

const CASES: Case[] = [
  { name: 'q=debian', path: '/v2/images?limit=25&q=debian', search: true },
  { name: 'q=debian 12 (two words)', path: '/v2/images?limit=25&q=debian%2012', search: true },
  { name: 'q=deb (prefix)', path: '/v2/images?limit=25&q=deb', search: true },
  { name: 'q=gpu cuda (rare)', path: '/v2/images?limit=25&q=gpu%20cuda', search: true },
  { name: 'q=build4242 (one image)', path: '/v2/images?limit=25&q=build4242', search: true },
  { name: "q=ubuntu noble, a member's default view", path: '/v2/images?limit=25&q=ubuntu%20noble', as: MEMBER, search: true },
  { name: 'q=debian bookworm&sort=relevance', path: '/v2/images?limit=25&q=debian%20bookworm&sort=relevance', search: true },
  { name: 'q=fedora&tag=gpu&visibility=public', path: '/v2/images?limit=25&q=fedora&tag=gpu&visibility=public', search: true },
  // Two common words that never meet (16,700 and 5,500 images, none in common): the intersection, not a walk.
  { name: 'q=debian noble (two common words, no match)', path: '/v2/images?limit=25&q=debian%20noble', search: true },
  { name: "q=windows bookworm, a member's default view (no match)", path: '/v2/images?limit=25&q=windows%20bookworm', as: MEMBER, search: true },
  { name: "q=ubuntu noble&sort=relevance, a member's default view", path: '/v2/images?limit=25&q=ubuntu%20noble&sort=relevance', as: MEMBER, search: true },
  { name: 'q=debian, page 2 (marker)', path: '/v2/images?limit=25&q=debian', search: true, pageTwo: true },
  { name: 'q=debian bookworm&sort=relevance, page 2 (marker)', path: '/v2/images?limit=25&q=debian%20bookworm&sort=relevance', search: true, pageTwo: true },
  { name: 'q=nightly pipeline run 4 (four words, the last a prefix)', path: '/v2/images?limit=25&q=nightly%20pipeline%20run%204', search: true },
  { name: 'gallery linux/debian', path: `/v2/images?limit=25&gallery=${galleryId(1)}`, as: MEMBER },
  { name: 'gallery linux, recursive', path: `/v2/images?limit=25&gallery=${galleryId(0)}&recursive=true`, as: MEMBER },
  { name: 'gallery linux, recursive, q=bookworm', path: `/v2/images?limit=25&gallery=${galleryId(0)}&recursive=true&q=bookworm`, as: MEMBER },
  { name: 'GET /v2/galleries/linux?recursive=true (counts)', path: `/v2/galleries/${galleryId(0)}?recursive=true`, as: MEMBER },
  { name: 'GET /v2/galleries/linux/galleries (sub-galleries with counts)', path: `/v2/galleries/${galleryId(0)}/galleries`, as: MEMBER },
];

interface ModeSetup {
  mode: 'embedded' | 'FerretDB';
  images: number;
  store: ManifestStore & { createMany?(docs: ImageDoc[]): Promise<void> };
  catalogStore?: CatalogStore;
  samples: { n: number; budgetMs: number; warm: number };
  /** Server processes on this machine whose CPU per query is reported (FerretDB and its PostgreSQL). */
  serverPids?: Record<string, number | null>;
  targets: boolean;
  close(): Promise<void>;
}

async function measure(setup: ModeSetup, log: BenchContext['log']): Promise<Figure[]> {
  const t0 = performance.now();
  let someId = '';
  for (const batch of imageBatches(setup.images)) {
    someId ||= batch[0]!.id;
    if (setup.store.createMany) await setup.store.createMany(batch);
    else await Promise.all(batch.map((d) => setup.store.create(d)));
  }
  const seedS = (performance.now() - t0) / 1000;
  log(`${setup.mode}: seeded ${setup.images} images in ${seedS.toFixed(1)} s`);
  const pir = await inProcessApp(setup.store, {
    token: 'bench-token',
    ...(setup.catalogStore ? { catalogStore: setup.catalogStore } : {}),
    tokens: { [`${MEMBER}-token`]: { project_id: MEMBER, user_id: `${MEMBER}-user`, roles: ['member', 'reader'] } },
  });
  const now = new Date().toISOString();
  for (let k = 0; k < GALLERIES.length; k++) {
    await pir.catalogStore.createGallery({ id: galleryId(k), owner: MEMBER, name: GALLERIES[k]!, parent_id: k === 0 ? null : galleryId(0), created_at: now, updated_at: now });
  }
  await pir.app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(pir.app.server.address() as AddressInfo).port}`;
  const figures: Figure[] = [];
  try {
    // The floor in this run: a bare indexed lookup through the same HTTP stack, so a p99 beside
    // the limit can be read against what the machine's load alone costs.
    const reference: Case = { name: 'reference: GET /v2/images/{id} (one indexed lookup)', path: `/v2/images/${someId}` };
    const only = (process.env.PIR_BENCH_SEARCH_CASES || '').split(',').filter(Boolean);
    for (const c of [reference, ...CASES.filter((k) => only.length === 0 || only.some((part) => k.name.includes(part)))]) {
      const token = c.as ? `${c.as}-token` : 'bench-token';
      let path = c.path;
      if (c.pageTwo) {
        const one = JSON.parse((await httpGet(base + c.path, token)).body.toString()) as { images: { id: string }[] };
        path += `&marker=${one.images[one.images.length - 1]!.id}`;
      }
      const first = await httpGet(base + path, token);
      if (first.status !== 200) throw new Error(`${path}: HTTP ${first.status} ${first.body.toString().slice(0, 200)}`);
      const json = JSON.parse(first.body.toString()) as { images?: unknown[]; image_count?: number; galleries?: unknown[] };
      const found = json.images ? `${json.images.length} images on the page` : json.image_count !== undefined ? `image_count ${json.image_count}` : json.galleries ? `${json.galleries.length} galleries` : 'one image';
      let requests = 0;
      const meter = setup.serverPids ? new CpuMeter(setup.serverPids) : null;
      const times = await sample(async () => {
        requests++;
        const r = await httpGet(base + path, token);
        if (r.status !== 200) throw new Error(`${path}: HTTP ${r.status}`);
      }, setup.samples.n, setup.samples.warm, setup.samples.budgetMs);
      const cpu = meter?.since() ?? {};
      const cpuNote = Object.entries(cpu).map(([name, ms]) => `${name} ${(ms / requests).toFixed(1)}`).join(', ');
      const label = `${setup.mode}${setup.images !== IMAGES ? ` (${setup.images.toLocaleString('en')} images)` : ''}, ${c.name}`;
      const p99 = percentile(times, 99);
      figures.push({ name: `${label}: p50`, value: median(times), unit: 'ms', note: `${found}, ${times.length} samples` });
      figures.push({ name: `${label}: p99`, value: p99, unit: 'ms', ...(setup.targets && c.search ? { atMost: 50 } : {}) });
      if (cpuNote) figures.push({ name: `${label}: server CPU per query`, value: Object.values(cpu).reduce((a, b) => a + b, 0) / requests, unit: 'ms', note: cpuNote });
      log(`${label}: p50 ${median(times).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (${found})${cpuNote ? `; server CPU ms per query: ${cpuNote}` : ''}`);
    }
  } finally {
    await pir.close();
  }
  figures.push({ name: `${setup.mode} seeding ${setup.images} images (bulk insert, with search words)`, value: seedS, unit: 's', note: `load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} cores at the end` });
  return figures;
}

/**
 * Which server answers `url`, and for FerretDB which backend: buildInfo names FerretDB's version,
 * and its explain of a find shows a PostgreSQL plan tree or SQLite's EXPLAIN QUERY PLAN rows.
 */
async function describeServer(url: string, dbName: string): Promise<string> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 5000 });
  await client.connect();
  try {
    const db = client.db(dbName);
    const info = await db.command({ buildInfo: 1 });
    if (!info.ferretdbVersion) return `MongoDB ${info.version}`;
    const explain = await db.command({ explain: { find: 'images', filter: { pir_words: 'debian' } } });
    const plan = explain.queryPlanner?.Plan;
    const backend = Array.isArray(plan) ? 'SQLite' : plan ? 'PostgreSQL' : 'an unknown backend';
    // The indexes the backend chose for a top-level word equality (PostgreSQL: the GIN index beside list_words).
    const indexes = new Set<string>();
    const walk = (node: any) => {
      if (!node || typeof node !== 'object') return;
      if (typeof node['Index Name'] === 'string') indexes.add(node['Index Name']);
      for (const child of node.Plans ?? []) walk(child);
    };
    walk(plan);
    return `FerretDB ${info.ferretdbVersion} on ${backend}${indexes.size ? ` ({pir_words: "debian"} served by ${[...indexes].join(', ')})` : ''}`;
  } finally {
    await client.close();
  }
}

/** FerretDB's process and its PostgreSQL postmaster, when they listen on this machine. */
function serverPids(url: string): Record<string, number | null> | undefined {
  const port = Number(/^mongodb:\/\/(?:[^@/]*@)?(?:127\.0\.0\.1|localhost):(\d+)/.exec(url)?.[1] ?? NaN);
  const ferretdb = Number.isFinite(port) ? listenerPid(port) : null;
  return ferretdb ? { ferretdb, postgres: ferretdbPostgresPid(ferretdb) } : undefined;
}

const bench: Bench = {
  name: `Keyword search and gallery listing at ${IMAGES.toLocaleString('en')} images, through HTTP on loopback`,
  async run(ctx) {
    const figures: Figure[] = [];
    const modes = (process.env.PIR_BENCH_MODES || 'embedded,distributed').split(',');
    if (modes.includes('embedded')) {
      const path = join(ctx.dir, `search-bench-${Date.now().toString(36)}.sqlite`);
      const store = new SqliteManifestStore({ path });
      try {
        figures.push(...await measure({ mode: 'embedded', images: IMAGES, store, samples: { n: 300, budgetMs: 30_000, warm: 3 }, targets: true, close: async () => {} }, ctx.log));
      } finally {
        await store.close();
        const { rm } = await import('node:fs/promises');
        await Promise.all(['', '-wal', '-shm'].map((s) => rm(path + s, { force: true })));
      }
    }
    if (modes.includes('distributed')) {
      if (!(await serviceUp('mongodb')).up) ctx.log('FerretDB is not running on :27017: its figures are left out');
      else {
        const dbName = `pir_bench_search_${Date.now().toString(36)}`;
        const store = new MongoManifestStore({ url: services.mongodbUrl, dbName });
        const catalogStore = new MongoCatalogStore({ url: services.mongodbUrl, dbName });
        await catalogStore.start();
        try {
          const pids = serverPids(services.mongodbUrl);
          const measured = await measure({ mode: 'FerretDB', images: FERRET_IMAGES, store, catalogStore, samples: { n: 30, budgetMs: 20_000, warm: 1 }, targets: false, ...(pids ? { serverPids: pids } : {}), close: async () => {} }, ctx.log);
          const server = await describeServer(services.mongodbUrl, dbName);
          ctx.log(`the MongoDB-wire store measured: ${server}`);
          figures.push(...measured.map((f) => f.name.endsWith('(bulk insert, with search words)') ? { ...f, note: `${f.note}; server: ${server}` } : f));
        } finally {
          await store.close();
          await catalogStore.close();
          const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 5000 });
          await client.connect();
          await client.db(dbName).dropDatabase().catch(() => undefined);
          await client.close();
        }
      }
    }
    return figures;
  },
};

export default bench;
