/** The ManifestStore contract: every adapter passes the same suite. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManifestConflictError, RetiredIdError } from '../../core/ports.js';
import type { ListQuery, ManifestStore, RankedAfter, SortKey, SortSpec } from '../../core/ports.js';
import { compareDocs, sortValues } from '../../core/list-access.js';
import { referenceList } from './list-reference.js';
import { relevance } from '../../core/search.js';
import type { ImageDoc } from '../../schemas/image.js';
import { requireServices } from '../support/services.js';
import type { ServiceName } from '../support/services.js';
import { iso, makeDoc, outboxEvent } from './helpers.js';

export interface ContractOptions {
  /** Services the adapter needs: the suite is skipped (or fails under CI) without them. */
  services?: ServiceName[];
  /** Runs once after the suite (drop databases, topics, keys). */
  teardown?: () => Promise<void>;
  /** Another instance on the same data as `store` (as another process would open it). */
  openSibling?: (store: ManifestStore) => ManifestStore | Promise<ManifestStore>;
}

/** Each call must return a new, empty store. */
export type MakeStore = () => ManifestStore | Promise<ManifestStore>;

const BASE = Date.parse('2024-05-01T00:00:00.000Z');

/** A ListQuery with an admin scope that sees everything, for tests that are not about the scope. */
function listQuery(partial: Partial<ListQuery> = {}): ListQuery {
  return {
    scope: { project_id: 'admin', admin: true },
    visibility: 'all',
    memberStatus: 'accepted',
    where: {},
    sort: [{ key: 'created_at', dir: 'desc' }],
    limit: 100,
    ...partial,
  };
}

/** Every page of store.rankedList, each after the last image of the one before. */
async function rankedPages(store: ManifestStore, query: ListQuery): Promise<string[]> {
  const ids: string[] = [];
  let from: RankedAfter | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page = await store.rankedList!(query, from);
    ids.push(...page.map((d) => d.id));
    if (page.length < query.limit) return ids;
    const last = page[page.length - 1]!;
    from = { score: relevance(last, query.search!), after: sortValues(last, query.sort) };
  }
  throw new Error('rankedList: more than 100 pages');
}

/** Follows the keyset from page to page, as ImageService does with a marker. */
async function allPages(store: ManifestStore, query: ListQuery): Promise<string[]> {
  const seen: string[] = [];
  let after: ListQuery['after'];
  for (let page = 0; page < 200; page++) {
    const got = await store.list({ ...query, ...(after ? { after } : {}) });
    assert.ok(got.length <= query.limit);
    seen.push(...got.map((d) => d.id));
    if (got.length < query.limit) return seen;
    after = sortValues(got[got.length - 1]!, query.sort);
  }
  throw new Error('more than 200 pages');
}

