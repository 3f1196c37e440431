/**
 * Runs one pipeline stage for one job, idempotently: the start and the completion of a stage are
 * compare-and-set writes guarded by (status, run, stage), so a repeated or stale job is a no-op
 * and a stage's effect is recorded exactly once however often the job is delivered.
 *
 * A fused job (a small image's whole chain, workers/dispatcher.ts) runs every stage from the one
 * the manifest records as current to the end, each in its own span with its own events, timings
 * and start count, but writes once, at the end. A crash or a failed attempt re-runs the chain
 * from the last recorded stage: every stage only reads the staged bytes or writes its own output
 * again, and promotion leaves the staged bytes in place (BlobStore.promote), so running a stage
 * twice is harmless. Only a promote that copies into other stores (a multi-store import: long
 * work of its own) is preceded by a write recording the stages before it.
 *
 * A stage that fails because the image store is unreachable (core/store-outage.ts) does not end
 * the image when its attempts run out: the job is deferred (no attempt counted) every
 * STORE_WAIT_MS while the run is younger than the stage deadline, so an outage of the store
 * delays imports instead of killing them; past that, the image ends `store_unreachable`.
 */
import type { Logger } from 'pino';
import { STAGES, type ImageDoc, type StageName } from '../schemas/image.js';
import { PirError, RefusedError, errorName, isRetryable } from '../core/errors.js';
import { event, type NewEvent } from '../core/events.js';
import { activate, kill } from '../core/image-entity.js';
import { Manifest } from '../core/manifest.js';
import { nextStage, startStage } from '../core/pipeline-state.js';
import type { BlobStore, JobContext, StageJob } from '../core/ports.js';
import { removeImageBytes, removeStaging } from '../core/blob-keys.js';
import { stageDuration } from '../infra/telemetry/metrics.js';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import { inConsumerSpan } from '../core/trace-context.js';
import { ChainReaders } from './chain-readers.js';
import { DeferJobError } from '../core/jobs.js';
import { isStoreOutage } from '../core/store-outage.js';

/** What a stage's work is given besides the image: the job's context and the run's shared blob readers. */
export interface StageContext extends JobContext {
  readers: ChainReaders;
}

/** A stage's work. It returns how to record its outcome on the image (applied at completion). */
export type StageWork = (doc: ImageDoc, ctx: StageContext) => Promise<(draft: ImageDoc) => void>;

export interface RunnerSettings {
  stageDeadlineSeconds: number;
  /** How often a stage waiting for an unreachable store tries again (default STORE_WAIT_MS). */
  storeWaitMs?: number;
}

/** How often a stage waiting for an unreachable image store tries again. */
export const STORE_WAIT_MS = 5_000;

export class StageRunner {
  constructor(
    private readonly manifest: Manifest,
    private readonly blobs: BlobStore,
    private readonly stages: Record<StageName, StageWork>,
    private readonly settings: RunnerSettings,
    private readonly log: Logger,
  ) {}

  /** The JobQueue handler. Throws only to ask for a retry. */
  readonly handle = (job: StageJob, ctx: JobContext): Promise<void> => job.fused
    ? this.runFused(job, ctx)
    : inConsumerSpan(`stage ${job.stage}`, job.traceparent, spanAttributes(job, job.stage, ctx), (span) => this.run(job, ctx, span));

  private async run(job: StageJob, ctx: JobContext, span: Span): Promise<void> {
    let log = this.log.child({ image_id: job.imageId, run: job.run, stage: job.stage, attempt: ctx.attempt });
    const doc = await this.start(job, ctx);
    if (!doc) {
      span.setAttribute('pir.outcome', 'skipped');
      log.debug('stale or repeated job: nothing to do');
      return;
    }
    log = log.child({ project_id: doc.owner });
    span.setAttributes(imageAttributes(doc));
    log.info('stage started');
    const startedAt = performance.now();
    let record: (draft: ImageDoc) => void;
    const seconds = () => (performance.now() - startedAt) / 1000;
    const readers = new ChainReaders(this.blobs);
    try {
      record = await this.stages[job.stage](doc, { ...ctx, readers });
    } catch (error) {
      noteFailure(span, job.stage, error, ctx, seconds());
      await this.fail(job, ctx, error, Math.round(seconds() * 1000), log);
      return;
    } finally {
      await readers.closeAll();
    }
    stageDuration.observe({ stage: job.stage, outcome: 'done' }, seconds());
    span.setAttribute('pir.outcome', 'done');
    await this.complete(job, record, Math.round(performance.now() - startedAt), log);
  }

