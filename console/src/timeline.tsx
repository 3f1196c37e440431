/** The pipeline, stage by stage (pir_pipeline in the image view): status, attempts, duration bars, and a refusal in plain words. */
import type { Image } from './api';
import { duration } from './format';
import { explainFailure, STAGE_LABELS } from './explain';

export function Timeline({ image }: { image: Image }) {
  const p = image.pir_pipeline;
  const failure = image.pir_failure;
  const stages = p ? Object.entries(p.stages) : [];
  const longest = Math.max(1, ...stages.map(([, s]) => s.duration_ms ?? (s.started_at ? Date.now() - Date.parse(s.started_at) : 0)));
  const explained = failure ? explainFailure(failure) : null;
  return (
    <section aria-labelledby="h-pipeline"><h2 id="h-pipeline">Pipeline</h2>
      {!p && !failure && <p class="muted">{image.status === 'queued' ? 'Waiting for data: upload a file to start the pipeline.' : 'No pipeline run.'}</p>}
      {p && (
        <>
          <p class="muted">Run {p.run} ({p.method}), started {new Date(p.started_at).toLocaleString()}{p.stage === 'done' ? ', finished' : `, now at ${STAGE_LABELS[p.stage] ?? p.stage}`}.</p>
          <ol class="timeline" id="timeline">
            {stages.map(([name, s]) => {
              const ms = s.duration_ms ?? (s.status === 'running' && s.started_at ? Date.now() - Date.parse(s.started_at) : null);
              return (
                <li class={`stage st-${s.status}`} data-stage={name} data-status={s.status} key={name}>
                  <span class="st-name">{STAGE_LABELS[name] ?? name}</span>
                  <span class="st-bar" aria-hidden="true"><span class="st-fill" style={{ width: `${Math.max(2, ((ms ?? 0) / longest) * 100)}%` }} /></span>
                  <span class="st-time">{s.status}{ms !== null ? ` · ${duration(ms)}` : ''}{s.attempts > 1 ? ` · ${s.attempts} attempts` : ''}</span>
                </li>
              );
            })}
          </ol>
          {p.findings.length > 0 && <ul class="findings">{p.findings.map((f) => <li><span class="mono">{f.code}</span>{f.message ? `: ${f.message}` : ''}</li>)}</ul>}
        </>
      )}
      {explained && (
        <div class="failure" id="failure" role="alert">
          <p><strong>{explained.what}</strong></p>
          {explained.meaning && <p>{explained.meaning}</p>}
          <p><strong>What to do:</strong> {explained.todo}</p>
        </div>
      )}
    </section>
  );
}