export function manifestStoreContract(name: string, makeStore: MakeStore, opts: ContractOptions = {}): void {
  test(`ManifestStore contract: ${name}`, { timeout: 120_000 }, async (t) => {
    if (!(await requireServices(t, opts.services ?? []))) return;
    const opened: ManifestStore[] = [];
    const fresh = async () => {
      const store = await makeStore();
      opened.push(store);
      return store;
    };
    t.after(async () => {
      for (const s of opened) await s.close().catch(() => undefined);
      await opts.teardown?.();
    });

    await t.test('countByStatus counts every status; countPendingEvents the documents with an outbox; ping answers', async () => {
      const store = await fresh();
      await store.ping();
      const empty = await store.countByStatus();
      assert.equal(Object.values(empty).reduce((a, b) => a + b, 0), 0);
      assert.equal(empty.active, 0);
      await store.create(makeDoc({ status: 'active', outbox: [] }));
      await store.create(makeDoc({ status: 'active', outbox: [] }));
      const queued = makeDoc({ status: 'queued' });
      queued.outbox = [outboxEvent(queued.id)];
      await store.create(queued);
      const counts = await store.countByStatus();
      assert.equal(counts.active, 2);
      assert.equal(counts.queued, 1);
      assert.equal(counts.killed, 0);
      assert.equal(await store.countPendingEvents(), 1);
      await store.ackEvents(queued.id, queued.outbox.map((e) => e.id));
      assert.equal(await store.countPendingEvents(), 0);
    });

    await t.test('create then get returns the document as written; unknown id is null', async () => {
      const store = await fresh();
      const doc = makeDoc({ outbox: [], size: 3_000_000_000, pipeline: null, expected: { md5: 'abc' } });
      await store.create(doc);
      assert.deepEqual(await store.get(doc.id), doc);
      assert.equal(await store.get('00000000-0000-0000-0000-000000000000'), null);
    });

    await t.test("keeps the users' own keys as given: '.' and '$' in property names, a location's metadata, a legacy import's input", async () => {
      const store = await fresh();
      // Glance's common properties are dotted (org.openstack__1__os_distro); FerretDB v1 refuses such field names.
      const odd = { 'org.openstack__1__os_distro': 'debian', $where: 'x', 'a.b.$c': 'y', '%2E': 'literal', plain: 'z' };
      const doc = makeDoc({
        properties: odd,
        location: { url: 'https://mirror.example.org/d.qcow2', metadata: { 'x.y': { $ref: 1 } }, validation_data: {}, fingerprint: null, added_at: iso(BASE), added_by: { project_id: 'p1', user_id: 'u1' } },
        import_task: { input: { import_from: 'https://mirror.example.org/d.qcow2', import_from_format: 'qcow2', image_properties: { ...odd, name: 'n' } } },
      });
      await store.create(doc);
      assert.deepEqual(await store.get(doc.id), doc);
      const v2 = { ...doc, revision: 2, properties: { ...odd, 'more.dots': 'w' } };
      assert.equal(await store.replace(v2, 1), true);
      assert.deepEqual(await store.get(doc.id), v2);
      assert.deepEqual((await store.list(listQuery({ properties: { 'org.openstack__1__os_distro': 'debian' } }))).map((d) => d.id), [doc.id]);
    });

    await t.test('create with an existing id rejects with ManifestConflictError and keeps the first', async () => {
      const store = await fresh();
      const doc = makeDoc();
      await store.create(doc);
      await assert.rejects(store.create({ ...doc, name: 'other' }), (err: unknown) => {
        assert.ok(err instanceof ManifestConflictError, `expected ManifestConflictError, got ${String(err)}`);
        return true;
      });
      assert.equal((await store.get(doc.id))?.name, doc.name);
    });

    await t.test('replace is compare-and-set on the revision', async () => {
      const store = await fresh();
      const doc = makeDoc();
      await store.create(doc);
      const v2 = { ...doc, revision: 2, status: 'saving' as const, updated_at: iso(Date.now() + 1) };
      assert.equal(await store.replace(v2, 1), true);
      assert.deepEqual(await store.get(doc.id), v2);
      const stale = { ...doc, revision: 2, status: 'killed' as const };
      assert.equal(await store.replace(stale, 1), false, 'a replace with a stale revision must lose');
      assert.deepEqual(await store.get(doc.id), v2);
      assert.equal(await store.replace({ ...makeDoc(), revision: 2 }, 1), false, 'replace of a missing document');
    });

    await t.test('concurrent replaces with the same expected revision: exactly one wins', async () => {
      const store = await fresh();
      const doc = makeDoc();
      await store.create(doc);
      for (let round = 0; round < 5; round++) {
        const current = (await store.get(doc.id))!;
        const contenders = Array.from({ length: 8 }, (_, i) => ({
          ...current,
          revision: current.revision + 1,
          name: `writer-${round}-${i}`,
          outbox: [outboxEvent(doc.id, 'image.stage.started')],
        }));
        const results = await Promise.all(contenders.map((c) => store.replace(c, current.revision)));
        assert.equal(results.filter(Boolean).length, 1, `round ${round}: ${results.join(',')}`);
        const winner = contenders[results.indexOf(true)]!;
        assert.deepEqual(await store.get(doc.id), winner, 'the stored document is the winner\'s, whole');
      }
    });

    // Only adapters that can open a second instance on the same data run this one.
    if (opts.openSibling) await t.test('compare-and-set across store instances: exactly one writer wins each revision', async () => {
      const first = await fresh();
      const instances = [first];
      for (let i = 1; i < 4; i++) {
        const sibling = await opts.openSibling!(first);
        opened.push(sibling);
        instances.push(sibling);
      }
      const doc = makeDoc({ properties: {} });
      await first.create(doc);
      // Same expected revision, 12 writers spread over 4 instances, 4 rounds.
      for (let round = 0; round < 4; round++) {
        const current = (await instances[round % 4]!.get(doc.id))!;
        const results = await Promise.all(Array.from({ length: 12 }, (_, i) => instances[i % 4]!.replace(
          { ...current, revision: current.revision + 1, name: `round-${round}-writer-${i}` }, current.revision)));
        assert.equal(results.filter(Boolean).length, 1, `round ${round}: ${results.join(',')}`);
        for (const instance of instances) assert.equal((await instance.get(doc.id))?.name, `round-${round}-writer-${results.indexOf(true)}`);
      }
      // Read-modify-write loops on every instance, starting from each instance's cached view
      // (peek, when the store has one: stale on purpose) and falling back to a read, as
      // Manifest.update does: every revision is won exactly once and no increment is lost.
      const won: number[] = [];
      const loop = async (store: ManifestStore, w: number) => {
        for (let i = 0; i < 6; i++) {
          let usePeek = true;
          for (;;) {
            const cur = (usePeek ? store.peek?.(doc.id) : null) ?? (await store.get(doc.id))!;
            const next = { ...cur, revision: cur.revision + 1, properties: { ...cur.properties, [`w${w}-${i}`]: 'x' } };
            if (await store.replace(next, cur.revision)) {
              won.push(next.revision);
              break;
            }
            usePeek = !usePeek;
          }
        }
      };
      const base = (await first.get(doc.id))!.revision;
      await Promise.all(instances.flatMap((store, k) => [loop(store, 2 * k), loop(store, 2 * k + 1)]));
      const total = instances.length * 2 * 6;
      assert.deepEqual([...won].sort((a, b) => a - b), Array.from({ length: total }, (_, i) => base + 1 + i), 'each revision won exactly once');
      for (const instance of instances) {
        const final = (await instance.get(doc.id))!;
        assert.equal(final.revision, base + total);
        assert.equal(Object.keys(final.properties).length, total, 'every increment is in the final document');
      }
    });

    // Stores that remember what they wrote (peek) forget it when told another process wrote since.
    if (opts.openSibling) await t.test('forget: a version written elsewhere is no longer peeked, and the next read sees the newer one', async () => {
      const first = await fresh();
      if (!first.peek || !first.forget) return void assert.equal(first.forget, undefined, 'forget comes with peek');
      const sibling = await opts.openSibling!(first);
      opened.push(sibling);
      const doc = makeDoc({ properties: {} });
      await first.create(doc);
      const mine = (await first.get(doc.id))!;
      assert.ok(await first.replace({ ...mine, revision: mine.revision + 1, name: 'first' }, mine.revision));
      assert.equal(first.peek(doc.id)?.name, 'first');
      const theirs = (await sibling.get(doc.id))!;
      assert.ok(await sibling.replace({ ...theirs, revision: theirs.revision + 1, name: 'sibling' }, theirs.revision));
      assert.equal(first.peek(doc.id)?.name, 'first', 'stale until told');
      first.forget(doc.id);
      assert.equal(first.peek(doc.id), null);
      assert.equal((await first.get(doc.id))?.name, 'sibling');
    });

    await t.test('no lost update: concurrent read-modify-write loops and acks', async () => {
      const store = await fresh();
      const doc = makeDoc({ properties: {} });
      await store.create(doc);
      const writers = 4;
      const perWriter = 8;
      const writer = async (w: number) => {
        for (let i = 0; i < perWriter; i++) {
          for (;;) {
            const cur = (await store.get(doc.id))!;
            const ev = outboxEvent(doc.id, 'image.stage.completed');
            const next = { ...cur, revision: cur.revision + 1, properties: { ...cur.properties, [`w${w}-${i}`]: 'x' }, outbox: [...cur.outbox, ev] };
            if (await store.replace(next, cur.revision)) break;
          }
        }
      };
      const acker = async () => {
        for (let i = 0; i < 10; i++) {
          const cur = await store.get(doc.id);
          if (cur && cur.outbox.length > 0) await store.ackEvents(doc.id, cur.outbox.slice(0, 1).map((e) => e.id));
        }
      };
      await Promise.all([...Array.from({ length: writers }, (_, w) => writer(w)), acker()]);
      const final = (await store.get(doc.id))!;
      assert.equal(final.revision, 1 + writers * perWriter);
      assert.equal(Object.keys(final.properties).length, writers * perWriter, 'every write is in the final document');
    });

    await t.test('ackEvents removes only the named events, keeps revision and updated_at', async () => {
      const store = await fresh();
      const id = makeDoc().id;
      const events = [outboxEvent(id, 'image.created'), outboxEvent(id, 'image.upload.started'), { ...outboxEvent(id, 'image.staged'), traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }];
      const doc = makeDoc({ id, outbox: events, updated_at: iso(BASE) });
      await store.create(doc);
      await store.ackEvents(id, [events[0]!.id, events[2]!.id, 'not-an-event']);
      const after = await store.get(id);
      assert.deepEqual(after?.outbox, [events[1]]);
      assert.equal(after?.revision, doc.revision);
      assert.equal(after?.updated_at, doc.updated_at);
      await store.ackEvents(id, ['nothing-here']);
      assert.deepEqual((await store.get(id))?.outbox, [events[1]]);
      await store.ackEvents('00000000-0000-0000-0000-000000000000', [events[1]!.id]); // missing doc: no-op
      await store.ackEvents(id, []);
      await store.ackEvents(id, [events[1]!.id]);
      assert.deepEqual((await store.get(id))?.outbox, []);
      assert.deepEqual(await store.withPendingEvents(iso(BASE + 1000), 10), []);
      // The revision did not move, so the next compare-and-set still succeeds.
      assert.equal(await store.replace({ ...(await store.get(id))!, revision: 2 }, 1), true);
    });

    await t.test('ackEvents racing a replace: neither write is lost', async () => {
      const store = await fresh();
      const id = makeDoc().id;
      const e1 = outboxEvent(id);
      await store.create(makeDoc({ id, outbox: [e1] }));
      for (let round = 0; round < 5; round++) {
        const cur = (await store.get(id))!;
        const eNew = outboxEvent(id, 'image.stage.completed');
        const next = { ...cur, revision: cur.revision + 1, outbox: [...cur.outbox, eNew] };
        const [replaced] = await Promise.all([store.replace(next, cur.revision), store.ackEvents(id, cur.outbox.map((e) => e.id))]);
        assert.equal(replaced, true, 'ack does not bump the revision');
        const stored = (await store.get(id))!;
        assert.equal(stored.revision, cur.revision + 1);
        // Either order is fine; the new event must be there, the acked ones may come back (at least once).
        assert.ok(stored.outbox.some((e) => e.id === eNew.id), 'the replace\'s new event survives');
      }
    });

    await t.test('withPendingEvents: documents with events written before the cutoff, oldest first', async () => {
      const store = await fresh();
      const docs = [0, 1, 2, 3, 4, 5].map((i) => {
        const id = makeDoc().id;
        return makeDoc({ id, updated_at: iso(BASE + i * 1000), outbox: i % 2 === 0 ? [outboxEvent(id)] : [] });
      });
      for (const d of [...docs].reverse()) await store.create(d);
      const cutoff = iso(BASE + 4000); // excludes i=4 (not strictly before) and i=5
      assert.deepEqual((await store.withPendingEvents(cutoff, 10)).map((d) => d.id), [docs[0]!.id, docs[2]!.id]);
      assert.deepEqual((await store.withPendingEvents(cutoff, 1)).map((d) => d.id), [docs[0]!.id]);
      assert.deepEqual((await store.withPendingEvents(iso(BASE + 10_000), 10)).map((d) => d.id), [docs[0]!.id, docs[2]!.id, docs[4]!.id]);
      await store.ackEvents(docs[0]!.id, docs[0]!.outbox.map((e) => e.id));
      assert.deepEqual((await store.withPendingEvents(cutoff, 10)).map((d) => d.id), [docs[2]!.id]);
      const returned = (await store.withPendingEvents(cutoff, 10))[0]!;
      assert.deepEqual(returned, docs[2], 'returned documents are whole ImageDocs');
      // A replace that empties the outbox clears the flag; one that fills it sets it.
      assert.equal(await store.replace({ ...docs[2]!, revision: 2, outbox: [] }, 1), true);
      assert.equal(await store.replace({ ...docs[1]!, revision: 2, outbox: [outboxEvent(docs[1]!.id)] }, 1), true);
      assert.deepEqual((await store.withPendingEvents(cutoff, 10)).map((d) => d.id), [docs[1]!.id]);
    });

    await t.test('findStale: documents in the given statuses written before the cutoff, oldest first', async () => {
      const store = await fresh();
      const statuses = ['importing', 'saving', 'active', 'importing', 'uploading', 'importing'] as const;
      const docs = statuses.map((status, i) => makeDoc({ status, updated_at: iso(BASE + i * 1000) }));
      for (const d of docs) await store.create(d);
      const ids = (xs: ImageDoc[]) => xs.map((d) => d.id);
      assert.deepEqual(ids(await store.findStale(['importing'], iso(BASE + 5000), 10)), [docs[0]!.id, docs[3]!.id]);
      assert.deepEqual(ids(await store.findStale(['importing'], iso(BASE + 5001), 10)), [docs[0]!.id, docs[3]!.id, docs[5]!.id]);
      assert.deepEqual(ids(await store.findStale(['saving', 'uploading'], iso(BASE + 9000), 10)), [docs[1]!.id, docs[4]!.id]);
      assert.deepEqual(ids(await store.findStale(['importing', 'saving'], iso(BASE + 9000), 2)), [docs[0]!.id, docs[1]!.id]);
      assert.deepEqual(await store.findStale([], iso(BASE + 9000), 10), []);
      assert.deepEqual((await store.findStale(['active'], iso(BASE + 9000), 10))[0], docs[2]);
    });

    await t.test('list: equality and any-of filters', async () => {
      const store = await fresh();
      const docs = [
        makeDoc({ owner: 'o1', status: 'active', name: 'a', visibility: 'public', disk_format: 'raw', container_format: 'bare', checksum: 'c1' }),
        makeDoc({ owner: 'o1', status: 'queued', name: 'b', visibility: 'private', disk_format: 'qcow2', container_format: 'ovf', protected: true }),
        makeDoc({ owner: 'o2', status: 'active', name: null, visibility: 'shared', disk_format: null, container_format: null, os_hidden: true, os_hash_value: 'h2' }),
        makeDoc({ owner: null, status: 'killed', name: 'a', visibility: 'community', disk_format: 'iso', container_format: 'bare' }),
      ];
      for (const d of docs) await store.create(d);
      const q = (where: ListQuery['where']) => store.list(listQuery({ where })).then((r) => r.map((d) => d.id).sort());
      const ids = (...i: number[]) => i.map((n) => docs[n]!.id).sort();
      assert.deepEqual(await q({}), ids(0, 1, 2, 3));
      assert.deepEqual(await q({ owner: 'o1' }), ids(0, 1));
      assert.deepEqual(await q({ status: ['active', 'killed'] }), ids(0, 2, 3));
      assert.deepEqual(await q({ status: ['active'], owner: 'o2' }), ids(2));
      assert.deepEqual(await q({ name: ['a'] }), ids(0, 3));
      assert.deepEqual(await q({ disk_format: ['qcow2'] }), ids(1));
      assert.deepEqual(await q({ container_format: ['bare'] }), ids(0, 3));
      assert.deepEqual(await q({ id: [docs[1]!.id, docs[2]!.id, 'nope'] }), ids(1, 2));
      assert.deepEqual(await q({ id: [docs[3]!.id] }), ids(3));
      assert.deepEqual(await q({ protected: true }), ids(1));
      assert.deepEqual(await q({ protected: false }), ids(0, 2, 3));
      assert.deepEqual(await q({ os_hidden: true }), ids(2));
      assert.deepEqual(await q({ os_hidden: false, owner: 'o2' }), []);
      assert.deepEqual(await q({ checksum: 'c1' }), ids(0));
      assert.deepEqual(await q({ os_hash_value: 'h2' }), ids(2));
      assert.deepEqual(await q({ status: [] }), []);
      assert.deepEqual(await q({ owner: 'nobody' }), []);
      assert.deepEqual(await store.list(listQuery({ limit: 0 })), []);
      const full = await store.list(listQuery({ where: { owner: 'o2' }, limit: 5 }));
      assert.deepEqual(full, [docs[2]], 'listed documents are whole ImageDocs');
    });

    await t.test('list: sort and keyset pagination across pages (nulls, ties, both directions)', async () => {
      const store = await fresh();
      const names = ['delta', null, 'alpha', 'delta', 'charlie', null, 'bravo', 'alpha', 'echo', 'delta', null, 'foxtrot', 'alpha', 'golf'];
      const sizes = [10, null, 5, 5, 3_000_000_000, null, 0, 10, 7, null, 1, 5, 2, 10];
      const statuses = ['active', 'queued', 'killed', 'active', 'saving', 'importing', 'active'] as const;
      const docs = names.map((name, i) => makeDoc({
        name,
        size: sizes[i]!,
        status: statuses[i % statuses.length]!,
        disk_format: i % 4 === 0 ? null : (['raw', 'qcow2', 'vmdk'] as const)[i % 3]!,
        created_at: iso(BASE + Math.floor(i / 3) * 1000), // groups of three share a timestamp
        updated_at: iso(BASE + ((i * 7) % 5) * 1000),
      }));
      for (const d of docs) await store.create(d);
      const single: SortKey[] = ['created_at', 'updated_at', 'name', 'size', 'status', 'id', 'disk_format'];
      const sorts: SortSpec[][] = [];
      for (const key of single) for (const dir of ['asc', 'desc'] as const) sorts.push([{ key, dir }]);
      sorts.push(
        [{ key: 'name', dir: 'asc' }, { key: 'size', dir: 'desc' }],
        [{ key: 'disk_format', dir: 'desc' }, { key: 'name', dir: 'asc' }, { key: 'created_at', dir: 'desc' }],
        [{ key: 'size', dir: 'asc' }, { key: 'status', dir: 'asc' }, { key: 'id', dir: 'desc' }, { key: 'name', dir: 'asc' }],
        [{ key: 'status', dir: 'desc' }, { key: 'updated_at', dir: 'asc' }, { key: 'name', dir: 'desc' }, { key: 'id', dir: 'asc' }],
        [{ key: 'name', dir: 'desc' }, { key: 'name', dir: 'asc' }, { key: 'size', dir: 'asc' }],
      );
      for (const sort of sorts) {
        const expected = [...docs].sort((a, b) => compareDocs(a, b, sort)).map((d) => d.id);
        for (const limit of [1, 4, 5]) {
          const seen = await allPages(store, listQuery({ sort, limit }));
          assert.deepEqual(seen, expected, `sort ${JSON.stringify(sort)}, pages of ${limit}`);
        }
      }
      // Filters and keyset together.
      const query = listQuery({ where: { status: ['active'] }, sort: [{ key: 'name', dir: 'asc' }], limit: 2 });
      assert.deepEqual(await allPages(store, query), referenceList(query, docs));
    });

    await t.test('list: pages after a marker sorted by name or updated_at, with many ties, list every image once and in order', async () => {
      const store = await fresh();
      // 60 images, four names (and no name) each held by many; created_at and updated_at tie in
      // groups too, so every level of the keyset is crossed by some page.
      const docs = Array.from({ length: 60 }, (_, i) => makeDoc({
        name: i % 9 === 4 ? null : (['ubuntu', 'debian', 'ubuntu', 'alpine', 'cirros'] as const)[i % 5]!,
        owner: `p${i % 3}`,
        visibility: (['private', 'public', 'shared'] as const)[i % 3]!,
        created_at: iso(BASE + Math.floor(i / 4) * 1000),
        updated_at: iso(BASE + ((i * 7) % 6) * 1000),
      }));
      for (const d of docs) await store.create(d);
      const sorts: SortSpec[][] = [
        [{ key: 'name', dir: 'asc' }, { key: 'created_at', dir: 'asc' }, { key: 'id', dir: 'asc' }],
        [{ key: 'name', dir: 'desc' }, { key: 'created_at', dir: 'desc' }, { key: 'id', dir: 'desc' }],
        [{ key: 'name', dir: 'asc' }, { key: 'created_at', dir: 'desc' }, { key: 'id', dir: 'desc' }],
        [{ key: 'name', dir: 'desc' }, { key: 'created_at', dir: 'asc' }, { key: 'id', dir: 'asc' }],
        [{ key: 'updated_at', dir: 'asc' }, { key: 'created_at', dir: 'asc' }, { key: 'id', dir: 'asc' }],
        [{ key: 'updated_at', dir: 'asc' }, { key: 'created_at', dir: 'desc' }, { key: 'id', dir: 'desc' }],
        [{ key: 'updated_at', dir: 'desc' }, { key: 'created_at', dir: 'desc' }, { key: 'id', dir: 'desc' }],
        [{ key: 'name', dir: 'asc' }],
        [{ key: 'updated_at', dir: 'asc' }, { key: 'name', dir: 'desc' }],
      ];
      for (const sort of sorts) {
        for (const base of [{}, { scope: { project_id: 'p1', admin: false }, visibility: undefined }, { where: { owner: 'p2' } }]) {
          const expected = referenceList(listQuery({ ...base, sort }), docs);
          for (const limit of [1, 7, 25]) {
            const seen = await allPages(store, listQuery({ ...base, sort, limit }));
            assert.equal(new Set(seen).size, seen.length, `sort ${JSON.stringify(sort)}, pages of ${limit}: an image listed twice`);
            assert.deepEqual(seen, expected, `sort ${JSON.stringify(sort)}, ${JSON.stringify(base)}, pages of ${limit}`);
          }
        }
      }
    });

    await t.test('list: extra properties, tags, size and time ranges, alone and combined', async () => {
      const store = await fresh();
      const distros = ['debian', 'ubuntu', 'debian', 'fedora', undefined];
      const docs = Array.from({ length: 30 }, (_, i) => makeDoc({
        owner: `p${i % 3}`,
        name: `img-${i % 7}`,
        size: i % 6 === 0 ? null : i * 100,
        status: (['active', 'queued', 'killed'] as const)[i % 3]!,
        properties: {
          ...(distros[i % 5] ? { os_distro: distros[i % 5]! } : {}),
          ...(i % 4 === 0 ? { hw_disk_bus: 'virtio' } : {}),
          ...(i % 9 === 0 ? { 'a=b': 'c' } : { a: 'b=c' }), // a key holding '=' is not another key's value
          'unicode-é': i % 2 ? 'ünï' : 'x',
        },
        tags: [...(i % 2 ? ['x86'] : []), ...(i % 3 === 0 ? ['64bit'] : []), ...(i % 5 === 0 ? ['gpu', 'x86'] : [])].filter((t, j, a) => a.indexOf(t) === j),
        created_at: iso(BASE + i * 500),
        updated_at: iso(BASE + (30 - i) * 700 + 123),
      }));
      for (const d of docs) await store.create(d);
      const queries: Partial<ListQuery>[] = [
        { properties: { os_distro: 'debian' } },
        { properties: { os_distro: 'debian', hw_disk_bus: 'virtio' } },
        { properties: { a: 'b=c' } },
        { properties: { 'a=b': 'c' } },
        { properties: { 'unicode-é': 'ünï' } },
        { properties: { os_distro: 'nothing' } },
        { tags: ['x86'] },
        { tags: ['x86', '64bit'] },
        { tags: ['gpu', 'x86'] },
        { tags: ['missing'] },
        { tags: ['x86'], properties: { os_distro: 'debian' }, where: { owner: 'p1', os_hidden: false } },
        { sizeMin: 500 },
        { sizeMax: 1200 },
        { sizeMin: 500, sizeMax: 1200, tags: ['x86'] },
        { sizeMin: 0 },
        { times: [{ field: 'created_at', gte: iso(BASE + 5000) }] },
        { times: [{ field: 'created_at', lt: iso(BASE + 5000) }] },
        { times: [{ field: 'created_at', gte: iso(BASE + 2000), lt: iso(BASE + 3000) }] },
        { times: [{ field: 'created_at', gte: iso(BASE + 2000), lt: iso(BASE + 3000), negate: true }] },
        { times: [{ field: 'updated_at', gte: iso(BASE + 7000) }, { field: 'created_at', lt: iso(BASE + 12_000) }] },
        { times: [{ field: 'updated_at', gte: iso(BASE + 7000), negate: true }], properties: { os_distro: 'ubuntu' } },
        { where: { name: ['img-1', 'img-3'], status: ['active', 'killed'] }, sizeMax: 2500 },
      ];
      for (const partial of queries) {
        for (const sort of [[{ key: 'created_at', dir: 'desc' }], [{ key: 'size', dir: 'asc' }, { key: 'name', dir: 'desc' }]] as SortSpec[][]) {
          const query = listQuery({ ...partial, sort, limit: 4 });
          const expected = referenceList(query, docs);
          assert.deepEqual(await allPages(store, query), expected, `query ${JSON.stringify(partial)} sort ${JSON.stringify(sort)}`);
        }
      }
      assert.ok(referenceList(listQuery({ properties: { os_distro: 'debian' } }), docs).length > 0, 'the fixture exercises the filters');
      // A replace rewrites what property and tag filters see.
      const changed = docs[1]!;
      await store.replace({ ...changed, revision: 2, properties: { os_distro: 'debian' }, tags: ['new'] }, 1);
      assert.ok((await store.list(listQuery({ properties: { os_distro: 'debian' }, limit: 100 }))).some((d) => d.id === changed.id));
      assert.ok(!(await store.list(listQuery({ tags: ['x86'], limit: 100 }))).some((d) => d.id === changed.id));
      assert.deepEqual((await store.list(listQuery({ tags: ['new'], limit: 100 }))).map((d) => d.id), [changed.id]);
      await store.purge(changed.id);
      assert.deepEqual(await store.list(listQuery({ tags: ['new'], limit: 100 })), []);
    });

    await t.test('list and count: keyword search (words ANDed, last word a prefix, case-insensitive) and galleries, with other filters and scopes', async () => {
      const store = await fresh();
      const names = ['Debian 12 Bookworm', 'debian-11 bullseye', 'Ubuntu 24.04 Noble', 'Fedora CoreOS', null, 'Debian GNU/Linux testing', 'Windows Server 2022'];
      const docs = Array.from({ length: 42 }, (_, i) => makeDoc({
        owner: `p${i % 3}`,
        name: names[i % names.length]!,
        visibility: (['private', 'public', 'shared'] as const)[i % 3]!,
        tags: [...(i % 2 ? ['Cloud-Init'] : []), ...(i % 5 === 0 ? ['GPU', 'x86_64'] : []), ...(i % 4 === 1 ? ['Virtualization-Host'] : [])],
        properties: {
          ...(i % 4 === 0 ? { description: `Minimal DEBIAN image build ${i}` } : {}),
          ...(i % 6 === 0 ? { os_distro: 'ubuntu' } : {}),
          ...(i % 7 < 3 ? { pir_gallery_id: `g${i % 7}` } : {}),
        },
        members: i % 3 === 2 && i % 2 === 0 ? [{ member_id: 'p1', status: 'accepted', created_at: 'x', updated_at: 'x' }] : [],
        created_at: iso(BASE + i * 1000),
      }));
      for (const d of docs) await store.create(d);
      const searches = [
        { words: [], prefix: 'debian' }, { words: [], prefix: 'deb' }, { words: ['debian'], prefix: '12' }, { words: ['debian'], prefix: 'b' },
        { words: ['cloud'], prefix: 'init' }, { words: [], prefix: 'gpu' }, { words: ['minimal'], prefix: 'debian' }, { words: [], prefix: 'ubuntu' },
        { words: ['nothing'], prefix: 'debian' }, { words: [], prefix: 'zz' }, { words: ['x86'], prefix: '64' }, { words: [], prefix: '2' },
        // Common words with a rare intersection (the SQLite store's FTS5 driving set, with a short and a long prefix).
        { words: ['gpu', 'windows'], prefix: 'ser' }, { words: ['gpu'], prefix: 'windows' }, { words: ['debian', 'ubuntu'], prefix: 'n' },
        // A last word longer than the MongoDB store's start tokens (12 characters): matched on its start, then whole.
        { words: [], prefix: 'virtualizatio' }, { words: ['host'], prefix: 'virtualization' }, { words: [], prefix: 'virtualizationx' },
      ];
      const scopes: Partial<ListQuery>[] = [
        {},
        { scope: { project_id: 'p1', admin: false }, visibility: undefined },
        { scope: { project_id: 'p2', admin: false }, visibility: 'all', memberStatus: 'all' },
      ];
      let nonEmpty = 0;
      for (const search of searches) {
        for (const scope of scopes) {
          for (const extra of [{}, { tags: ['Cloud-Init'] }, { where: { owner: 'p0' } }, { galleryIn: ['g1', 'g2'] }] as Partial<ListQuery>[]) {
            const query = listQuery({ ...scope, ...extra, search, limit: 3 });
            const expected = referenceList(query, docs);
            if (expected.length) nonEmpty++;
            assert.deepEqual(await allPages(store, query), expected, `search ${JSON.stringify(search)} ${JSON.stringify(scope)} ${JSON.stringify(extra)}`);
            assert.equal(await store.count(query), expected.length, `count of search ${JSON.stringify(search)} ${JSON.stringify(scope)} ${JSON.stringify(extra)}`);
            if (store.rankedList) {
              // sort=relevance in the store's query language agrees with core/search.ts `relevance`
              // over every match (ties: list order), page after page from the last image's position.
              const ranked = expected.map((id, i) => ({ id, i, score: relevance(docs.find((d) => d.id === id)!, search) }))
                .sort((a, b) => b.score - a.score || a.i - b.i).map((r) => r.id);
              assert.deepEqual(await rankedPages(store, { ...query, limit: 2 }), ranked, `ranked ${JSON.stringify(search)} ${JSON.stringify(scope)} ${JSON.stringify(extra)}`);
            }
          }
        }
      }
      assert.ok(nonEmpty > 40, `the fixture exercises the search (${nonEmpty} non-empty answers)`);
      for (const galleryIn of [['g0'], ['g1', 'g2'], [], ['none']]) {
        const query = listQuery({ galleryIn, limit: 5 });
        assert.deepEqual(await allPages(store, query), referenceList(query, docs), `gallery ${galleryIn.join(',')}`);
        assert.equal(await store.count(query), referenceList(query, docs).length);
      }
      // A replace rewrites the words and the gallery: the old ones no longer find the image.
      const changed = docs[0]!;
      await store.replace({ ...changed, revision: 2, name: 'Arch Linux', properties: { pir_gallery_id: 'g9' }, tags: [] }, 1);
      assert.deepEqual((await store.list(listQuery({ search: { words: ['arch'], prefix: 'lin' } }))).map((d) => d.id), [changed.id]);
      assert.ok(!(await store.list(listQuery({ search: { words: [], prefix: 'debian' } }))).some((d) => d.id === changed.id));
      assert.deepEqual((await store.list(listQuery({ galleryIn: ['g9'] }))).map((d) => d.id), [changed.id]);
      await store.purge(changed.id);
      assert.deepEqual(await store.list(listQuery({ search: { words: ['arch'], prefix: 'linux' } })), []);
    });

    await t.test('list: visibility scope for admin, owner, members by status, other projects, community', async () => {
      const store = await fresh();
      const member = (member_id: string, status: 'pending' | 'accepted' | 'rejected') => ({ member_id, status, created_at: iso(BASE), updated_at: iso(BASE) });
      const spec: [string, string, Partial<ImageDoc>][] = [
        ['a-private', 'A', { visibility: 'private' }],
        ['a-public', 'A', { visibility: 'public' }],
        ['a-community', 'A', { visibility: 'community' }],
        ['a-shared-none', 'A', { visibility: 'shared' }],
        ['a-shared-b-acc', 'A', { visibility: 'shared', members: [member('B', 'accepted'), member('C', 'pending')] }],
        ['a-shared-b-pen', 'A', { visibility: 'shared', members: [member('B', 'pending')] }],
        ['a-shared-b-rej', 'A', { visibility: 'shared', members: [member('B', 'rejected'), member('C', 'accepted')] }],
        ['a-private-b-acc', 'A', { visibility: 'private', members: [member('B', 'accepted')] }], // members of a non-shared image give nothing
        ['b-private', 'B', { visibility: 'private' }],
        ['b-community', 'B', { visibility: 'community' }],
        ['b-shared', 'B', { visibility: 'shared' }],
        ['admin-private', 'admin', { visibility: 'private' }],
        ['c-public-hidden', 'C', { visibility: 'public', os_hidden: true }],
        ['none-community', null as unknown as string, { visibility: 'community' }],
      ];
      const byName = new Map<string, ImageDoc>();
      for (const [name, owner, extra] of spec) {
        const doc = makeDoc({ name, owner, ...extra });
        byName.set(name, doc);
        await store.create(doc);
      }
      const docs = [...byName.values()];
      const names = async (partial: Partial<ListQuery>) => {
        const query = listQuery({ visibility: undefined, ...partial, sort: [{ key: 'name', dir: 'asc' }], limit: 3 });
        const got = await allPages(store, query);
        assert.deepEqual(got, referenceList(query, docs), `store and reference agree on ${JSON.stringify(partial)}`);
        return got.map((id) => docs.find((d) => d.id === id)!.name);
      };
      const admin = { project_id: 'admin', admin: true };
      const a = { project_id: 'A', admin: false };
      const b = { project_id: 'B', admin: false };
      const c = { project_id: 'C', admin: false };
      const d = { project_id: 'D', admin: false };
      // Admin: everything but other projects' community images by default.
      assert.deepEqual(await names({ scope: admin, visibility: undefined }), ['a-private', 'a-private-b-acc', 'a-public', 'a-shared-b-acc', 'a-shared-b-pen', 'a-shared-b-rej', 'a-shared-none', 'admin-private', 'b-private', 'b-shared', 'c-public-hidden']);
      assert.equal((await names({ scope: admin, visibility: 'all' })).length, spec.length);
      assert.deepEqual(await names({ scope: admin, visibility: 'community' }), ['a-community', 'b-community', 'none-community']);
      // The owner: its own images (its community ones too), and public ones.
      assert.deepEqual(await names({ scope: a, visibility: undefined }), ['a-community', 'a-private', 'a-private-b-acc', 'a-public', 'a-shared-b-acc', 'a-shared-b-pen', 'a-shared-b-rej', 'a-shared-none', 'c-public-hidden']);
      // A member: shared images by member_status (default accepted); never private ones.
      assert.deepEqual(await names({ scope: b, visibility: undefined }), ['a-public', 'a-shared-b-acc', 'b-community', 'b-private', 'b-shared', 'c-public-hidden']);
      assert.deepEqual(await names({ scope: b, memberStatus: 'pending' }), ['a-public', 'a-shared-b-pen', 'b-community', 'b-private', 'b-shared', 'c-public-hidden']);
      assert.deepEqual(await names({ scope: b, memberStatus: 'rejected' }), ['a-public', 'a-shared-b-rej', 'b-community', 'b-private', 'b-shared', 'c-public-hidden']);
      assert.deepEqual(await names({ scope: b, memberStatus: 'all', visibility: 'shared' }), ['a-shared-b-acc', 'a-shared-b-pen', 'a-shared-b-rej', 'b-shared']);
      assert.deepEqual(await names({ scope: c, visibility: 'shared' }), ['a-shared-b-rej']);
      assert.deepEqual(await names({ scope: c, visibility: 'shared', memberStatus: 'pending' }), ['a-shared-b-acc']);
      // Another project: public images only, community ones when asked for.
      assert.deepEqual(await names({ scope: d, visibility: undefined }), ['a-public', 'c-public-hidden']);
      assert.deepEqual(await names({ scope: d, visibility: 'community' }), ['a-community', 'b-community', 'none-community']);
      assert.deepEqual(await names({ scope: d, visibility: 'all' }), ['a-community', 'a-public', 'b-community', 'c-public-hidden', 'none-community']);
      assert.deepEqual(await names({ scope: d, visibility: 'private' }), []);
      assert.deepEqual(await names({ scope: b, visibility: 'private' }), ['b-private']);
      assert.deepEqual(await names({ scope: d, visibility: 'public', where: { os_hidden: false } }), ['a-public']);
      // Scope and filters together: the owner filter cannot reach past the scope.
      assert.deepEqual(await names({ scope: d, where: { owner: 'A' } }), ['a-public']);
      assert.deepEqual(await names({ scope: b, where: { owner: 'A' }, visibility: 'all', memberStatus: 'all' }), ['a-community', 'a-public', 'a-shared-b-acc', 'a-shared-b-pen', 'a-shared-b-rej']);
      // Membership changes are seen at once.
      const pending = byName.get('a-shared-b-pen')!;
      const accepted = { ...pending, revision: 2, members: [member('B', 'accepted')] };
      await store.replace(accepted, 1);
      docs[docs.indexOf(pending)] = accepted;
      assert.ok((await names({ scope: b })).includes('a-shared-b-pen'));
    });

    await t.test('list: paging is stable across pages with ties on every sort key', async () => {
      const store = await fresh();
      // 23 documents sharing created_at, name and size two by two: only the id orders them.
      const docs = Array.from({ length: 23 }, (_, i) => makeDoc({ name: `n${i % 2}`, size: 7, created_at: iso(BASE + (i % 2) * 1000), updated_at: iso(BASE) }));
      for (const d of docs) await store.create(d);
      for (const sort of [[{ key: 'created_at', dir: 'desc' }], [{ key: 'name', dir: 'asc' }, { key: 'size', dir: 'desc' }]] as SortSpec[][]) {
        const query = listQuery({ sort, limit: 5 });
        const pages = await allPages(store, query);
        assert.equal(new Set(pages).size, 23, 'no document twice, none missing');
        assert.deepEqual(pages, referenceList(query, docs));
      }
    });

    await t.test('purge removes the document and retires its id: it never names another image (OSSN-0075); purging a missing id is a no-op', async () => {
      const store = await fresh();
      const doc = makeDoc({ status: 'deleted', outbox: [] });
      await store.create(doc);
      await store.purge(doc.id);
      assert.equal(await store.get(doc.id), null);
      await store.purge(doc.id);
      const again = makeDoc({ id: doc.id, owner: 'someone-else' });
      await assert.rejects(store.create(again, { chosenId: true }), (error: Error) => error instanceof RetiredIdError && error instanceof ManifestConflictError);
      assert.equal(await store.get(doc.id), null);
    });

    await t.test('a create with a chosen id racing the purge of that id never leaves a document', async () => {
      const store = await fresh();
      for (let round = 0; round < 12; round++) {
        const doc = makeDoc({ status: 'deleted', outbox: [] });
        await store.create(doc);
        const claim = makeDoc({ id: doc.id, owner: 'claimer' });
        const [purged, created] = await Promise.allSettled([
          new Promise((resolve) => setTimeout(resolve, round % 4)).then(() => store.purge(doc.id)),
          store.create(claim, { chosenId: true }),
        ]);
        assert.equal(purged.status, 'fulfilled');
        assert.equal(created.status, 'rejected', `round ${round}: the claim was refused`);
        assert.ok((created as PromiseRejectedResult).reason instanceof ManifestConflictError);
        assert.equal(await store.get(doc.id), null, `round ${round}: nothing under the retired id`);
      }
    });
  });
}
