/**
 * Runs one pipeline stage for one job, idempotently: the start and the completion of a stage are
 * compare-and-set writes guarded by (status, run, stage), so a repeated or stale job is a no-op
 * and a stage's effect is recorded exactly once however often the job is delivered.
 */
import type { Logger } from 'pino';
import type { ImageDoc, StageName } from '../schemas/image.js';
import { PirError, isRetryable } from '../core/errors.js';
import { event, type NewEvent } from '../core/events.js';
import { activate, kill } from '../core/image-entity.js';
import { Manifest } from '../core/manifest.js';
import { nextStage } from '../core/pipeline-state.js';
import type { BlobStore, JobContext, StageJob } from '../core/ports.js';
import { removeImageBytes, removeStaging } from '../core/blob-keys.js';
import { stageDuration } from '../infra/telemetry/metrics.js';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import { inConsumerSpan } from '../core/trace-context.js';

/** A stage's work. It returns how to record its outcome on the image (applied at completion). */
export type StageWork = (doc: ImageDoc, ctx: JobContext) => Promise<(draft: ImageDoc) => void>;

export interface RunnerSettings {
  stageDeadlineSeconds: number;
}

export class StageRunner {
  constructor(
    private readonly manifest: Manifest,
    private readonly blobs: BlobStore,
    private readonly stages: Record<StageName, StageWork>,
    private readonly settings: RunnerSettings,
    private readonly log: Logger,
  ) {}

  /** The JobQueue handler. Throws only to ask for a retry. */
  readonly handle = (job: StageJob, ctx: JobContext): Promise<void> => inConsumerSpan(`stage ${job.stage}`, job.traceparent, {
    'messaging.operation.name': 'process',
    'pir.image.id': job.imageId,
    'pir.stage': job.stage,
    'pir.run': job.run,
    'pir.attempt': ctx.attempt,
  }, (span) => this.run(job, ctx, span));

  private async run(job: StageJob, ctx: JobContext, span: Span): Promise<void> {
    let log = this.log.child({ image_id: job.imageId, run: job.run, stage: job.stage, attempt: ctx.attempt });
    const doc = await this.start(job, ctx);
    if (!doc) {
      span.setAttribute('pir.outcome', 'skipped');
      log.debug('stale or repeated job: nothing to do');
      return;
    }
    log = log.child({ project_id: doc.owner });
    span.setAttributes({
      'pir.project.id': doc.owner ?? '',
      'pir.image.disk_format': doc.disk_format ?? '',
      'pir.image.bytes': doc.staging?.size ?? doc.size ?? 0,
    });
    log.info('stage started');
    const startedAt = performance.now();
    let record: (draft: ImageDoc) => void;
    const seconds = () => (performance.now() - startedAt) / 1000;
    try {
      record = await this.stages[job.stage](doc, ctx);
    } catch (error) {
      const outcome = willRetry(error, ctx) ? 'retry' : 'failed';
      stageDuration.observe({ stage: job.stage, outcome }, seconds());
      span.setAttributes({ 'pir.outcome': outcome, 'pir.error.code': error instanceof PirError ? error.code : 'internal_error' });
      if (outcome === 'failed') span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
      await this.fail(job, ctx, error, log);
      return;
    }
    stageDuration.observe({ stage: job.stage, outcome: 'done' }, seconds());
    span.setAttribute('pir.outcome', 'done');
    await this.complete(job, record, Math.round(performance.now() - startedAt), log);
  }

  private isCurrent(draft: ImageDoc, job: StageJob): boolean {
    return draft.status === 'importing' && draft.pipeline?.run === job.run && draft.pipeline.stage === job.stage;
  }

