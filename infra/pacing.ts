/**
 * Pacing for periodic reads of a shared store (sweepers, gauges, the ops stream): a pass runs at
 * most every `everyMs`, and never takes more than `maxShare` of the time. A store whose queries
 * are index lookups (MongoDB, SQLite) keeps the base period; one where they scan every document
 * (FerretDB's SQLite backend indexes only `_id`; measured at 2,000 images: 1.4 s of its CPU for
 * the outbox sweep, 12 s for the nine status counts) is asked proportionally less often instead
 * of being kept busy by a few timers as the catalog grows.
 */

/**
 * How long after a pass that took `tookMs` the next may start (from the end of this one), at most
 * `maxDelayMs`: a loop that recovers work (the sweepers) must come back within a bounded time
 * even after a pass that was slow only because the machine was busy.
 */
export function pacedDelay(everyMs: number, tookMs: number, maxShare: number, maxDelayMs = Infinity): number {
  const took = Math.max(0, tookMs);
  return Math.min(Math.max(everyMs - took, took / maxShare - took, 0), maxDelayMs);
}

export interface PacedLoop {
  /** Stops scheduling; resolves once a pass in flight has ended. */
  stop(): Promise<void>;
}

/**
 * Runs `task` first after `everyMs`, then again `pacedDelay` (at most `maxDelayMs`) after each
 * pass ends (passes never overlap). A pass that throws is reported to `onError` and tried again
 * after `everyMs`: its time went to waiting on a store that did not answer (a MongoDB server
 * selection takes 5 s), not to work worth spacing out; paced, a sweep that failed during an
 * outage put the recovery it runs up to `maxDelayMs` (30 s) after the store came back. The
 * timers do not keep the process alive.
 */
export function repeatPaced(task: () => Promise<unknown>, everyMs: number, maxShare: number, onError: (error: unknown) => void, maxDelayMs = Infinity): PacedLoop {
  let timer: NodeJS.Timeout | null = null;
  let inFlight: Promise<void> | null = null;
  let stopped = false;
  const schedule = (delayMs: number) => {
    timer = setTimeout(run, delayMs);
    timer.unref();
  };
  const run = () => {
    timer = null;
    const started = performance.now();
    let failed = false;
    inFlight = task().then(() => undefined, (error: unknown) => {
      failed = true;
      onError(error);
    }).finally(() => {
      inFlight = null;
      if (!stopped) schedule(failed ? everyMs : pacedDelay(everyMs, performance.now() - started, maxShare, maxDelayMs));
    });
  };
  schedule(everyMs);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await inFlight;
    },
  };
}
