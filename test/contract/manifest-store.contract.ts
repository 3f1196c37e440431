/** The ManifestStore contract: every adapter passes the same suite. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManifestConflictError } from '../../core/ports.js';
import type { ListQuery, ManifestStore, SortKey } from '../../core/ports.js';
import type { ImageDoc } from '../../schemas/image.js';
import { requireServices } from '../support/services.js';
import type { ServiceName } from '../support/services.js';
import { iso, makeDoc, outboxEvent } from './helpers.js';

export interface ContractOptions {
  /** Services the adapter needs: the suite is skipped (or fails under CI) without them. */
  services?: ServiceName[];
  /** Runs once after the suite (drop databases, topics, keys). */
  teardown?: () => Promise<void>;
}

/** Each call must return a new, empty store. */
export type MakeStore = () => ManifestStore | Promise<ManifestStore>;

const BASE = Date.parse('2024-05-01T00:00:00.000Z');

/** The order the port promises: nulls first ascending (last descending), ties broken by id. */
function reference(docs: ImageDoc[], key: SortKey, dir: 'asc' | 'desc'): string[] {
  const value = (d: ImageDoc) => (d as unknown as Record<string, string | number | null>)[key] ?? null;
  const sorted = [...docs].sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    if (va !== vb) {
      if (va === null) return -1;
      if (vb === null) return 1;
      return va < vb ? -1 : 1;
    }
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
  if (dir === 'desc') sorted.reverse();
  return sorted.map((d) => d.id);
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
        makeDoc({ owner: 'o1', status: 'active', name: 'a', visibility: 'public', disk_format: 'raw', container_format: 'bare' }),
        makeDoc({ owner: 'o1', status: 'queued', name: 'b', visibility: 'private', disk_format: 'qcow2', container_format: 'ovf' }),
        makeDoc({ owner: 'o2', status: 'active', name: null, visibility: 'shared', disk_format: null, container_format: null }),
        makeDoc({ owner: null, status: 'killed', name: 'a', visibility: 'community', disk_format: 'iso', container_format: 'bare' }),
      ];
      for (const d of docs) await store.create(d);
      const q = (where: ListQuery['where']) => store.list({ where, sortKey: 'id', sortDir: 'asc', limit: 100 }).then((r) => r.map((d) => d.id).sort());
      const ids = (...i: number[]) => i.map((n) => docs[n]!.id).sort();
      assert.deepEqual(await q({}), ids(0, 1, 2, 3));
      assert.deepEqual(await q({ owner: 'o1' }), ids(0, 1));
      assert.deepEqual(await q({ status: ['active', 'killed'] }), ids(0, 2, 3));
      assert.deepEqual(await q({ status: 'active', owner: 'o2' }), ids(2));
      assert.deepEqual(await q({ name: 'a' }), ids(0, 3));
      assert.deepEqual(await q({ visibility: ['public', 'community'] }), ids(0, 3));
      assert.deepEqual(await q({ disk_format: 'qcow2' }), ids(1));
      assert.deepEqual(await q({ container_format: ['bare'] }), ids(0, 3));
      assert.deepEqual(await q({ id: [docs[1]!.id, docs[2]!.id, 'nope'] }), ids(1, 2));
      assert.deepEqual(await q({ id: docs[3]!.id }), ids(3));
      assert.deepEqual(await q({ status: [] }), []);
      assert.deepEqual(await q({ owner: 'nobody' }), []);
      assert.deepEqual(await store.list({ where: {}, sortKey: 'id', sortDir: 'asc', limit: 0 }), []);
      const full = await store.list({ where: { owner: 'o2' }, sortKey: 'created_at', sortDir: 'desc', limit: 5 });
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
      const keys: SortKey[] = ['created_at', 'updated_at', 'name', 'size', 'status', 'id', 'disk_format'];
      for (const sortKey of keys) {
        for (const sortDir of ['asc', 'desc'] as const) {
          const expected = reference(docs, sortKey, sortDir);
          for (const limit of [4, 5]) {
            const seen: string[] = [];
            let after: ListQuery['after'];
            for (let page = 0; page < 20; page++) {
              const got = await store.list({ where: {}, sortKey, sortDir, limit, ...(after ? { after } : {}) });
              assert.ok(got.length <= limit);
              seen.push(...got.map((d) => d.id));
              if (got.length < limit) break;
              const last = got[got.length - 1]!;
              after = { value: (last as unknown as Record<string, string | number | null>)[sortKey] ?? null, id: last.id };
            }
            assert.deepEqual(seen, expected, `sort ${sortKey} ${sortDir}, pages of ${limit}`);
          }
        }
      }
      // Filters and keyset together.
      const active = docs.filter((d) => d.status === 'active');
      const expected = reference(active, 'name', 'asc');
      const first = await store.list({ where: { status: 'active' }, sortKey: 'name', sortDir: 'asc', limit: 2 });
      const last = first[1]!;
      const rest = await store.list({ where: { status: 'active' }, sortKey: 'name', sortDir: 'asc', limit: 100, after: { value: last.name, id: last.id } });
      assert.deepEqual([...first, ...rest].map((d) => d.id), expected);
    });

    await t.test('purge removes the document; purging a missing id is a no-op', async () => {
      const store = await fresh();
      const doc = makeDoc({ status: 'deleted', outbox: [] });
      await store.create(doc);
      await store.purge(doc.id);
      assert.equal(await store.get(doc.id), null);
      await store.purge(doc.id);
      await store.create(doc); // the id is free again
      assert.deepEqual(await store.get(doc.id), doc);
    });
  });
}