  private async start(job: StageJob, ctx: JobContext): Promise<ImageDoc | null> {
    // Handed off: the previous stage's completion write already started this stage (one
    // compare-and-set fewer per stage). Only a job's first attempt takes that shortcut; a retry
    // records its own start. (A re-run after the worker died is still attempt 1 to the queue:
    // it runs without a new start count, within the deadline the handoff set; past it the
    // stale sweeper resumes the image.) The document may be this process's cached view: the
    // completion write is compare-and-set on fresh data anyway.
    if (ctx.attempt === 1) {
      const seen = await this.manifest.peekOrGet(job.imageId);
      if (seen && this.isCurrent(seen, job) && seen.pipeline!.handoff === job.stage && seen.pipeline!.stages[job.stage].status === 'running') return seen;
    }
    const { doc, changed } = await this.manifest.update(job.imageId, (draft) => {
      if (!this.isCurrent(draft, job)) return null;
      draft.pipeline!.handoff = null;
      return [startStage(draft, job.run, job.stage, this.settings.stageDeadlineSeconds)];
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
      if (pipeline.stage === 'done') events.push(...activate(draft, job.run));
      else {
        // The next stage starts in this same write; its job finds it handed off.
        events.push(startStage(draft, job.run, pipeline.stage, this.settings.stageDeadlineSeconds));
        pipeline.handoff = pipeline.stage;
      }
      return events;
    });
    if (changed && doc.status === 'active') {
      log.info({ duration_ms: durationMs }, 'image active');
      await removeStaging(this.blobs, job.imageId, doc.blob_key);
    } else if (!changed && job.stage === 'promote') {
      // The image moved on without us (deleted, or superseded by a resumed run): don't leave bytes behind.
      const latest = await this.manifest.get(job.imageId);
      if (!latest || latest.status === 'deleted' || latest.status === 'killed') await removeImageBytes(this.blobs, job.imageId);
    } else {
      log.info({ duration_ms: durationMs }, 'stage done');
    }
  }

  private async fail(job: StageJob, ctx: JobContext, error: unknown, log: Logger): Promise<void> {
    const retry = willRetry(error, ctx);
    const code = error instanceof PirError ? error.code : 'internal_error';
    const message = error instanceof PirError
      ? error.message
      : `The ${job.stage} stage failed after ${ctx.attempt} attempt(s): ${(error as Error)?.message ?? String(error)}`;
    log[retry ? 'warn' : 'error']({ err: error, code }, retry ? 'stage failed; will retry' : 'stage failed for good');
    const { doc, changed } = await this.manifest.update(job.imageId, (draft) => {
      if (!this.isCurrent(draft, job)) return null;
      const progress = draft.pipeline!.stages[job.stage];
      draft.pipeline!.handoff = null;
      progress.status = retry ? 'pending' : 'failed';
      progress.ended_at = new Date().toISOString();
      const events: NewEvent[] = [event('image.stage.failed', { run: job.run, stage: job.stage, code, message, retryable: retry, attempt: ctx.attempt })];
      if (!retry) events.push(...kill(draft, job.stage, code, message));
      return events;
    });
    if (changed && doc.status === 'killed') await removeStaging(this.blobs, job.imageId);
    if (retry) throw error;
  }
}

/** Marks a stage running (its start counted, the run's deadline moved on); returns its event. */
function startStage(draft: ImageDoc, run: number, stage: StageName, deadlineSeconds: number): NewEvent {
  const now = new Date();
  const progress = draft.pipeline!.stages[stage];
  progress.status = 'running';
  // Count starts, not the queue's attempt number: a stage re-run after its worker died
  // (a stalled job) is not a new attempt to the queue, but it is a new start.
  progress.attempts += 1;
  progress.started_at = now.toISOString();
  progress.ended_at = null;
  progress.duration_ms = null;
  draft.pipeline!.deadline_at = new Date(now.getTime() + deadlineSeconds * 1000).toISOString();
  return event('image.stage.started', { run, stage, attempt: progress.attempts });
}

function willRetry(error: unknown, ctx: JobContext): boolean {
  return isRetryable(error) && ctx.attempt < ctx.maxAttempts;
}
