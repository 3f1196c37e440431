import { STAGES, type ImageDoc, type PipelineRun, type StageName, type StageProgress } from '../schemas/image.js';
import { event, type NewEvent } from './events.js';

export function newRun(run: number, method: PipelineRun['method'], deadlineSeconds: number, now = new Date()): PipelineRun {
  const pending = (): StageProgress => ({ status: 'pending', attempts: 0, started_at: null, ended_at: null, duration_ms: null });
  return {
    run,
    method,
    stage: STAGES[0],
    stages: Object.fromEntries(STAGES.map((s) => [s, pending()])) as Record<StageName, StageProgress>,
    started_at: now.toISOString(),
    deadline_at: new Date(now.getTime() + deadlineSeconds * 1000).toISOString(),
    resumes: 0,
    unpacked: null,
    unpack: null,
    inspection: null,
  };
}

export function nextStage(stage: StageName): StageName | 'done' {
  const i = STAGES.indexOf(stage);
  return i + 1 < STAGES.length ? STAGES[i + 1] : 'done';
}

/** The stages still to run, from the current one on. */
export function remainingStages(run: PipelineRun): StageName[] {
  if (run.stage === 'done') return [];
  return STAGES.slice(STAGES.indexOf(run.stage));
}

/** The next run number of an image: each upload, import or copy-image gets its own, never one an abandoned upload had. */
export function nextRunNumber(doc: ImageDoc): number {
  const copies = (doc.copy_tasks ?? []).map((t) => t.run);
  return Math.max(doc.pipeline?.run ?? 0, doc.upload?.run ?? 0, doc.aborted_run ?? 0, ...copies) + 1;
}

/**
 * Marks a stage running (its start counted, the run's deadline moved on); returns its event.
 * With `handoff`, the write that makes it also hands the stage to its job (`pipeline.handoff`):
 * the job's first attempt then runs without a start write of its own.
 */
export function startStage(draft: ImageDoc, stage: StageName, deadlineSeconds: number, handoff: boolean, now = new Date()): NewEvent {
  const pipeline = draft.pipeline!;
  const progress = pipeline.stages[stage];
  progress.status = 'running';
  // Count starts, not the queue's attempt number: a stage re-run after its worker died
  // (a stalled job) is not a new attempt to the queue, but it is a new start.
  progress.attempts += 1;
  progress.started_at = now.toISOString();
  progress.ended_at = null;
  progress.duration_ms = null;
  pipeline.deadline_at = new Date(now.getTime() + deadlineSeconds * 1000).toISOString();
  pipeline.handoff = handoff ? stage : null;
  return event('image.stage.started', { run: pipeline.run, stage, attempt: progress.attempts });
}