  private isCurrent(draft: ImageDoc, job: StageJob): boolean {
    return draft.status === 'importing' && draft.pipeline?.run === job.run && draft.pipeline.stage === job.stage;
  }

  private async start(job: StageJob, ctx: JobContext): Promise<ImageDoc | null> {
    // Handed off: the write before (the import's start, or the previous stage's completion)
    // already started this stage (one compare-and-set fewer per stage). Only a job's first
    // delivery takes that shortcut; a retry, or a re-run after the worker died (redelivered),
    // records its own start. The document may be this process's cached view: the completion
    // write is compare-and-set on fresh data anyway.
    if (ctx.attempt === 1 && !ctx.redelivered) {
      const seen = await this.manifest.peekOrGet(job.imageId);
      if (seen && this.isCurrent(seen, job) && seen.pipeline!.handoff === job.stage && seen.pipeline!.stages[job.stage].status === 'running') return seen;
    }
    const { doc, changed } = await this.manifest.update(job.imageId, (draft) => {
      if (!this.isCurrent(draft, job)) return null;
      return [startStage(draft, job.stage, this.settings.stageDeadlineSeconds, false)];
    }).catch((error: unknown) => {
      if (error instanceof PirError && error.kind === 'not_found') return { doc: null, changed: false };
      throw error;
    });
    // Only the run of the change that was written counts (an earlier run may have lost a race).
    return changed ? doc : null;
  }

  private async complete(job: StageJob, record: (draft: ImageDoc) => void, durationMs: number, log: Logger): Promise<void> {
    const { doc, changed } = await this.manifest.update(job.imageId, (draft) => {
      if (!this.isCurrent(draft, job)) return null;
      record(draft);
      const pipeline = draft.pipeline!;
      const progress = pipeline.stages[job.stage];
      progress.status = 'done';
      progress.ended_at = new Date().toISOString();
      progress.duration_ms = durationMs;
      pipeline.stage = nextStage(job.stage);
      pipeline.handoff = null;
      const events: NewEvent[] = [event('image.stage.completed', { run: job.run, stage: job.stage, duration_ms: durationMs })];
      // The next stage starts in this same write; its job finds it handed off.
      if (pipeline.stage === 'done') events.push(...activate(draft, job.run));
      else events.push(startStage(draft, pipeline.stage, this.settings.stageDeadlineSeconds, true));
      return events;
    });
    if (changed && doc.status === 'active') log.info({ duration_ms: durationMs }, 'image active');
    else if (changed) log.info({ duration_ms: durationMs }, 'stage done');
    await this.afterLastStage(job.imageId, job.stage === 'promote', changed, doc);
  }

  /** After the write that ends a chain: staging goes once active; promoted bytes go if the image moved on without us. */
  private async afterLastStage(imageId: string, promoted: boolean, changed: boolean, doc: ImageDoc): Promise<void> {
    if (changed && doc.status === 'active') {
      await removeStaging(this.blobs, imageId, doc.blob_key);
    } else if (!changed && promoted) {
      // The image moved on without us (deleted, or superseded by a resumed run): don't leave bytes behind.
      const latest = await this.manifest.get(imageId);
      if (!latest || latest.status === 'deleted' || latest.status === 'killed') await removeImageBytes(this.blobs, imageId);
    }
  }

  // ------------------------------------------------------------------ fused chains (small images)

  private async runFused(job: StageJob, ctx: JobContext): Promise<void> {
    const from = await this.recordedStage(job);
    if (!from) {
      await inConsumerSpan(`stage ${job.stage}`, job.traceparent, spanAttributes(job, job.stage, ctx), async (span) => {
        span.setAttribute('pir.outcome', 'skipped');
      });
      this.log.debug({ image_id: job.imageId, run: job.run, stage: job.stage, attempt: ctx.attempt }, 'stale or repeated fused job: nothing to do');
      return;
    }
    const log = this.log.child({ image_id: job.imageId, run: job.run, attempt: ctx.attempt, fused: true });
    // Unpack and inspect read the same staged disk: one reader for the chain.
    const readers = new ChainReaders(this.blobs);
    try {
      await this.runChain(job, ctx, from, readers, log);
    } finally {
      await readers.closeAll();
    }
  }

