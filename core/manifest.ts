/**
 * Every change to an image goes through `Manifest.update`: read, change a copy, write it back
 * with compare-and-set on the revision, with the change's events in the same write. A lost race
 * re-reads and re-applies the change, so changes are written as functions of the current state.
 * Status changes and their events come from the image entity (core/image-entity.ts).
 */
import { EventEmitter } from 'node:events';
import type { ImageDoc } from '../schemas/image.js';
import type { PirEvent } from '../schemas/events.js';
import { TransientError, notFound } from './errors.js';
import { materialize, type NewEvent } from './events.js';
import { currentTraceparent } from './trace-context.js';
import type { OutboxRelay } from './outbox-relay.js';
import type { ManifestStore } from './ports.js';
import type { FaultHooks } from './fault-hooks.js';

/** What a change function returns: the events to emit, or null to leave the document as it is. */
export type ChangeResult = NewEvent[] | null;
export type Change = (draft: ImageDoc) => ChangeResult;

const MAX_CAS_ATTEMPTS = 100;

/**
 * How a pipeline run ended, as its bus event tells it: a waiter for that run can answer from it
 * without reading the image (`changes` listeners get it as their second argument).
 */
export interface Settlement {
  run: number;
  status: 'active' | 'killed';
  failure: { stage: string; code: string; message: string } | null;
}

const SETTLING_EVENTS = new Set(['image.active', 'image.killed', 'image.deleted', 'image.upload.aborted']);

function settlementOf(e: PirEvent): Settlement | undefined {
  if (e.type === 'image.active') return { run: (e as PirEvent<'image.active'>).data.run, status: 'active', failure: null };
  if (e.type !== 'image.killed') return undefined;
  const { run, stage, code, message } = (e as PirEvent<'image.killed'>).data;
  return run === null ? undefined : { run, status: 'killed', failure: { stage, code, message } };
}

export class Manifest {
  /**
   * Local notifications, by image id, of writes made by this process (with the document as
   * written) and of bus events that may settle an image (with their Settlement, when they have
   * one): waiters use them to wake early.
   */
  readonly changes = new EventEmitter();

  constructor(
    readonly store: ManifestStore,
    private readonly relay: OutboxRelay,
    private readonly faults: FaultHooks,
  ) {
    this.changes.setMaxListeners(0);
  }

  /** Wakes the image's waiters when a bus event may have settled it (active, killed, deleted, aborted). */
  signalFromBus(e: PirEvent): void {
    if (!SETTLING_EVENTS.has(e.type)) return;
    const settlement = settlementOf(e);
    // A worker wrote the run's end: what this process remembers of the image predates it (its
    // next write, the outbox ack, would lose a compare-and-set on it).
    if (settlement) this.store.forget?.(e.image_id);
    this.changes.emit(e.image_id, undefined, settlement);
  }

  /** An event this process received from the bus was published: a later write may drop it from the outbox. */
  notePublished(imageId: string, eventId: string): void {
    this.relay.notePublished(imageId, eventId);
  }

  async create(doc: ImageDoc, events: NewEvent[], opts?: { chosenId?: boolean }): Promise<ImageDoc> {
    doc.outbox = events.map((e) => materialize(doc.id, e, doc.created_at, currentTraceparent()));
    await this.store.create(doc, opts);
    this.afterWrite(doc);
    return doc;
  }

  get(id: string): Promise<ImageDoc | null> {
    return this.store.get(id);
  }

  /** The document as this process last saw it (it may be stale), else as read now. */
  async peekOrGet(id: string): Promise<ImageDoc | null> {
    return this.store.peek?.(id) ?? this.store.get(id);
  }

  /** A read that may trail by moments, when the caller's check says it is recent enough (ManifestStore.getRecent); else get(). */
  getRecent(id: string, isRecentEnough: (doc: ImageDoc) => boolean): Promise<ImageDoc | null> {
    return this.store.getRecent ? this.store.getRecent(id, isRecentEnough) : this.store.get(id);
  }

  async require(id: string): Promise<ImageDoc> {
    const doc = await this.store.get(id);
    if (!doc || doc.status === 'deleted') throw notFound(`Image ${id}`);
    return doc;
  }

  /**
   * Applies `change` with compare-and-set; returns the document as written (or as found, if
   * unchanged). `touch: false` keeps updated_at (bookkeeping no client should see as a change).
   * `change` may run several times (lost races, stale cached reads): only its last run counts,
   * so callers must not keep what an earlier run decided.
   */
  async update(id: string, change: Change, options: { touch?: boolean } = {}): Promise<{ doc: ImageDoc; changed: boolean }> {
    // A document this process saw last (its own write, or the head a lost compare-and-set read)
    // saves the read; it may be stale, so whatever the change decides from it that is not a
    // write (nothing to do, or an error) is decided again on a fresh read.
    let mayPeek = true;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const peeked = mayPeek ? (this.store.peek?.(id) ?? null) : null;
      const current = peeked ?? await this.store.get(id);
      if (!current) throw notFound(`Image ${id}`);
      const draft = structuredClone(current);
      let events: ChangeResult;
      if (peeked) {
        try {
          events = change(draft);
        } catch {
          mayPeek = false;
          continue;
        }
        if (events === null) {
          mayPeek = false;
          continue;
        }
      } else {
        events = change(draft);
        if (events === null) return { doc: current, changed: false };
      }
      mayPeek = true;
      const now = new Date().toISOString();
      draft.revision = current.revision + 1;
      if (options.touch !== false) draft.updated_at = now;
      // Events this process already published leave the outbox with this write: that is their ack.
      const published = this.relay.publishedEvents(id);
      const dropped = current.outbox.filter((e) => published.has(e.id)).map((e) => e.id);
      draft.outbox = [...current.outbox.filter((e) => !published.has(e.id)), ...events.map((e) => materialize(id, e, now, currentTraceparent()))];
      if (await this.store.replace(draft, current.revision)) {
        this.relay.acknowledgedByWrite(id, dropped);
        this.afterWrite(draft, events);
        return { doc: draft, changed: true };
      }
    }
    throw new TransientError('manifest_contention', `Image ${id} is being changed by many writers at once; try again.`);
  }

  private afterWrite(doc: ImageDoc, events: NewEvent[] = []): void {
    this.faults.afterManifestWrite(events.map((e) => e.type));
    void this.relay.flush(doc);
    this.changes.emit(doc.id, doc);
  }
}
