/**
 * Gives quota back when images settle, from the durable event stream (consumer group
 * `pir-quota`, at least once): whichever process made the image active, killed it, aborted its
 * upload or deleted it, the holds follow. Settling is idempotent (core/quota.ts).
 */
import type { Logger } from 'pino';
import type { Manifest } from '../core/manifest.js';
import type { EventBus } from '../core/ports.js';
import type { Quotas } from '../core/quota.js';
import type { PirEvent } from '../schemas/events.js';

const SETTLING = new Set(['image.active', 'image.killed', 'image.upload.aborted']);

export const QUOTA_SETTLER_GROUP = 'pir-quota';

export async function startQuotaSettler(bus: EventBus, manifest: Manifest, quotas: Quotas, log: Logger): Promise<void> {
  await bus.subscribe(QUOTA_SETTLER_GROUP, async (event: PirEvent) => {
    if (event.type === 'image.deleted') {
      // The document may already be purged: the event names the project.
      const owner = (event as PirEvent<'image.deleted'>).data.owner;
      if (owner !== undefined) await quotas.releaseAll(owner, event.image_id);
      else await quotas.settle(event.image_id, () => manifest.get(event.image_id));
      return;
    }
    if (!SETTLING.has(event.type)) return;
    await quotas.settle(event.image_id, () => manifest.get(event.image_id));
    log.debug({ image_id: event.image_id, event: event.type }, 'quota settled');
  });
}
