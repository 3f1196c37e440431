/**
 * MongoDB/FerretDB store specifics: the journal that makes compare-and-set safe on FerretDB v1
 * heals an image document left behind by a writer that died, or overwritten by a late writer.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { MongoClient } from 'mongodb';
import { MongoManifestStore } from '../../infra/mongo/mongo-manifest-store.js';
import { MongoCatalogStore } from '../../infra/mongo/mongo-catalog-store.js';
import { MongoWebhookStore } from '../../infra/mongo/mongo-webhook-store.js';
import { MongoQuotaStore } from '../../infra/mongo/mongo-quota-store.js';
import { registry } from '../../infra/telemetry/metrics.js';
import { WORDS_VERSION } from '../../core/search.js';
import { requireServices, services, uniqueName } from '../support/services.js';
import { waitFor } from '../support/pir-process.js';
import { iso, makeDoc, outboxEvent, sleep } from './helpers.js';

/** This process's MongoDB-wire commands so far for one store, by command (pir_mongo_command_duration_seconds). */
async function commandCounts(store: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const line of (await registry.metrics()).split('\n')) {
    const m = /^pir_mongo_command_duration_seconds_count\{store="(\w+)",command="(\w+)"\} (\d+)$/.exec(line);
    if (m && m[1] === store) counts[m[2]!] = Number(m[3]);
  }
  return counts;
}

