/** The MetadefStore contract (metadata definition namespaces and resource types): every adapter passes the same suite. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { MetadefNameTakenError, type MetadefNamespace, type MetadefStore } from '../../core/metadef-ports.js';
import { requireServices, type ServiceName } from '../support/services.js';

/** A fresh store with no data of its own (a new database, file or prefix). */
export type MakeMetadefStore = () => MetadefStore | Promise<MetadefStore>;

export interface MetadefContractOptions {
  services?: ServiceName[];
  teardown?: () => Promise<void>;
  /** A second instance on `store`'s data, as another process would open it: the concurrent-writers case races the two. */
  peer?: (store: MetadefStore) => MetadefStore | Promise<MetadefStore>;
}

/** A namespace with a bit of everything: nested property schemas, arrays, objects, tags, associations. */
function namespace(name: string): MetadefNamespace {
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    namespace: name,
    display_name: `${name} (display)`,
    description: 'CPU pinning and friends',
    visibility: 'public',
    protected: false,
    owner: 'admin',
    created_at: now,
    updated_at: now,
    resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'hw_', created_at: now, updated_at: now }, { name: 'OS::Nova::Flavor', prefix: 'hw:', properties_target: 'scheduler', created_at: now, updated_at: now }],
    properties: {
      cpu_policy: { title: 'CPU Policy', type: 'string', enum: ['shared', 'dedicated'], default: 'shared' },
      cpu_thread_policy: { title: 'Thread policy', type: 'string', enum: ['isolate', 'prefer', 'require'] },
      numa_nodes: { title: 'NUMA nodes', type: 'integer', minimum: 1, maximum: 8 },
      features: { title: 'Features', type: 'array', items: { type: 'string', enum: ['aes', 'avx'] }, uniqueItems: true },
      nothing: { title: 'Untyped', type: null },
    },
    objects: [{
      name: 'CPU Limits',
      description: 'limits',
      required: ['quota'],
      properties: { quota: { title: 'Quota', type: 'integer', minimum: -1 }, period: { title: 'Period', type: 'integer', readonly: false, operators: ['<or>'] } },
      created_at: now,
      updated_at: now,
    }],
    tags: [{ name: 'fast', created_at: now, updated_at: now }, { name: 'pinned', created_at: now, updated_at: now }],
    revision: 1,
  };
}

/** The next revision of `ns`, with `change` applied. */
function next(ns: MetadefNamespace, change: Partial<MetadefNamespace> = {}): MetadefNamespace {
  return { ...ns, updated_at: new Date().toISOString(), ...change, revision: ns.revision + 1 };
}

