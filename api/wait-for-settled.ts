/**
 * Waits until an image leaves the in-flight statuses. It wakes on a signal for the image (a write
 * by this process, or an event from the bus), and otherwise polls with a backoff, so a lost
 * signal only costs time.
 */
import type { ImageDoc } from '../schemas/image.js';
import type { Manifest, Settlement } from '../core/manifest.js';

/** What the upload's answer needs of the settled image. */
export interface Settled {
  status: ImageDoc['status'];
  failure: Settlement['failure'];
}

const SETTLED = new Set(['active', 'killed', 'deleted', 'queued', 'deactivated']);

/** Whether an image in this status is done with its upload or import (nothing more will happen by itself). */
export function isSettled(status: string): boolean {
  return SETTLED.has(status);
}
/**
 * The fallback polls: signals wake waiters at once, so polls only cover a lost one. Each poll is
 * a read (two commands on the MongoDB-wire store), and many uploads wait at once: most settle
 * before the first.
 */
const FIRST_POLL_MS = 1000;
const MAX_POLL_MS = 4000;

export async function waitForSettled(manifest: Manifest, id: string, signal: AbortSignal): Promise<Settled | null> {
  let wake: () => void = () => {};
  // A write by this process signals with the document as written (and made durable): it is the
  // answer when settled, and no reason to read when not. A bus event that ended a run says how
  // (its Settlement): the answer when that run is the one this upload started. Any other signal
  // reads.
  let written: ImageDoc | null = null;
  let told = null as Settlement | null;
  // Set by a signal during a look, which then comes too early for `wake`: the loop looks again.
  let signalled = false;
  const onSignal = (doc?: ImageDoc, settlement?: Settlement) => {
    if (doc && !isSettled(doc.status)) return;
    if (doc) written = doc;
    if (settlement) told = settlement;
    signalled = true;
    wake();
  };
  manifest.changes.on(id, onSignal);
  try {
    let delay = FIRST_POLL_MS;
    // The first look may be this process's own last write (the upload's, just made): no read.
    // Were it stale, the image settled before the listener was on, and the first poll sees it.
    let look: (id: string) => Promise<ImageDoc | null> = (i) => manifest.peekOrGet(i);
    /** The run the upload started, from the first look. */
    let run: number | null | undefined;
    for (;;) {
      signalled = false;
      const doc: Settled | null = written ?? (told && told.run === run ? told : await look(id));
      if (run === undefined) run = (doc as ImageDoc | null)?.pipeline?.run ?? null;
      look = (i) => manifest.get(i);
      if (!doc || isSettled(doc.status) || signal.aborted) return doc;
      if (signalled) continue;
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