test('Mongo store: journal recovery', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const dbName = uniqueName('pir_contract_journal').replace(/-/g, '_');
  const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
  await client.connect();
  const store = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  t.after(async () => {
    await store.close();
    await client.db(dbName).dropDatabase();
    await client.close();
  });
  const images = client.db(dbName).collection<Record<string, unknown> & { _id: string }>('images');
  const journal = client.db(dbName).collection<Record<string, unknown> & { _id: string }>('images_journal');

  await t.test('a writer that died between its journal entry and the image document', async () => {
    const doc = makeDoc({ status: 'importing', updated_at: iso(Date.parse('2024-01-01T00:00:00Z')) });
    await store.create(doc);
    const main = (await images.findOne({ _id: doc.id }))!;
    // What a writer leaves behind when it dies right after winning: only the journal entry.
    const next = { ...main, revision: 2, status: 'active', outbox: [outboxEvent(doc.id, 'image.active')], pir_seq: 1, pir_pending: true };
    await journal.insertOne({ _id: `${doc.id}:${main.pir_inc}:0`, image_id: doc.id, seq: 0, at: new Date(Date.now() - 10_000).toISOString(), doc: next });
    const got = await store.get(doc.id);
    assert.equal(got?.revision, 2);
    assert.equal(got?.status, 'active');
    // The read repaired the image document: queries see the new state.
    assert.equal((await images.findOne({ _id: doc.id }))?.status, 'active');
    const cutoff = iso(Date.parse('2024-01-02T00:00:00Z'));
    assert.deepEqual((await store.findStale(['importing'], cutoff, 10)).map((d) => d.id), []);
    assert.deepEqual((await store.withPendingEvents(cutoff, 10)).map((d) => d.id), [doc.id]);
    // And the compare-and-set continues from there.
    assert.equal(await store.replace({ ...got!, revision: 3, outbox: [] }, 1), false);
    assert.equal(await store.replace({ ...got!, revision: 3, outbox: [] }, 2), true);
  });

  await t.test('a purge in another process: a writer holding the newest state or an older one loses, and nothing comes back', async () => {
    const other = new MongoManifestStore({ url: services.mongodbUrl, dbName });
    try {
      const doc = makeDoc({ status: 'saving' });
      await store.create(doc);
      assert.equal(await store.replace({ ...doc, revision: 2, name: 'two' }, 1), true);
      const stale = new MongoManifestStore({ url: services.mongodbUrl, dbName });
      try {
        const older = (await stale.get(doc.id))!; // this process now holds state 1
        assert.equal(await store.replace({ ...older, revision: 3, name: 'three' }, 2), true); // state 2, held by `store`
        await other.purge(doc.id);
        // The upload finishing on another api, from the head it remembers: it must not win.
        assert.equal(await store.replace({ ...older, revision: 4, status: 'uploading', name: 'late' }, 3), false);
        assert.equal(await stale.replace({ ...older, revision: 3, name: 'later' }, 2), false, 'a writer holding an older state loses too');
        assert.equal(await store.get(doc.id), null);
        assert.equal(await other.get(doc.id), null);
        assert.equal(await images.findOne({ _id: doc.id }), null);
      } finally {
        await stale.close();
      }
    } finally {
      await other.close();
    }
  });

  await t.test('withPendingEvents and findStale report the newest state, not a trailing document', async () => {
    const doc = makeDoc({ status: 'importing', updated_at: iso(Date.parse('2024-01-01T00:00:00Z')), outbox: [] });
    await store.create(doc);
    const main = (await images.findOne({ _id: doc.id }))!;
    // A writer still in flight (entry written just now): readers follow it without repairing.
    const next = { ...main, revision: 2, status: 'killed', pir_seq: 1 };
    await journal.insertOne({ _id: `${doc.id}:${main.pir_inc}:0`, image_id: doc.id, seq: 0, at: new Date().toISOString(), doc: next });
    const cutoff = iso(Date.parse('2024-01-02T00:00:00Z'));
    assert.ok(!(await store.findStale(['importing'], cutoff, 10)).some((d) => d.id === doc.id));
    assert.ok((await store.findStale(['killed'], cutoff, 10)).length === 0, 'the image document itself is not rewritten yet');
    assert.equal((await store.get(doc.id))?.status, 'killed');
  });

  await t.test('an image document overwritten with an old state by a late writer', async () => {
    const doc = makeDoc({ properties: {} });
    await store.create(doc);
    const early = (await images.findOne({ _id: doc.id }))!;
    let cur = (await store.get(doc.id))!;
    for (let i = 0; i < 10; i++) {
      const next = { ...cur, revision: cur.revision + 1, properties: { ...cur.properties, [`k${i}`]: 'v' } };
      assert.equal(await store.replace(next, cur.revision), true);
      cur = next;
    }
    await images.replaceOne({ _id: doc.id }, early); // seq 0: its journal entries' documents are long compacted
    await sleep(10);
    const got = await store.get(doc.id);
    assert.equal(got?.revision, 11);
    assert.equal(Object.keys(got!.properties).length, 10);
    assert.equal((await images.findOne({ _id: doc.id }))?.revision, 11, 'rebuilt');
    assert.equal(await store.replace({ ...got!, revision: 12 }, 11), true);
  });

  // A second process on the same database: it has remembered no head of these images.
  const other = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  t.after(() => other.close());
  await other.start();
  /** Manifest commands sent while `work` runs, by command. */
  const commandsOf = async (work: () => Promise<unknown>) => {
    const before = await commandCounts('manifest');
    await work();
    const after = await commandCounts('manifest');
    return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => v !== 0));
  };
  /** What a writer in flight leaves for a moment: its journal entry, the image document not yet rewritten. */
  const writeInFlight = async (id: string, change: Record<string, unknown>) => {
    const main = (await images.findOne({ _id: id }))!;
    const seq = main.pir_seq as number;
    await journal.insertOne({ _id: `${id}:${main.pir_inc}:${seq}`, image_id: id, seq, at: new Date().toISOString(), doc: { ...main, ...change, pir_seq: seq + 1 } });
  };

  await t.test('getRecent: the image document when the caller takes it, else the newest state; a trailing one loses its compare-and-set', async () => {
    const doc = makeDoc({ status: 'importing', outbox: [] });
    await store.create(doc);
    await writeInFlight(doc.id, { revision: 2, status: 'killed' });
    const importing = (d: { status: string }) => d.status === 'importing';
    let trailing: Awaited<ReturnType<typeof other.getRecent>> = null;
    assert.deepEqual(await commandsOf(async () => { trailing = await other.getRecent(doc.id, importing); }), { find: 1 });
    assert.equal(trailing!.status, 'importing', 'the image document as it stands, one read');
    assert.equal(await other.replace({ ...trailing!, revision: 2, status: 'active' }, 1), false, 'the in-flight write holds the journal slot');
    assert.equal((await other.get(doc.id))?.status, 'killed');
    assert.equal((await other.getRecent(doc.id, (d) => d.status === 'active'))?.status, 'killed', 'not taken: the newest state, as get() reads it');
    assert.equal(await other.getRecent('00000000-0000-4000-8000-000000000000', importing), null);
  });

  await t.test('ackEvents without a remembered head: settled by the image document when it shows them dropped, else written', async () => {
    const [e1, e2] = [outboxEvent('x', 'image.created'), outboxEvent('x', 'image.upload.started')];
    const doc = makeDoc({ outbox: [e1!] });
    await store.create(doc);
    const entries = () => journal.countDocuments({ image_id: doc.id });
    // Already dropped by a later write: one read, no write.
    assert.equal(await store.replace({ ...doc, revision: 2, outbox: [] }, 1), true);
    const before = await entries();
    assert.deepEqual(await commandsOf(() => other.ackEvents(doc.id, [e1!.id], 1)), { find: 1 }, 'one read, nothing written');
    assert.equal(await entries(), before);
    // Added by a write still in flight (the document trails it, without the event): not taken as dropped.
    await writeInFlight(doc.id, { revision: 3, outbox: [e2], pir_pending: true });
    await other.ackEvents(doc.id, [e2!.id], 3);
    let got = (await store.get(doc.id))!;
    assert.deepEqual(got.outbox, [], 'acknowledged through the journal');
    assert.equal(got.revision, 3);
    // Still there: acknowledged.
    assert.equal(await store.replace({ ...got, revision: 4, outbox: [e1!, e2!] }, 3), true);
    await other.ackEvents(doc.id, [e2!.id], 4);
    got = (await store.get(doc.id))!;
    assert.deepEqual(got.outbox.map((e) => e.id), [e1!.id]);
    assert.equal(got.revision, 4, 'an ack keeps the revision');
  });

  await t.test("a purged image's journal, tombstone included, goes with the age-based prune", async () => {
    const quick = new MongoManifestStore({ url: services.mongodbUrl, dbName, journal: { keepMs: 300, headMaxAgeMs: 100, pruneEveryWrites: 1, sweepEveryMs: 100 } });
    try {
      const doc = makeDoc();
      await quick.create(doc);
      await quick.replace({ ...doc, revision: 2 }, 1);
      await quick.purge(doc.id);
      assert.equal(await quick.get(doc.id), null);
      assert.equal(await journal.countDocuments({ image_id: doc.id, purged: true }), 1, 'the tombstone holds the newest state');
      await sleep(700);
      const other = makeDoc();
      await quick.create(other);
      await quick.replace({ ...other, revision: 2 }, 1); // a write prunes what is past keepMs
      await waitFor(async () => (await journal.countDocuments({ image_id: doc.id })) === 0, 5000, 'the journal pruned');
    } finally {
      await quick.close();
    }
  });
});

