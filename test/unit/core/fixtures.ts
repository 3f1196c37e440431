/** In-process wiring of the domain on embedded adapters, for unit tests of core/ and workers/. */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Caller } from '../../../core/caller.js';
import { FaultHooks } from '../../../core/fault-hooks.js';
import { ImageService } from '../../../core/image-service.js';
import { Manifest } from '../../../core/manifest.js';
import { OutboxRelay } from '../../../core/outbox-relay.js';
import type { PirEvent } from '../../../schemas/events.js';
import { MemoryEventBus } from '../../../infra/embedded/memory-event-bus.js';
import { SqliteManifestStore } from '../../../infra/embedded/sqlite-manifest-store.js';
import { FsBlobStore } from '../../../infra/storage/fs-blob-store.js';

export const silent = pino({ level: 'silent' });

/** A caller of project `p` with the member role: the owner of the images unit tests create. */
export const P: Caller = { project_id: 'p', user_id: 'u', roles: ['member'] };


export async function domain() {
  const dir = await mkdtemp(join(tmpdir(), 'pir-unit-'));
  const store = new SqliteManifestStore({ path: ':memory:' });
  const bus = new MemoryEventBus();
  const published: PirEvent[] = [];
  await bus.subscribe('test-observer', async (e) => { published.push(e); });
  const relay = new OutboxRelay(store, bus, silent);
  const manifest = new Manifest(store, relay, FaultHooks.none());
  const blobs = new FsBlobStore(dir);
  await blobs.init();
  const images = new ImageService(manifest, blobs, { stageDeadlineSeconds: 60 });
  return { dir, store, bus, relay, manifest, blobs, images, published, close: async () => { await bus.close(); await store.close(); } };
}
