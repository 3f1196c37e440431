/**
 * Waits until an image leaves the in-flight statuses. It re-reads the image when woken by a
 * signal for it (a write by this process, or an event from the bus), and otherwise polls with a
 * backoff, so a lost signal only costs time.
 */
import type { ImageDoc } from '../schemas/image.js';
import type { Manifest } from '../core/manifest.js';

const SETTLED = new Set(['active', 'killed', 'deleted', 'queued', 'deactivated']);
/**
 * The fallback polls: woken waiters re-read at once, so polls only cover a lost signal. Each
 * poll is a read (two commands on the MongoDB-wire store), and many uploads wait at once.
 */
const FIRST_POLL_MS = 250;
const MAX_POLL_MS = 4000;

export async function waitForSettled(manifest: Manifest, id: string, signal: AbortSignal): Promise<ImageDoc | null> {
  let wake: () => void = () => {};
  // A write by this process signals with the document as written (and made durable): it is the
  // answer when settled, and no reason to read when not. A signal without one (a bus event) reads.
  let written: ImageDoc | null = null;
  const onSignal = (doc?: ImageDoc) => {
    if (doc && !SETTLED.has(doc.status)) return;
    if (doc) written = doc;
    wake();
  };
  manifest.changes.on(id, onSignal);
  try {
    let delay = FIRST_POLL_MS;
    // The first look may be this process's own last write (the upload's, just made): no read.
    // Were it stale, the image settled before the listener was on, and the first poll sees it.
    let look: (id: string) => Promise<ImageDoc | null> = (i) => manifest.peekOrGet(i);
    for (;;) {
      const doc = written ?? await look(id);
      look = (i) => manifest.get(i);
      if (!doc || SETTLED.has(doc.status) || signal.aborted) return doc;
      await new Promise<void>((resolve) => {
        // One abort listener at a time, removed after each wait: a long wait polls many times.
        const done = () => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve(); };
        const timer = setTimeout(done, delay);
        wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
      delay = Math.min(delay * 2, MAX_POLL_MS);
    }
  } finally {
    manifest.changes.off(id, onSignal);
  }
}