test('Mongo store: a second process starting on an existing database', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const dbName = uniqueName('pir_contract_restart').replace(/-/g, '_');
  const first = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  await first.start();
  await first.create(makeDoc({}));
  // FerretDB 1.24 drops the connection when createIndexes repeats existing indexes: every
  // process after the first would fail to start unless the store creates only missing ones.
  const second = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  const third = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  await Promise.all([second.start(), third.start()]);
  assert.equal((await second.list({ scope: { project_id: 'admin', admin: true }, visibility: 'all', memberStatus: 'accepted', where: {}, sort: [{ key: 'created_at', dir: 'desc' }], limit: 10 })).length, 1);
  const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
  t.after(async () => {
    await Promise.all([first.close(), second.close(), third.close()]);
    await client.connect();
    await client.db(dbName).dropDatabase();
    await client.close();
  });
});

test('Mongo store: the journal is pruned, and a stale remembered head cannot win a pruned slot', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const dbName = uniqueName('pir_contract_prune').replace(/-/g, '_');
  // Every write prunes and sweeps, so what is deleted depends on the clock alone, not on which
  // write happens to be the fifth (a slow machine once left 12 entries standing).
  const journalOpts = { keepMs: 400, headMaxAgeMs: 200, pruneEveryWrites: 1, sweepEveryMs: 1 };
  const a = new MongoManifestStore({ url: services.mongodbUrl, dbName, journal: journalOpts });
  const b = new MongoManifestStore({ url: services.mongodbUrl, dbName, journal: journalOpts });
  const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
  await client.connect();
  t.after(async () => {
    await Promise.all([a.close(), b.close()]);
    await client.db(dbName).dropDatabase();
    await client.close();
  });
  const doc = makeDoc({});
  await a.create(doc);
  // A remembers the head after its write; then B writes many times, long enough for pruning.
  const atA = { ...(await a.get(doc.id))!, revision: 2, name: 'written by a' };
  assert.equal(await a.replace(atA, 1), true);
  let current = atA;
  for (let i = 0; i < 12; i++) {
    const next = { ...current, revision: current.revision + 1, name: `b${i}` };
    assert.equal(await b.replace(next, current.revision), true);
    current = next;
    await sleep(60);
  }
  await sleep(200);
  const journal = client.db(dbName).collection('images_journal');
  await b.replace({ ...current, revision: current.revision + 1, name: 'last' }, current.revision); // triggers a prune
  current = { ...current, revision: current.revision + 1, name: 'last' };
  // The deletes run behind the write: wait for them (bounded), then count.
  let left = Infinity;
  await waitFor(async () => (left = await journal.countDocuments({ image_id: doc.id })) < 12, 10_000).catch(() => {}); // asserted below
  assert.ok(left < 12, `old journal entries were deleted (${left} of 15 left)`);
  // A's remembered head (revision 2) is stale and its slot may be free again: the write must lose.
  assert.equal(await a.replace({ ...atA, revision: 3, name: 'stale' }, 2), false);
  assert.equal((await a.get(doc.id))?.name, 'last');
  assert.equal((await b.get(doc.id))?.revision, current.revision);
  // And a correct write from A still works.
  assert.equal(await a.replace({ ...current, revision: current.revision + 1, name: 'a again' }, current.revision), true);
  assert.equal((await b.get(doc.id))?.name, 'a again');
});

