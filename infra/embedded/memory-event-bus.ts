/**
 * In-process EventBus for embedded mode.
 *
 * publish() appends to a retained log and hands each event at once to every consumer group.
 * A group keeps one lane per image id: a FIFO that delivers one event at a time to one member
 * of the group (chosen by a hash of the image id, like a Kafka partition), so events of one
 * image arrive in publish order while images proceed independently. A handler that throws
 * gets the same event again after a backoff (doubling, capped); only that image's lane waits,
 * never the others. Hand-off is a microtask after publish: no polling.
 *
 * Like the Kafka adapter (fromBeginning), a group that subscribes for the first time also
 * receives the retained log (the last `retain` events), so events published during start-up,
 * before a group subscribed, are not lost. Events are copied through JSON for every delivery:
 * handlers get what a Kafka consumer would get and cannot alter each other's copy.
 */
import pino from 'pino';
import type { Logger } from 'pino';
import type { PirEvent } from '../../schemas/events.js';
import type { EventBus, EventHandler } from '../../core/ports.js';

export interface MemoryEventBusOptions {
  /** First redelivery delay after a handler throws (default 100 ms); doubles per failure. */
  retryBaseMs?: number;
  /** Cap of the redelivery delay (default 5000 ms). */
  retryMaxMs?: number;
  /** Events kept for groups that subscribe later (default 10 000). */
  retain?: number;
  /** How long close() waits for running handlers (default 5000 ms). */
  closeTimeoutMs?: number;
  logger?: Logger;
}

interface Entry {
  imageId: string;
  json: string;
}

interface Lane {
  key: string;
  queue: Entry[];
  busy: boolean;
  failures: number;
  timer: NodeJS.Timeout | null;
}

interface Group {
  name: string;
  members: EventHandler[];
  lanes: Map<string, Lane>;
}

/** FNV-1a: a stable member choice per image id. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class MemoryEventBus implements EventBus {
  private readonly watchers = new Set<EventHandler>();
  /** The retained events are log[logStart…]; the array is compacted once a quarter of `retain` has expired (a splice per publish would move the whole log each time), so it holds at most 1.25 × retain. */
  private readonly log: Entry[] = [];
  private logStart = 0;
  private readonly groups = new Map<string, Group>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly retain: number;
  private readonly closeTimeoutMs: number;
  private readonly logger: Logger;
  private closed = false;

  constructor(opts: MemoryEventBusOptions = {}) {
    this.retryBaseMs = opts.retryBaseMs ?? 100;
    this.retryMaxMs = opts.retryMaxMs ?? 5000;
    this.retain = opts.retain ?? 10_000;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 5000;
    this.logger = opts.logger ?? pino({ name: 'pir-memory-bus', level: 'warn' });
  }

  async publish(events: PirEvent[]): Promise<void> {
    if (this.closed) throw new Error('event bus is closed');
    // Serialize all first: a bad event rejects the whole call and nothing is published.
    const entries = events.map((e): Entry => ({ imageId: e.image_id, json: JSON.stringify(e) }));
    for (const entry of entries) {
      this.log.push(entry);
      for (const group of this.groups.values()) this.enqueue(group, entry);
    }
    this.logStart = Math.max(this.logStart, this.log.length - this.retain);
    if (this.logStart > 0 && this.logStart >= this.retain / 4) {
      this.log.splice(0, this.logStart);
      this.logStart = 0;
    }
    if (this.watchers.size > 0) {
      const copies = entries.map((e) => JSON.parse(e.json) as PirEvent);
      queueMicrotask(() => {
        for (const watcher of this.watchers) for (const event of copies) watcher(event).catch(() => {});
      });
    }
  }

  async watch(handler: EventHandler): Promise<() => Promise<void>> {
    this.watchers.add(handler);
    return async () => { this.watchers.delete(handler); };
  }

  async subscribe(group: string, handler: EventHandler): Promise<void> {
    if (this.closed) throw new Error('event bus is closed');
    let g = this.groups.get(group);
    if (!g) {
      g = { name: group, members: [], lanes: new Map() };
      this.groups.set(group, g);
      g.members.push(handler);
      for (let i = this.logStart; i < this.log.length; i++) this.enqueue(g, this.log[i]!);
      return;
    }
    g.members.push(handler);
  }

  /** In this process: up while open. */
  async ping(): Promise<void> {
    if (this.closed) throw new Error('event bus is closed');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const g of this.groups.values()) {
      for (const lane of g.lanes.values()) {
        if (lane.timer) clearTimeout(lane.timer);
        lane.timer = null;
      }
    }
    if (this.inflight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.inflight]),
        new Promise<void>((resolve) => { timer = setTimeout(resolve, this.closeTimeoutMs); }),
      ]);
      clearTimeout(timer);
    }
    this.groups.clear();
    this.log.length = 0;
    this.logStart = 0;
  }

  private enqueue(group: Group, entry: Entry): void {
    let lane = group.lanes.get(entry.imageId);
    if (!lane) {
      lane = { key: entry.imageId, queue: [], busy: false, failures: 0, timer: null };
      group.lanes.set(entry.imageId, lane);
    }
    lane.queue.push(entry);
    this.pump(group, lane);
  }

  private pump(group: Group, lane: Lane): void {
    if (this.closed || lane.busy || lane.timer) return;
    const entry = lane.queue[0];
    if (!entry) {
      group.lanes.delete(lane.key);
      return;
    }
    const member = group.members[hash(lane.key) % group.members.length]!;
    lane.busy = true;
    const run = Promise.resolve()
      .then(() => member(JSON.parse(entry.json) as PirEvent))
      .then(
        () => {
          lane.busy = false;
          lane.failures = 0;
          lane.queue.shift();
          this.pump(group, lane);
        },
        (err: unknown) => {
          lane.busy = false;
          lane.failures++;
          const delay = Math.min(this.retryBaseMs * 2 ** (lane.failures - 1), this.retryMaxMs);
          const event = JSON.parse(entry.json) as PirEvent;
          const fields = { err, group: group.name, image_id: event.image_id, event_id: event.id, event_type: event.type, failures: lane.failures, retry_in_ms: delay };
          if (lane.failures >= 10) this.logger.error(fields, 'event handler keeps failing; redelivering');
          else this.logger.warn(fields, 'event handler failed; redelivering');
          if (this.closed) return;
          lane.timer = setTimeout(() => {
            lane.timer = null;
            this.pump(group, lane);
          }, delay);
        },
      )
      .finally(() => this.inflight.delete(run));
    this.inflight.add(run);
  }
}