export function metadefStoreContract(name: string, makeStore: MakeMetadefStore, opts: MetadefContractOptions = {}): void {
  test(`MetadefStore contract: ${name}`, { timeout: 120_000 }, async (t) => {
    if (!(await requireServices(t, opts.services ?? []))) return;
    const opened: MetadefStore[] = [];
    const fresh = async () => {
      const store = await makeStore();
      opened.push(store);
      return store;
    };
    t.after(async () => {
      for (const s of opened) await s.close();
      await opts.teardown?.();
    });

    await t.test('create, get, list: documents round-trip whole; a taken name is refused; names are case-sensitive', async () => {
      const store = await fresh();
      assert.deepEqual(await store.list(), []);
      const cpu = namespace('OS::Compute::CPUPinning');
      const rng = namespace('OS::Compute::RandomNumberGenerator');
      await store.create(cpu);
      await store.create(rng);
      assert.deepEqual(await store.get(cpu.namespace), cpu);
      assert.deepEqual(await store.get(rng.namespace), rng);
      assert.equal(await store.get('OS::Compute::Missing'), null);
      assert.deepEqual((await store.list()).sort((a, b) => a.namespace.localeCompare(b.namespace)), [cpu, rng]);

      await assert.rejects(store.create(namespace(cpu.namespace)), MetadefNameTakenError);
      assert.deepEqual(await store.get(cpu.namespace), cpu, 'a refused create changes nothing');
      assert.equal((await store.list()).length, 2);

      assert.equal(await store.get('os::compute::cpupinning'), null);
      const lower = namespace('os::compute::cpupinning');
      await store.create(lower); // another name, by case
      assert.deepEqual(await store.get(lower.namespace), lower);
      assert.deepEqual(await store.get(cpu.namespace), cpu);
    });

    await t.test('replace: the current revision wins and is read back by get and list; a stale one is refused', async () => {
      const store = await fresh();
      const ns = namespace('OS::Glance::CommonImageProperties');
      await store.create(ns);
      const v2 = next(ns, { description: 'changed', properties: { ...ns.properties, os_distro: { title: 'OS Distro', type: 'string', pattern: '^[a-z]+$' } }, tags: [] });
      assert.equal(await store.replace(ns, v2), true);
      assert.deepEqual(await store.get(ns.namespace), v2);
      assert.deepEqual(await store.list(), [v2]);
      assert.equal(await store.replace(ns, next(ns, { description: 'stale' })), false, 'revision 1 is gone');
      assert.deepEqual(await store.get(ns.namespace), v2);
      const v3 = next(v2, { objects: [] });
      assert.equal(await store.replace(v2, v3), true);
      assert.deepEqual(await store.get(ns.namespace), v3);
    });

    await t.test('rename: frees the old name and takes the new; onto a taken name it is refused and nothing changes', async () => {
      const store = await fresh();
      const a = namespace('A');
      const b = namespace('B');
      await store.create(a);
      await store.create(b);
      await assert.rejects(store.replace(b, next(b, { namespace: 'A' })), MetadefNameTakenError);
      assert.deepEqual(await store.get('A'), a);
      assert.deepEqual(await store.get('B'), b, 'a refused rename changes nothing');

      const c = next(b, { namespace: 'C' });
      assert.equal(await store.replace(b, c), true);
      assert.equal(await store.get('B'), null);
      assert.deepEqual(await store.get('C'), c);
      const b2 = namespace('B');
      await store.create(b2); // the old name is free again
      assert.deepEqual(await store.get('B'), b2);
      assert.deepEqual((await store.list()).map((x) => x.namespace).sort(), ['A', 'B', 'C']);
      assert.equal(await store.replace(b, next(b, { namespace: 'D' })), false, 'a stale rename');
      assert.equal(await store.get('D'), null);
      const back = next(c, { namespace: 'C2' });
      assert.equal(await store.replace(c, back), true);
      assert.equal(await store.replace(back, next(back, { namespace: 'C' })), true, 'a name can come back to the namespace that left it');
      assert.equal((await store.get('C'))?.id, b.id);
    });

    await t.test('remove: frees the name; a second remove and a later replace find nothing', async () => {
      const store = await fresh();
      const ns = namespace('OS::Cinder::Volumetype');
      await store.create(ns);
      assert.equal(await store.remove(ns), true);
      assert.equal(await store.get(ns.namespace), null);
      assert.deepEqual(await store.list(), []);
      assert.equal(await store.remove(ns), false);
      assert.equal(await store.replace(ns, next(ns, { description: 'too late' })), false);
      assert.equal(await store.get(ns.namespace), null);
      const again = namespace(ns.namespace);
      await store.create(again);
      assert.deepEqual(await store.get(ns.namespace), again);
      assert.deepEqual(await store.list(), [again]);
    });

    await t.test('concurrency: of 8 writers of one revision exactly one wins; of 8 creates of one name exactly one', async () => {
      const store = await fresh();
      const peer = opts.peer ? await opts.peer(store) : store;
      if (peer !== store) opened.push(peer);
      const ns = namespace('OS::Raced');
      await store.create(ns);
      const writers = Array.from({ length: 8 }, (_, i) => ({ via: i % 2 ? peer : store, next: next(ns, { description: `writer ${i}` }) }));
      const won = await Promise.all(writers.map((w) => w.via.replace(ns, w.next)));
      assert.equal(won.filter(Boolean).length, 1, `winners: ${JSON.stringify(won)}`);
      const winner = writers[won.indexOf(true)]!.next;
      assert.deepEqual(await store.get(ns.namespace), winner);
      assert.deepEqual(await peer.get(ns.namespace), winner);

      const creates = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => (i % 2 ? peer : store).create(namespace('OS::Contested'))));
      assert.equal(creates.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of creates) if (r.status === 'rejected') assert.ok(r.reason instanceof MetadefNameTakenError, String(r.reason));
      assert.deepEqual((await peer.list()).map((x) => x.namespace).sort(), ['OS::Contested', 'OS::Raced']);
    });

    await t.test('resource types: the first record of a name stays; listed by name', async () => {
      const store = await fresh();
      assert.deepEqual(await store.resourceTypes(), []);
      const image = { name: 'OS::Glance::Image', created_at: '2024-01-01T00:00:00.000Z', updated_at: '2024-01-01T00:00:00.000Z' };
      await store.addResourceType(image);
      await store.addResourceType({ ...image, created_at: '2025-01-01T00:00:00.000Z', updated_at: '2025-01-01T00:00:00.000Z' });
      const flavor = { name: 'OS::Nova::Flavor', created_at: '2024-02-01T00:00:00.000Z', updated_at: '2024-02-01T00:00:00.000Z' };
      const cinder = { name: 'OS::Cinder::Volume', created_at: '2024-03-01T00:00:00.000Z', updated_at: '2024-03-01T00:00:00.000Z' };
      await store.addResourceType(flavor);
      await store.addResourceType(cinder);
      assert.deepEqual(await store.resourceTypes(), [cinder, image, flavor]);
    });
  });
}