test('Mongo store: pruning deletes old journal entries (its own by _id, and by time bucket in a sweep), keeping the young ones', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const dbName = uniqueName('pir_contract_bucket').replace(/-/g, '_');
  const keepMs = 400; // buckets of 100 ms
  const store = new MongoManifestStore({ url: services.mongodbUrl, dbName, journal: { keepMs, headMaxAgeMs: 200, pruneEveryWrites: 5 } });
  const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
  await client.connect();
  t.after(async () => {
    await store.close();
    await client.db(dbName).dropDatabase();
    await client.close();
  });
  const journal = client.db(dbName).collection<{ at: string; seq: number; bucket?: number }>('images_journal');
  const doc = makeDoc({});
  await store.create(doc);
  let current = (await store.get(doc.id))!;
  const started = Date.now();
  for (let i = 0; i < 60; i++) {
    const next = { ...current, revision: current.revision + 1, name: `w${i}` };
    assert.equal(await store.replace(next, current.revision), true);
    current = next;
    await sleep(40);
  }
  await sleep(100); // the last pass's deletes run in the background
  const entries = await journal.find({}).toArray();
  assert.ok(entries.every((e) => typeof e.bucket === 'number'), 'every entry carries its bucket');
  // 60 writes over ≥ 2.4 s; pruning keeps about keepMs to 1.25 × keepMs of them (plus one pass's lag).
  assert.ok(entries.length < 30, `old entries were deleted by bucket (${entries.length} left of 60, over ${Date.now() - started} ms)`);
  const oldest = Math.min(...entries.map((e) => Date.parse(e.at)));
  assert.ok(Date.now() - oldest >= keepMs * 0.9 || entries.length >= 5, 'young entries are kept');
  assert.ok(entries.some((e) => e.seq === 59), 'the newest entry (the 60th write) is still there');
  assert.equal((await store.get(doc.id))?.name, 'w59');
});

