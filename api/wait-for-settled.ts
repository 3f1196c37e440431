/**
 * Waits until an image leaves the in-flight statuses. Writes made in this process wake the
 * waiter at once; writes by other processes (workers) are seen by polling with a short backoff.
 */
import type { ImageDoc } from '../schemas/image.js';
import type { Manifest } from '../core/manifest.js';

const SETTLED = new Set(['active', 'killed', 'deleted', 'queued', 'deactivated']);

export async function waitForSettled(manifest: Manifest, id: string, signal: AbortSignal): Promise<ImageDoc | null> {
  let wake: () => void = () => {};
  const onChange = (doc: ImageDoc) => { if (SETTLED.has(doc.status)) wake(); };
  manifest.changes.on(id, onChange);
  try {
    let delay = 5;
    for (;;) {
      const doc = await manifest.get(id);
      if (!doc || SETTLED.has(doc.status)) return doc;
      if (signal.aborted) return doc;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => { clearTimeout(timer); resolve(); };
        signal.addEventListener('abort', wake, { once: true });
      });
      delay = Math.min(delay * 2, 100);
    }
  } finally {
    manifest.changes.off(id, onChange);
  }
}