  private async runChain(job: StageJob, ctx: JobContext, from: StageName, readers: ChainReaders, log: Logger): Promise<void> {
    // `recorded`: the stage the manifest is at (the guard of every write); `working`: the image as
    // the chain has left it so far (the stages' records applied), which the next stage reads.
    let recorded: StageJob = { imageId: job.imageId, run: job.run, stage: from };
    let working: ImageDoc | null = null;
    const done: DoneStage[] = [];
    for (const stage of STAGES.slice(STAGES.indexOf(from))) {
      const next = await inConsumerSpan(`stage ${stage}`, job.traceparent, spanAttributes(job, stage, ctx), async (span): Promise<boolean> => {
        if (!working) {
          const started = await this.start(recorded, ctx);
          if (!started) {
            span.setAttribute('pir.outcome', 'skipped');
            return false;
          }
          working = structuredClone(started);
          log = log.child({ project_id: started.owner });
        } else if (stage === 'promote' && mayCopyIntoOtherStores(working)) {
          // Copies into other stores take as long as the disk is large: what the chain did
          // before them goes on record first (with promote started and handed off), so a re-run
          // resumes at promote and the run shows progress meanwhile.
          const { doc, changed } = await this.recordFused(recorded, done, (draft) => [startStage(draft, 'promote', this.settings.stageDeadlineSeconds, true)]);
          if (!changed) {
            span.setAttribute('pir.outcome', 'skipped');
            return false;
          }
          recorded = { ...recorded, stage: 'promote' };
          done.length = 0;
          working = structuredClone(doc);
        }
        span.setAttributes(imageAttributes(working));
        const stageLog = log.child({ stage });
        stageLog.info('stage started');
        const startedAt = new Date();
        const t0 = performance.now();
        let record: (draft: ImageDoc) => void;
        try {
          record = await this.stages[stage](working, { ...ctx, readers });
        } catch (error) {
          noteFailure(span, stage, error, ctx, (performance.now() - t0) / 1000);
          await this.failFused(recorded, done, { stage, startedAt, durationMs: Math.round(performance.now() - t0) }, ctx, error, stageLog);
          return false;
        }
        const durationMs = Math.round(performance.now() - t0);
        stageDuration.observe({ stage, outcome: 'done' }, durationMs / 1000);
        span.setAttribute('pir.outcome', 'done');
        record(working);
        done.push({ stage, record, startedAt, endedAt: new Date(), durationMs });
        stageLog.info({ duration_ms: durationMs }, 'stage done');
        if (stage !== STAGES[STAGES.length - 1]) return true;
        // The last stage: the chain's completion, in this stage's span (its events carry its context, as a chain's last write does).
        const { doc, changed } = await this.recordFused(recorded, done, (draft) => activate(draft, job.run));
        if (changed) stageLog.info({ stages: done.map((d) => d.stage) }, 'image active');
        await this.afterLastStage(job.imageId, true, changed, doc);
        return false;
      });
      if (!next) return;
    }
  }

  /** The stage a fused job goes on from: the manifest's current one, if it is this job's run and not before the job's first stage. */
  private async recordedStage(job: StageJob): Promise<StageName | null> {
    const from = (doc: ImageDoc | null): StageName | null => {
      const pipeline = doc?.status === 'importing' ? doc.pipeline : null;
      if (!pipeline || pipeline.run !== job.run || pipeline.stage === 'done') return null;
      return STAGES.indexOf(pipeline.stage) >= STAGES.indexOf(job.stage) ? pipeline.stage : null;
    };
    // The cached view first (no read after this process's own write); a miss is checked on a fresh read.
    return from(await this.manifest.peekOrGet(job.imageId)) ?? from(await this.manifest.get(job.imageId));
  }

  /**
   * One write for the stages a fused chain has done since `recorded`: each one's record, timings,
   * start (the recorded stage's was written already) and completion, then `then`'s change.
   */
  private recordFused(recorded: StageJob, done: DoneStage[], then: (draft: ImageDoc) => NewEvent[]) {
    return this.manifest.update(recorded.imageId, (draft) => {
      if (!this.isCurrent(draft, recorded)) return null;
      const pipeline = draft.pipeline!;
      const events: NewEvent[] = [];
      for (const d of done) {
        if (d.stage !== recorded.stage) events.push(startStage(draft, d.stage, this.settings.stageDeadlineSeconds, false, d.startedAt));
        d.record(draft);
        const progress = pipeline.stages[d.stage];
        progress.status = 'done';
        progress.ended_at = d.endedAt.toISOString();
        progress.duration_ms = d.durationMs;
        events.push(event('image.stage.completed', { run: recorded.run, stage: d.stage, duration_ms: d.durationMs }));
        pipeline.stage = nextStage(d.stage);
      }
      pipeline.handoff = null;
      events.push(...then(draft));
      return events;
    });
  }

