/**
 * The MongoDB-wire server itself, per server listed in PIR_BENCH_MONGODB_URLS (`label=url,…`;
 * default: the tests' server), to choose FerretDB's backend (infra/local/README.md):
 * - latency of what the manifest store does most, over a collection of 3,000 documents of 2 KB:
 *   `findOne` by `_id` that hits, that misses (the journal probe of every read), `replaceOne`
 *   by `_id`, `insertOne`;
 * - whether a conditional update is atomic: 8 concurrent `updateOne({_id, rev: r})` per round,
 *   30 rounds; rounds with other than exactly one winner (MongoDB: 0 of 30).
 */
import { MongoClient } from 'mongodb';
import { loadavg } from 'node:os';
import { services } from '../test/support/services.js';
import type { Bench, Figure } from './report.js';

async function timeEach(n: number, op: (i: number) => Promise<unknown>): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < n; i++) await op(i);
  return (performance.now() - t) / n;
}

async function measure(label: string, url: string): Promise<Figure[]> {
  const clients = await Promise.all(Array.from({ length: 4 }, () => new MongoClient(url, { serverSelectionTimeoutMS: 5000 }).connect()));
  const dbName = `pir_bench_wire_${Date.now().toString(36)}`;
  const col = (i = 0) => clients[i % 4]!.db(dbName).collection<{ _id: string } & Record<string, unknown>>('c');
  try {
    const pad = 'x'.repeat(2000);
    const docs = Array.from({ length: 3000 }, (_, i) => ({ _id: `img-${i}`, status: 'active', pad }));
    for (let i = 0; i < docs.length; i += 500) await col().insertMany(docs.slice(i, i + 500));
    const hit = await timeEach(50, (i) => col().findOne({ _id: `img-${i * 37}` }));
    const miss = await timeEach(50, (i) => col().findOne({ _id: `miss-${i}` }));
    const replace = await timeEach(50, (i) => col().replaceOne({ _id: `img-${i * 37}` }, { status: 'x', pad }));
    const insert = await timeEach(50, (i) => col().insertOne({ _id: `new-${i}`, pad }));
    await col().insertOne({ _id: 'cas', rev: 0 });
    let notOne = 0;
    for (let r = 0; r < 30; r++) {
      const res = await Promise.all(Array.from({ length: 8 }, (_, i) => col(i).updateOne({ _id: 'cas', rev: r }, { $set: { rev: r + 1, w: i } })));
      if (res.filter((x) => x.modifiedCount === 1).length !== 1) notOne++;
      await col().updateOne({ _id: 'cas' }, { $set: { rev: r + 1 } });
    }
    const note = `3,000 docs of 2 KB; load avg ${loadavg()[0]!.toFixed(1)}`;
    return [
      { name: `${label}: findOne by _id, hit`, value: hit, unit: 'ms', note },
      { name: `${label}: findOne by _id, miss`, value: miss, unit: 'ms' },
      { name: `${label}: replaceOne by _id`, value: replace, unit: 'ms' },
      { name: `${label}: insertOne`, value: insert, unit: 'ms' },
      { name: `${label}: conditional update rounds without exactly one winner`, value: notOne, unit: 'of 30', note: 'non-zero: compare-and-set needs PIR\'s journal' },
    ];
  } finally {
    await clients[0]!.db(dbName).dropDatabase().catch(() => undefined);
    for (const c of clients) await c.close();
  }
}

const bench: Bench = {
  name: 'MongoDB-wire server: the manifest store\'s operations and conditional-update atomicity',
  async run(ctx) {
    const spec = process.env.PIR_BENCH_MONGODB_URLS;
    const targets: [string, string][] = spec
      ? spec.split(',').map((part) => { const i = part.indexOf('='); return i > 0 ? [part.slice(0, i), part.slice(i + 1)] : [part, part]; })
      : [['mongodb', services.mongodbUrl]];
    const figures: Figure[] = [];
    for (const [label, url] of targets) {
      ctx.log(label);
      figures.push(...(await measure(label, url)));
    }
    return figures;
  },
};

export default bench;
