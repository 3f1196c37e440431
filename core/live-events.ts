/**
 * Live image events for this process's open event streams (GET /v2/events): the runtime's one
 * bus watcher feeds every event in, each is read once (the image as it is now) and handed to
 * every listener in order. Best effort like the bus's watch: a stream that misses an event
 * reloads what it shows when it reconnects; work that must happen never hangs off this.
 */
import type { PirEvent } from '../schemas/events.js';
import type { ImageDoc } from '../schemas/image.js';

export type LiveListener = (event: PirEvent, doc: ImageDoc | null) => void;

export class LiveEvents {
  private readonly listeners = new Set<LiveListener>();
  /** Events are read one after another so listeners see them in the bus's order. */
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly load: (imageId: string) => Promise<ImageDoc | null>) {}

  get listening(): number {
    return this.listeners.size;
  }

  publish(event: PirEvent): void {
    if (this.listeners.size === 0) return; // nobody watching: no manifest read
    this.chain = this.chain.then(async () => {
      const doc = await this.load(event.image_id).catch(() => null);
      for (const listener of this.listeners) listener(event, doc);
    });
  }

  /** Returns the function that stops listening. */
  listen(listener: LiveListener): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }
}
