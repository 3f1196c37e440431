/**
 * Share-link uses, counted by one write per image at a time: uses that arrive while an image's
 * write is in flight are added by its next one. A compare-and-set write of the whole image per
 * download starved the owner's own edits of it (300 downloads at once: a PATCH took 15–29 s)
 * and lost counts when the writes gave up (198 of 300 counted).
 */
import { isRetryable } from './errors.js';

export type AddUses = (imageId: string, uses: ReadonlyMap<string, number>) => Promise<void>;

interface Pending {
  uses: Map<string, number>;
  waiting: { resolve: () => void; reject: (error: unknown) => void }[];
}

/** Tries per batch before its uses are given up (each a write that retried its own conflicts). */
const ATTEMPTS = 5;
const RETRY_MS = 500;

export class ShareLinkUseCounter {
  private readonly pending = new Map<string, Pending>();
  private readonly writing = new Set<string>();

  constructor(private readonly add: AddUses) {}

  /** Resolves once the use is written (rejects if it could not be, after retries). */
  count(imageId: string, linkId: string): Promise<void> {
    let batch = this.pending.get(imageId);
    if (!batch) {
      batch = { uses: new Map(), waiting: [] };
      this.pending.set(imageId, batch);
    }
    batch.uses.set(linkId, (batch.uses.get(linkId) ?? 0) + 1);
    const written = new Promise<void>((resolve, reject) => batch.waiting.push({ resolve, reject }));
    if (!this.writing.has(imageId)) void this.flush(imageId);
    return written;
  }

  private async flush(imageId: string): Promise<void> {
    this.writing.add(imageId);
    try {
      for (let batch = this.pending.get(imageId); batch; batch = this.pending.get(imageId)) {
        this.pending.delete(imageId);
        let failure: unknown = null;
        for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
          try {
            await this.add(imageId, batch.uses);
            failure = null;
            break;
          } catch (error) {
            failure = error;
            if (!isRetryable(error)) break; // the image is gone: nothing to count on
            if (attempt < ATTEMPTS) await new Promise((resolve) => setTimeout(resolve, RETRY_MS * attempt));
          }
        }
        for (const w of batch.waiting) {
          if (failure === null) w.resolve();
          else w.reject(failure);
        }
      }
    } finally {
      this.writing.delete(imageId);
    }
  }
}
