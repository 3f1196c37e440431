/**
 * Transactional outbox, second half: events are written into the image document with the
 * state change that caused them; this relay publishes them to the bus and acknowledges them.
 * A crash between the two leaves them in the document, where `sweep` finds them again.
 */
import type { Logger } from 'pino';
import type { ImageDoc } from '../schemas/image.js';
import type { PirEvent } from '../schemas/events.js';
import type { EventBus, ManifestStore } from './ports.js';

export class OutboxRelay {
  /** Per-image chains, so one image's events leave this process in the order they were written. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(
    private readonly store: ManifestStore,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {}

  /** Publishes the pending events of a document just written; failures are left to the sweeper. */
  flush(doc: ImageDoc): Promise<void> {
    if (doc.outbox.length === 0) return Promise.resolve();
    const previous = this.chains.get(doc.id) ?? Promise.resolve();
    const next = previous
      .then(() => this.relay(doc.id, doc.outbox as PirEvent[], doc.status === 'deleted'))
      .catch((error: unknown) => this.log.warn({ err: error, image_id: doc.id }, 'outbox relay failed; the sweeper will retry'));
    this.chains.set(doc.id, next);
    void next.finally(() => {
      if (this.chains.get(doc.id) === next) this.chains.delete(doc.id);
    });
    return next;
  }

  /** Relays events that a crash (or a failed publish) left in documents older than `graceMs`. */
  async sweep(graceMs: number, limit = 500): Promise<number> {
    const before = new Date(Date.now() - graceMs).toISOString();
    const docs = await this.store.withPendingEvents(before, limit);
    for (const doc of docs) await this.flush(doc);
    return docs.length;
  }

  /** Waits for every relay started in this process (graceful shutdown). */
  async drain(): Promise<void> {
    await Promise.all([...this.chains.values()]);
  }

  private async relay(imageId: string, events: PirEvent[], purgeAfter: boolean): Promise<void> {
    await this.bus.publish(events);
    await this.store.ackEvents(imageId, events.map((e) => e.id));
    if (purgeAfter) await this.store.purge(imageId);
  }
}
