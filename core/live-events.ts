/**
 * Live image events for this process's open event streams (GET /v2/events): the runtime's one
 * bus watcher feeds every event in, each is read once (the image as it is now) and handed to
 * every listener in order. Best effort like the bus's watch: a stream that misses an event
 * reloads what it shows when it reconnects; work that must happen never hangs off this.
 */
import type { PirEvent } from '../schemas/events.js';
import type { ImageDoc } from '../schemas/image.js';
import { EventAudience, type GrantsOf } from './event-audience.js';

/** `audience.doc` is the image now; the listener may wait (on gallery grants): the next event waits for it. */
export type LiveListener = (event: PirEvent, audience: EventAudience) => void | Promise<void>;

export class LiveEvents {
  private readonly listeners = new Set<LiveListener>();
  /** Events are read one after another so listeners see them in the bus's order. */
  private chain: Promise<void> = Promise.resolve();

  /** `grantsOf`: the galleries shared with a project (streams follow gallery sharing). */
  constructor(private readonly load: (imageId: string) => Promise<ImageDoc | null>, private readonly grantsOf?: GrantsOf) {}

  get listening(): number {
    return this.listeners.size;
  }

  publish(event: PirEvent): void {
    if (this.listeners.size === 0) return; // nobody watching: no manifest read
    this.chain = this.chain.then(async () => {
      const doc = await this.load(event.image_id).catch(() => null);
      const audience = new EventAudience(doc, this.grantsOf);
      await Promise.all([...this.listeners].map(async (listener) => { await listener(event, audience); })).catch(() => undefined);
    });
  }

  /** Returns the function that stops listening. */
  listen(listener: LiveListener): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }
}