test('Mongo store: a writer deletes its own old journal entries by _id; a writer that stopped leaves its entries to another\'s sweep', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const { dbName, client } = await scratchDatabase(t, 'pir_contract_sweep');
  const keepMs = 400; // buckets of 100 ms
  const journalOpts = { keepMs, headMaxAgeMs: 200, pruneEveryWrites: 5, sweepEveryMs: 60_000 };
  const stopped = new MongoManifestStore({ url: services.mongodbUrl, dbName, journal: journalOpts });
  const live = new MongoManifestStore({ url: services.mongodbUrl, dbName, journal: journalOpts });
  t.after(async () => { await Promise.all([stopped.close(), live.close()]); });
  const journal = client.db(dbName).collection<{ image_id: string; seq: number }>('images_journal');
  const writeMany = async (store: MongoManifestStore, id: string, n: number) => {
    let current = (await store.get(id))!;
    for (let i = 0; i < n; i++) {
      const next = { ...current, revision: current.revision + 1, name: `w${i}` };
      assert.equal(await store.replace(next, current.revision), true);
      current = next;
      await sleep(40);
    }
  };
  const orphan = makeDoc({});
  await stopped.create(orphan);
  await writeMany(stopped, orphan.id, 4); // fewer than pruneEveryWrites: nothing pruned yet
  await stopped.close();
  const orphanEntries = await journal.countDocuments({ image_id: orphan.id });
  assert.ok(orphanEntries >= 4, `the stopped writer's entries stay (${orphanEntries})`);
  await sleep(keepMs * 1.5);

  const own = makeDoc({});
  await live.create(own);
  // Its first prune sweeps (the stopped writer's entries are old enough); later prunes within
  // sweepEveryMs delete only its own entries, by _id.
  await writeMany(live, own.id, 60);
  await sleep(100);
  assert.equal(await journal.countDocuments({ image_id: orphan.id }), 0, 'the first sweep took the stopped writer\'s old entries');
  const left = await journal.find({ image_id: own.id }).toArray();
  assert.ok(left.length < 30, `own old entries were deleted by _id between sweeps (${left.length} left of 60)`);
  assert.ok(left.some((e) => e.seq === 59), 'the newest entry is kept');
  assert.equal((await live.get(own.id))?.name, 'w59');
});

/** A database of its own for one test, dropped (and its client closed) when the test ends. */
async function scratchDatabase(t: TestContext, label: string): Promise<{ dbName: string; client: MongoClient }> {
  const dbName = uniqueName(label).replace(/-/g, '_');
  const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
  await client.connect();
  t.after(async () => {
    await client.db(dbName).dropDatabase();
    await client.close();
  });
  return { dbName, client };
}

test('Mongo store: documents written before the list fields get them at start', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const { dbName, client } = await scratchDatabase(t, 'pir_contract_backfill');
  const doc = makeDoc({ owner: 'p1', visibility: 'shared', tags: ['t1'], properties: { os_distro: 'debian' }, members: [{ member_id: 'p2', status: 'accepted', created_at: 'x', updated_at: 'x' }] });
  // As the previous version stored it: no pir_props, no pir_members.
  await client.db(dbName).collection<Record<string, unknown> & { _id: string }>('images').insertOne({ ...doc, _id: doc.id, pir_pending: false, pir_seq: 0, pir_inc: 'old1' });
  const store = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  t.after(() => store.close());
  const base = { scope: { project_id: 'p2', admin: false }, memberStatus: 'accepted' as const, where: {}, sort: [{ key: 'created_at' as const, dir: 'desc' as const }], limit: 10 };
  assert.deepEqual((await store.list({ ...base, properties: { os_distro: 'debian' } })).map((d) => d.id), [doc.id]);
  assert.deepEqual(await store.get(doc.id), doc, 'the document itself is unchanged');
  const raw = await client.db(dbName).collection('images').findOne({ _id: doc.id as never });
  assert.deepEqual(raw?.pir_props, ['["os_distro","debian"]']);
  assert.deepEqual(raw?.pir_members, ['["p2","accepted"]']);
});


