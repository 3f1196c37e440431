/** Fixtures and timing helpers shared by the contract suites. */
import { randomUUID } from 'node:crypto';
import type { ImageDoc, OutboxEvent } from '../../schemas/image.js';
import type { EventType, PirEvent } from '../../schemas/events.js';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true or the deadline passes; fails with `what`. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 10_000, everyMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Resolves with the promise's value, or rejects after `ms` (and leaves no timer behind). */
export async function within<T>(what: string, promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export function iso(msSinceEpoch: number): string {
  return new Date(msSinceEpoch).toISOString();
}

export function makeEvent(imageId: string, seq = 0, type: EventType = 'image.stage.started', extra: Partial<PirEvent> = {}): PirEvent {
  return {
    id: randomUUID(),
    type,
    version: 1,
    image_id: imageId,
    occurred_at: new Date().toISOString(),
    data: { run: 1, stage: 'unpack', attempt: seq } as PirEvent['data'],
    ...extra,
  };
}

export function makeDoc(overrides: Partial<ImageDoc> = {}): ImageDoc {
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    revision: 1,
    name: 'cirros',
    owner: 'tenant-a',
    status: 'queued',
    visibility: 'shared',
    protected: false,
    os_hidden: false,
    disk_format: 'qcow2',
    container_format: 'bare',
    min_disk: 0,
    min_ram: 0,
    size: null,
    virtual_size: null,
    checksum: null,
    os_hash_algo: null,
    os_hash_value: null,
    tags: ['a', 'b'],
    properties: { hw_disk_bus: 'virtio', 'unicode-é': 'ünï' },
    created_at: now,
    updated_at: now,
    expected: {},
    upload: null,
    staging: null,
    pipeline: null,
    failure: null,
    outbox: [],
    ...overrides,
  };
}

export function outboxEvent(imageId: string, type: EventType = 'image.created'): OutboxEvent {
  const e = makeEvent(imageId, 0, type);
  return { id: e.id, type: e.type, version: e.version, image_id: e.image_id, occurred_at: e.occurred_at, data: e.data as Record<string, unknown> };
}
