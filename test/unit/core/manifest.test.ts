import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { event } from '../../../core/events.js';
import { Manifest } from '../../../core/manifest.js';
import { OutboxRelay } from '../../../core/outbox-relay.js';
import { FaultHooks } from '../../../core/fault-hooks.js';
import type { EventBus } from '../../../core/ports.js';
import { waitFor } from '../../support/pir-process.js';
import { P, domain, silent } from './fixtures.js';

describe('Manifest (compare-and-set with a transactional outbox)', () => {
  it('lets a later write of the image acknowledge events this process already published', async () => {
    const d = await domain();
    const image = await d.images.create(P, { name: 'n' });
    await waitFor(() => d.published.length === 1, 2000, 'image.created published');
    // Before the delayed ack fires, the next write drops the published event itself.
    const { doc } = await d.manifest.update(image.id, (draft) => { draft.tags.push('x'); return []; });
    assert.deepEqual(doc.outbox, []);
    assert.equal(d.relay.publishedEvents(image.id).size, 0, 'nothing left to acknowledge');
    await d.close();
  });

  it('applies concurrent changes one after the other, none lost', async () => {
    const d = await domain();
    const image = await d.images.create(P, { name: 'n' });
    await Promise.all(Array.from({ length: 20 }, (_, i) => d.manifest.update(image.id, (draft) => {
      draft.tags.push(`t${i}`);
      return [];
    })));
    const stored = (await d.manifest.get(image.id))!;
    assert.equal(stored.tags.length, 20);
    assert.equal(stored.revision, 21);
    await d.close();
  });

  it('writes events with the change and relays them in order, then empties the outbox', async () => {
    const d = await domain();
    const image = await d.images.create(P, { name: 'n' });
    await d.manifest.update(image.id, () => [event('image.deleted', {})]);
    await waitFor(() => d.published.length === 2, 2000, 'two events');
    assert.deepEqual(d.published.map((e) => e.type), ['image.created', 'image.deleted']);
    assert.ok(d.published.every((e) => e.image_id === image.id && e.version === 1 && e.id.length > 0));
    await waitFor(async () => (await d.manifest.get(image.id))?.outbox.length === 0, 2000, 'outbox emptied');
    await d.close();
  });

  it('leaves events in the document when the publish fails, and the sweeper relays them later', async () => {
    const d = await domain();
    let down = true;
    const flaky: EventBus = {
      publish: async (events) => { if (down) throw new Error('broker down'); await d.bus.publish(events); },
      subscribe: (g, h) => d.bus.subscribe(g, h),
      watch: (h) => d.bus.watch(h),
      close: async () => {},
    };
    const relay = new OutboxRelay(d.store, flaky, silent);
    const manifest = new Manifest(d.store, relay, FaultHooks.none());
    const image = await manifest.create({ ...(await d.images.create(P, {})), id: '00000000-0000-4000-8000-000000000001', outbox: [] }, [event('image.created', { name: null, disk_format: null, container_format: null })]);
    await relay.drain();
    await d.relay.drain(); // the other relay acknowledges what it published (the template image)
    assert.equal((await d.store.get(image.id))!.outbox.length, 1, 'kept for later');
    down = false;
    await new Promise((r) => setTimeout(r, 5)); // the sweep takes documents written strictly before now
    assert.equal(await relay.sweep(0), 1);
    await waitFor(() => d.published.some((e) => e.image_id === image.id), 2000, 'relayed by the sweeper');
    await relay.drain(); // acknowledgements are delayed a little, to be folded into later writes
    assert.equal((await d.store.get(image.id))!.outbox.length, 0);
    await d.close();
  });

  it('refuses a status change the state machine does not allow, and writes nothing', async () => {
    const d = await domain();
    const image = await d.images.create(P, { name: 'n', disk_format: 'raw', container_format: 'bare' });
    await assert.rejects(d.images.importStaged(P, image.id), /glance-direct import needs data staged/);
    assert.equal((await d.manifest.get(image.id))!.revision, 1);
    await d.close();
  });
});
