/** ImageService.listBatches: a page read a batch at a time is the page list() returns, races included. */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { Caller } from '../../../core/caller.js';
import type { ImageDoc } from '../../../schemas/image.js';
import { parseListQuery } from '../../../api/list-query.js';
import { domain, P } from './fixtures.js';

const Q: Caller = { project_id: 'q', user_id: 'v', roles: ['member'] };
const ids = (docs: ImageDoc[]) => docs.map((d) => d.id);

async function collect(batches: AsyncIterable<ImageDoc[]>): Promise<{ sizes: number[]; docs: ImageDoc[] }> {
  const sizes: number[] = [];
  const docs: ImageDoc[] = [];
  for await (const batch of batches) {
    sizes.push(batch.length);
    docs.push(...batch);
  }
  return { sizes, docs };
}

describe('ImageService.listBatches', () => {
  let d: Awaited<ReturnType<typeof domain>>;
  before(async () => {
    d = await domain();
    for (let i = 0; i < 130; i++) await d.images.create(P, { name: `img-${String(i).padStart(3, '0')}`, visibility: 'community', tags: i % 2 ? ['odd'] : [] });
  });
  after(() => d.close());

  it('reads the ids once and the documents in batches: the same page, in the same order, as list()', async () => {
    for (const raw of [{ limit: '120' }, { limit: '120', sort: 'name:asc' }, { limit: '40', tag: 'odd' }, { limit: '1000' }]) {
      const request = parseListQuery(raw);
      const { sizes, docs } = await collect(d.images.listBatches(P, request, 50));
      assert.deepEqual(ids(docs), ids(await d.images.list(P, request)), JSON.stringify(raw));
      assert.ok(sizes.every((n) => n > 0 && n <= 50), `batches ${sizes.join(', ')}`);
    }
    const first = await d.images.list(P, parseListQuery({ limit: '10' }));
    const request = parseListQuery({ limit: '75', marker: first.at(-1)!.id });
    const { sizes, docs } = await collect(d.images.listBatches(P, request, 50));
    assert.deepEqual(sizes, [50, 25]);
    assert.deepEqual(ids(docs), ids(await d.images.list(P, request)));
  });

  it('leaves out an image deleted or hidden between the two reads, and fills the page after the last one shown', async () => {
    const request = parseListQuery({ limit: '60', visibility: 'community', sort: 'name:asc' });
    const before = await d.images.list(Q, request);
    const store = d.store;
    const getMany = store.getMany.bind(store);
    let raced = false;
    store.getMany = async (batch) => {
      if (!raced) {
        raced = true;
        await d.images.update(P, batch[3]!, [{ op: 'replace', name: 'visibility', value: 'private' }]);
        await d.images.remove(P, batch[7]!);
      }
      return getMany(batch);
    };
    try {
      const { docs } = await collect(d.images.listBatches(Q, request, 50));
      assert.equal(docs.length, 60);
      assert.ok(!ids(docs).includes(before[3]!.id) && !ids(docs).includes(before[7]!.id));
      assert.deepEqual(ids(docs), ids(await d.images.list(Q, request)));
    } finally {
      store.getMany = getMany;
    }
  });

  it('without the store listing ids, each batch is one list query after the last image', async () => {
    const store = d.store;
    const listIds = store.listIds;
    (store as { listIds?: unknown }).listIds = undefined;
    try {
      const request = parseListQuery({ limit: '110', sort: 'name:desc' });
      const { sizes, docs } = await collect(d.images.listBatches(P, request, 50));
      assert.deepEqual(sizes, [50, 50, 10]);
      assert.deepEqual(ids(docs), ids(await d.images.list(P, request)));
    } finally {
      store.listIds = listIds;
    }
  });

  it('stops reading when the caller stops', async () => {
    const store = d.store;
    const getMany = store.getMany.bind(store);
    let reads = 0;
    store.getMany = async (batch) => {
      reads++;
      return getMany(batch);
    };
    try {
      for await (const batch of d.images.listBatches(P, parseListQuery({ limit: '120' }), 50)) {
        assert.equal(batch.length, 50);
        break;
      }
      assert.equal(reads, 1);
    } finally {
      store.getMany = getMany;
    }
  });
});