test('Mongo store: what no query reads is stored as one JSON text, and a journal entry\'s document too; a document stored in place reads the same and is packed by its next write', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const { dbName, client } = await scratchDatabase(t, 'pir_contract_packed');
  const images = client.db(dbName).collection<Record<string, unknown> & { _id: string }>('images');
  const store = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  t.after(() => store.close());
  const staging = { key: 'staging/x', size: 3, md5: 'm', sha512: 's', received_at: iso(0) };
  const doc = makeDoc({ status: 'importing', staging, outbox: [outboxEvent('x', 'image.import.started')], properties: { 'org.openstack__1__os_distro': 'debian' } });
  await store.create(doc);
  const raw = (await images.findOne({ _id: doc.id }))!;
  for (const key of ['pipeline', 'outbox', 'staging', 'expected', 'properties', 'pir_user']) assert.equal(key in raw, false, `${key} is not stored in place`);
  assert.deepEqual(JSON.parse(raw.pir_packed as string).staging, staging);
  // What queries read stays in place: the list filters and sort keys, the sweepers' flags.
  for (const key of ['status', 'owner', 'visibility', 'name', 'created_at', 'updated_at', 'size', 'tags', 'pir_pending', 'pir_props']) assert.equal(key in raw, true, `${key} is in place`);
  assert.deepEqual(await store.get(doc.id), doc);
  assert.deepEqual((await store.withPendingEvents(iso(Date.now() + 60_000), 10)).map((d) => d.id), [doc.id]);

  // As the previous version stored it: everything in place but the user-keyed parts, in pir_user.
  const old = makeDoc({ status: 'importing', staging, outbox: [outboxEvent('y', 'image.import.started')], location: null });
  const { properties, location, import_task: importTask, ...inPlace } = old;
  await images.insertOne({ ...inPlace, _id: old.id, pir_user: JSON.stringify({ properties, location, import_task: importTask }), pir_pending: true, pir_seq: 0, pir_inc: 'old3', pir_props: [], pir_members: [], pir_words: [], pir_prefixes: [] });
  assert.deepEqual(await store.get(old.id), old);
  assert.equal(await store.replace({ ...old, revision: 2, outbox: [] }, 1), true);
  const packed = (await images.findOne({ _id: old.id }))!;
  assert.equal('outbox' in packed || 'pir_user' in packed, false, 'the next write packs it');
  assert.deepEqual(await store.get(old.id), { ...old, revision: 2, outbox: [] });
  // The write's journal entry holds the document as JSON text (the journal-recovery tests above follow entries holding it nested, as written before).
  const entry = await client.db(dbName).collection<{ _id: string; doc?: unknown }>('images_journal').findOne({ _id: `${old.id}:old3:0` });
  assert.equal(typeof entry?.doc, 'string');
  assert.equal(JSON.parse(entry!.doc as string).pir_seq, 1);
});

test('Mongo store: documents written before pir_prefixes get it at start, and a prefix search finds them', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const { dbName, client } = await scratchDatabase(t, 'pir_contract_prefixes');
  const doc = makeDoc({ owner: 'p1', name: 'Debian Bookworm', tags: ['cloud-init'] });
  // As the previous version stored it: the words, no word starts.
  await client.db(dbName).collection<Record<string, unknown> & { _id: string }>('images').insertOne({
    ...doc, _id: doc.id, pir_pending: false, pir_seq: 0, pir_inc: 'old2', pir_props: [], pir_members: [], pir_words: ['debian', 'bookworm', 'cloud', 'init'],
  });
  const store = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  t.after(() => store.close());
  const base = { scope: { project_id: 'p1', admin: false }, memberStatus: 'accepted' as const, where: {}, sort: [{ key: 'created_at' as const, dir: 'desc' as const }], limit: 10 };
  assert.deepEqual((await store.list({ ...base, search: { words: ['debian'], prefix: 'book' } })).map((d) => d.id), [doc.id]);
  assert.deepEqual(await store.get(doc.id), doc, 'the document itself is unchanged');
  const raw = await client.db(dbName).collection('images').findOne({ _id: doc.id as never });
  assert.ok((raw?.pir_prefixes as string[]).includes('bookw'));
});

