/**
 * The real Fastify app over a given ManifestStore, for in-process route tests (app.inject) and
 * benchmarks: the same ImageService, Manifest and routes as `pir serve`, no listening socket.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../api/app.js';
import { FaultHooks } from '../../core/fault-hooks.js';
import { ImageService } from '../../core/image-service.js';
import { Manifest } from '../../core/manifest.js';
import { OutboxRelay } from '../../core/outbox-relay.js';
import type { ManifestStore } from '../../core/ports.js';
import { MemoryEventBus } from '../../infra/embedded/memory-event-bus.js';
import { FsBlobStore } from '../../infra/storage/fs-blob-store.js';
import { HashPool } from '../../ingest/hashing/index.js';

export interface InProcessApp {
  app: FastifyInstance;
  images: ImageService;
  manifest: Manifest;
  token: string;
  close(): Promise<void>;
}

export interface InProcessAppOptions {
  token?: string;
  /** Runs before the app is ready (to add hooks). */
  setup?: (app: FastifyInstance) => void;
}

export async function inProcessApp(store: ManifestStore, opts: InProcessAppOptions = {}): Promise<InProcessApp> {
  const dir = mkdtempSync(join(tmpdir(), 'pir-app-'));
  const log = pino({ level: 'silent' });
  const blobs = new FsBlobStore(dir);
  await blobs.init();
  const bus = new MemoryEventBus();
  const manifest = new Manifest(store, new OutboxRelay(store, bus, log), new FaultHooks([]));
  const images = new ImageService(manifest, blobs, { stageDeadlineSeconds: 900 });
  const hashes = new HashPool();
  const token = opts.token ?? 'test-token';
  const app = await buildApp({ images, manifest, blobs, hashes, upload: { maxImageSize: 1 << 30, heartbeatMs: 30_000 }, adminToken: token, log });
  opts.setup?.(app);
  await app.ready();
  return {
    app, images, manifest, token,
    async close() {
      await app.close();
      await hashes.close();
      await bus.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
