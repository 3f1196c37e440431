/**
 * Transactional outbox, second half: events are written into the image document with the
 * state change that caused them; this relay publishes them to the bus and acknowledges them.
 * A crash between the two leaves them in the document, where `sweep` finds them again.
 *
 * Acknowledging is a write of its own, so it waits a little (`ackDelayMs`): if this process
 * writes the same image meanwhile, that write drops the published events itself (see
 * `publishedEvents`) and no separate acknowledgement is needed.
 */
import type { Logger } from 'pino';
import type { ImageDoc } from '../schemas/image.js';
import type { PirEvent } from '../schemas/events.js';
import type { EventBus, ManifestStore } from './ports.js';

export class OutboxRelay {
  /** Per-image chains, so one image's events leave this process in the order they were written. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Published but not yet acknowledged event ids, per image, with the timer that will ack them. */
  private readonly unacked = new Map<string, { ids: Set<string>; timer: NodeJS.Timeout | null; purge: boolean }>();
  /** What else goes with a purged image (its metadata revisions: core/catalog.ts). */
  private purgeHooks: ((imageId: string) => Promise<void>)[] = [];

  constructor(
    private readonly store: ManifestStore,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly ackDelayMs = 200,
  ) {}

  /** Publishes the pending events of a document just written; failures are left to the sweeper. */
  flush(doc: ImageDoc): Promise<void> {
    const pending = doc.outbox.filter((e) => !this.unacked.get(doc.id)?.ids.has(e.id)) as PirEvent[];
    if (pending.length === 0) return this.chains.get(doc.id) ?? Promise.resolve();
    return this.chain(doc.id, async () => {
      await this.bus.publish(pending);
      this.scheduleAck(doc.id, pending.map((e) => e.id), doc.status === 'deleted');
    });
  }

  /** Runs `hook` just before an image's document is purged; a failing hook is logged and does not keep the document. */
  onPurge(hook: (imageId: string) => Promise<void>): void {
    this.purgeHooks.push(hook);
  }

  /** Event ids of this image that are published and may be dropped from its outbox by any write. */
  publishedEvents(imageId: string): ReadonlySet<string> {
    return this.unacked.get(imageId)?.ids ?? EMPTY;
  }

  /** A write of the image dropped these published events: they need no acknowledgement now. */
  acknowledgedByWrite(imageId: string, eventIds: Iterable<string>): void {
    const entry = this.unacked.get(imageId);
    if (!entry) return;
    for (const id of eventIds) entry.ids.delete(id);
    if (entry.ids.size === 0 && !entry.purge) {
      if (entry.timer) clearTimeout(entry.timer);
      this.unacked.delete(imageId);
    }
  }

  /** Relays events that a crash (or a failed publish) left in documents older than `graceMs`. */
  async sweep(graceMs: number, limit = 500): Promise<number> {
    const before = new Date(Date.now() - graceMs).toISOString();
    const docs = await this.store.withPendingEvents(before, limit);
    for (const doc of docs) await this.flush(doc);
    return docs.length;
  }

  /** Waits for every relay started in this process and acknowledges everything (graceful shutdown). */
  async drain(): Promise<void> {
    await Promise.all([...this.chains.values()]);
    await Promise.all([...this.unacked.keys()].map((id) => this.ackNow(id)));
  }

  private scheduleAck(imageId: string, ids: string[], purge: boolean): void {
    let entry = this.unacked.get(imageId);
    if (!entry) {
      entry = { ids: new Set(), timer: null, purge: false };
      this.unacked.set(imageId, entry);
    }
    for (const id of ids) entry.ids.add(id);
    entry.purge ||= purge;
    if (!entry.timer) {
      entry.timer = setTimeout(() => { void this.ackNow(imageId); }, this.ackDelayMs);
      entry.timer.unref();
    }
  }

  private ackNow(imageId: string): Promise<void> {
    return this.chain(imageId, async () => {
      const entry = this.unacked.get(imageId);
      if (!entry) return;
      this.unacked.delete(imageId);
      if (entry.timer) clearTimeout(entry.timer);
      if (entry.ids.size > 0) await this.store.ackEvents(imageId, [...entry.ids]);
      if (entry.purge) {
        for (const hook of this.purgeHooks) {
          await hook(imageId).catch((error: unknown) => this.log.warn({ err: error, image_id: imageId }, 'purge hook failed; the image is purged anyway'));
        }
        await this.store.purge(imageId);
      }
    });
  }

  private chain(imageId: string, step: () => Promise<void>): Promise<void> {
    const previous = this.chains.get(imageId) ?? Promise.resolve();
    const next = previous
      .then(step)
      .catch((error: unknown) => this.log.warn({ err: error, image_id: imageId }, 'outbox relay failed; the sweeper will retry'));
    this.chains.set(imageId, next);
    void next.finally(() => {
      if (this.chains.get(imageId) === next) this.chains.delete(imageId);
    });
    return next;
  }
}

const EMPTY: ReadonlySet<string> = new Set();