  /** A fused chain's stage failed: the stages done before it and the failure in one write; throws to retry. */
  private async failFused(recorded: StageJob, done: DoneStage[], failed: FailedStage, ctx: JobContext, error: unknown, log: Logger): Promise<void> {
    const { stage } = failed;
    let outcome = this.notWritten(error, stage, ctx);
    const { doc, changed } = await this.recordFused(recorded, done, (draft) => {
      outcome = this.outcomeOf(draft, error, stage, ctx);
      const events: NewEvent[] = stage === recorded.stage ? [] : [startStage(draft, stage, this.settings.stageDeadlineSeconds, false, failed.startedAt)];
      return [...events, ...recordFailure(draft, recorded.run, stage, outcome, failed.durationMs, ctx)];
    });
    await this.afterFailure(outcome, error, recorded.imageId, changed, doc, log);
  }

  /** The outcome a failure has before its write (what is logged if the write changes nothing). */
  private notWritten(error: unknown, stage: StageName, ctx: JobContext): FailureOutcome {
    const retry = willRetry(error, ctx);
    return { retry, waits: false, again: retry, failure: failureOf(error, stage, ctx) };
  }

  /** What a failed stage becomes, decided on the image as it is at the write: retried, waiting for the store, or the image's end. */
  private outcomeOf(draft: ImageDoc, error: unknown, stage: StageName, ctx: JobContext): FailureOutcome {
    const retry = willRetry(error, ctx);
    const waits = !retry && this.waitsForStore(draft, error);
    return { retry, waits, again: retry || waits, failure: this.finalFailure(draft, error, stage, ctx, waits) };
  }

  /** After a failure's write: log it, drop a killed image's staging, and ask the queue for a retry or a wait. */
  private async afterFailure(outcome: FailureOutcome, error: unknown, imageId: string, changed: boolean, doc: ImageDoc, log: Logger): Promise<void> {
    logStageFailure(log, error, outcome.failure.code, outcome.retry, outcome.waits);
    if (changed && doc.status === 'killed') await removeStaging(this.blobs, imageId);
    if (outcome.retry) throw error;
    if (outcome.waits && changed) throw new DeferJobError(this.settings.storeWaitMs ?? STORE_WAIT_MS);
  }

  /**
   * A stage whose attempts ran out because the image store is unreachable waits for it (the job
   * deferred, no attempt counted) while its run is younger than the stage deadline.
   */
  private waitsForStore(draft: ImageDoc, error: unknown): boolean {
    if (!isStoreOutage(error)) return false;
    const runStarted = Date.parse(draft.pipeline?.started_at ?? '');
    return Number.isFinite(runStarted) && Date.now() - runStarted < this.settings.stageDeadlineSeconds * 1000;
  }

  /** What ends the image: the stage's failure, or for a store outage the wait that ran out. */
  private finalFailure(draft: ImageDoc, error: unknown, stage: StageName, ctx: JobContext, waits: boolean): { code: string; message: string } {
    if (waits || !isStoreOutage(error)) return failureOf(error, stage, ctx);
    const seconds = Math.max(1, Math.round((Date.now() - Date.parse(draft.pipeline?.started_at ?? '')) / 1000));
    const waited = seconds < 120 ? `${seconds} s` : `${Math.round(seconds / 60)} minutes`;
    const message = `The image store did not answer while the ${stage} stage worked on the image (${errorName(error)}), and the import waited ${waited} for it. Upload the disk to a new image once the store answers again.`;
    return { code: 'store_unreachable', message };
  }

  private async fail(job: StageJob, ctx: JobContext, error: unknown, durationMs: number, log: Logger): Promise<void> {
    let outcome = this.notWritten(error, job.stage, ctx);
    const { doc, changed } = await this.manifest.update(job.imageId, (draft) => {
      if (!this.isCurrent(draft, job)) return null;
      outcome = this.outcomeOf(draft, error, job.stage, ctx);
      draft.pipeline!.handoff = null;
      return recordFailure(draft, job.run, job.stage, outcome, durationMs, ctx);
    });
    await this.afterFailure(outcome, error, job.imageId, changed, doc, log);
  }
}

