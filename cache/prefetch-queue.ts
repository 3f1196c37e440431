/**
 * Glance's cache queue: images an administrator asked to have cached, fetched one at a time
 * with that administrator's token (held in memory only while queued).
 */
import type { Logger } from 'pino';
import type { CacheStore } from './cache-store.js';
import type { Upstream } from './upstream.js';

export class PrefetchQueue {
  private readonly queued = new Map<string, string>();
  private running = false;
  private stopped = false;

  constructor(private readonly store: CacheStore, private readonly upstream: Upstream, private readonly log: Logger) {}

  add(imageId: string, token: string): void {
    if (this.store.has(imageId)) return;
    this.queued.set(imageId, token);
    void this.pump();
  }

  ids(): string[] {
    return [...this.queued.keys()];
  }

  remove(imageId: string): boolean {
    return this.queued.delete(imageId);
  }

  clear(): number {
    const n = this.queued.size;
    this.queued.clear();
    return n;
  }

  stop(): void {
    this.stopped = true;
    this.queued.clear();
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (!this.stopped) {
        const next = this.queued.entries().next();
        if (next.done) break;
        const [imageId, token] = next.value;
        try {
          const { facts } = await this.upstream.downloadable(token, imageId);
          if (!facts) {
            this.log.warn({ image_id: imageId }, 'queued image not cached: the upstream says it is not downloadable and active');
          } else {
            const found = await this.store.lookup({ imageId, size: facts.size, algo: facts.algo, hash: facts.hash }, (signal) => this.upstream.fetchFile(token, imageId, signal));
            if (!found) this.log.warn({ image_id: imageId, size: facts.size }, 'queued image not cached: it does not fit');
            else if (found.kind === 'fill') await found.fill.done.catch(() => {});
          }
        } catch (error) {
          this.log.warn({ image_id: imageId, err: error }, 'queued image not cached');
        }
        // Listed as queued until its fill ended (Glance lists it as queued meanwhile).
        if (this.queued.get(imageId) === token) this.queued.delete(imageId);
      }
    } finally {
      this.running = false;
    }
  }
}
