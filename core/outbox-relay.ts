/**
 * Transactional outbox, second half: events are written into the image document with the
 * state change that caused them; this relay publishes them to the bus and acknowledges them.
 * A crash between the two leaves them in the document, where `sweep` finds them again.
 *
 * Acknowledging is a write of its own, so it waits a little (`ackDelayMs`): if this process
 * writes the same image meanwhile, that write drops the published events itself (see
 * `publishedEvents`) and no separate acknowledgement is needed. Where writes are costly
 * (MongoDB-wire) the delay is longer, so the next stage's write usually does it; an ack whose
 * events a write already dropped finds nothing to do and writes nothing.
 */
import type { Logger } from 'pino';
import type { ImageDoc } from '../schemas/image.js';
import type { PirEvent } from '../schemas/events.js';
import type { EventBus, ManifestStore } from './ports.js';

export class OutboxRelay {
  /** Per-image chains, so one image's events leave this process in the order they were written. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Published but not yet acknowledged event ids, per image, with the timer that will ack them. */
  private readonly unacked = new Map<string, { ids: Set<string>; timer: NodeJS.Timeout | null; purge: boolean; addedBy: number }>();
  /** What else goes with a purged image (its metadata revisions: core/catalog.ts). */
  private purgeHooks: ((imageId: string) => Promise<void>)[] = [];
  /** Event ids read back from the bus (published by any process), per image, oldest image first. */
  private readonly seen = new Map<string, Set<string>>();

  constructor(
    private readonly store: ManifestStore,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly ackDelayMs = 200,
    private readonly inFlightAckDelayMs = ackDelayMs,
  ) {}

  /** Publishes the pending events of a document just written; failures are left to the sweeper. */
  flush(doc: ImageDoc): Promise<void> {
    const pending = doc.outbox.filter((e) => !this.unacked.get(doc.id)?.ids.has(e.id)) as PirEvent[];
    if (pending.length === 0) return this.chains.get(doc.id) ?? Promise.resolve();
    return this.chain(doc.id, async () => {
      await this.bus.publish(pending);
      this.scheduleAck(doc.id, pending.map((e) => e.id), doc.revision, doc.status === 'deleted', IN_FLIGHT.has(doc.status));
    });
  }

  /** Runs `hook` just before an image's document is purged; a failing hook is logged and does not keep the document. */
  onPurge(hook: (imageId: string) => Promise<void>): void {
    this.purgeHooks.push(hook);
  }

  /**
   * Event ids of this image that are published and may be dropped from its outbox by any write:
   * those this relay published, and those another process published that this one read back
   * from the bus (notePublished).
   */
  publishedEvents(imageId: string): ReadonlySet<string> {
    const mine = this.unacked.get(imageId)?.ids;
    const seen = this.seen.get(imageId);
    if (!seen) return mine ?? EMPTY;
    if (!mine) return seen;
    return new Set([...mine, ...seen]);
  }

  /**
   * An event of this image came back from the bus: it is published, wherever it was written.
   * The next write of the image in this process drops it from the outbox, which saves the
   * writer's process a separate acknowledgement (in distributed mode, the api's events are
   * dropped by the worker's next stage write). Bounded: the oldest images are forgotten.
   */
  notePublished(imageId: string, eventId: string): void {
    let ids = this.seen.get(imageId);
    if (!ids) {
      ids = new Set();
      this.seen.set(imageId, ids);
      if (this.seen.size > SEEN_IMAGES) this.seen.delete(this.seen.keys().next().value!);
    }
    ids.add(eventId);
  }

  /** A write of the image dropped these published events: they need no acknowledgement now. */
  acknowledgedByWrite(imageId: string, eventIds: Iterable<string>): void {
    const seen = this.seen.get(imageId);
    if (seen) {
      for (const id of eventIds) seen.delete(id);
      if (seen.size === 0) this.seen.delete(imageId);
    }
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

  /** `inFlight`: the image's pipeline is running, so its next write (which acks) is near: wait longer. */
  private scheduleAck(imageId: string, ids: string[], addedBy: number, purge: boolean, inFlight: boolean): void {
    let entry = this.unacked.get(imageId);
    if (!entry) {
      entry = { ids: new Set(), timer: null, purge: false, addedBy };
      this.unacked.set(imageId, entry);
    }
    for (const id of ids) entry.ids.add(id);
    entry.addedBy = Math.max(entry.addedBy, addedBy);
    entry.purge ||= purge;
    if (!entry.timer) {
      entry.timer = setTimeout(() => { void this.ackNow(imageId); }, inFlight ? this.inFlightAckDelayMs : this.ackDelayMs);
      entry.timer.unref();
    }
  }

  private ackNow(imageId: string): Promise<void> {
    return this.chain(imageId, async () => {
      const entry = this.unacked.get(imageId);
      if (!entry) return;
      this.unacked.delete(imageId);
      if (entry.timer) clearTimeout(entry.timer);
      if (entry.ids.size > 0) await this.store.ackEvents(imageId, [...entry.ids], entry.addedBy);
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
const SEEN_IMAGES = 10_000;
/** Statuses in which the pipeline writes the image again soon (and that write drops published events). */
const IN_FLIGHT = new Set(['saving', 'uploading', 'importing']);
