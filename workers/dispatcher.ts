/**
 * The dispatcher turns `image.import.started` events into stage jobs: a chain of one job per
 * stage, or for a small image (staged bytes at most `fusedStagesMaxSize`) one fused job that runs
 * every stage (workers/stage-runner.ts): a job and its queue round trips per stage cost more
 * than a small image's stage work. Events come at least once and job ids are deterministic, so
 * a repeated event enqueues nothing new. It also turns the events after which stores wait for a
 * copy (a copy-image recorded; a lenient multi-store import active in its first store:
 * core/store-operations.ts startsCopies) into copy-image jobs.
 */
import type { Logger } from 'pino';
import type { PirEvent } from '../schemas/events.js';
import type { ImageDoc } from '../schemas/image.js';
import type { Manifest } from '../core/manifest.js';
import { remainingStages } from '../core/pipeline-state.js';
import type { EventBus, JobQueue } from '../core/ports.js';
import { startsCopies } from '../core/store-operations.js';
import { currentTraceparent, inConsumerSpan } from '../core/trace-context.js';

export const DISPATCHER_GROUP = 'pir-dispatcher';

/** Enqueues the copy-image jobs of the stores still importing (core/store-operations.ts). */
export type ContinueImport = (imageId: string, eventId: string) => Promise<unknown>;

export interface DispatchSettings {
  /** Images whose staged bytes are at most this size get one fused job (0: never). */
  fusedStagesMaxSize: number;
  /** Set with several stores: what continues an import or a copy into the other stores. */
  continueImport?: ContinueImport | null;
}

export async function startDispatcher(bus: EventBus, manifest: Manifest, queue: JobQueue, log: Logger, settings: DispatchSettings = { fusedStagesMaxSize: 0 }): Promise<void> {
  const continueImport = settings.continueImport ?? null;
  await bus.subscribe(DISPATCHER_GROUP, async (e: PirEvent) => {
    // Every event read here is published: this process's next write of the image drops it from
    // the outbox (no separate acknowledgement by the process that wrote it).
    manifest.notePublished(e.image_id, e.id);
    if (continueImport && startsCopies(e)) {
      await continueImport(e.image_id, e.id);
      return;
    }
    if (e.type !== 'image.import.started') return;
    await inConsumerSpan(`process ${e.type}`, e.traceparent, {
      'messaging.operation.name': 'process',
      'messaging.consumer.group.name': DISPATCHER_GROUP,
      'messaging.message.id': e.id,
      'pir.image.id': e.image_id,
    }, () => dispatch(e));
  });

  async function dispatch(e: PirEvent): Promise<void> {
    const { run } = e.data as { run: number };
    // A state of this run's import (or later) is all planning needs: the stage runner's
    // compare-and-set catches anything newer, and an older state is read again exactly.
    const thisRun = (d: ImageDoc) => d.status === 'importing' && d.pipeline?.run === run;
    const doc = await manifest.getRecent(e.image_id, thisRun);
    if (!doc || !thisRun(doc)) return; // superseded or gone
    const stages = remainingStages(doc.pipeline!); // thisRun(doc): it has one
    // The jobs continue this dispatch's span (itself the child of the request that started the import).
    const traceparent = currentTraceparent() ?? e.traceparent;
    const trace = traceparent ? { traceparent } : {};
    const size = doc.staging?.size;
    const fused = stages.length > 1 && settings.fusedStagesMaxSize > 0 && size !== undefined && size <= settings.fusedStagesMaxSize;
    await queue.enqueueChain(fused
      ? [{ imageId: doc.id, run, stage: stages[0]!, ...trace, fused: true }]
      : stages.map((stage) => ({ imageId: doc.id, run, stage, ...trace })));
    log.debug({ image_id: doc.id, project_id: doc.owner, run, stages, fused }, 'pipeline enqueued');
  }
}
