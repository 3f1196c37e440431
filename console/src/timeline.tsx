/** The pipeline, stage by stage (pir_pipeline in the image view): status, attempts, duration bars, and a refusal in plain words. */
import type { Image, Pipeline, StageProgress } from './api';
import { duration, visible } from './format';
import { explainFailure, STAGE_LABELS } from './explain';

export function Timeline({ image }: { image: Image }) {
  const p = image.pir_pipeline;
  const failure = image.pir_failure;
  const stages = p ? Object.entries(p.stages) : [];
  const longest = Math.max(1, ...stages.map(([, s]) => stageMs(s) ?? 0));
  const explained = failure ? explainFailure(failure) : null;
  return (
    <section aria-labelledby="h-pipeline"><h2 id="h-pipeline">Pipeline</h2>
      {!p && !failure && <p class="muted">{image.status === 'queued' ? 'Waiting for data: upload a file to start the pipeline.' : 'No pipeline run.'}</p>}
      {p && (
        <>
          <p class="muted" id="pipeline-summary">Run {p.run} ({p.method}), started {new Date(p.started_at).toLocaleString()}{whereItIs(p, image)}.</p>
          <ol class="timeline" id="timeline">
            {stages.map(([name, s]) => {
              const ms = stageMs(s);
              return (
                <li class={`stage st-${s.status}`} data-stage={name} data-status={s.status} key={name}>
                  <span class="st-name">{STAGE_LABELS[name] ?? name}</span>
                  <span class="st-bar" aria-hidden="true"><span class="st-fill" style={{ width: `${Math.max(2, ((ms ?? 0) / longest) * 100)}%` }} /></span>
                  <span class="st-time">{s.status}{ms !== null ? ` · ${duration(ms)}` : ''}{s.attempts > 1 ? ` · ${s.attempts} attempts` : ''}</span>
                </li>
              );
            })}
          </ol>
          {p.findings.length > 0 && <ul class="findings">{p.findings.map((f) => <li><span class="mono">{f.code}</span>{f.message ? <>: <bdi>{visible(f.message)}</bdi></> : ''}</li>)}</ul>}
        </>
      )}
      {explained && (
        <div class="failure" id="failure" role="alert">
          <p><strong>{visible(explained.what)}</strong></p>
          {explained.meaning && <p>{explained.meaning}</p>}
          <p><strong>What to do:</strong> {explained.todo}</p>
        </div>
      )}
    </section>
  );
}

/** A stage's time: as recorded, else from its start and end (a failed stage records no duration; a pending one's end is its last failed attempt's), else running so far. */
function stageMs(s: StageProgress): number | null {
  if (s.duration_ms !== null) return s.duration_ms;
  if (!s.started_at) return null;
  if (s.ended_at && s.status !== 'pending') return Math.max(0, Date.parse(s.ended_at) - Date.parse(s.started_at));
  return s.status === 'running' ? Date.now() - Date.parse(s.started_at) : null;
}

/** The run's state in words: a killed image stopped at its failed stage, it is not still "at" it. */
function whereItIs(p: Pipeline, image: Image): string {
  if (p.stage === 'done') return ', finished';
  const failed = image.status === 'killed' ? (image.pir_failure?.stage ?? p.stage) : null;
  if (failed === null) return `, now at ${STAGE_LABELS[p.stage] ?? p.stage}`;
  const ms = p.stages[failed] ? stageMs(p.stages[failed]) : null;
  return `, failed at ${STAGE_LABELS[failed] ?? failed}${ms !== null ? ` after ${duration(ms)}` : ''}`;
}