test('Mongo store: documents whose words an older tokenizer made (pir_words_v below WORDS_VERSION) are indexed again at start', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const { dbName, client } = await scratchDatabase(t, 'pir_contract_words_v');
  const doc = makeDoc({ owner: 'p1', name: 'Café Noble', tags: ['gpu'] });
  // As an older tokenizer left it: other words, other starts, an older version.
  await client.db(dbName).collection<Record<string, unknown> & { _id: string }>('images').insertOne({
    ...doc, _id: doc.id, pir_pending: false, pir_seq: 0, pir_inc: 'old4', pir_props: [], pir_members: [], pir_words: ['stale'], pir_prefixes: ['st', 'sta'], pir_words_v: WORDS_VERSION - 1,
  });
  const store = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  t.after(() => store.close());
  const base = { scope: { project_id: 'p1', admin: false }, memberStatus: 'accepted' as const, where: {}, sort: [{ key: 'created_at' as const, dir: 'desc' as const }], limit: 10 };
  assert.deepEqual((await store.list({ ...base, search: { words: ['noble'], prefix: 'caf' } })).map((d) => d.id), [doc.id]);
  assert.deepEqual((await store.list({ ...base, search: { words: ['stale'], prefix: 'st' } })).map((d) => d.id), [], 'the old words are gone');
  assert.deepEqual(await store.get(doc.id), doc, 'the document itself is unchanged');
  const raw = await client.db(dbName).collection('images').findOne({ _id: doc.id as never });
  assert.equal(raw?.pir_words_v, WORDS_VERSION);
});

test('Mongo stores: every store counts its commands by store and command (pir_mongo_command_duration_seconds)', { timeout: 60_000 }, async (t) => {
  if (!(await requireServices(t, ['mongodb']))) return;
  const dbName = uniqueName('pir_contract_metrics').replace(/-/g, '_');
  const manifest = new MongoManifestStore({ url: services.mongodbUrl, dbName });
  const catalog = new MongoCatalogStore({ url: services.mongodbUrl, dbName });
  const webhooks = new MongoWebhookStore({ url: services.mongodbUrl, dbName });
  const quotas = new MongoQuotaStore({ url: services.mongodbUrl, dbName });
  t.after(async () => {
    await Promise.all([manifest.close(), catalog.close(), webhooks.close(), quotas.close()]);
    const client = new MongoClient(services.mongodbUrl, { serverSelectionTimeoutMS: 3000 });
    await client.connect();
    await client.db(dbName).dropDatabase();
    await client.close();
  });
  const count = async (store: string, command: string) => (await commandCounts(store))[command] ?? 0;
  const before = { manifest: await count('manifest', 'insert'), catalog: await count('catalog', 'find'), webhooks: await count('webhooks', 'find'), quotas: await count('quotas', 'find') };
  await manifest.create(makeDoc({}));
  await catalog.start();
  await catalog.revisions('00000000-0000-4000-8000-000000000001', 0, 10);
  await webhooks.enabledSubscriptions();
  await quotas.holdings('p-metrics');
  assert.ok(await count('manifest', 'insert') > before.manifest, 'manifest insert counted');
  assert.ok(await count('catalog', 'find') > before.catalog, 'catalog find counted');
  assert.ok(await count('webhooks', 'find') > before.webhooks, 'webhooks find counted');
  assert.ok(await count('quotas', 'find') > before.quotas, 'quotas find counted');
});