/** How a stage's failure is recorded, and what the queue is asked for after it. */
interface FailureOutcome {
  /** Another attempt follows (the error is retryable and attempts are left). */
  retry: boolean;
  /** The store is unreachable: the job waits for it (deferred, no attempt counted). */
  waits: boolean;
  /** retry or waits: the stage stays pending and the image is not ended. */
  again: boolean;
  failure: { code: string; message: string };
}

/** A failed stage's record on the image: pending for another try, or failed with the image killed; its events. */
function recordFailure(draft: ImageDoc, run: number, stage: StageName, outcome: FailureOutcome, durationMs: number, ctx: JobContext): NewEvent[] {
  const { again, failure } = outcome;
  const progress = draft.pipeline!.stages[stage];
  // A retry goes on from this stage: its start is recorded again then.
  progress.status = again ? 'pending' : 'failed';
  progress.ended_at = new Date().toISOString();
  if (!again) progress.duration_ms = durationMs;
  const events: NewEvent[] = [event('image.stage.failed', { run, stage, code: failure.code, message: failure.message, retryable: again, attempt: ctx.attempt })];
  if (!again) events.push(...kill(draft, stage, failure.code, failure.message));
  return events;
}

/**
 * A refusal is the image's fault, not PIR's: an info line with its reason (no stack), so the
 * error level stays for what an operator must look at.
 */
function logStageFailure(log: Logger, error: unknown, code: string, retry: boolean, waits: boolean): void {
  if (error instanceof RefusedError) log.info({ code, reason: error.message }, 'stage refused the image');
  else if (retry) log.warn({ err: error, code }, 'stage failed; will retry');
  else if (waits) log.error({ err: error, code }, 'the image store is unreachable: the stage waits for it');
  else log.error({ err: error, code }, 'stage failed for good');
}

/** A stage a fused chain has done but not yet written. */
/** A fused chain's stage that failed: when it started and how long it ran. */
interface FailedStage {
  stage: StageName;
  startedAt: Date;
  durationMs: number;
}

interface DoneStage {
  stage: StageName;
  record: (draft: ImageDoc) => void;
  startedAt: Date;
  endedAt: Date;
  durationMs: number;
}

/** An import into chosen stores (multi-store): its promote may copy the disk into stores besides the default one. */
function mayCopyIntoOtherStores(doc: ImageDoc): boolean {
  return (doc.store_import?.importing.length ?? 0) > 0;
}

function spanAttributes(job: StageJob, stage: StageName, ctx: JobContext): Record<string, string | number | boolean> {
  return {
    'messaging.operation.name': 'process',
    'pir.image.id': job.imageId,
    'pir.stage': stage,
    'pir.run': job.run,
    'pir.attempt': ctx.attempt,
    ...(job.fused ? { 'pir.fused': true } : {}),
  };
}

function imageAttributes(doc: ImageDoc): Record<string, string | number> {
  return {
    'pir.project.id': doc.owner ?? '',
    'pir.image.disk_format': doc.disk_format ?? '',
    'pir.image.bytes': doc.staging?.size ?? doc.size ?? 0,
  };
}

/** A stage's failure on its metric and span: a retry, or failed for good (an error status). */
function noteFailure(span: Span, stage: StageName, error: unknown, ctx: JobContext, seconds: number): void {
  const outcome = willRetry(error, ctx) ? 'retry' : 'failed';
  stageDuration.observe({ stage, outcome }, seconds);
  span.setAttributes({ 'pir.outcome': outcome, 'pir.error.code': error instanceof PirError ? error.code : 'internal_error' });
  if (outcome === 'failed') span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
}

/**
 * What the image's owner reads (pir_failure): an unexpected error is named by its code only: its
 * message may name server paths (ENOTDIR: …, open '/var/lib/pir/…'), which are the operator's,
 * logged with the whole error above.
 */
function failureOf(error: unknown, stage: StageName, ctx: JobContext): { code: string; message: string } {
  if (error instanceof PirError) return { code: error.code, message: error.message };
  return { code: 'internal_error', message: `The ${stage} stage failed after ${ctx.attempt} attempt(s) (${errorName(error)}); PIR's log has the details.` };
}


function willRetry(error: unknown, ctx: JobContext): boolean {
  return isRetryable(error) && ctx.attempt < ctx.maxAttempts;
}
